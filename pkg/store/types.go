package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// File names inside the data directory. They are part of the contract with
// operators' scripts and never change.
const (
	SnapshotFile = "jobs.json"
	JournalFile  = "jobs.journal"
	LockFile     = "secauto.lock"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotFound: no job has that id or id prefix.
	ErrNotFound = errors.New("job not found")
	// ErrAmbiguous: an id prefix matches more than one job.
	ErrAmbiguous = errors.New("job id prefix is ambiguous")
	// ErrReadOnly: a write on a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store is open read-only")
	// ErrClosed: a call on a closed store.
	ErrClosed = errors.New("store is closed")
	// ErrExists: Create with an id that is already stored.
	ErrExists = errors.New("job id already exists")
	// ErrNoSpace: the disk is full. Nothing was changed, nothing
	// acknowledged is lost, and writes succeed again once space returns.
	ErrNoSpace = errors.New("no space left on the device holding the data directory")
	// ErrNoKeyring: RotateKeys on a store opened without Options.Keyring.
	ErrNoKeyring = errors.New("no jobs.encryption_key_file is configured, so there is no key to encrypt with; configure one first")
)

// Owner describes the process holding a data directory's lock. It is written
// into secauto.lock so other processes can name the holder and find its API.
type Owner struct {
	PID       int       `json:"pid"`
	Host      string    `json:"host,omitempty"`
	Command   string    `json:"command,omitempty"`
	Address   string    `json:"address,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// LockedError is returned by Open when another process holds the lock.
type LockedError struct {
	Path  string
	Owner Owner // zero when the lock file could not be read
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.Owner.PID != 0 {
		cmd := e.Owner.Command
		if cmd == "" {
			cmd = "secauto"
		}
		who = fmt.Sprintf("%s (pid %d", cmd, e.Owner.PID)
		if e.Owner.Address != "" {
			who += ", listening on " + e.Owner.Address
		}
		who += ")"
	}
	return fmt.Sprintf("data directory is locked by %s through %s; stop it first or run this command against the running daemon", who, e.Path)
}

// CorruptError is returned by Open when jobs.json is unusable and no backup
// verifies, so there is nothing valid to serve. The file is left in place.
type CorruptError struct {
	Path   string
	Reason error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s is corrupt (%v) and no backup verifies; it was left in place: inspect it, then run 'secauto backup restore FILE' with a good backup, or move it aside to start with an empty store", e.Path, e.Reason)
}

func (e *CorruptError) Unwrap() error { return e.Reason }

// DirError is returned by Open when the data directory cannot be used: it
// cannot be created, read or written, or others may write it.
type DirError struct {
	Path string
	Err  error
}

func (e *DirError) Error() string {
	return fmt.Sprintf("data directory %s cannot be used: %v; fix its ownership and permissions (it must be writable by secauto and by no one else: chmod 700) or point --data-dir elsewhere", e.Path, e.Err)
}

func (e *DirError) Unwrap() error { return e.Err }

// OpenReport says what Open repaired (SPEC §5 steps 1 and 2).
type OpenReport struct {
	// JournalTruncatedBytes is how many bytes of torn or corrupt journal
	// tail were cut; they are kept in JournalCorruptPath.
	JournalTruncatedBytes int64  `json:"journal_truncated_bytes"`
	JournalCorruptPath    string `json:"journal_corrupt_path,omitempty"`
	// SnapshotCorruptPath is where a copy of a damaged jobs.json was kept.
	SnapshotCorruptPath string `json:"snapshot_corrupt_path,omitempty"`
	// RecordsCorruptPath is where a damaged records file was kept.
	RecordsCorruptPath string `json:"records_corrupt_path,omitempty"`
	// RestoredFrom is the backup that replaced an unusable jobs.json, or
	// that the jobs in RestoredJobs were taken from.
	RestoredFrom string   `json:"restored_from,omitempty"`
	RestoredJobs []string `json:"restored_jobs,omitempty"`
	// LostJobs names the jobs whose newest state was in damaged bytes and
	// could not be found elsewhere: they are as of their previous record,
	// or gone.
	LostJobs []string `json:"lost_jobs,omitempty"`
	// SnapshotJobs and JournalRecords count what was loaded and replayed.
	SnapshotJobs   int `json:"snapshot_jobs"`
	JournalRecords int `json:"journal_records"`
	// Problem describes what a read-only open would have repaired.
	Problems []string `json:"problems,omitempty"`
	// SealedJobs counts the jobs whose secret fields are encrypted;
	// UnreadableJobs those of them sealed with a key that Options.Keyring
	// does not hold (or with none configured), whose ids are MissingKeyIDs.
	SealedJobs     int      `json:"sealed_jobs,omitempty"`
	UnreadableJobs int      `json:"unreadable_jobs,omitempty"`
	MissingKeyIDs  []string `json:"missing_key_ids,omitempty"`
}

// Filter selects jobs for List.
type Filter struct {
	Statuses []job.Status // any of these; empty means all
	Since    time.Time    // created at or after; zero means no bound
	// EndedSince keeps only jobs completed at or after it; zero means no
	// bound.
	EndedSince time.Time
	Limit      int  // at most this many; zero means no limit
	Oldest     bool // oldest first instead of newest first
}

// CleanupOptions says which terminal jobs Cleanup deletes.
type CleanupOptions struct {
	// Retention is how long terminal jobs are kept after they completed.
	Retention time.Duration
	// ByStatus overrides Retention per terminal status.
	ByStatus map[job.Status]time.Duration
	DryRun   bool
	Now      time.Time // zero means time.Now()
}

// CleanupResult reports a cleanup; its JSON is the CLI's -o json output.
type CleanupResult struct {
	Deleted int      `json:"deleted"`
	DryRun  bool     `json:"dry_run"`
	IDs     []string `json:"ids"`
}

// Progress hears how far a long operation is: done of total units.
type Progress func(done, total int64)

// BackupOptions controls backup files.
type BackupOptions struct {
	Compress bool // gzip, adding .gz to the name
	Keep     int  // newest backups kept after writing one; zero keeps all
	// Progress, if set, hears jobs written (for Restore, first of the
	// safety backup, then of the restored jobs).
	Progress Progress
}

// BackupResult reports a written backup; its JSON is the CLI's output.
type BackupResult struct {
	Path    string   `json:"path"`
	Jobs    int      `json:"jobs"`
	SHA256  string   `json:"sha256"`
	Size    int64    `json:"size"`
	Removed []string `json:"removed,omitempty"`
	// Skipped are the jobs left out because their bytes in jobs.json
	// changed on disk since secauto wrote them (`secauto verify` names
	// them; the next start takes them from an older backup).
	Skipped []string `json:"skipped,omitempty"`
	// KeyIDs are the keys needed to read the backup's encrypted jobs.
	KeyIDs []string `json:"key_ids,omitempty"`
}

// BackupInfo describes one backup file found in a data directory.
type BackupInfo struct {
	Path       string    `json:"path"`
	Time       time.Time `json:"time"`
	Size       int64     `json:"size"`
	Jobs       int       `json:"jobs"`
	Compressed bool      `json:"compressed"`
	Verified   bool      `json:"verified"`
	Problem    string    `json:"problem,omitempty"`
	// KeyIDs are the keys needed to read the backup's encrypted jobs.
	KeyIDs []string `json:"key_ids,omitempty"`
}

// RestoreResult reports a restore; its JSON is the CLI's output.
type RestoreResult struct {
	RestoredJobs int    `json:"restored_jobs"`
	SafetyBackup string `json:"safety_backup"`
}

// Problem is one finding of Verify.
type Problem struct {
	File    string `json:"file"`
	JobID   string `json:"job_id,omitempty"`
	Message string `json:"message"`
	// MissingKeyID is set when nothing is damaged, but what the problem
	// names is encrypted with this key, which is not configured: the fix
	// is to configure it, not to repair anything.
	MissingKeyID string `json:"missing_key_id,omitempty"`
}

func (p Problem) String() string {
	s := p.File
	if p.JobID != "" {
		s += ": job " + p.JobID
	}
	return s + ": " + p.Message
}

// VerifyResult is the outcome of Verify; its JSON is the CLI's output.
type VerifyResult struct {
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems"`
	Jobs     int       `json:"jobs"`
	Journal  int       `json:"journal_records"`
	Records  int       `json:"records"`
	Backups  int       `json:"backups"`
}

