// Package store owns secauto's job store: the data directory's files
// (jobs.json, jobs.journal, the records file, backups, secauto.lock), how
// changes are made durable, and the maintenance the daemon and the command
// line share — cleanup, backup, restore, recovery and verification.
//
// Every change is appended to jobs.journal (package journal) holding full
// state and fsynced before it is acknowledged or visible to readers;
// concurrent writers share one write and one fsync. The journal is
// compacted into jobs.json, always a complete file in the format operators'
// scripts read, and cut only once the new jobs.json is durable, so a crash
// at any point loses nothing that was acknowledged. Memory holds an index of
// every job and the bytes of those changed since the last snapshot; a
// settled job's bytes are read back from jobs.json, checked against their
// checksum. The pieces, each in its own file: the index (index.go, entry.go)
// is the in-memory view; the loader (load.go, loadsnap.go, snapread.go) is
// the one reader of the files, and snapfile.go reads jobs back from
// jobs.json; commit.go writes; compact.go, backup.go, restore.go,
// cleanup.go, recover.go, scrub.go and verify.go are the operations.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
	"github.com/secauto/secauto/pkg/seal"
)

const (
	defaultSnapshotInterval = 30 * time.Second
	defaultJournalLimit     = 64 << 20
	// DefaultMaxJobBytes bounds one job's encoded size (jobs.max_job_bytes).
	DefaultMaxJobBytes = 16 << 20
	// journalReserve is kept allocated past the journal's end, so that
	// recovery and a few changes can still be written on a full disk.
	journalReserve = 4 << 20
)

// Options configures Open.
type Options struct {
	// Dir is the data directory; it is created (0700) if missing, and
	// refused when others may write it.
	Dir string
	// ReadOnly opens without taking the lock and without repairing
	// anything: for inspection (listing, verify, dry runs) beside a writer.
	// What a writable open would repair is listed in the OpenReport.
	ReadOnly bool
	// SnapshotInterval is how often a dirty journal is compacted into
	// jobs.json while jobs.json is small beside it (see compact.go); zero
	// means 30s, negative disables the background snapshot (Close still
	// writes one).
	SnapshotInterval time.Duration
	// JournalLimit compacts early once the journal is larger than this and
	// a compaction is due, bounding replay time; zero means 64 MiB.
	JournalLimit int64
	// MaxJobBytes refuses a job whose encoding is larger; zero means
	// DefaultMaxJobBytes.
	MaxJobBytes int
	// Owner is recorded in secauto.lock so other processes can name the
	// holder and reach its API.
	Owner Owner
	// Salvage lets Open go on when jobs.json is unusable and no backup
	// verifies: the file is kept aside (SnapshotCorruptPath) and only the
	// journal's jobs are loaded. For `backup restore`, which replaces them.
	Salvage bool
	// FS is the file system; nil means the real one. Any other takes no
	// directory lock: the caller (a test) guarantees one writer.
	FS fsys.FS
	// OnSync hears the duration of every journal write and fsync and how
	// many changes it made durable; OnSnapshot how long writing jobs.json
	// (and cutting the journal) took and how many jobs it holds.
	OnSync     func(d time.Duration, changes int)
	OnSnapshot func(d time.Duration, jobs int)
	// Logger hears the repairs Open makes at warning level. Operations are
	// logged at debug level only: their callers log them once.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Keyring, if set, encrypts the secret-bearing fields of every job
	// written (context, submitted_context, step outputs) and the
	// auxiliary records, under its first key, and opens what any of its
	// keys sealed. Without one, jobs are written in plain and a sealed job
	// read is a *SealedError naming the key id it needs.
	Keyring *seal.Keyring
	// CheckInBackground opens without reading settled jobs' bytes when
	// jobs.json.sum records where each job is, and checks them against
	// their sums once Open has returned (scrub.go): a large store starts
	// serving sooner. For the daemon; commands check before they act.
	CheckInBackground bool
	// OnUnreadable hears each job a listing leaves out because it cannot
	// be read (a *SealedError: its key is missing or its ciphertext does
	// not authenticate).
	OnUnreadable func(id string, err error)
}

