package store

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
)

// Rerun stores a new job built by next from the job id names (an id or a
// unique prefix) and links the two in the same durable change: the new job's
// RerunOf names the original, and the original's Reruns gains the new id.
// The link is the only change the original ever gets after it ended; its
// status, results and times stay as they were.
//
// next is given a copy of the original and returns the new job, which
// Rerun completes as Create does (id, created time, pending status); it may
// be called more than once when the original changes meanwhile. The
// original may be in any state. Rerun returns the new job once both
// changes are durable; ErrNotFound or ErrAmbiguous when id names no single
// job.
func (s *FileStore) Rerun(id string, next func(orig *job.Job) (*job.Job, error)) (*job.Job, error) {
	id, base, err := s.idx.get(id)
	if err != nil {
		return nil, err
	}
	newID, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	for {
		orig, err := s.decodeBase(base)
		if err != nil {
			return nil, err
		}
		nj, err := next(orig.Clone())
		if err != nil {
			return nil, err
		}
		nj = s.completeNew(nj, newID.String())
		nj.RerunOf = orig.ID
		if nj.ID == orig.ID {
			return nil, fmt.Errorf("job %s: a rerun needs an id of its own", id)
		}
		ne, err := s.encodeJob(nj, nil)
		if err != nil {
			return nil, err
		}

		linked := orig.Clone()
		linked.Reruns = append(slices.Clone(orig.Reruns), nj.ID)
		oe, err := s.encodeJob(linked, base)
		if err != nil {
			return nil, err
		}
		if linked.Status == job.Running {
			oe.extra().live = linked.Clone()
		}

		changes := []*change{{id: id, e: oe}, {id: nj.ID, e: ne}}
		err = s.commit(changes, func() error {
			cur, ok := s.idx.lookupLocked(id)
			if !ok {
				return fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			if _, ok := s.idx.lookupLocked(nj.ID); ok {
				return fmt.Errorf("%w: %s", ErrExists, nj.ID)
			}
			if cur != base {
				base = cur
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
		return nj, nil
	}
}

// decodeBase decodes the job of an index entry, as Update does, opening
// its sealed fields.
func (s *FileStore) decodeBase(e *entry) (*job.Job, error) {
	if live := e.liveJob(); live != nil {
		return live.Clone(), nil
	}
	return s.readJob(e)
}
