package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoadConfig loads arbitrary bytes as config.yaml. Loading never
// panics, every mistake is an Error naming the file, an accepted
// configuration validates, and no message shows a secret the document
// holds: a value of server.auth_tokens, webhooks[].secret, webhooks[].url
// or store.postgres_url, or the password of a URL anywhere.
//
// Secrets are recognised by the mark secretMark, which the seeds put in
// every secret value and which no message of the package contains by
// itself; a mark that the document also shows somewhere public (a key
// name, another key's value) may legitimately be quoted.
func FuzzLoadConfig(f *testing.F) {
	seeds := []string{
		"",
		"data_directory: data\n",
		"server:\n  auth_tokens: [S3CRETA-0123456789abcdef]\n  port: 70000\n",
		"server:\n  auth_tokens: [S3CRETB]\n",
		"server:\n  auth_tokens: S3CRETC-0123456789abcdef\n",
		"server:\n  auth_tokens: {S3CRETD: x}\n",
		"server:\n  auth_tokens: [\"S3CRETE 0123456789abcdef\", !!int S3CRETF]\n",
		"server:\n  auth_tokens:\n    - &t S3CRETG-0123456789abcdef\n  address: *t\n",
		"webhooks:\n  - url: http://h/\n    secret: S3CRETH\n    events: [job.nope]\n",
		"webhooks:\n  - url: http://h/\n    secret: [S3CRETI]\n",
		"webhooks:\n  - url: \"ftp://user:S3CRETJ@h/\"\n",
		"webhooks:\n  - url: \"http://user:S3CRETK@h:port/%zz\"\n    secret: S3CRETL\n",
		"webhooks: \"https://user:S3CRETM@h/\"\n",
		"webhooks: [S3CRETN]\n",
		"webhooks:\n  - url: http://h/\n    secret: *S3CRETO\n",
		"store:\n  driver: postgres\n  postgres_url: \"mysql://u:S3CRETP@h/db\"\n",
		"store:\n  driver: nope\n  postgres_url: \"postgres://u:S3CRETQ@h:nope/db\"\n",
		"logging:\n  level: \"https://u:S3CRETR@h/x\"\n",
		"jobs:\n  retention_days: \"https://u:S3CRETS@h\"\n  backup_interval: x\n",
		"playbook:\n  http:\n    allowed_hosts: [\"https://u:S3CRETT@h\", \"*.example.com:443\"]\n    denied_networks: [10.0.0.0/8, nope]\n",
		"server:\n  tls_cert: c.pem\n  shutdown_timeout: 5\n  max_body_bytes: 1ZiB\n",
		"jobs:\n  retention_by_status: {running: 3, failed: 0}\n  snapshot_interval: -1s\n",
		"a: 1\n---\nb: 2\n",
		"server: [\n",
		"server:\n  auth_tokens: [S3CRETU-0123456789abcdef]\n  auth_tokens: [S3CRETV-0123456789abcdef]\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "config.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err == nil {
			if cfg == nil {
				t.Fatal("no configuration and no error")
			}
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("loaded a configuration that does not validate: %v", verr)
			}
			// The environment adds nothing here; only a postgres driver
			// without a URL is a mistake left to find.
			err = cfg.ApplyEnv(func(string) string { return "" })
			if err == nil {
				return
			}
		} else {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a list of config mistakes: %T %v", err, err)
			}
			for _, e := range es {
				if e.File != path {
					t.Errorf("mistake does not name the file: %q", e.Error())
				}
			}
		}
		msg := err.Error()
		for _, s := range leakedSecrets(data, msg) {
			t.Errorf("error shows secret %q:\n%.2000s", s, msg)
		}
	})
}

// secretMark starts every secret value of FuzzLoadConfig's seeds.
const secretMark = "S3CRET"

// markRun matches a mark and what follows it up to a separator, the part
// of a secret a message would have to show for a reader to learn it.
var markRun = regexp.MustCompile(secretMark + `[A-Za-z0-9_-]*`)

