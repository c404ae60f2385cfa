package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// secretMarks are the secret values of the configurations below; no
// error may contain any of them.
var secretMarks = []string{"S3CRETA", "S3CRETB", "S3CRETC", "S3CRETD", "S3CRETE", "S3CRETF", "S3CRETG", "S3CRETH", "S3CRETI", "S3CRETJ", "S3CRETK", "S3CRETL", "S3CRETM", "S3CRETN", "S3CRETO", "S3CRETP", "S3CRETQ"}

// SecretConfigs are configurations with every secret key malformed in
// every way: the wrong type, a bad value, a section where a string
// belongs, an over-long value and URLs with passwords. Each holds one of
// secretMarks; the e2e test runs the binary on the same files.
var secretConfigs = map[string]string{
	"token as a string":      "server:\n  auth_tokens: S3CRETA-0123456789abcdef\n",
	"token as a section":     "server:\n  auth_tokens: {S3CRETB: x}\n",
	"token item as section":  "server:\n  auth_tokens: [{k: S3CRETC-0123456789}]\n",
	"token with whitespace":  "server:\n  auth_tokens: [\"S3CRETD 0123456789abcdef\"]\n",
	"short token":            "server:\n  auth_tokens: [S3CRETE]\n",
	"over-long token":        "server:\n  auth_tokens: [\"S3CRETF" + strings.Repeat("x", 100000) + " y\"]\n",
	"token tagged as number": "server:\n  auth_tokens: [!!int S3CRETG]\n",
	"secret as a list":       "webhooks:\n  - url: http://h/\n    secret: [S3CRETH]\n",
	"secret as a section":    "webhooks:\n  - url: http://h/\n    secret: {S3CRETI: 1}\n",
	"secret as an alias":     "webhooks:\n  - url: http://h/\n    secret: *S3CRETJ\n",
	"url with password":      "webhooks:\n  - url: ftp://user:S3CRETK@h/\n",
	"broken url, password":   "webhooks:\n  - url: \"http://user:S3CRETL@h:port/%zz\"\n",
	"webhooks as a url":      "webhooks: \"https://user:S3CRETM@h/\"\n",
	"webhook as a string":    "webhooks: [S3CRETN]\n",
	"postgres url":           "store:\n  driver: postgres\n  postgres_url: \"mysql://u:S3CRETO@h/db\"\n",
	"broken postgres url":    "store:\n  postgres_url: \"postgres://u:S3CRETP@h:nope/db\"\n",
	"url password elsewhere": "logging:\n  level: \"https://u:S3CRETQ@h/" + strings.Repeat("y", 5000) + "\"\n",
}

func checkNoSecret(t *testing.T, what, msg string) {
	t.Helper()
	for _, m := range secretMarks {
		if strings.Contains(msg, m) {
			t.Errorf("%s: error shows secret %s: %.300s", what, m, msg)
		}
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	for name, src := range secretConfigs {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "c.yaml:") {
				t.Errorf("error does not name the file and line: %.300s", err)
			}
			checkNoSecret(t, name, err.Error())
		})
	}
	// What yaml.v3 itself quotes of a document is removed from its
	// messages, in case a value reaches its decoder unchecked.
	msg := syntaxError("c.yaml", errYAML("yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `S3CRETA` into int")).Error()
	checkNoSecret(t, "decoder message", msg)
	if !strings.HasPrefix(msg, "c.yaml:3: ") {
		t.Errorf("decoder message lost its line: %s", msg)
	}
}

type errYAML string

func (e errYAML) Error() string { return string(e) }

func TestEnvSecretsStayOutOfErrors(t *testing.T) {
	env := map[string]string{
		EnvAuthTokens:  "0123456789abcdef,S3CRETA\nS3CRETB 0123456789abcdef,",
		EnvPostgresURL: "mysql://u:S3CRETC@h/db",
	}
	err := Default().ApplyEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("accepted")
	}
	checkNoSecret(t, "environment", err.Error())
	for _, want := range []string{"$SECAUTO_AUTH_TOKENS: token 2: token is shorter", "$SECAUTO_AUTH_TOKENS: token 3: token contains whitespace", "$SECAUTO_POSTGRES_URL: is not a postgres://"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%s", want, err)
		}
	}
}