// FileStore is the file driver: an open data directory. All methods are
// safe for concurrent use.
type FileStore struct {
	opts   Options  // defaults filled in
	lock   *dirLock // nil when read-only or on a test file system
	report OpenReport
	idx    *index
	files  *files
	w      *journal.Writer // nil when read-only
	// gate is shared by every commit and held alone by Restore, which
	// swaps the whole state.
	gate      sync.RWMutex
	compactor *compactor
	syncs     *syncCounter
	closed    atomic.Bool
	stop      chan struct{}
	unchecked []keyed // the settled jobs the scrub checks after Open
	wg        sync.WaitGroup
}

// Open opens (creating if needed) the data directory, takes its lock unless
// ReadOnly, repairs what a crash or rot left (SPEC §5 steps 1 and 2, see the
// loader), and replays the journal. It returns *LockedError when another
// process holds the directory, *CorruptError when nothing valid is left to
// load, and *DirError when the directory cannot be used at all.
func Open(opts Options) (*FileStore, error) {
	if opts.Dir == "" {
		return nil, errors.New("no data directory given")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = defaultSnapshotInterval
	}
	if opts.JournalLimit <= 0 {
		opts.JournalLimit = defaultJournalLimit
	}
	if opts.MaxJobBytes <= 0 {
		opts.MaxJobBytes = DefaultMaxJobBytes
	}
	fs := opts.FS
	if fs == nil {
		fs = fsys.OS
	}
	s := &FileStore{opts: opts, files: &files{fs: fs, dir: opts.Dir}, syncs: &syncCounter{next: opts.OnSync}, stop: make(chan struct{})}
	if err := s.prepareDir(); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		s.releaseLock()
		return nil, err
	}
	if opts.ReadOnly {
		return s, nil
	}
	s.wg.Add(1)
	go s.snapshotter()
	if s.unchecked != nil {
		s.wg.Add(1)
		go s.scrub(s.unchecked)
		s.unchecked = nil
	}
	return s, nil
}

