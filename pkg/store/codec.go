package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// What the file driver shares with the drivers that keep their jobs
// elsewhere (package store/postgres), so that every driver stores, refuses,
// seals, recovers, backs up and verifies jobs alike: a job one driver
// refuses, the others refuse with the same error; a sealed job opens with
// the same keys; a backup of one restores into another.

// Codec encodes and decodes jobs and records as the file driver stores
// them.
type Codec struct {
	// Keyring, if set, seals what is encoded and opens what it sealed.
	Keyring *seal.Keyring
	// MaxJobBytes refuses a job whose encoding is larger; zero means
	// DefaultMaxJobBytes.
	MaxJobBytes int
}

func (s *FileStore) codec() Codec {
	return Codec{Keyring: s.opts.Keyring, MaxJobBytes: s.opts.MaxJobBytes}
}

func (c Codec) maxBytes() int {
	if c.MaxJobBytes <= 0 {
		return DefaultMaxJobBytes
	}
	return c.MaxJobBytes
}

// KeyID is the key EncodeJob and SealRecord seal with, "" without a
// keyring.
func (c Codec) KeyID() string {
	if c.Keyring == nil {
		return ""
	}
	return c.Keyring.Primary()
}

// EncodeJob checks j and encodes it: the job's JSON (job.AppendJSON), or
// with a keyring its sealed form. A job the store could not read back is
// refused with the error that names the limit or the broken field.
func (c Codec) EncodeJob(j *job.Job) ([]byte, error) {
	var e *entry
	var err error
	if c.Keyring == nil {
		e, err = encodeJob(j, c.maxBytes())
	} else {
		e, err = encodeSealed(j, c.Keyring, nil, c.maxBytes())
	}
	if err != nil {
		return nil, err
	}
	return e.raw, nil
}

// DecodeJob decodes a job EncodeJob (or any driver) stored under id,
// opening its sealed fields: a *SealedError when its key is missing or a
// field does not authenticate.
func (c Codec) DecodeJob(id string, raw []byte) (*job.Job, error) {
	m, err := scanJobMeta(raw)
	if err != nil {
		return nil, fmt.Errorf("job %s: not a valid job: %w", id, err)
	}
	var j *job.Job
	if m.SealedKey == "" {
		j, err = loadJob(raw)
	} else {
		j, _, err = openSealed(raw, m.SealedKey, c.Keyring, false)
	}
	var sealed *SealedError
	if errors.As(err, &sealed) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	if j.ID != id {
		return nil, fmt.Errorf("job %s: stored under this id but its id is %q", id, j.ID)
	}
	return j, nil
}

// JobKeyID is the key a stored job is sealed with, "" for a plain job (or
// one that does not parse).
func JobKeyID(raw []byte) string {
	m, err := scanJobMeta(raw)
	if err != nil {
		return ""
	}
	return m.SealedKey
}

// SealRecord checks a record's value (nil, which deletes, or JSON) and,
// with a keyring, seals it bound to key.
func (c Codec) SealRecord(key string, v []byte) ([]byte, error) {
	if key == "" {
		return nil, errors.New("record without key")
	}
	if v != nil && !json.Valid(v) {
		return nil, fmt.Errorf("record %q: value is not JSON", key)
	}
	if v != nil && c.Keyring != nil {
		v = sealRecord(c.Keyring, key, v)
	}
	return v, nil
}

// OpenRecord returns a stored record's plain value: v itself unless
// sealed, else a *SealedError when it cannot be opened.
func (c Codec) OpenRecord(key string, v []byte) ([]byte, error) {
	return openRecord(c.Keyring, key, v)
}

// RecordKeyID is the key a stored record value is sealed with, "" for a
// plain one.
func RecordKeyID(v []byte) string { return recordKeyID(v) }

