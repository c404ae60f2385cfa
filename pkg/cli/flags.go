package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
)

// The values of the flags that select jobs are read here and nowhere
// else; durations are read by config.ParseDuration, as the configuration's
// are, so "30d" means the same on the command line and in config.yaml.

// parseStatuses reads --status values, each possibly comma-separated.
func parseStatuses(values []string) ([]job.Status, error) {
	var out []job.Status
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			st, err := job.ParseStatus(part)
			if err != nil {
				return nil, &usageError{fmt.Errorf("invalid --status: %w", err)}
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// parseSince reads --since: a duration back from now, or a point in time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := config.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usageErrorf("invalid --since %q: give a positive duration such as 24h or 7d", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usageErrorf("invalid --since %q: give a duration such as 24h or 7d, or a time such as 2025-07-09 or 2025-07-09T15:30:00Z", s)
}

// parseOlderThan reads --older-than: a positive duration.
func parseOlderThan(s string) (time.Duration, error) {
	d, err := config.ParseDuration(s)
	if err != nil {
		return 0, usageErrorf("invalid --older-than: %w", err)
	}
	if d <= 0 {
		return 0, usageErrorf("invalid --older-than %q: give a positive duration such as 30d", s)
	}
	return d, nil
}

// checkLimit refuses a negative --limit, which the store would take as no
// limit at all.
func checkLimit(n int) error {
	if n < 0 {
		return usageErrorf("invalid --limit %d: give 0 for all jobs or a positive number", n)
	}
	return nil
}
