package store

import (
	"sync"
	"time"
)

// compactor decides when the journal is folded into jobs.json and keeps the
// figures of the last snapshot.
type compactor struct {
	mu        sync.Mutex
	snapBytes int64
	lastSnap  time.Time
	kick      chan struct{} // the journal outgrew its limit
}

func newCompactor(snapBytes int64, now time.Time) *compactor {
	return &compactor{snapBytes: snapBytes, lastSnap: now, kick: make(chan struct{}, 1)}
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

// overgrown reports whether a journal of size bytes should be compacted
// now rather than at the next interval: larger than the limit and than
// jobs.json, so replay time stays bounded without rewriting a large
// snapshot for a small journal.
func (c *compactor) overgrown(size, limit int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return size > limit && size > c.snapBytes
}

func (c *compactor) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
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
		case <-s.compactor.kick:
		}
		if err := s.compact(false); err != nil {
			s.opts.Logger.Error("snapshot failed; the journal keeps every change", "err", err.Error())
		}
	}
}

// Snapshot compacts the journal into jobs.json now.
func (s *Store) Snapshot() error {
	if s.w == nil {
		return ErrReadOnly
	}
	return s.compact(true)
}

func (s *Store) compact(force bool) error {
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
func (s *Store) snapshotLocked(force bool) error {
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
	if err == nil {
		written, err = writeJobsFile(s.files.fs, s.files.dir, v.items, nil)
	}
	if err == nil {
		err = s.w.Cut(v.applied)
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
