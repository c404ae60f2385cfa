package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/secauto/secauto/pkg/seal"
)

// Error is one mistake in a configuration file.
type Error struct {
	File string // the file as it was named
	Line int    // 1-based; zero when unknown
	Key  string // dotted path such as jobs.cleanup_interval or webhooks[0].url
	Msg  string
}

// Error formats the mistake as FILE:LINE: KEY: MESSAGE.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every mistake found in one configuration file, in file order,
// so that one edit can fix them all.
type Errors []*Error

// Error lists the mistakes one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Parse reads a configuration from data; name is used in error messages.
// Keys absent from data keep their defaults.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Default()
	cfg.File = name

	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // an empty file means all defaults
		}
		return nil, Errors{syntaxError(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, Errors{{File: name, Line: extra.Line, Msg: "more than one YAML document; keep a single document"}}
	}

	w := &walker{file: name, lines: map[string]int{}}
	w.walk(&doc, reflect.TypeOf(*cfg), "")
	if len(w.errs) > 0 {
		return nil, w.errs
	}

	// The walk above explains mistakes key by key; the strict decode is
	// what fills the values in, and would still refuse anything the walk
	// let through.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil {
		return nil, Errors{syntaxError(name, err)}
	}
	cfg.File = name

	if errs := validate(cfg, w.line); len(errs) > 0 {
		return nil, errs
	}
	cfg.lines = w.lines
	if f := cfg.Server.AuthTokensFile; f != "" {
		tokens, err := readTokenFile(f)
		if err != nil {
			return nil, Errors{{File: name, Line: w.line("server.auth_tokens_file"), Key: "server.auth_tokens_file", Msg: err.Error()}}
		}
		cfg.Server.AuthTokens = mergeTokens(cfg.Server.AuthTokens, tokens)
	}
	if f := cfg.Jobs.EncryptionKeyFile; f != "" {
		kr, err := seal.LoadFile(f)
		if err != nil {
			return nil, Errors{{File: name, Line: w.line("jobs.encryption_key_file"), Key: "jobs.encryption_key_file", Msg: err.Error()}}
		}
		cfg.Jobs.Keyring = kr
	}
	return cfg, nil
}

// Validate checks a configuration that was built in code rather than read
// from a file.
func (c *Config) Validate() error {
	if errs := validate(c, func(string) int { return 0 }); len(errs) > 0 {
		return errs
	}
	return nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?(?:unmarshal errors:\s*)?line (\d+): (.*)$`)

// syntaxError turns yaml.v3's "yaml: line 3: did not find expected key"
// into "config.yaml:3: did not find expected key", without the parts of
// the document yaml.v3 quotes, which may be a secret.
func syntaxError(file string, err error) *Error {
	msg := scrubYAML(strings.TrimSpace(err.Error()))
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: m[2] + "; fix the YAML syntax"}
	}
	return &Error{File: file, Msg: strings.TrimPrefix(msg, "yaml: ") + "; fix the YAML syntax"}
}

// walker checks a YAML tree against the Config type before decoding, so
// every unknown key and mistyped value is reported with its full key path
// and line, which yaml.v3's own errors do not give.
type walker struct {
	file  string
	errs  Errors
	lines map[string]int // key path → line, for validation messages
}

func (w *walker) line(path string) int { return w.lines[path] }

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: n.Line, Key: redactURLs(path), Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				return
			}
			n = n.Content[0]
		} else {
			n = n.Alias
		}
	}
	if path != "" {
		w.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null keeps the default
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		w.leaf(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a section of keys, got %s", describe(path, n))
			return
		}
		fields := yamlFields(t)
		w.mapping(n, path, func(key string, k, v *yaml.Node) {
			f, ok := fields[key]
			if !ok {
				msg := "unknown key"
				if s := suggest(key, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				} else {
					msg += "; remove it or check the example config.yaml"
				}
				w.fail(k, join(path, key), "%s", msg)
				return
			}
			w.walk(v, f.Type, join(path, key))
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "expected a section of keys, got %s", describe(path, n))
			return
		}
		w.mapping(n, path, func(key string, k, v *yaml.Node) {
			w.walk(v, t.Elem(), join(path, key))
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "expected a list, got %s", describe(path, n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.leaf(n, t, path)
	}
}

// mapping visits the pairs of a mapping node, refusing duplicate keys.
func (w *walker) mapping(n *yaml.Node, path string, visit func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, path, "keys must be plain names")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k, join(path, k.Value), "key is repeated (first at line %d); keep one", first)
			continue
		}
		seen[k.Value] = k.Line
		visit(k.Value, k, v)
	}
}

// leaf decodes one value on its own to check its type.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string) {
	custom := reflect.PointerTo(t).Implements(unmarshalerType)
	if !custom && n.Kind != yaml.ScalarNode {
		w.fail(n, path, "expected %s, got %s", kindName(t), describe(path, n))
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		if custom {
			// The config's own types explain themselves.
			msg := redactURLs(err.Error())
			if isSecret(path) {
				msg = "is not valid (" + hidden + ")"
			}
			w.fail(n, path, "%s", msg)
			return
		}
		w.fail(n, path, "expected %s, got %s", kindName(t), describe(path, n))
	}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

// describe names what n is for a message about the key at path; a
// scalar's value is shown unless the key is secret (quoteValue).
func describe(path string, n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return quoteValue(path, n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = f
	}
	return m
}

// suggest returns the known key closest to a mistyped one, if any is close.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestDist := "", 3
	for name := range fields {
		d := editDistance(key, name)
		if d < bestDist || d == bestDist && best != "" && name < best {
			best, bestDist = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
