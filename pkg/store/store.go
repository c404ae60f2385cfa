// Package store owns secauto's job store: the data directory's files
// (jobs.json, jobs.journal, backups, secauto.lock), how changes are made
// durable, and the maintenance the daemon and the command line share —
// cleanup, backup, restore, recovery and verification.
//
// Every change is appended to jobs.journal as a checksummed record holding
// the job's full state and fsynced before it is acknowledged or visible to
// readers. Concurrent writers share one write and one fsync (group commit).
// The journal is compacted into jobs.json, which is always a complete file
// in the format operators' scripts read, and the journal is cut only once
// the new jobs.json is durable, so a crash at any point loses nothing that
// was acknowledged.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
)

const (
	defaultSnapshotInterval = 30 * time.Second
	defaultJournalLimit     = 64 << 20
)

// Options configures Open.
type Options struct {
	// Dir is the data directory; it is created (0700) if missing.
	Dir string
	// ReadOnly opens without taking the lock and without repairing
	// anything: for inspection (listing, verify, dry runs) beside a writer.
	// What a writable open would repair is listed in the OpenReport.
	ReadOnly bool
	// SnapshotInterval is how often a dirty journal is compacted into
	// jobs.json; zero means 30s, negative disables the background snapshot
	// (Close still writes one).
	SnapshotInterval time.Duration
	// JournalLimit compacts early once the journal is larger than this and
	// than jobs.json, bounding replay time; zero means 64 MiB.
	JournalLimit int64
	// Owner is recorded in secauto.lock so other processes can name the
	// holder and reach its API.
	Owner Owner
	// Salvage lets Open go on when jobs.json is unusable and no backup
	// verifies: the file is moved aside (reported in SnapshotCorruptPath)
	// and only the journal's jobs are loaded. For `backup restore`, which
	// replaces them next.
	Salvage bool
	// OnSync, if set, is told the duration of every journal write and
	// fsync and how many changes it made durable (for metrics).
	OnSync func(d time.Duration, changes int)
	// OnSnapshot, if set, is told how long writing jobs.json (and cutting
	// the journal) took and how many jobs it holds (for metrics).
	OnSnapshot func(d time.Duration, jobs int)
	// Logger hears the repairs Open makes at warning level. Operations
	// (backup, restore, cleanup, recovery) are logged at debug level only:
	// their callers log them once, with their own figures.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is an open data directory. All methods are safe for concurrent use.
type Store struct {
	opts     Options
	dir      string
	log      *slog.Logger
	lock     *flock.Flock
	report   OpenReport
	readOnly bool

	// mu guards the in-memory state below.
	mu        sync.Mutex
	cond      *sync.Cond // signalled when excl is cleared
	jobs      map[string]*entry
	records   map[string][]byte
	counts    map[job.Status]int
	pending   map[string]*change // queued but not yet durable; latest per id
	cur       *batch             // collecting changes for the next write
	inflight  *batch             // being written
	excl      bool               // a restore or compaction needs the store to itself
	err       error              // sticky: set when the journal cannot be written
	closed    bool
	jsize     int64 // durable size of the journal
	snapBytes int64
	lastSnap  time.Time
	dirty     bool

	// jmu serialises writes to the journal file with swapping it.
	jmu     sync.Mutex
	journal *os.File

	snapMu    sync.Mutex // one compaction at a time
	kick      chan struct{}
	syncs     atomic.Int64 // journal fsyncs
	synced    atomic.Int64 // changes they made durable
	syncNanos atomic.Int64
	snapKick  chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
}

// change is one queued job put (e != nil) or delete (e == nil), or, when
// rec is set, a put or delete of the auxiliary record keyed id.
type change struct {
	id  string
	e   *entry
	rec *Record
}

type batch struct {
	buf     []byte
	changes []*change
	done    chan struct{}
	err     error
}

// Open opens (creating if needed) the data directory, takes its lock unless
// ReadOnly, cuts a torn or corrupt journal tail (keeping the bytes aside),
// replaces an unusable jobs.json with the newest verified backup, and
// replays the journal. It returns *LockedError when another process holds
// the directory and *CorruptError when nothing valid is left to load.
func Open(opts Options) (*Store, error) {
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
	s := &Store{
		opts:     opts,
		dir:      opts.Dir,
		log:      opts.Logger,
		readOnly: opts.ReadOnly,
		counts:   map[job.Status]int{},
		pending:  map[string]*change{},
		kick:     make(chan struct{}, 1),
		snapKick: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	if opts.ReadOnly {
		if err := s.loadReadOnly(); err != nil {
			return nil, err
		}
		s.closed = false
		return s, nil
	}
	if err := os.MkdirAll(s.dir, dirMode); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if err := s.acquireLock(); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		s.lock.Unlock()
		return nil, err
	}
	s.wg.Add(2)
	go s.committer()
	go s.snapshotter()
	return s, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Report says what Open repaired, or for a read-only store what a writable
// open would repair.
func (s *Store) Report() OpenReport { return s.report }

// load reads and repairs the directory's files (SPEC §5 steps 1 and 2).
func (s *Store) load() error {
	now := s.opts.Now()
	jpath := s.path(JournalFile)
	jdata, err := readFileIfExists(jpath)
	if err != nil {
		return fmt.Errorf("read %s: %w", jpath, err)
	}
	recs, good, jerr := parseJournal(jdata)
	if jerr != nil {
		cut := jdata[good:]
		aside, err := writeAside(jpath, cut, now)
		if err != nil {
			return fmt.Errorf("keep the corrupt tail of %s: %w", jpath, err)
		}
		s.report.JournalTruncatedBytes = int64(len(cut))
		s.report.JournalCorruptPath = aside
		s.log.Warn("journal tail cut", "file", jpath, "reason", jerr.Error(),
			"bytes", len(cut), "kept_in", aside)
		jdata = jdata[:good]
		if err := truncateJournal(jpath, good); err != nil {
			return err
		}
	}
	jobs, err := s.loadSnapshot(now, false)
	if err != nil {
		return err
	}
	if s.records, err = readRecordsFile(s.dir); err != nil {
		return err
	}
	s.jobs = jobs
	s.replay(recs)
	for _, e := range s.jobs {
		s.counts[e.status]++
	}
	// A new store has no jobs.json yet; write one at the first snapshot so
	// operators' scripts always find it.
	s.dirty = len(recs) > 0 || !exists(s.path(SnapshotFile))
	if err := s.openJournal(int64(max(len(jdata), len(journalMagic)))); err != nil {
		return err
	}
	s.lastSnap = now
	if s.report.RestoredFrom != "" || s.report.SnapshotCorruptPath != "" || s.report.JournalTruncatedBytes > 0 {
		// Make the repaired state the one on disk before anything else runs.
		s.dirty = true
		return s.compact()
	}
	return nil
}

func (s *Store) loadReadOnly() error {
	// A writer may compact between our reads of the journal and the
	// snapshot; retry until jobs.json stayed the same file throughout.
	for attempt := 0; ; attempt++ {
		before, _ := os.Stat(s.path(SnapshotFile))
		jdata, err := readFileIfExists(s.path(JournalFile))
		if err != nil {
			return err
		}
		recs, _, jerr := parseJournal(jdata)
		s.report = OpenReport{}
		if jerr != nil {
			s.report.JournalTruncatedBytes = int64(len(jdata)) - jerr.Offset
			s.report.Problems = append(s.report.Problems,
				fmt.Sprintf("%s: %v; %d bytes would be cut and kept aside", JournalFile, jerr, s.report.JournalTruncatedBytes))
		}
		jobs, err := s.loadSnapshot(s.opts.Now(), true)
		if err != nil {
			return err
		}
		records, err := readRecordsFile(s.dir)
		if err != nil {
			return err
		}
		after, _ := os.Stat(s.path(SnapshotFile))
		if attempt < 5 && !sameFile(before, after) {
			continue
		}
		s.jobs = jobs
		s.records = records
		s.counts = map[job.Status]int{}
		s.replay(recs)
		for _, e := range s.jobs {
			s.counts[e.status]++
		}
		return nil
	}
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// parseJournal decodes data up to its first bad record.
func parseJournal(data []byte) ([]*change, int64, *journalError) {
	var recs []*change
	good, jerr := scanJournal(data, func(kind byte, body []byte) error {
		switch kind {
		case recPut:
			id, e, err := decodeEntry(body)
			if err != nil {
				return err
			}
			recs = append(recs, &change{id: id, e: e})
		case recDelete:
			if len(body) == 0 {
				return errors.New("delete record without id")
			}
			recs = append(recs, &change{id: string(body)})
		case recRecord:
			r, err := decodeRecordBody(body)
			if err != nil {
				return err
			}
			recs = append(recs, &change{id: r.Key, rec: r})
		case recRecordDelete:
			if len(body) == 0 {
				return errors.New("record delete without key")
			}
			recs = append(recs, &change{id: string(body), rec: &Record{Key: string(body)}})
		default:
			return fmt.Errorf("unknown record kind %q", kind)
		}
		return nil
	})
	return recs, good, jerr
}

func (s *Store) replay(recs []*change) {
	for _, c := range recs {
		applyTo(s.jobs, s.records, c)
	}
	s.report.JournalRecords = len(recs)
}

// applyTo applies one change to a job map and a record map.
func applyTo(jobs map[string]*entry, records map[string][]byte, c *change) {
	switch {
	case c.rec != nil && c.rec.Value == nil:
		delete(records, c.id)
	case c.rec != nil:
		records[c.id] = c.rec.Value
	case c.e == nil:
		delete(jobs, c.id)
	default:
		jobs[c.id] = c.e
	}
}

func truncateJournal(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("cut %s: %w", path, err)
	}
	return f.Sync()
}

// loadSnapshot reads jobs.json, falling back to the newest verified backup
// when it is unusable (SPEC §5 step 2).
func (s *Store) loadSnapshot(now time.Time, readOnly bool) (map[string]*entry, error) {
	spath := s.path(SnapshotFile)
	data, rot, err := readSnapshotFile(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", spath, err)
	}
	if data == nil {
		return map[string]*entry{}, nil
	}
	jobs, problems, perr := decodeSnapshot(data)
	if perr == nil {
		perr = rot
	}
	if perr == nil && len(problems) == 0 {
		s.snapBytes = int64(len(data))
		s.report.SnapshotJobs = len(jobs)
		return jobs, nil
	}
	reason := perr
	if reason == nil {
		reason = fmt.Errorf("job %s: %w", problems[0].id, problems[0].err)
		if len(problems) > 1 {
			reason = fmt.Errorf("%w (and %d more jobs)", reason, len(problems)-1)
		}
	}
	s.log.Error("snapshot unusable", "file", spath, "reason", reason.Error())
	backup, bjobs, bdata := s.newestGoodBackup()
	if backup == "" && s.opts.Salvage && !readOnly {
		aside, err := moveAside(spath, now)
		if err != nil {
			return nil, fmt.Errorf("keep the corrupt %s: %w", spath, err)
		}
		if err := os.Remove(spath); err != nil {
			return nil, err
		}
		s.report.SnapshotCorruptPath = aside
		s.log.Warn("unusable snapshot moved aside; no backup verifies", "file", spath, "moved_to", aside)
		return map[string]*entry{}, nil
	}
	if backup == "" {
		return nil, &CorruptError{Path: spath, Reason: reason}
	}
	s.report.RestoredFrom = backup
	s.report.SnapshotJobs = len(bjobs)
	if readOnly {
		s.report.Problems = append(s.report.Problems,
			fmt.Sprintf("%s: %v; it would be moved aside and %s restored", SnapshotFile, reason, filepath.Base(backup)))
		return bjobs, nil
	}
	aside, err := moveAside(spath, now)
	if err != nil {
		return nil, fmt.Errorf("keep the corrupt %s: %w", spath, err)
	}
	s.report.SnapshotCorruptPath = aside
	if _, err := writeJobsFile(s.dir, func(w io.Writer) error { _, err := w.Write(bdata); return err }); err != nil {
		return nil, fmt.Errorf("restore %s from %s: %w", spath, backup, err)
	}
	s.snapBytes = int64(len(bdata))
	s.log.Warn("snapshot restored from backup", "file", spath, "moved_to", aside,
		"backup", backup, "jobs", len(bjobs))
	return bjobs, nil
}

// newestGoodBackup returns the newest backup whose checksum and content
// verify, with its jobs and its uncompressed bytes.
func (s *Store) newestGoodBackup() (string, map[string]*entry, []byte) {
	paths, _ := backupPaths(s.dir)
	for _, p := range paths {
		jobs, data, err := readBackup(p, true)
		if err != nil {
			s.log.Warn("backup skipped", "file", p, "reason", err.Error())
			continue
		}
		return p, jobs, data
	}
	return "", nil, nil
}

// openJournal opens jobs.journal for appending, creating it with its header.
func (s *Store) openJournal(size int64) error {
	jpath := s.path(JournalFile)
	f, err := os.OpenFile(jpath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("open %s: %w", jpath, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if st.Size() == 0 {
		if _, err := f.Write([]byte(journalMagic)); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
	}
	s.journal = f
	s.jsize = max(size, int64(len(journalMagic)))
	return nil
}

// Close stops background work, writes a complete jobs.json, and releases
// the lock.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.readOnly {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	err := s.compact()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if cerr := s.journal.Close(); err == nil {
		err = cerr
	}
	if uerr := s.lock.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// Err is non-nil once the store has stopped accepting writes because its
// journal could not be made durable.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Create stores a new job and returns it once it is durable. An empty ID
// gets a UUIDv7, a zero CreatedAt the current time, an empty Status pending.
func (s *Store) Create(j *job.Job) (*job.Job, error) {
	nj := *j
	if nj.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		nj.ID = id.String()
	}
	if nj.CreatedAt.IsZero() {
		nj.CreatedAt = s.opts.Now()
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
	e, err := encodeJob(&nj)
	if err != nil {
		return nil, err
	}
	c := &change{id: nj.ID, e: e}
	err = s.commit([]*change{c}, func() error {
		if _, ok := s.lookupLocked(nj.ID); ok {
			return fmt.Errorf("%w: %s", ErrExists, nj.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &nj, nil
}

func encodeJob(j *job.Job) (*entry, error) {
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	raw, err := job.AppendJSON(nil, j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return newEntry(raw, j.Status, j.CreatedAt, j.CompletedAt), nil
}

func decodeJob(e *entry) (*job.Job, error) {
	var j job.Job
	if err := json.Unmarshal(e.raw, &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	return &j, nil
}

// lookupLocked returns the newest state of id, durable or queued.
func (s *Store) lookupLocked(id string) (*entry, bool) {
	if c, ok := s.pending[id]; ok {
		return c.e, c.e != nil
	}
	e, ok := s.jobs[id]
	return e, ok
}

// Update applies fn to a copy of the job's newest state and stores the
// result once it is durable. fn may be called more than once when another
// writer changes the same job concurrently, so it must only edit the job.
// A status change must be a valid transition, a terminal job never changes,
// and the id cannot change.
func (s *Store) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	return s.UpdateWith(id, fn, nil)
}

// UpdateWith is Update that also stores the records that also returns for
// the updated job, in the same durable write: an event queued this way is
// never lost, nor sent for a change that was not made.
func (s *Store) UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []Record) (*job.Job, error) {
	for {
		s.mu.Lock()
		base, ok := s.lookupLocked(id)
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		e, j, err := prepareUpdate(id, base, fn)
		if err != nil {
			return nil, err
		}
		changes := []*change{{id: id, e: e}}
		if also != nil {
			extra, err := recordChanges(also(j))
			if err != nil {
				return nil, err
			}
			changes = append(changes, extra...)
		}
		stale := false
		err = s.commit(changes, func() error {
			cur, ok := s.lookupLocked(id)
			if !ok {
				return fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			stale = cur != base
			if stale {
				return errRetry
			}
			return nil
		})
		if stale {
			continue
		}
		if err != nil {
			return nil, err
		}
		return j, nil
	}
}

var errRetry = errors.New("retry")

func prepareUpdate(id string, base *entry, fn func(*job.Job) error) (*entry, *job.Job, error) {
	var j *job.Job
	if base.live != nil {
		j = base.live.Clone()
	} else {
		var err error
		if j, err = decodeJob(base); err != nil {
			return nil, nil, err
		}
	}
	if err := fn(j); err != nil {
		return nil, nil, err
	}
	if err := checkChange(id, base.status, j); err != nil {
		return nil, nil, err
	}
	e, err := encodeJob(j)
	if err == nil && j.Status == job.Running {
		// Only running jobs: they are few (one per worker) and are the
		// ones updated again soon.
		e.live = j.Clone()
	}
	return e, j, err
}

func checkChange(id string, from job.Status, j *job.Job) error {
	if j.ID != id {
		return fmt.Errorf("job %s: the id cannot change", id)
	}
	if from.Terminal() {
		return fmt.Errorf("%w: job %s is %s and cannot change", job.ErrTransition, id, from)
	}
	if j.Status != from && !job.CanTransition(from, j.Status) {
		return fmt.Errorf("%w: job %s cannot go from %s to %s", job.ErrTransition, id, from, j.Status)
	}
	return nil
}

// Delete removes a job durably, whatever its status; callers cancel a live
// job first.
func (s *Store) Delete(id string) error {
	return s.commit([]*change{{id: id}}, func() error {
		if _, ok := s.lookupLocked(id); !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil
	})
}

// commit queues changes as one group, after check (run under the lock)
// allows them, and waits until they are durable.
func (s *Store) commit(changes []*change, check func() error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	var size int
	for _, c := range changes {
		switch {
		case c.e != nil:
			size += recHeaderSize + 1 + len(c.e.raw)
		case c.rec != nil:
			size += recHeaderSize + 1 + binary.MaxVarintLen64 + len(c.id) + len(c.rec.Value)
		default:
			size += recHeaderSize + 1 + len(c.id)
		}
	}
	s.mu.Lock()
	for s.excl {
		s.cond.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	b := s.cur
	if b == nil {
		b = &batch{done: make(chan struct{})}
		s.cur = b
	}
	b.buf = slices.Grow(b.buf, size)
	for _, c := range changes {
		switch {
		case c.rec != nil && c.rec.Value == nil:
			b.buf = appendRecord(b.buf, recRecordDelete, []byte(c.id))
		case c.rec != nil:
			b.buf = appendRecord(b.buf, recRecord, appendRecordBody(nil, c.rec))
		case c.e != nil:
			b.buf = appendRecord(b.buf, recPut, c.e.raw)
		default:
			b.buf = appendRecord(b.buf, recDelete, []byte(c.id))
		}
		b.changes = append(b.changes, c)
		if c.rec == nil {
			s.pending[c.id] = c
		}
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-b.done
	return b.err
}

// committer writes queued batches: one write and one fsync for every change
// that arrived while the previous batch was being written.
func (s *Store) committer() {
	defer s.wg.Done()
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			s.flushBatches()
			return
		}
		s.flushBatches()
	}
}

func (s *Store) flushBatches() {
	for {
		s.mu.Lock()
		b := s.cur
		s.cur = nil
		s.inflight = b
		failed := s.err
		s.mu.Unlock()
		if b == nil {
			return
		}
		// jmu is held until the batch is accounted for in jsize, so a
		// journal cut never sees bytes on disk that jsize does not cover.
		s.jmu.Lock()
		err := failed
		if err == nil {
			start := time.Now()
			err = s.writeJournal(b.buf)
			d := time.Since(start)
			s.syncs.Add(1)
			s.synced.Add(int64(len(b.changes)))
			s.syncNanos.Add(int64(d))
			if s.opts.OnSync != nil {
				s.opts.OnSync(d, len(b.changes))
			}
		}
		s.mu.Lock()
		if err != nil {
			if s.err == nil {
				s.err = fmt.Errorf("the journal cannot be made durable, so the store no longer accepts changes: %w", err)
				s.log.Error("journal write failed; store is read-only until restarted", "err", err.Error())
			}
			b.err = s.err
			for _, c := range b.changes {
				if s.pending[c.id] == c {
					delete(s.pending, c.id)
				}
			}
		} else {
			s.jsize += int64(len(b.buf))
			s.dirty = true
			for _, c := range b.changes {
				s.apply(c)
				if s.pending[c.id] == c {
					delete(s.pending, c.id)
				}
			}
		}
		s.inflight = nil
		over := s.jsize > s.opts.JournalLimit && s.jsize > s.snapBytes
		s.mu.Unlock()
		s.jmu.Unlock()
		close(b.done)
		if over {
			select {
			case s.snapKick <- struct{}{}:
			default:
			}
		}
	}
}

func (s *Store) writeJournal(buf []byte) error {
	if _, err := s.journal.Write(buf); err != nil {
		return err
	}
	return s.journal.Sync()
}

// apply makes a durable change visible. Called with mu held.
func (s *Store) apply(c *change) {
	if c.rec != nil {
		applyTo(s.jobs, s.records, c)
		return
	}
	if old, ok := s.jobs[c.id]; ok {
		s.counts[old.status]--
	}
	if c.e == nil {
		delete(s.jobs, c.id)
		return
	}
	s.jobs[c.id] = c.e
	s.counts[c.e.status]++
}

// snapshotter compacts the journal every SnapshotInterval while it holds
// changes, and early when it outgrows JournalLimit.
func (s *Store) snapshotter() {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.opts.SnapshotInterval > 0 {
		t := time.NewTicker(s.opts.SnapshotInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-tick:
		case <-s.snapKick:
		}
		if err := s.compact(); err != nil {
			s.log.Error("snapshot failed; the journal keeps every change", "err", err.Error())
		}
	}
}

// Snapshot compacts the journal into jobs.json now.
func (s *Store) Snapshot() error {
	if s.readOnly {
		return ErrReadOnly
	}
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
	return s.compact()
}

// compact writes jobs.json from the durable state and then cuts from the
// journal what it holds. Writers keep going meanwhile; records they add
// after the snapshot's point are carried into the new journal.
func (s *Store) compact() error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.compactLocked()
}

// compactLocked is compact for a caller holding snapMu.
func (s *Store) compactLocked() error {
	s.mu.Lock()
	if !s.dirty || s.err != nil {
		s.mu.Unlock()
		return nil
	}
	items := s.itemsLocked()
	records := maps.Clone(s.records)
	mark := s.jsize
	s.dirty = false
	s.mu.Unlock()

	start := time.Now()
	if err := writeRecordsFile(s.dir, records); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	written, err := writeJobsFile(s.dir, func(w io.Writer) error { return writeSnapshot(w, items, nil) })
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	if err := s.cutJournal(mark); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.snapBytes = written
	s.lastSnap = s.opts.Now()
	s.mu.Unlock()
	took := time.Since(start)
	s.log.Debug("snapshot written", "jobs", len(items), "bytes", written, "took", took.String())
	if s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(took, len(items))
	}
	return nil
}

// cutJournal replaces the journal with the records written after offset
// mark. The new journal is complete before it is renamed into place, so a
// crash leaves either the old journal (whose replay over the new snapshot
// converges, since records hold full state) or the new one.
func (s *Store) cutJournal(mark int64) error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	s.mu.Lock()
	size := s.jsize
	s.mu.Unlock()
	jpath := s.path(JournalFile)
	tail := make([]byte, size-mark)
	if len(tail) > 0 {
		f, err := os.Open(jpath)
		if err != nil {
			return err
		}
		_, err = f.ReadAt(tail, mark)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", jpath, err)
		}
	}
	// Our own handle goes first: Windows refuses to replace an open file.
	s.journal.Close()
	err := writeFileAtomic(jpath, func(w io.Writer) error {
		if _, err := io.WriteString(w, journalMagic); err != nil {
			return err
		}
		_, err := w.Write(tail)
		return err
	})
	f, oerr := os.OpenFile(jpath, os.O_WRONLY|os.O_APPEND, fileMode)
	if oerr != nil {
		s.mu.Lock()
		s.err = fmt.Errorf("reopen %s: %w", jpath, oerr)
		s.mu.Unlock()
		return s.err
	}
	s.journal = f
	if err != nil {
		// The old journal is still in place, whole; it was reopened above.
		return fmt.Errorf("cut %s: %w", jpath, err)
	}
	s.mu.Lock()
	s.jsize = int64(len(journalMagic) + len(tail))
	s.mu.Unlock()
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// itemsLocked is a point-in-time view of the durable jobs. Entries are
// immutable, so the view stays consistent after mu is released.
func (s *Store) itemsLocked() []keyed {
	items := make([]keyed, 0, len(s.jobs))
	for id, e := range s.jobs {
		items = append(items, keyed{id, e})
	}
	return items
}

// exclusive runs fn with no change queued or being written and none
// admitted until it returns.
func (s *Store) exclusive(fn func() error) error {
	s.mu.Lock()
	for s.excl {
		s.cond.Wait()
	}
	s.excl = true
	wait := s.cur
	if wait == nil {
		wait = s.inflight
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait.done
	}
	defer func() {
		s.mu.Lock()
		s.excl = false
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	return fn()
}

// Get returns the job with this id, or the only job whose id starts with it.
func (s *Store) Get(idOrPrefix string) (*job.Job, error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	s.mu.Lock()
	e, ok := s.jobs[idOrPrefix]
	if !ok {
		var matches []string
		for id, ce := range s.jobs {
			if strings.HasPrefix(id, idOrPrefix) {
				matches = append(matches, id)
				e = ce
			}
		}
		switch len(matches) {
		case 0:
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrNotFound, idOrPrefix)
		case 1:
		default:
			s.mu.Unlock()
			slices.Sort(matches)
			if len(matches) > 5 {
				matches = append(matches[:5], "…")
			}
			return nil, fmt.Errorf("%w: %q matches %s", ErrAmbiguous, idOrPrefix, strings.Join(matches, ", "))
		}
	}
	s.mu.Unlock()
	return decodeJob(e)
}

// List returns the jobs matching f, newest first (by creation time, then id)
// unless f.Oldest.
func (s *Store) List(f Filter) ([]*job.Job, error) {
	since := int64(0)
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	s.mu.Lock()
	items := make([]keyed, 0, min(len(s.jobs), 1024))
	for id, e := range s.jobs {
		if (len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.status)) || (since != 0 && e.created < since) {
			continue
		}
		items = append(items, keyed{id, e})
	}
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b keyed) int {
		c := cmpInt(a.e.created, b.e.created)
		if c == 0 {
			c = strings.Compare(a.id, b.id)
		}
		if f.Oldest {
			return c
		}
		return -c
	})
	if f.Limit > 0 && len(items) > f.Limit {
		items = items[:f.Limit]
	}
	out := make([]*job.Job, 0, len(items))
	for _, it := range items {
		j, err := decodeJob(it.e)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", it.id, err)
		}
		out = append(out, j)
	}
	return out, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Stats summarises the store cheaply.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	by := make(map[job.Status]int, len(job.Statuses))
	for _, st := range job.Statuses {
		by[st] = s.counts[st]
	}
	return Stats{
		Jobs:          len(s.jobs),
		ByStatus:      by,
		SnapshotBytes: s.snapBytes,
		JournalBytes:  s.jsize,
		LastSnapshot:  s.lastSnap,
		Healthy:       s.err == nil && !s.closed,
		Syncs:         s.syncs.Load(),
		SyncedChanges: s.synced.Load(),
		SyncTime:      time.Duration(s.syncNanos.Load()),
	}
}
