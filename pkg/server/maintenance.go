package server

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// Background maintenance (SPEC §10): a cleanup every CleanupInterval and,
// when BackupEnabled, a backup every BackupInterval. The schedule survives
// restarts: the time and outcome of each task's last run is kept in a
// durable store record, and the next run falls due one interval after it,
// so a daemon restarted every day still backs up every backup_interval.
//
// Records, one per task, keyed scheduleKeyPrefix+task ("schedule/backup",
// "schedule/cleanup"), hold a scheduleRecord as JSON. The record of a run is
// written in the same durable write as the webhook event that reports it.
//
// When a task has no record yet (a new data directory, or one from a
// release without a schedule):
//   - backup: the newest backup file in the data directory counts as the
//     last backup; with none, the first backup is written right after
//     start, so a new install does not go unprotected for a whole interval
//     (but not while the store is still empty: a backup of nothing would
//     start the interval, so it looks again every min(interval, 1h));
//   - cleanup: the schedule starts now (recorded as "since") and the first
//     cleanup runs one interval later, so the first start of a new or
//     upgraded install does not delete anything the moment it comes up.
//
// A failed run is recorded with its error and tried again after
// min(interval, maxRetryDelay); a failed backup is announced as
// "backup.failed". Failures never stop the daemon.

const (
	scheduleKeyPrefix = "schedule/"
	taskBackup        = "backup"
	taskCleanup       = "cleanup"

	// maxRetryDelay bounds the wait before a failed run is tried again.
	maxRetryDelay = time.Hour
	// maxSleep bounds one wait of the maintainer, so a wall clock that is
	// stepped (NTP, suspend) delays a due run by at most this much.
	maxSleep = time.Minute

	resultOK     = "ok"
	resultFailed = "failed"
)

// scheduleRecord is the durable state of one background task.
type scheduleRecord struct {
	// LastRun is when the last run (successful or not) started.
	LastRun *time.Time `json:"last_run,omitempty"`
	// LastResult is "ok" or "failed".
	LastResult string `json:"last_result,omitempty"`
	// Error is the last run's error when it failed.
	Error string `json:"error,omitempty"`
	// LastSuccess is when the last successful run started.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// Failures counts failed runs since the last success.
	Failures int `json:"failures,omitempty"`
	// Since is when the schedule began, for a task that has not run yet.
	Since *time.Time `json:"since,omitempty"`
	// DurationMS is how long the last run took.
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Trigger is what started the last run: "schedule" or "admin".
	Trigger string `json:"trigger,omitempty"`
	// Backup describes the last successful backup.
	Backup *backupSummary `json:"backup,omitempty"`
	// Deleted is how many jobs the last successful cleanup deleted.
	Deleted *int `json:"deleted,omitempty"`
}