// urlPassword matches the password of a URL, as redactURLs hides it.
var urlPassword = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*:([^/?#\s]*)@`)

// leakedSecrets returns the marked runs of secret values of the document
// data that msg shows although nothing public in data holds them.
func leakedSecrets(data []byte, msg string) []string {
	if !strings.Contains(msg, secretMark) {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// The document does not parse: its message names a line, never
		// what is written there.
		return markRun.FindAllString(msg, -1)
	}
	c := &secretCollector{budget: 100000}
	c.node(&doc, "", false)
	var leaks []string
	for _, s := range c.secret {
		for _, run := range markRun.FindAllString(s, -1) {
			if strings.Contains(msg, run) && !strings.Contains(c.public.String(), run) {
				leaks = append(leaks, run)
			}
		}
	}
	return leaks
}

// secretCollector sorts the text of a YAML document into what is secret
// and what may be shown.
type secretCollector struct {
	secret []string
	public strings.Builder
	budget int // nodes left to visit, against alias blow-ups
}

// webhookItem and webhookSecret match the key paths of a webhook and of
// its secret.
var (
	webhookItem   = regexp.MustCompile(`^webhooks\[\d+\]$`)
	webhookSecret = regexp.MustCompile(`^webhooks\[\d+\]\.secret$`)
)

// wholeSecret reports whether all of n, at path, is secret: a token list
// and its items, a webhook secret, the postgres URL, and whatever stands
// where the webhooks list or one of its webhooks belongs. Elsewhere only
// URL passwords are.
func wholeSecret(path string, n *yaml.Node) bool {
	switch {
	case path == "server.auth_tokens", path == "store.postgres_url", webhookSecret.MatchString(path):
		return true
	case path == "webhooks":
		return n.Kind != yaml.SequenceNode
	case webhookItem.MatchString(path):
		return n.Kind != yaml.MappingNode
	}
	return false
}

// node collects n, found at the key path path; secret says that an
// enclosing node is secret as a whole.
func (c *secretCollector) node(n *yaml.Node, path string, secret bool) {
	if c.budget--; c.budget < 0 {
		return
	}
	c.public.WriteString(" " + n.Tag + " " + n.Anchor + " ")
	if n.Kind == yaml.AliasNode {
		// The anchored node is collected where it is defined; through
		// the alias it counts as secret too when it lands on a secret.
		if n.Alias != nil && (secret || wholeSecret(path, n.Alias)) {
			c.node(n.Alias, path, true)
		}
		return
	}
	secret = secret || wholeSecret(path, n)
	switch n.Kind {
	case yaml.DocumentNode:
		for _, k := range n.Content {
			c.node(k, path, secret)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if secret {
				c.node(k, path, true)
				c.node(v, path, true)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				c.node(k, "?", false) // refused as a key, but public
				continue
			}
			c.public.WriteString(" " + redactURLs(k.Value) + " ")
			c.node(v, join(path, k.Value), false)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			c.node(item, path+"["+strconv.Itoa(i)+"]", secret)
		}
	case yaml.ScalarNode:
		if secret {
			c.secret = append(c.secret, n.Value)
			return
		}
		for _, m := range urlPassword.FindAllStringSubmatch(n.Value, -1) {
			c.secret = append(c.secret, m[1])
		}
		c.public.WriteString(" " + redactURLs(n.Value) + " ")
	}
}

// The oracle of FuzzLoadConfig finds what it is meant to.
func TestLeakedSecrets(t *testing.T) {
	for _, tt := range []struct {
		doc, msg string
		want     []string
	}{
		{"server:\n  auth_tokens: [S3CRETA-1]\n", "token S3CRETA-1 is short", []string{"S3CRETA-1"}},
		{"server:\n  auth_tokens: {S3CRETB: x}\n", "got S3CRETB", []string{"S3CRETB"}},
		{"webhooks:\n  - secret: S3CRETC\n", "S3CRETC", []string{"S3CRETC"}},
		{"webhooks: [S3CRETD]\n", "S3CRETD", []string{"S3CRETD"}},
		{"webhooks:\n  - url: http://u:S3CRETE@h/S3CRETF\n", "http://u:S3CRETE@h/S3CRETF", []string{"S3CRETE"}},
		{"store:\n  postgres_url: x://S3CRETG\n", "S3CRETG", []string{"S3CRETG"}},
		{"logging:\n  level: http://u:S3CRETH@h/\n", "S3CRETH", []string{"S3CRETH"}},
		{"server:\n  auth_tokens: [&a S3CRETI]\n", "S3CRETI", []string{"S3CRETI"}},
		{"logging: {level: &a S3CRETJ}\nserver: {auth_tokens: [*a]}\n", "S3CRETJ", nil},
		{"logging: {level: S3CRETK}\nserver: {auth_tokens: [S3CRETK]}\n", "S3CRETK", nil},
		{"S3CRETL: 1\n", "S3CRETL: unknown key", nil},
		{"server: [\n", "S3CRETM", []string{"S3CRETM"}},
	} {
		got := leakedSecrets([]byte(tt.doc), tt.msg)
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%q with message %q: leaks %q, want %q", tt.doc, tt.msg, got, tt.want)
		}
	}
}
