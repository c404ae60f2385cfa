package server

import (
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// backuperConfig is what the backuper is configured with (jobs.backup_*).
type backuperConfig struct {
	// Interval is how often the background backup runs; zero: never
	// (backup_enabled false sets it so).
	Interval time.Duration
	Keep     int
	Compress bool
}

// backuper is the maintenance task that writes backups. It depends only
// on the store, its configuration, a log and its counter.
type backuper struct {
	st  store.Store
	cfg backuperConfig
	log *slog.Logger
	// runs counts backups by result (created, failed).
	runs *prometheus.CounterVec
}

// backupSummary is a written backup as the record, the events and the log
// report it.
type backupSummary struct {
	Path   string `json:"path"`
	Jobs   int    `json:"jobs"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

func (b *backuper) name() string            { return taskBackup }
func (b *backuper) interval() time.Duration { return b.cfg.Interval }
func (b *backuper) dueAtStart() bool        { return true }

// doneElsewhere counts a backup written while the daemon was down
// (secauto backup create) as the last backup.
func (b *backuper) doneElsewhere() time.Time { return newestBackupTime(b.st.Dir()) }

// options are the store's backup options as configured.
func (b *backuper) options() store.BackupOptions {
	return store.BackupOptions{Keep: max(b.cfg.Keep, 0), Compress: b.cfg.Compress}
}

// run writes a scheduled backup. The first backup of a store that holds
// no jobs yet is put off: a backup of nothing would start the interval and
// leave the first real jobs without a backup for all of it.
func (b *backuper) run(_, lastSuccess time.Time) runResult {
	if lastSuccess.IsZero() && b.st.Stats().Jobs == 0 {
		return runResult{putOff: true}
	}
	_, res := b.backup(b.options())
	return res
}

// backup writes a backup with options o.
func (b *backuper) backup(o store.BackupOptions) (*store.BackupResult, runResult) {
	res, err := b.st.Backup(o)
	if err != nil && res != nil {
		// Written, but pruning old backups failed: the backup counts.
		b.log.Warn("backup written, but old backups could not be removed", "path", res.Path, "error", err)
		err = nil
	}
	if err == nil && res == nil {
		err = errors.New("backup returned no result")
	}
	if err != nil {
		return nil, runResult{err: err, report: func(r runReport) *webhook.Event {
			b.runs.WithLabelValues("failed").Inc()
			b.log.Error("backup failed", append(r.attrs(), "error", err.Error(), "failures", r.failures)...)
			data := map[string]any{"error": err.Error(), "trigger": r.trigger, "failures": r.failures}
			if !r.next.IsZero() {
				data["next_attempt"] = r.next.UTC().Format(time.RFC3339)
			}
			return &webhook.Event{Event: webhook.BackupFailed, Data: data}
		}}
	}
	// Absolute, for receivers and scripts with another working directory.
	sum := &backupSummary{Path: absPath(res.Path), Jobs: res.Jobs, SHA256: res.SHA256, Size: res.Size}
	return res, runResult{
		keep: func(rec *scheduleRecord) { rec.Backup = sum },
		report: func(r runReport) *webhook.Event {
			b.runs.WithLabelValues("created").Inc()
			b.log.Info("backup finished", append(r.attrs(), "path", sum.Path, "jobs", sum.Jobs, "bytes", sum.Size,
				"sha256", sum.SHA256, "removed", len(res.Removed))...)
			return &webhook.Event{Event: webhook.BackupCreated, Data: map[string]any{
				"path": sum.Path, "jobs": sum.Jobs, "sha256": sum.SHA256, "size": sum.Size,
				"removed": len(res.Removed), "duration_ms": durationMS(r.dur), "trigger": r.trigger,
			}}
		},
	}
}

// absPath makes a path the store answered (relative to the daemon's
// working directory when the data directory was given so) absolute.
func absPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