// prepareDir checks the directory (creating it when writable) and takes
// the lock.
func (s *FileStore) prepareDir() error {
	fs, dir := s.files.fs, s.opts.Dir
	if s.opts.ReadOnly {
		st, err := fs.Stat(dir)
		if err != nil {
			return &DirError{Path: dir, Err: err}
		}
		if !st.IsDir() {
			return &DirError{Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	if err := fsys.MkdirAll(fs, dir, dirMode); err != nil {
		return &DirError{Path: dir, Err: err}
	}
	if err := fsys.CheckPrivateDir(fs, dir); err != nil {
		return &DirError{Path: dir, Err: err}
	}
	if s.opts.FS != nil {
		return nil
	}
	lock, err := acquireLock(dir, s.opts.Owner)
	if err != nil {
		return err
	}
	s.lock = lock
	return nil
}

// load reads the directory through the loader and, when writable, opens the
// journal for appending and writes whatever the loader repaired.
func (s *FileStore) load() error {
	now := s.opts.Now()
	l := &loader{fs: s.files.fs, dir: s.opts.Dir, repair: !s.opts.ReadOnly, salvage: s.opts.Salvage, lazy: s.opts.CheckInBackground && !s.opts.ReadOnly, now: now, log: s.opts.Logger}
	st, err := l.load()
	if err != nil {
		return err
	}
	s.report = st.report
	s.report.Problems = problemStrings(st.problems)
	s.unchecked = st.unchecked
	s.idx = newIndex(st.jobs, st.records)
	s.noteSealed()
	s.idx.journaled = len(st.scan.Entries)
	s.compactor = newCompactor(st.snapBytes, now)
	if s.opts.ReadOnly {
		return nil
	}
	s.files.cleanTemps()
	w, err := journal.OpenWriter(s.files.fs, s.files.path(JournalFile), st.scan.Good, journal.Options{
		OnCommit:    s.committed,
		OnSync:      s.syncs.observe,
		Preallocate: journalReserve,
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", s.files.path(JournalFile), err)
	}
	s.w = w
	s.idx.applied = w.Position()
	// A new store has no jobs.json yet; write one at the first snapshot so
	// operators' scripts always find it.
	s.idx.dirty = len(st.scan.Entries) > 0 || !fsys.Exists(s.files.fs, s.files.path(SnapshotFile))
	if st.rewrite || len(st.scan.Damage) > 0 {
		// Make the repaired state the one on disk before anything else
		// runs. On a full disk this waits for the next snapshot: the
		// journal holds everything meanwhile.
		if err := s.compact(true); err != nil {
			if !fsys.IsNoSpace(err) {
				w.Close()
				return err
			}
			s.opts.Logger.Warn("the repaired state could not be written yet; the journal holds it", "err", err.Error())
		}
	}
	return nil
}

func problemStrings(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		p.File = filepath.Base(p.File)
		out = append(out, p.String())
	}
	return out
}

// Dir is the data directory.
func (s *FileStore) Dir() string { return s.opts.Dir }

// Report says what Open repaired, or for a read-only store what a writable
// open would repair.
func (s *FileStore) Report() OpenReport { return s.report }

// Close stops background work, writes a complete jobs.json, and releases
// the lock.
func (s *FileStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.w == nil {
		return nil
	}
	close(s.stop)
	s.wg.Wait()
	// Commits still in flight hold the gate; wait for them.
	s.gate.Lock()
	defer s.gate.Unlock()
	err := s.compact(false)
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	if uerr := s.releaseLock(); err == nil {
		err = uerr
	}
	return err
}

func (s *FileStore) releaseLock() error {
	if s.lock == nil {
		return nil
	}
	return s.lock.release()
}

// Get returns the job with this id, or the only job whose id starts with it.
func (s *FileStore) Get(idOrPrefix string) (*job.Job, error) {
	if s.closed.Load() {
		// Once closed, another process may be changing the files: what
		// is in memory is no answer.
		return nil, ErrClosed
	}
	_, e, err := s.idx.get(idOrPrefix)
	if err != nil {
		return nil, err
	}
	return s.readJob(e)
}

// List returns the jobs matching f, newest first (by creation time, then id)
// unless f.Oldest.
func (s *FileStore) List(f Filter) ([]*job.Job, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	items := s.idx.list(f)
	out := make([]*job.Job, 0, len(items))
	for _, it := range items {
		j, err := s.readJob(it.e)
		if err != nil {
			// A sealed job whose key is missing, or whose ciphertext was
			// changed on disk, is left out and named; one bad job must
			// never hide all the others.
			s.opts.Logger.Error("job skipped in a listing: it cannot be read", "job_id", it.id, "err", err.Error())
			if s.opts.OnUnreadable != nil {
				s.opts.OnUnreadable(it.id, err)
			}
			continue
		}
		out = append(out, j)
	}
	return out, nil
}

// Stats summarises the store cheaply.
func (s *FileStore) Stats() Stats {
	s.idx.mu.Lock()
	by := make(map[job.Status]int, len(job.Statuses))
	for _, st := range job.Statuses {
		by[st] = s.idx.counts[st]
	}
	n := len(s.idx.jobs)
	s.idx.mu.Unlock()
	snapBytes, lastSnap := s.compactor.figures()
	st := Stats{
		Jobs:          n,
		ByStatus:      by,
		SnapshotBytes: snapBytes,
		LastSnapshot:  lastSnap,
		Healthy:       s.Err() == nil && !s.closed.Load(),
	}
	if s.w != nil {
		st.JournalBytes = s.w.Size()
	}
	st.Syncs, st.SyncedChanges, st.SyncTime = s.syncs.figures()
	return st
}

// syncCounter counts journal fsyncs for Stats and passes each on to
// Options.OnSync.
type syncCounter struct {
	syncs, changes, nanos atomic.Int64
	next                  func(d time.Duration, changes int)
}

func (c *syncCounter) observe(d time.Duration, changes int) {
	c.syncs.Add(1)
	c.changes.Add(int64(changes))
	c.nanos.Add(int64(d))
	if c.next != nil {
		c.next(d, changes)
	}
}

func (c *syncCounter) figures() (int64, int64, time.Duration) {
	return c.syncs.Load(), c.changes.Load(), time.Duration(c.nanos.Load())
}
