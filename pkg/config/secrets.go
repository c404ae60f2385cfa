package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
)

// The configuration holds secrets: bearer tokens, webhook secrets and
// URLs with passwords. Error messages go to terminals, logs and tickets, so
// no message about a secret key repeats its value, whatever is wrong with
// it; a message about another key hides the password of a URL it quotes.

// EnvAuthTokens names the environment variable whose tokens (separated by
// commas or newlines) the API accepts besides those of the file.
const EnvAuthTokens = "SECAUTO_AUTH_TOKENS"

// EnvPostgresURL names the environment variable that, when set, replaces
// store.postgres_url, so the password need not sit in config.yaml.
const EnvPostgresURL = "SECAUTO_POSTGRES_URL"

// MinTokenLength is the shortest bearer token accepted: a shorter one is
// guessable.
const MinTokenLength = 16

// secretPath matches the key paths whose values are secret, and the lists
// and sections that hold them (a scalar written there instead is most
// likely the secret itself).
var secretPath = regexp.MustCompile(`^(server\.auth_tokens(\[\d+\])?|webhooks(\[\d+\](\.(url|secret))?)?|store\.postgres_url)$`)

func isSecret(path string) bool { return secretPath.MatchString(path) }

// hidden stands for a value a message does not show.
const hidden = "a value that is not shown because the key is secret"

// quoteValue quotes v for a message about the key at path: not at all for
// a secret key, with any URL password hidden otherwise, and shortened.
func quoteValue(path, v string) string {
	if isSecret(path) {
		return hidden
	}
	v = redactURLs(v)
	if len(v) > 80 {
		v = v[:77] + "..."
	}
	return fmt.Sprintf("%q", v)
}

// userinfo matches the user:password@ of a URL.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*):[^/?#\s]*@`)

// redactURLs hides the password of every URL in s, as url.URL.Redacted
// does.
func redactURLs(s string) string {
	return userinfo.ReplaceAllString(s, "${1}:xxxxx@")
}

// redactURL is u for a message: its password hidden, or nothing of it
// when it does not even parse.
func redactURL(u string) (string, bool) {
	p, err := url.Parse(u)
	if err != nil {
		return "", false
	}
	return p.Redacted(), true
}

// quoted matches what yaml.v3 quotes of the document in its messages (a
// value in backticks, an anchor name in single quotes).
var quoted = regexp.MustCompile("`[^`]*`|'[^']*'")

// scrubYAML removes the parts of the document a yaml.v3 message quotes:
// its position in the file says where the mistake is without them.
func scrubYAML(msg string) string {
	msg = quoted.ReplaceAllString(msg, "")
	return strings.Join(strings.Fields(redactURLs(msg)), " ")
}

// tokenProblem says what makes t unusable as a bearer token, or "".
func tokenProblem(t string) string {
	switch {
	case strings.TrimSpace(t) == "":
		return "token is empty; remove it or give a value"
	case strings.ContainsAny(t, " \t\r\n"):
		return "token contains whitespace, which a bearer token cannot carry"
	case len(t) < MinTokenLength:
		return fmt.Sprintf("token is shorter than %d characters; use a random one such as the output of 'openssl rand -hex 32'", MinTokenLength)
	}
	return ""
}

// readTokenFile reads server.auth_tokens_file: one token a line, blank
// lines and lines starting with # ignored. It refuses a file that others
// than its owner may read, as ssh does with keys.
func readTokenFile(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w; give a file of tokens, one a line", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file; give a file of tokens, one a line", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s may be read by other users (mode %04o); run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w; check its permissions", path, unwrapPath(err))
	}
	var tokens []string
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if p := tokenProblem(t); p != "" {
			return nil, fmt.Errorf("%s line %d: %s", path, i+1, p)
		}
		tokens = append(tokens, t)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s holds no token; write one a line, or remove server.auth_tokens_file", path)
	}
	return tokens, nil
}

// unwrapPath drops the path and operation from an *os.PathError, which
// the message already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ApplyEnv adds what the environment gives to a loaded configuration: the
// tokens of $SECAUTO_AUTH_TOKENS, after those of the file, and
// $SECAUTO_POSTGRES_URL in place of store.postgres_url.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	var errs Errors
	if v := getenv(EnvAuthTokens); v != "" {
		var tokens []string
		n := 0
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' }) {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			n++
			if p := tokenProblem(t); p != "" {
				errs = append(errs, &Error{Key: "$" + EnvAuthTokens, Msg: fmt.Sprintf("token %d: %s", n, p)})
				continue
			}
			tokens = append(tokens, t)
		}
		c.Server.AuthTokens = mergeTokens(c.Server.AuthTokens, tokens)
	}
	if v := getenv(EnvPostgresURL); v != "" {
		if msg := postgresURLProblem(v); msg != "" {
			errs = append(errs, &Error{Key: "$" + EnvPostgresURL, Msg: msg})
		}
		c.Store.PostgresURL = v
	}
	if c.Store.Driver == "postgres" && c.Store.PostgresURL == "" {
		errs = append(errs, &Error{File: c.File, Line: c.lines["store.driver"], Key: "store.postgres_url",
			Msg: fmt.Sprintf("is missing; the postgres driver needs a URL such as postgres://user:password@host:5432/secauto, here or in $%s", EnvPostgresURL)})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// mergeTokens appends the tokens of more that list does not hold yet.
func mergeTokens(list, more []string) []string {
	seen := make(map[string]bool, len(list))
	for _, t := range list {
		seen[t] = true
	}
	for _, t := range more {
		if !seen[t] {
			seen[t] = true
			list = append(list, t)
		}
	}
	return list
}

// postgresURLProblem says what is wrong with a postgres URL, or "",
// without repeating any of it.
func postgresURLProblem(v string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return "is not a valid URL; write one such as postgres://user:password@host:5432/secauto"
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		return "is not a postgres:// or postgresql:// URL; write one such as postgres://user:password@host:5432/secauto"
	case u.Host == "" && u.Query().Get("host") == "":
		return "names no host; write one such as postgres://user:password@host:5432/secauto"
	}
	return ""
}
