package store

import (
	"slices"

	"github.com/secauto/secauto/pkg/job"
)

// Cleanup deletes terminal jobs that completed longer ago than their
// retention. Pending and running jobs are never touched. With DryRun it
// only reports what it would delete.
func (s *FileStore) Cleanup(o CleanupOptions) (*CleanupResult, error) {
	now := o.Now
	if now.IsZero() {
		now = s.opts.Now()
	}
	cutoff := func(st job.Status) int64 {
		r, ok := o.ByStatus[st]
		if !ok {
			r = o.Retention
		}
		return now.Add(-r).UnixNano()
	}
	cut := map[job.Status]int64{}
	for _, st := range job.Statuses {
		if st.Terminal() {
			cut[st] = cutoff(st)
		}
	}
	s.idx.mu.Lock()
	var ids []string
	for id, e := range s.idx.jobs {
		limit, ok := cut[e.status]
		if !ok {
			continue
		}
		when := e.completed
		if when == 0 {
			when = e.created
		}
		if when < limit {
			ids = append(ids, id)
		}
	}
	s.idx.mu.Unlock()
	slices.Sort(ids)
	res := &CleanupResult{Deleted: len(ids), DryRun: o.DryRun, IDs: ids}
	if ids == nil {
		res.IDs = []string{}
	}
	if o.DryRun || len(ids) == 0 {
		return res, nil
	}
	changes := make([]*change, len(ids))
	for i, id := range ids {
		changes[i] = &change{id: id}
	}
	// One journal change: a crash applies the whole cleanup or none of it.
	// A terminal job never becomes live again, so the selection stays
	// right; one deleted meanwhile is deleted twice, harmlessly.
	if err := s.commit(changes, nil); err != nil {
		return nil, err
	}
	s.opts.Logger.Debug("cleanup completed", "deleted", len(ids))
	return res, nil
}