// RecoverOptions controls Recover.
type RecoverOptions struct {
	DryRun bool
	Now    time.Time // zero means time.Now()
	// Also returns records to store with each recovered job in the same
	// write: the job.recovered events, which are then never lost.
	Also func(*job.Job) []Record
}

// RecoverAction is one thing recovery did (or would do) to a job.
type RecoverAction struct {
	JobID  string     `json:"job_id"`
	From   job.Status `json:"from"`
	To     job.Status `json:"to"`
	Reason string     `json:"reason"`
}

// RecoverResult reports a recovery pass; its JSON is the CLI's output.
type RecoverResult struct {
	FailedRunning         int     `json:"failed_running"`
	Requeued              int     `json:"requeued"`
	Pending               int     `json:"pending"`
	RestoredFrom          *string `json:"restored_from"`
	JournalTruncatedBytes int64   `json:"journal_truncated_bytes"`
	// RestoredJobs were taken from the backup in RestoredFrom; LostJobs
	// had their newest state in damaged bytes (see OpenReport).
	RestoredJobs []string        `json:"restored_jobs,omitempty"`
	LostJobs     []string        `json:"lost_jobs,omitempty"`
	DryRun       bool            `json:"dry_run"`
	Actions      []RecoverAction `json:"actions"`
	// Recovered holds the jobs changed by step 3, in their new state, for
	// the job.recovered events.
	Recovered []*job.Job `json:"-"`
}

// Stats is a cheap summary of the store for /stats and metrics.
type Stats struct {
	Jobs          int                `json:"jobs"`
	ByStatus      map[job.Status]int `json:"by_status"`
	SnapshotBytes int64              `json:"snapshot_bytes"`
	JournalBytes  int64              `json:"journal_bytes"`
	LastSnapshot  time.Time          `json:"last_snapshot"`
	Healthy       bool               `json:"healthy"`
	// Syncs counts journal fsyncs since Open, SyncedChanges the changes
	// they made durable (their ratio is the group commit's batch size),
	// SyncTime the time spent writing and syncing.
	Syncs         int64         `json:"journal_syncs"`
	SyncedChanges int64         `json:"journal_synced_changes"`
	SyncTime      time.Duration `json:"journal_sync_nanoseconds"`
}
