package store

import (
	"errors"
	"fmt"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
	"github.com/secauto/secauto/pkg/seal"
)

// Create stores a new job and returns it once it is durable. An empty ID
// gets a UUIDv7, a zero CreatedAt the current time, an empty Status pending.
func (s *FileStore) Create(j *job.Job) (*job.Job, error) {
	id, err := JobID(j.ID)
	if err != nil {
		return nil, err
	}
	nj := *s.completeNew(j, id)
	e, err := s.encodeJob(&nj, nil)
	if err != nil {
		return nil, err
	}
	err = s.commit([]*change{{id: nj.ID, e: e}}, func() error {
		if _, ok := s.idx.lookupLocked(nj.ID); ok {
			return fmt.Errorf("%w: %s", ErrExists, nj.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &nj, nil
}

// completeNew fills in what a new job leaves out: id (when empty), the
// creation time, pending, and empty playbook, context and results.
func (s *FileStore) completeNew(j *job.Job, id string) *job.Job {
	return CompleteNew(j, id, s.opts.Now)
}

// unchangedSince is the commit check of a change computed from the jobs in
// bases: it asks for a retry when any of them changed since it was read.
func (s *FileStore) unchangedSince(bases map[string]*entry) func() error {
	return func() error {
		for id, base := range bases {
			if cur, _ := s.idx.lookupLocked(id); cur != base {
				return errRetry
			}
		}
		return nil
	}
}

// encodeJob checks a job and encodes it, refusing what the store could not
// read back: a job that breaks the schema, is larger than MaxJobBytes or
// nested deeper than JSON decoders take.
// With a keyring, the job's secret-bearing fields are sealed (sealed.go);
// prev, the entry it replaces, offers its envelope for reuse.
func (s *FileStore) encodeJob(j *job.Job, prev *entry) (*entry, error) {
	var c *sealCache
	if prev != nil {
		c = prev.sealCache()
	}
	return s.encode(j, c)
}

// encode is encodeJob with the sealed part of the job's previous state, if
// known.
func (s *FileStore) encode(j *job.Job, prev *sealCache) (*entry, error) {
	if s.opts.Keyring == nil {
		return encodeJob(j, s.opts.MaxJobBytes)
	}
	return encodeSealed(j, s.opts.Keyring, prev, s.opts.MaxJobBytes)
}

func encodeSealed(j *job.Job, kr *seal.Keyring, prev *sealCache, maxBytes int) (*entry, error) {
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	// Kept for running jobs only, as Update keeps live: they are the
	// ones updated again soon.
	keep := j.Status == job.Running
	raw, seals, err := sealJob(j, kr, prev, keep, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	e := newEntry(raw, j.Status, j.CreatedAt, j.CompletedAt)
	e.extra().keyID = kr.Primary()
	e.extra().seals = seals
	return e, nil
}

func encodeJob(j *job.Job, maxBytes int) (*entry, error) {
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	raw, err := job.AppendJSON(nil, j)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	if err := job.CheckEncoded(raw, maxBytes); err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return newEntry(raw, j.Status, j.CreatedAt, j.CompletedAt), nil
}

// Update applies fn to a copy of the job's newest state and stores the
// result once it is durable. fn may be called more than once when another
// writer changes the same job concurrently, so it must only edit the job.
// A status change must be a valid transition, a terminal job never changes,
// and the id cannot change.
func (s *FileStore) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	return s.UpdateWith(id, fn, nil)
}

// UpdateWith is Update that also stores the records that also returns for
// the updated job, in the same durable change: an event queued this way is
// never lost, nor sent for a change that was not made.
func (s *FileStore) UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []Record) (*job.Job, error) {
	for {
		s.idx.mu.Lock()
		base, ok := s.idx.lookupLocked(id)
		s.idx.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		e, j, err := s.prepareUpdate(id, base, fn)
		if err != nil {
			return nil, err
		}
		changes := []*change{{id: id, e: e}}
		if also != nil {
			extra, err := s.recordChanges(also(j))
			if err != nil {
				return nil, err
			}
			changes = append(changes, extra...)
		}
		err = s.commit(changes, func() error {
			cur, ok := s.idx.lookupLocked(id)
			if !ok {
				return fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			if cur != base {
				return errRetry
			}
			return nil
		})
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return j, nil
	}
}

var errRetry = errors.New("retry")

func (s *FileStore) prepareUpdate(id string, base *entry, fn func(*job.Job) error) (*entry, *job.Job, error) {
	var j *job.Job
	seals := base.sealCache()
	if live := base.liveJob(); live != nil {
		j = live.Clone()
	} else {
		var err error
		if j, seals, err = s.readEntry(base, true); err != nil {
			return nil, nil, err
		}
	}
	if err := fn(j); err != nil {
		return nil, nil, err
	}
	if err := checkChange(id, base.status, j); err != nil {
		return nil, nil, err
	}
	e, err := s.encode(j, seals)
	if err == nil && j.Status == job.Running {
		// Only running jobs: they are few (one per worker) and are the
		// ones updated again soon.
		e.extra().live = j.Clone()
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
func (s *FileStore) Delete(id string) error {
	return s.commit([]*change{{id: id}}, func() error {
		if _, ok := s.idx.lookupLocked(id); !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil
	})
}

// commit writes changes as one journal change — durable whole or not at
// all — after check (run under the index lock) allows them, and returns
// once they are durable and visible.
func (s *FileStore) commit(changes []*change, check func() error) error {
	if s.w == nil {
		return ErrReadOnly
	}
	// Framing (and its checksums) needs no lock; under the index lock
	// the change only takes its place.
	framed, err := s.w.Frame(journalChange(changes))
	if err != nil {
		return s.writeError(err)
	}
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed.Load() {
		return ErrClosed
	}
	s.idx.mu.Lock()
	if check != nil {
		if err := check(); err != nil {
			s.idx.mu.Unlock()
			return err
		}
	}
	t, err := s.w.EnqueueFramed(framed, changes)
	if err != nil {
		s.idx.mu.Unlock()
		return s.writeError(err)
	}
	s.idx.queueLocked(changes)
	s.idx.mu.Unlock()
	return s.writeError(t.Wait())
}

// committed is the journal's OnCommit: it makes a written batch visible (or
// drops it when the write failed) before any of its writers is answered.
func (s *FileStore) committed(users []any, end int64, err error) {
	s.idx.mu.Lock()
	for _, u := range users {
		s.idx.settleLocked(u.([]*change), err == nil)
	}
	if err == nil {
		s.idx.applied = end
	}
	s.idx.mu.Unlock()
	if err == nil && s.compactor.overgrown(s.w.Size(), s.opts.JournalLimit) {
		s.compactor.poke()
	}
}

// writeError says what a failed journal write means for the caller.
func (s *FileStore) writeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, journal.ErrNoSpace) || fsys.IsNoSpace(err):
		return fmt.Errorf("%w: the change was not made; it can be retried once space is freed", ErrNoSpace)
	case errors.Is(err, journal.ErrTooLarge):
		return fmt.Errorf("%w: %w", job.ErrLimit, err)
	case errors.Is(err, journal.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("the journal cannot be made durable, so the store no longer accepts changes: %w", err)
}

// Err is non-nil once the store has stopped accepting writes because its
// journal could not be made durable. A full disk is not such an error.
func (s *FileStore) Err() error {
	if s.w == nil {
		return nil
	}
	if err := s.w.Err(); err != nil {
		return s.writeError(err)
	}
	return nil
}
