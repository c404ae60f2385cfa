package postgres

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The URL of store.postgres_url holds the database's password: it is parsed
// here, and every message that might quote it (pgx's errors do) passes
// through scrubErr, so the password never reaches an error or a log line.

func parseConfig(raw string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("store.postgres_url %s is not a valid PostgreSQL URL: %v", Redact(raw), err)
	}
	rp := cfg.ConnConfig.RuntimeParams
	// Durability is the store's promise, not the server's default.
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "secauto"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	return cfg, nil
}

func connectError(raw string, err error) error {
	return fmt.Errorf("PostgreSQL at %s cannot be reached: %w; check store.postgres_url and that the server runs", Redact(raw), err)
}

var (
	dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
)

// Redact returns the URL with its password replaced, for messages.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(urlPassword.ReplaceAllString(raw, "${1}xxxxx@"), "${1}xxxxx")
}

// passwords lists the passwords raw holds, however it spells them.
func passwords(raw string) []string {
	var out []string
	if u, err := url.Parse(raw); err == nil {
		if p, has := u.User.Password(); has && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, p, url.QueryEscape(p))
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(raw, -1) {
		if p := strings.TrimSuffix(strings.TrimPrefix(m[0], m[1]), "@"); p != "" {
			out = append(out, p)
		}
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(raw, -1) {
		if p := strings.Trim(m[2], "'"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// scrubbed is an error whose message had the URL's password taken out.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrubErr replaces *err by one whose message holds no password of raw.
func scrubErr(raw string, err *error) {
	if *err == nil {
		return
	}
	msg := (*err).Error()
	clean := msg
	if raw != "" {
		clean = strings.ReplaceAll(clean, raw, Redact(raw))
	}
	for _, p := range passwords(raw) {
		clean = strings.ReplaceAll(clean, p, "xxxxx")
	}
	if clean != msg {
		*err = &scrubbed{msg: clean, err: *err}
	}
}