// JobID is id, or when it is empty a new UUIDv7: the id Create gives a job,
// time-ordered so that ids sort as jobs were created.
func JobID(id string) (string, error) {
	if id != "" {
		return id, nil
	}
	u, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// CompleteNew fills in what a new job leaves out, as Create does: id (when
// empty), the creation time (from now), pending, and empty playbook,
// context and results.
func CompleteNew(j *job.Job, id string, now func() time.Time) *job.Job {
	nj := *j
	if nj.ID == "" {
		nj.ID = id
	}
	if nj.CreatedAt.IsZero() {
		nj.CreatedAt = now()
	}
	nj.CreatedAt = nj.CreatedAt.UTC()
	if nj.Status == "" {
		nj.Status = job.Pending
	}
	if nj.Playbook == nil {
		nj.Playbook = []job.Step{}
	}
	if nj.Context == nil {
		nj.Context = map[string]any{}
	}
	if nj.Results == nil {
		nj.Results = []job.Result{}
	}
	return &nj
}

// CheckChange is Update's rule for the job id, which was in status from,
// becoming j: the id stays, a terminal job never changes, and a status
// change is a valid transition (job.ErrTransition otherwise).
func CheckChange(id string, from job.Status, j *job.Job) error {
	return checkChange(id, from, j)
}

// PlanRecovery is SPEC §5 step 3 for one job that was running when the
// process running it died: it fails, or, when submitted with on_interrupt
// "retry" and attempts are left, goes back to pending.
func PlanRecovery(j *job.Job, now time.Time) RecoverAction {
	now = now.UTC()
	a := RecoverAction{JobID: j.ID, From: job.Running}
	switch {
	case j.OnInterrupt == job.OnInterruptRetry && j.AttemptsLeft():
		a.To = job.Pending
		a.Reason = fmt.Sprintf("interrupted on attempt %d; recovered and queued again", j.Attempts)
	case j.OnInterrupt == job.OnInterruptRetry:
		a.To = job.Failed
		a.Reason = fmt.Sprintf("interrupted on attempt %d with no attempts left; marked failed by crash recovery at %s", j.Attempts, now.Format(time.RFC3339))
	default:
		a.To = job.Failed
		a.Reason = fmt.Sprintf("interrupted: secauto stopped while the job was running; marked failed by crash recovery at %s", now.Format(time.RFC3339))
	}
	return a
}

// Apply makes the recovery a plans on j (its newest state).
func (a RecoverAction) Apply(j *job.Job, now time.Time) error {
	if a.To == job.Pending {
		return j.Requeue()
	}
	return j.Finish(job.Failed, a.Reason, now)
}

// StoredJob is one job as a driver stores it: its id and its encoded
// form, with what a driver indexes of it.
type StoredJob struct {
	ID          string
	Doc         []byte
	KeyID       string // the key it is sealed with; "" when plain
	Status      job.Status
	CreatedAt   time.Time
	CompletedAt *time.Time
}

func keyedOf(jobs []StoredJob) []keyed {
	items := make([]keyed, len(jobs))
	for i, sj := range jobs {
		e := newEntry(sj.Doc, sj.Status, sj.CreatedAt, sj.CompletedAt)
		if sj.KeyID != "" {
			e.extra().keyID = sj.KeyID
		}
		items[i] = keyed{sj.ID, e}
	}
	return items
}

func storedOf(jobs map[string]*entry) ([]StoredJob, error) {
	out := make([]StoredJob, 0, len(jobs))
	for id, e := range jobs {
		doc, err := e.bytes()
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", id, err)
		}
		sj := StoredJob{ID: id, Doc: doc, KeyID: e.sealKey(), Status: e.status, CreatedAt: time.Unix(0, e.created).UTC()}
		if e.completed != 0 {
			t := time.Unix(0, e.completed).UTC()
			sj.CompletedAt = &t
		}
		out = append(out, sj)
	}
	return out, nil
}

// Backups writes the backups of a directory (the file driver's names,
// format, .sha256 sidecars, fsyncs and pruning) for a driver whose jobs
// live elsewhere. It is safe for concurrent use.
type Backups struct{ f *files }

// NewBackups writes backups into dir, creating it (0700) if missing.
func NewBackups(dir string) (*Backups, error) {
	if err := fsys.MkdirAll(fsys.OS, dir, dirMode); err != nil {
		return nil, &DirError{Path: dir, Err: err}
	}
	return &Backups{f: &files{fs: fsys.OS, dir: dir}}, nil
}

// Write writes a backup of jobs (a jobs.json snapshot) stamped now, then
// removes the oldest backups beyond o.Keep.
func (b *Backups) Write(jobs []StoredJob, o BackupOptions, now time.Time) (*BackupResult, error) {
	return b.f.backup(keyedOf(jobs), o, now)
}

// Prune removes the oldest backups beyond keep, and returns their paths.
func (b *Backups) Prune(keep int) ([]string, error) {
	return b.f.pruneBackups(keep)
}

// ReadBackupFile verifies a file offered for a restore as Restore does (its
// checksum when a .sha256 sidecar is beside it, every job against the job
// schema) and returns its jobs.
func ReadBackupFile(path string) ([]StoredJob, error) {
	jobs, _, err := readBackup(fsys.OS, path, false)
	if err != nil {
		return nil, err
	}
	return storedOf(jobs)
}

// CheckJobs checks stored jobs as verify checks a jobs.json written by
// hand: each is one job stored under its own id, keeps the job invariants
// and the whole job schema, and its sealed fields authenticate when kr
// holds their key; the jobs sealed with keys kr lacks are reported once per
// key id. Each problem names file and the job.
func CheckJobs(file string, jobs []StoredJob, kr *seal.Keyring) []Problem {
	var out []Problem
	items := make([]keyed, 0, len(jobs))
	for _, sj := range jobs {
		id, e, err := decodeEntry(sj.Doc, true)
		if err == nil && id != sj.ID {
			err = fmt.Errorf("stored under id %q but its id is %q", sj.ID, id)
		}
		if err != nil {
			out = append(out, Problem{File: file, JobID: sj.ID, Message: err.Error()})
			continue
		}
		items = append(items, keyed{sj.ID, e})
	}
	return append(out, checkJobs(file, items, kr)...)
}

// CheckRecords checks stored records as verify does: those sealed with a
// key o.Keyring holds must open, those sealed with keys it lacks are
// reported once per key id, and o.CheckRecords checks the rest. Each
// problem names file.
func CheckRecords(file string, records map[string][]byte, o VerifyOptions) []Problem {
	return checkRecords(file, records, o)
}

// CheckBackups checks every backup in dir as verify does (checksum, jobs,
// and with kr their sealed fields), and returns how many it checked with
// the problems found.
func CheckBackups(dir string, kr *seal.Keyring) (int, []Problem) {
	paths, err := backupPaths(fsys.OS, dir)
	if err != nil {
		return 0, []Problem{{File: dir, Message: err.Error()}}
	}
	return checkBackups(fsys.OS, paths, kr, func(int) {})
}