// backupSummary is a written backup as the record, the events and the log
// report it.
type backupSummary struct {
	Path   string `json:"path"`
	Jobs   int    `json:"jobs"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// maintTask is one background task's schedule.
type maintTask struct {
	name     string
	interval time.Duration // zero: the background run is off
	// immediate makes a task that never ran due at once rather than one
	// interval after the schedule began.
	immediate bool
	rec       scheduleRecord
	// lastSuccess is the newest success known: the record's, or for
	// backups a newer backup file (one written offline by the CLI).
	lastSuccess time.Time
	next        time.Time
}

func (t *maintTask) enabled() bool { return t.interval > 0 }

func (t *maintTask) retryDelay() time.Duration { return min(t.interval, maxRetryDelay) }

// schedule sets next from the record: one interval after the last
// success (or the start of the schedule), or one retry delay after a
// failed run. A time in the future beyond one interval (the clock was set
// back) is pulled in to one interval from now.
func (t *maintTask) schedule(now time.Time) {
	if !t.enabled() {
		t.next = time.Time{}
		return
	}
	delay := t.interval
	var base time.Time
	switch {
	case t.rec.LastResult == resultFailed && t.rec.LastRun != nil && t.rec.LastRun.After(t.lastSuccess):
		base, delay = *t.rec.LastRun, t.retryDelay()
	case !t.lastSuccess.IsZero():
		base = t.lastSuccess
	case t.rec.Since != nil:
		base = *t.rec.Since
	case t.immediate:
		t.next = now
		return
	default:
		base = now
	}
	t.next = base.Add(delay)
	if t.next.After(now.Add(delay)) {
		t.next = now.Add(delay)
	}
}

// maintainer runs the background tasks of one Server.
type maintainer struct {
	s   *Server
	now func() time.Time
	// after waits like time.NewTimer; stop releases the timer. Tests
	// replace it with a fake clock's.
	after func(d time.Duration) (c <-chan time.Time, stop func() bool)

	stopCh chan struct{}
	done   chan struct{}
	// lifeMu guards started and stopped.
	lifeMu  sync.Mutex
	started bool
	stopped bool

	// runMu serialises runs (the schedule's and the admin endpoints').
	runMu sync.Mutex
	mu    sync.Mutex // guards the tasks' state
	tasks map[string]*maintTask
}

func realAfter(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// newMaintainer loads the schedule from the store's records.
func newMaintainer(s *Server) *maintainer {
	m := &maintainer{
		s:      s,
		now:    s.now,
		after:  realAfter,
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		tasks:  map[string]*maintTask{},
	}
	backupInterval := s.maint.BackupInterval
	if !s.maint.BackupEnabled {
		backupInterval = 0
	}
	m.tasks[taskBackup] = &maintTask{name: taskBackup, interval: max(backupInterval, 0), immediate: true}
	m.tasks[taskCleanup] = &maintTask{name: taskCleanup, interval: max(s.maint.CleanupInterval, 0)}
	for _, r := range s.st.Records(scheduleKeyPrefix) {
		t := m.tasks[strings.TrimPrefix(r.Key, scheduleKeyPrefix)]
		if t == nil {
			continue
		}
		if err := json.Unmarshal(r.Value, &t.rec); err != nil {
			s.log.Warn("the maintenance schedule record does not decode; starting its schedule afresh", "key", r.Key, "error", err)
			t.rec = scheduleRecord{}
		}
		if t.rec.LastSuccess != nil {
			t.lastSuccess = *t.rec.LastSuccess
		}
	}
	// A backup written while the daemon was down (secauto backup create)
	// counts as the last backup too.
	backup := m.tasks[taskBackup]
	if newest := newestBackupTime(s.st.Dir()); newest.After(backup.lastSuccess) {
		backup.lastSuccess = newest
	}
	now := m.now()
	for _, t := range m.tasks {
		t.schedule(now)
	}
	return m
}

// newestBackupTime is the time stamped in the name of the newest backup in
// dir, zero when there is none. Only names are read: this is a hint for
// the schedule, not a verification.
func newestBackupTime(dir string) time.Time {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return time.Time{}
	}
	var newest time.Time
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), store.SnapshotFile+".backup.")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		t, err := time.Parse("20060102-150405", strings.TrimSuffix(rest, ".gz"))
		if err == nil && t.After(newest) {
			newest = t
		}
	}
	return newest
}

// start launches the maintainer's goroutine, unless it was stopped.
func (m *maintainer) start() {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.started || m.stopped {
		return
	}
	m.started = true
	go m.run()
}

// stop ends the goroutine, waiting for a run in progress to finish.
func (m *maintainer) stop() {
	m.lifeMu.Lock()
	if !m.stopped {
		m.stopped = true
		close(m.stopCh)
	}
	started := m.started
	m.lifeMu.Unlock()
	if started {
		<-m.done
	}
}

func (m *maintainer) stopping() bool {
	select {
	case <-m.stopCh:
		return true
	default:
		return false
	}
}

func (m *maintainer) run() {
	defer close(m.done)
	m.anchor()
	for {
		for _, name := range []string{taskBackup, taskCleanup} {
			if m.stopping() {
				return
			}
			m.mu.Lock()
			t := m.tasks[name]
			due := t.enabled() && !m.now().Before(t.next)
			m.mu.Unlock()
			if !due {
				continue
			}
			switch name {
			case taskBackup:
				m.runBackup()
			case taskCleanup:
				m.runCleanup()
			}
		}
		wait := maxSleep
		m.mu.Lock()
		now := m.now()
		for _, t := range m.tasks {
			if t.enabled() {
				wait = min(wait, t.next.Sub(now))
			}
		}
		m.mu.Unlock()
		c, stopTimer := m.after(max(wait, 0))
		select {
		case <-m.stopCh:
			stopTimer()
			return
		case <-c:
		}
	}
}

// anchor records when the schedule of an enabled task that has never run
// began, so that its first run falls due one interval after the first
// start, not after every start.
func (m *maintainer) anchor() {
	m.mu.Lock()
	var recs []store.Record
	for _, t := range m.tasks {
		if !t.enabled() || t.immediate || t.rec.LastRun != nil || t.rec.Since != nil || !t.lastSuccess.IsZero() {
			continue
		}
		now := m.now().UTC()
		t.rec.Since = &now
		t.schedule(now)
		if r, err := t.record(); err == nil {
			recs = append(recs, r)
		}
	}
	m.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if err := m.s.st.PutRecords(recs...); err != nil {
		m.s.log.Warn("cannot record the start of the maintenance schedule", "error", err)
	}
}

func (t *maintTask) record() (store.Record, error) {
	v, err := json.Marshal(t.rec)
	if err != nil {
		return store.Record{}, err
	}
	return store.Record{Key: scheduleKeyPrefix + t.name, Value: v}, nil
}

// finish updates task name after a run that started at start and took
// dur, and returns the record to store and the next due time.
func (m *maintainer) finish(name, trigger string, start time.Time, dur time.Duration, runErr error, update func(*scheduleRecord)) (store.Record, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[name]
	start = start.UTC()
	t.rec.LastRun = &start
	t.rec.Trigger = trigger
	t.rec.DurationMS = durationMS(dur)
	if runErr != nil {
		t.rec.LastResult = resultFailed
		t.rec.Error = runErr.Error()
		t.rec.Failures++
	} else {
		t.rec.LastResult = resultOK
		t.rec.Error = ""
		t.rec.Failures = 0
		t.rec.LastSuccess = &start
		t.rec.Since = nil
		if start.After(t.lastSuccess) {
			t.lastSuccess = start
		}
	}
	if update != nil {
		update(&t.rec)
	}
	t.schedule(m.now())
	r, err := t.record()
	return r, t.next, err
}

// commit stores a run's schedule record together with the event that
// reports it, in one durable write, and wakes the webhook dispatcher.
func (m *maintainer) commit(rec store.Record, recErr error, ev *webhook.Event) {
	s := m.s
	var recs []store.Record
	if recErr == nil {
		recs = append(recs, rec)
	} else {
		s.log.Error("cannot encode the maintenance schedule record", "key", rec.Key, "error", recErr)
	}
	if ev != nil {
		evRecs, err := s.outbox.Records(*ev)
		if err != nil {
			s.log.Error("cannot queue webhook event", "event", ev.Event, "error", err)
		}
		recs = append(recs, evRecs...)
	}
	if len(recs) == 0 {
		return
	}
	if err := s.st.PutRecords(recs...); err != nil {
		s.log.Error("cannot record the maintenance run; the schedule and its event may be lost if the daemon stops now", "error", err)
		return
	}
	if ev != nil {
		s.hooks.Notify()
	}
}

// runBackup writes a scheduled backup.
func (m *maintainer) runBackup() {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	s := m.s
	start := m.now()
	if m.firstBackupOfNothing() {
		return
	}
	res, err := s.st.Backup(store.BackupOptions{Keep: max(s.maint.BackupKeep, 0), Compress: s.maint.BackupCompress})
	if err != nil && res != nil {
		// Written, but pruning old backups failed: the backup counts.
		s.log.Warn("backup written, but old backups could not be removed", "path", res.Path, "error", err)
		err = nil
	}
	m.noteBackup("schedule", start, m.now().Sub(start), res, err, true)
}

// firstBackupOfNothing puts off the first backup of a store that holds no
// jobs yet: a backup of nothing would start the interval and leave the
// first real jobs without a backup for all of it. It looks again after a
// retry delay.
func (m *maintainer) firstBackupOfNothing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[taskBackup]
	if !t.lastSuccess.IsZero() || m.s.st.Stats().Jobs > 0 {
		return false
	}
	t.next = m.now().Add(t.retryDelay())
	return true
}

// noteBackup records a backup's outcome: the schedule record, metrics, the
// log record and, when announce is set, the webhook event. The admin
// endpoints call it (announce false if they announce themselves) so that
// /stats, the metrics and the schedule count a backup taken on request.
func (m *maintainer) noteBackup(trigger string, start time.Time, dur time.Duration, res *store.BackupResult, runErr error, announce bool) {
	s := m.s
	if runErr == nil && res == nil {
		runErr = errors.New("backup returned no result")
	}
	var sum *backupSummary
	if runErr == nil {
		path := res.Path
		if abs, err := filepath.Abs(path); err == nil {
			path = abs // for receivers and scripts with another working directory
		}
		sum = &backupSummary{Path: path, Jobs: res.Jobs, SHA256: res.SHA256, Size: res.Size}
	}
	rec, next, recErr := m.finish(taskBackup, trigger, start, dur, runErr, func(r *scheduleRecord) {
		if sum != nil {
			r.Backup = sum
		}
	})
	var ev *webhook.Event
	if runErr != nil {
		s.metrics.backups.WithLabelValues("failed").Inc()
		m.mu.Lock()
		failures := m.tasks[taskBackup].rec.Failures
		m.mu.Unlock()
		attrs := []any{"trigger", trigger, "error", runErr.Error(), "failures", failures, "duration_ms", durationMS(dur)}
		if !next.IsZero() {
			attrs = append(attrs, "next_run", next.UTC().Format(time.RFC3339))
		}
		s.log.Error("backup failed", attrs...)
		if announce {
			data := map[string]any{"error": runErr.Error(), "trigger": trigger, "failures": failures}
			if !next.IsZero() {
				data["next_attempt"] = next.UTC().Format(time.RFC3339)
			}
			ev = &webhook.Event{Event: webhook.BackupFailed, Data: data}
		}
	} else {
		s.metrics.backups.WithLabelValues("created").Inc()
		attrs := []any{"trigger", trigger, "path", sum.Path, "jobs", sum.Jobs, "bytes", sum.Size, "sha256", sum.SHA256,
			"removed", len(res.Removed), "duration_ms", durationMS(dur)}
		if !next.IsZero() {
			attrs = append(attrs, "next_run", next.UTC().Format(time.RFC3339))
		}
		s.log.Info("backup finished", attrs...)
		if announce {
			ev = &webhook.Event{Event: webhook.BackupCreated, Data: map[string]any{
				"path": sum.Path, "jobs": sum.Jobs, "sha256": sum.SHA256, "size": sum.Size,
				"removed": len(res.Removed), "duration_ms": durationMS(dur), "trigger": trigger,
			}}
		}
	}
	m.commit(rec, recErr, ev)
}

// runCleanup deletes the terminal jobs past their retention.
func (m *maintainer) runCleanup() {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	s := m.s
	start := m.now()
	res, err := s.st.Cleanup(store.CleanupOptions{Retention: s.maint.Retention, ByStatus: s.maint.RetentionByStatus, Now: start})
	m.noteCleanup("schedule", start, m.now().Sub(start), res, err, true)
}

// noteCleanup is noteBackup for a cleanup. A dry run is not recorded.
func (m *maintainer) noteCleanup(trigger string, start time.Time, dur time.Duration, res *store.CleanupResult, runErr error, announce bool) {
	s := m.s
	if runErr == nil && res == nil {
		runErr = errors.New("cleanup returned no result")
	}
	if runErr == nil && res.DryRun {
		return
	}
	deleted := 0
	if runErr == nil {
		deleted = res.Deleted
	}
	rec, next, recErr := m.finish(taskCleanup, trigger, start, dur, runErr, func(r *scheduleRecord) {
		if runErr == nil {
			r.Deleted = &deleted
		}
	})
	attrs := []any{"trigger", trigger, "duration_ms", durationMS(dur)}
	if !next.IsZero() {
		attrs = append(attrs, "next_run", next.UTC().Format(time.RFC3339))
	}
	var ev *webhook.Event
	if runErr != nil {
		s.metrics.cleanups.WithLabelValues("failed").Inc()
		s.log.Error("cleanup failed", append(attrs, "error", runErr.Error())...)
	} else {
		s.metrics.cleanups.WithLabelValues("completed").Inc()
		s.metrics.cleanupDeleted.Add(float64(deleted))
		s.log.Info("cleanup finished", append(attrs, "deleted", deleted)...)
		if announce {
			ev = &webhook.Event{Event: webhook.CleanupCompleted, Data: map[string]any{
				"deleted": deleted, "dry_run": false, "duration_ms": durationMS(dur), "trigger": trigger,
			}}
		}
	}
	m.commit(rec, recErr, ev)
}

// maintStatus is a task's state for /stats and the metrics.
type maintStatus struct {
	LastSuccess time.Time // zero: never
	Next        time.Time // zero: the background run is off
	Error       string    // the last run's error, if it failed
}

func (m *maintainer) status(name string) maintStatus {
	if m == nil {
		return maintStatus{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tasks[name]
	st := maintStatus{LastSuccess: t.lastSuccess, Next: t.next}
	if t.rec.LastResult == resultFailed {
		st.Error = t.rec.Error
	}
	return st
}

func durationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// timePtr returns a UTC copy of t, nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
