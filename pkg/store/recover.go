package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// Recover settles jobs that were running when their process died (SPEC §5
// step 3): each becomes failed with an error saying it was recovered, or,
// when submitted with on_interrupt "retry" and attempts are left, pending
// again. With DryRun it reports what it would do. The result also carries
// what Open repaired.
func (s *FileStore) Recover(o RecoverOptions) (*RecoverResult, error) {
	now := o.Now
	if now.IsZero() {
		now = s.opts.Now()
	}
	now = now.UTC()
	if s.w == nil && !o.DryRun {
		return nil, ErrReadOnly
	}
	res := &RecoverResult{
		JournalTruncatedBytes: s.report.JournalTruncatedBytes,
		RestoredJobs:          s.report.RestoredJobs,
		LostJobs:              s.report.LostJobs,
		DryRun:                o.DryRun,
		Actions:               []RecoverAction{},
	}
	if s.report.RestoredFrom != "" {
		p := s.report.RestoredFrom
		res.RestoredFrom = &p
	}
	running, err := s.List(Filter{Statuses: []job.Status{job.Running}, Oldest: true})
	if err != nil {
		return nil, err
	}
	for _, j := range running {
		a := PlanRecovery(j, now)
		if a.To == job.Pending {
			res.Requeued++
		} else {
			res.FailedRunning++
		}
		res.Actions = append(res.Actions, a)
	}
	if !o.DryRun && len(res.Actions) > 0 {
		recovered, err := s.settle(res.Actions, now, o.Also)
		if err != nil {
			return nil, err
		}
		res.Recovered = recovered
	}
	s.idx.mu.Lock()
	res.Pending = s.idx.counts[job.Pending]
	s.idx.mu.Unlock()
	if o.DryRun {
		res.Pending += res.Requeued
	}
	return res, nil
}

// settle applies the recovery's actions as one journal change, so a crash
// during recovery leaves all of them or none (the next pass does it again).
func (s *FileStore) settle(actions []RecoverAction, now time.Time, also func(*job.Job) []Record) ([]*job.Job, error) {
	for {
		var changes []*change
		var jobs []*job.Job
		bases := map[string]*entry{}
		s.idx.mu.Lock()
		for _, a := range actions {
			if base, ok := s.idx.lookupLocked(a.JobID); ok && base.status == job.Running {
				bases[a.JobID] = base
			}
		}
		s.idx.mu.Unlock()
		for _, a := range actions {
			base, ok := bases[a.JobID]
			if !ok {
				continue
			}
			e, j, err := s.prepareUpdate(a.JobID, base, func(cur *job.Job) error {
				return a.Apply(cur, now)
			})
			if err != nil {
				return nil, fmt.Errorf("recover job %s: %w", a.JobID, err)
			}
			changes = append(changes, &change{id: a.JobID, e: e})
			if also != nil {
				extra, err := s.recordChanges(also(j))
				if err != nil {
					return nil, err
				}
				changes = append(changes, extra...)
			}
			jobs = append(jobs, j)
		}
		if len(changes) == 0 {
			return nil, nil
		}
		err := s.commit(changes, s.unchangedSince(bases))
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			s.opts.Logger.Debug("job recovered", "job_id", j.ID, "status", string(j.Status), "attempts", j.Attempts)
		}
		return jobs, nil
	}
}
