package config

import (
	"fmt"
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
			bad(path, "%q is not a terminal status; use completed, failed or cancelled (pending and running jobs are never cleaned up)", s)
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
		bad("server.address", "%q is not a host address; use an IP such as 127.0.0.1 or a host name", s.Address)
	}
	if s.Port < 0 || s.Port > 65535 {
		bad("server.port", "%d is out of range; use 1-65535 (0 picks a free port)", s.Port)
	}
	if s.Workers < 1 {
		bad("server.workers", "%d is too small; run at least 1 worker", s.Workers)
	}
	for i, t := range s.AuthTokens {
		// The token itself is a secret and stays out of the message.
		path := fmt.Sprintf("server.auth_tokens[%d]", i)
		switch {
		case strings.TrimSpace(t) == "":
			bad(path, "token is empty; remove it or give a value")
		case strings.ContainsAny(t, " \t\r\n"):
			bad(path, "token contains whitespace, which a bearer token cannot carry")
		}
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
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad(path+".url", "%q is not an absolute http or https URL", w.URL)
		}
		for k, ev := range w.Events {
			if !slices.Contains(Events, ev) {
				bad(fmt.Sprintf("%s.events[%d]", path, k), "unknown event %q; use one of %s", ev, strings.Join(Events, ", "))
			}
		}
	}

	l := c.Logging
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("logging.level", "%q is not a level; use debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "", "json", "text":
	default:
		bad("logging.format", "%q is not a format; use json or text", l.Format)
	}
	return errs
}

// minJobBytes is the smallest jobs.max_job_bytes accepted. Below it an
// ordinary playbook fails on its first step results, and a value such as 16
// (meant as 16MiB) is caught at start instead of failing every job.
const minJobBytes = 64 << 10