// writeTokens writes a token file with the given mode.
func writeTokens(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// Tokens come from server.auth_tokens, server.auth_tokens_file and
// $SECAUTO_AUTH_TOKENS, in that order, each once.
func TestTokenSources(t *testing.T) {
	file := writeTokens(t, "# deploy tokens\n\nfile-token-0123456789\n  spaced-token-0123456789  \nconfig-token-0123456789\n", 0o600)
	cfg, err := Parse("c.yaml", []byte("server:\n  auth_tokens: [config-token-0123456789]\n  auth_tokens_file: "+file+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvAuthTokens: " env-token-0123456789, file-token-0123456789\nenv-token-9876543210\n"}
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := []string{"config-token-0123456789", "file-token-0123456789", "spaced-token-0123456789", "env-token-0123456789", "env-token-9876543210"}
	if !reflect.DeepEqual(cfg.Server.AuthTokens, want) {
		t.Errorf("tokens = %q, want %q", cfg.Server.AuthTokens, want)
	}
}

func TestTokenFileRefused(t *testing.T) {
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"readable by the group", "S3CRETA-0123456789\n", 0o640, "may be read by other users (mode 0640); run chmod 600 "},
		{"readable by all", "S3CRETA-0123456789\n", 0o644, "run chmod 600"},
		{"short token", "good-token-0123456789\nS3CRETB\n", 0o600, "line 2: token is shorter than 16 characters"},
		{"whitespace", "# c\nS3CRETC 0123456789abcdef\n", 0o400, "line 2: token contains whitespace"},
		{"no token", "# nothing yet\n\n", 0o600, "holds no token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := writeTokens(t, tt.content, tt.mode)
			_, err := Parse("c.yaml", []byte("server:\n  port: 1\n  auth_tokens_file: "+file+"\n"))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "c.yaml:3: server.auth_tokens_file: "+file) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want the key, the file and %q", err, tt.want)
			}
			checkNoSecret(t, tt.name, err.Error())
		})
	}
	_, err := Parse("c.yaml", []byte("server:\n  auth_tokens_file: /nonexistent/tokens\n"))
	if err == nil || !strings.Contains(err.Error(), "server.auth_tokens_file: cannot read /nonexistent/tokens: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
}

func TestPostgresURLFromEnv(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("store:\n  driver: postgres\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ApplyEnv(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "store.postgres_url: is missing") {
		t.Errorf("postgres without a URL: %v", err)
	}
	env := map[string]string{EnvPostgresURL: "postgres://u:pw@db.example:5432/secauto"}
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil || cfg.Store.PostgresURL != env[EnvPostgresURL] {
		t.Errorf("url from the environment: %q, %v", cfg.Store.PostgresURL, err)
	}
}

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// jobs.encryption_key_file is read at load: its keyring is in the
// configuration, and a file that cannot be used is refused naming the
// file, the line and the key, never what the file holds.
func TestEncryptionKeyFile(t *testing.T) {
	key := strings.Repeat("ab", 32)
	file := writeKeyFile(t, "# keys\n"+key+"\n", 0o600)
	cfg, err := Parse("c.yaml", []byte("jobs:\n  encryption_key_file: "+file+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Jobs.Keyring == nil || len(cfg.Jobs.Keyring.IDs()) != 1 {
		t.Fatalf("keyring %v", cfg.Jobs.Keyring)
	}
	if cfg, err := Parse("c.yaml", []byte("jobs:\n  retention_days: 3\n")); err != nil || cfg.Jobs.Keyring != nil {
		t.Fatalf("no key file: %v %v", cfg.Jobs.Keyring, err)
	}
	secret := "S3CRET KEY LINE: 0123456789"
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"readable by the group", key + "\n", 0o640, "(mode 0640); run chmod 600"},
		{"writable by all", key + "\n", 0o602, "run chmod 600"},
		{"bad line", key + "\n" + secret + "\n", 0o600, "line 2: not a key"},
		{"short key", "# a\n" + key[:40] + "\n", 0o400, "line 2: the key is"},
		{"no key", "# nothing yet\n\n", 0o600, "holds no key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := writeKeyFile(t, tt.content, tt.mode)
			_, err := Parse("c.yaml", []byte("jobs:\n  retention_days: 3\n  encryption_key_file: "+file+"\n"))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "c.yaml:3: jobs.encryption_key_file: "+file) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want the key, the file and %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), key[:16]) {
				t.Errorf("message shows the file's content: %v", err)
			}
		})
	}
}
