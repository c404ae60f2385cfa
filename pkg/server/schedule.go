package server

import (
	"encoding/json"
	"os"
	"time"

	"github.com/secauto/secauto/pkg/store"
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

// taskSchedule is when one task last ran and next falls due.
type taskSchedule struct {
	name     string
	interval time.Duration // zero: the background run is off
	// dueAtStart makes a task that never ran due at once rather than one
	// interval after the schedule began.
	dueAtStart bool
	rec        scheduleRecord
	// lastSuccess is the newest success known: the record's, or one made
	// elsewhere (a backup file written offline by the CLI).
	lastSuccess time.Time
	next        time.Time
}

func (t *taskSchedule) enabled() bool { return t.interval > 0 }

func (t *taskSchedule) retryDelay() time.Duration { return min(t.interval, maxRetryDelay) }

// load reads the task's record; a record that does not decode starts the
// schedule afresh, which the returned error says.
func (t *taskSchedule) load(st store.Store) error {
	for _, r := range st.Records(scheduleKeyPrefix + t.name) {
		if r.Key != scheduleKeyPrefix+t.name {
			continue
		}
		if err := json.Unmarshal(r.Value, &t.rec); err != nil {
			t.rec = scheduleRecord{}
			return err
		}
		if t.rec.LastSuccess != nil {
			t.lastSuccess = *t.rec.LastSuccess
		}
	}
	return nil
}

// schedule sets next from the record: one interval after the last
// success (or the start of the schedule), or one retry delay after a
// failed run. A time in the future beyond one interval (the clock was set
// back) is pulled in to one interval from now.
func (t *taskSchedule) schedule(now time.Time) {
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
	case t.dueAtStart:
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

// needsAnchor reports whether the task's schedule has no starting point
// yet to keep across restarts.
func (t *taskSchedule) needsAnchor() bool {
	return t.enabled() && !t.dueAtStart && t.rec.LastRun == nil && t.rec.Since == nil && t.lastSuccess.IsZero()
}

// ran updates the schedule after a run that started at start and took
// dur; update, if set, adds what the record keeps of the run.
func (t *taskSchedule) ran(trigger string, start time.Time, dur time.Duration, runErr error, update func(*scheduleRecord), now time.Time) {
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
	t.schedule(now)
}

func (t *taskSchedule) record() (store.Record, error) {
	v, err := json.Marshal(t.rec)
	if err != nil {
		return store.Record{Key: scheduleKeyPrefix + t.name}, err
	}
	return store.Record{Key: scheduleKeyPrefix + t.name, Value: v}, nil
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
		t, ok := store.ParseBackupName(e.Name())
		if ok && e.Type().IsRegular() && t.After(newest) {
			newest = t
		}
	}
	return newest
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
