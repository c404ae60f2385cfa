package server

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// cleanerConfig is what the cleaner is configured with
// (jobs.retention_days, jobs.retention_by_status, jobs.cleanup_interval).
type cleanerConfig struct {
	Retention time.Duration
	ByStatus  map[job.Status]time.Duration
	// Interval is how often the background cleanup runs; zero: never.
	Interval time.Duration
}

// cleaner is the maintenance task that deletes the terminal jobs past
// their retention. It depends only on the store, its configuration, a log
// and its counters.
type cleaner struct {
	st  store.Store
	cfg cleanerConfig
	log *slog.Logger
	// runs counts runs by result (completed, failed); deleted the jobs.
	runs    *prometheus.CounterVec
	deleted prometheus.Counter
}

func (c *cleaner) name() string             { return taskCleanup }
func (c *cleaner) interval() time.Duration  { return c.cfg.Interval }
func (c *cleaner) dueAtStart() bool         { return false }
func (c *cleaner) doneElsewhere() time.Time { return time.Time{} }

// options are the store's cleanup options with the configured retention.
func (c *cleaner) options() store.CleanupOptions {
	return store.CleanupOptions{Retention: c.cfg.Retention, ByStatus: c.cfg.ByStatus}
}

func (c *cleaner) run(start, _ time.Time) runResult {
	o := c.options()
	o.Now = start
	_, res := c.cleanup(o)
	return res
}

// cleanup deletes what o selects. A dry run only counts; the caller does
// not pass it through the maintainer, since it changes nothing.
func (c *cleaner) cleanup(o store.CleanupOptions) (*store.CleanupResult, runResult) {
	res, err := c.st.Cleanup(o)
	if err == nil && res == nil {
		err = errors.New("cleanup returned no result")
	}
	if err != nil {
		return nil, runResult{err: err, report: func(r runReport) *webhook.Event {
			c.runs.WithLabelValues("failed").Inc()
			c.log.Error("cleanup failed", append(r.attrs(), "error", err.Error())...)
			return nil
		}}
	}
	if res.DryRun {
		return res, runResult{}
	}
	deleted := res.Deleted
	return res, runResult{
		keep: func(rec *scheduleRecord) { rec.Deleted = &deleted },
		report: func(r runReport) *webhook.Event {
			c.runs.WithLabelValues("completed").Inc()
			c.deleted.Add(float64(deleted))
			c.log.Info("cleanup finished", append(r.attrs(), "deleted", deleted)...)
			return &webhook.Event{Event: webhook.CleanupCompleted, Data: map[string]any{
				"deleted": deleted, "dry_run": false, "duration_ms": durationMS(r.dur), "trigger": r.trigger,
			}}
		},
	}
}

// attrs are the log attributes every run shares.
func (r runReport) attrs() []any {
	a := []any{"trigger", r.trigger, "duration_ms", durationMS(r.dur)}
	if !r.next.IsZero() {
		a = append(a, "next_run", r.next.UTC().Format(time.RFC3339))
	}
	return a
}
