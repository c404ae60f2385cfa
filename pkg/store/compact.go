package store

import (
	"sync"
	"time"
)

// When to compact, so that the cost of a change never grows with the
// history kept. A small jobs.json is rewritten every SnapshotInterval while
// anything changed: that costs at most smallSnapshot bytes an interval. A
// larger one is rewritten only once the journal has grown to journalShare
// of it, as Redis rewrites its append-only file once it has grown by
// auto-aof-rewrite-percentage (100 by default, as here): each byte
// journaled then costs at most 1/journalShare bytes of rewrite however
// large the history, and replay after a crash reads at most journalShare
// of jobs.json's size again.
const (
	smallSnapshot = 64 << 20
	journalShare  = 1.0
)

// compactor decides when the journal is folded into jobs.json and keeps the
// figures of the last snapshot.
type compactor struct {
	mu        sync.Mutex
	snapBytes int64
	lastSnap  time.Time
	small     int64         // smallSnapshot; lowered by tests
	kick      chan struct{} // the journal outgrew its limit
}

func newCompactor(snapBytes int64, now time.Time) *compactor {
	return &compactor{snapBytes: snapBytes, lastSnap: now, small: smallSnapshot, kick: make(chan struct{}, 1)}
}

func (c *compactor) figures() (int64, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapBytes, c.lastSnap
}

func (c *compactor) wrote(size int64, at time.Time) {
	c.mu.Lock()
	c.snapBytes, c.lastSnap = size, at
	c.mu.Unlock()
}

func (c *compactor) restored(size int64) {
	c.mu.Lock()
	c.snapBytes = size
	c.mu.Unlock()
}

// due reports whether a journal of size bytes is worth folding into
// jobs.json at the interval.
func (c *compactor) due(size int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapBytes <= c.small || float64(size) >= journalShare*float64(c.snapBytes)
}

// overgrown reports whether a journal of size bytes should be compacted
// now rather than at the next interval: larger than the limit, which bounds
// replay time, and due.
func (c *compactor) overgrown(size, limit int64) bool {
	return size > limit && c.due(size)
}

func (c *compactor) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// snapshotter compacts the journal every SnapshotInterval while it holds
// changes and a compaction is due, and early when it outgrows
// JournalLimit.
func (s *FileStore) snapshotter() {
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
			if !s.compactor.due(s.w.Size()) {
				continue
			}
		case <-s.compactor.kick:
		}
		if err := s.compact(false); err != nil {
			s.opts.Logger.Error("snapshot failed; the journal keeps every change", "err", err.Error())
		}
	}
}

// Snapshot compacts the journal into jobs.json now.
func (s *FileStore) Snapshot() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.w == nil {
		return ErrReadOnly
	}
	return s.compact(true)
}

func (s *FileStore) compact(force bool) error {
	s.files.snapMu.Lock()
	defer s.files.snapMu.Unlock()
	return s.snapshotLocked(force)
}

// snapshotLocked writes the records file and jobs.json from the durable
// state, then cuts from the journal what they hold. Writers keep going
// meanwhile; what they add after the snapshot's point stays in the journal.
// A crash at any point leaves files whose replay gives the same state:
// records carry full state, so replaying journal records that a new
// jobs.json already holds changes nothing. The caller holds files.snapMu.
func (s *FileStore) snapshotLocked(force bool) error {
	if err := s.w.Err(); err != nil {
		return err
	}
	s.idx.mu.Lock()
	if !s.idx.dirty && !force {
		s.idx.mu.Unlock()
		return nil
	}
	v := s.idx.viewLocked()
	s.idx.dirty = false
	s.idx.mu.Unlock()
	start := time.Now()
	err := writeRecordsFile(s.files.fs, s.files.dir, v.records)
	var written int64
	var placed *placement
	if err == nil {
		written, placed, err = writeJobsFile(s.files.fs, s.files.dir, v.items, nil)
	}
	if err == nil {
		err = s.w.Cut(v.applied)
	}
	if err == nil {
		s.reportSkipped(placed)
		s.idx.relocate(v.items, placed)
	}
	s.idx.mu.Lock()
	if err != nil {
		s.idx.dirty = true
	} else {
		s.idx.journaled -= v.journaled
	}
	s.idx.mu.Unlock()
	if err != nil {
		return err
	}
	s.compactor.wrote(written, s.opts.Now())
	took := time.Since(start)
	s.opts.Logger.Debug("snapshot written", "jobs", len(v.items), "bytes", written, "took", took.String())
	if s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(took, len(v.items))
	}
	return nil
}

// reportSkipped logs the jobs a snapshot left out because their bytes in
// the previous jobs.json rotted: the new jobs.json.sum still names them, so
// the next start takes them from a backup or reports them lost.
func (s *FileStore) reportSkipped(p *placement) {
	if len(p.skipped) == 0 {
		return
	}
	ids := make([]string, len(p.skipped))
	for i, sk := range p.skipped {
		ids[i] = sk.id
	}
	s.opts.Logger.Error("jobs whose bytes changed on disk since secauto wrote them were left out of the new jobs.json; the next start takes them from a backup",
		"jobs", len(ids), "job_ids", firstN(ids, 20), "err", p.skipped[0].err.Error())
}
