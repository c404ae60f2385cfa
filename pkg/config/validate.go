package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/secauto/secauto/pkg/job"
)

// validate checks every value against its allowed range. line gives the
// line of a key path, zero when unknown.
func validate(c *Config, line func(path string) int) Errors {
	var errs Errors
	bad := func(path, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Line: line(path), Key: path, Msg: fmt.Sprintf(format, args...)})
	}

	if strings.TrimSpace(c.DataDirectory) == "" {
		bad("data_directory", "must not be empty; remove the key to use %q", DefaultDataDirectory)
	}

	j := c.Jobs
	if j.RetentionDays < 1 {
		bad("jobs.retention_days", "%d is too small; keep terminal jobs at least 1 day", j.RetentionDays)
	}
	statuses := make([]string, 0, len(j.RetentionByStatus))
	for st := range j.RetentionByStatus {
		statuses = append(statuses, string(st))
	}
	sort.Strings(statuses) // map order would shuffle the messages
	for _, s := range statuses {
		st := job.Status(s)
		path := "jobs.retention_by_status." + s
		if !st.Terminal() {
			bad(path, "%s is not a terminal status; use completed, failed or cancelled (pending and running jobs are never cleaned up)", quoteValue("", s))
			continue
		}
		if d := j.RetentionByStatus[st]; d < 1 {
			bad(path, "%d is too small; keep %s jobs at least 1 day", d, s)
		}
	}
	if j.CleanupInterval < 0 {
		bad("jobs.cleanup_interval", "must not be negative; use 0 to turn background cleanup off")
	}
	if j.BackupInterval < 0 || j.BackupEnabled && j.BackupInterval == 0 {
		bad("jobs.backup_interval", "must be positive; to turn backups off set jobs.backup_enabled: false")
	}
	if j.BackupKeep < 0 {
		bad("jobs.backup_keep", "must not be negative; use 0 to keep every backup")
	}
	if j.SnapshotInterval <= 0 {
		bad("jobs.snapshot_interval", "must be positive, such as 30s")
	}
	if j.MaxJobBytes < minJobBytes {
		bad("jobs.max_job_bytes", "%d is too small; allow at least 64KiB per job (the default is 16MiB)", j.MaxJobBytes)
	}

	s := c.Server
	if strings.TrimSpace(s.Address) == "" || strings.ContainsAny(s.Address, " \t/") {
		bad("server.address", "%s is not a host address; use an IP such as 127.0.0.1 or a host name", quoteValue("", s.Address))
	}
	if s.Port < 0 || s.Port > 65535 {
		bad("server.port", "%d is out of range; use 1-65535 (0 picks a free port)", s.Port)
	}
	if s.Workers < 1 {
		bad("server.workers", "%d is too small; run at least 1 worker", s.Workers)
	}
	for i, t := range s.AuthTokens {
		// The token itself is a secret and stays out of the message.
		if p := tokenProblem(t); p != "" {
			bad(fmt.Sprintf("server.auth_tokens[%d]", i), "%s", p)
		}
	}
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		bad("server.tls_cert", "is set but server.tls_key is not; give both, or neither to serve plain HTTP")
	case s.TLSCert == "" && s.TLSKey != "":
		bad("server.tls_key", "is set but server.tls_cert is not; give both, or neither to serve plain HTTP")
	}
	if s.MaxBodyBytes <= 0 {
		bad("server.max_body_bytes", "must be positive, such as 1MiB")
	}
	if s.ShutdownTimeout <= 0 {
		bad("server.shutdown_timeout", "must be positive, such as 30s")
	}

	for i, w := range c.Webhooks {
		path := fmt.Sprintf("webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			bad(path+".url", "is missing; give the receiver's http or https URL")
		case err != nil:
			// The URL may carry a password: say what is wrong, not what
			// was written.
			bad(path+".url", "is not a valid URL; give the receiver's absolute http or https URL")
		case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			shown, _ := redactURL(w.URL)
			bad(path+".url", "%s is not an absolute http or https URL", quoteValue("", shown))
		}
		for k, ev := range w.Events {
			if !slices.Contains(Events, ev) {
				bad(fmt.Sprintf("%s.events[%d]", path, k), "unknown event %s; use one of %s", quoteValue("", ev), strings.Join(Events, ", "))
			}
		}
	}

	validatePlaybook(c.Playbook, bad)
	validateStore(c.Store, bad)

	l := c.Logging
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("logging.level", "%s is not a level; use debug, info, warn or error", quoteValue("", l.Level))
	}
	switch l.Format {
	case "", "json", "text":
	default:
		bad("logging.format", "%s is not a format; use json or text", quoteValue("", l.Format))
	}
	return errs
}

// minJobBytes is the smallest jobs.max_job_bytes accepted. Below it an
// ordinary playbook fails on its first step results, and a value such as 16
// (meant as 16MiB) is caught at start instead of failing every job.
const minJobBytes = 64 << 10

// validatePlaybook checks the entries of the http step limits as far as
// their form goes; the playbook package reads them (serve reports what it
// refuses with the same key).
func validatePlaybook(p Playbook, bad func(path, format string, args ...any)) {
	for i, h := range p.HTTP.AllowedHosts {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t@") || strings.Contains(h, "://") {
			bad(fmt.Sprintf("playbook.http.allowed_hosts[%d]", i), "%s is not a host; give a name, *.domain, an address or a CIDR, with an optional :port", quoteValue("", h))
		}
	}
	for i, n := range p.HTTP.DeniedNetworks {
		n = strings.TrimSpace(n)
		if _, err := netip.ParsePrefix(n); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(n); err == nil {
			continue
		}
		bad(fmt.Sprintf("playbook.http.denied_networks[%d]", i), "%s is not a network; write a CIDR such as 10.0.0.0/8 or fd00::/8, or an address", quoteValue("", n))
	}
}

// validateStore checks the driver and its settings. The postgres URL is
// a secret: no message quotes it.
func validateStore(s Store, bad func(path, format string, args ...any)) {
	switch s.Driver {
	case "file", "postgres":
		// A missing postgres URL may still come from the environment
		// (ApplyEnv).
	default:
		bad("store.driver", "%s is not a driver; use file or postgres", quoteValue("", s.Driver))
	}
	if s.PostgresURL != "" {
		if msg := postgresURLProblem(s.PostgresURL); msg != "" {
			bad("store.postgres_url", "%s", msg)
		}
	}
	if s.NodeLease <= 0 {
		bad("store.node_lease", "must be positive, such as 15s")
	}
}
