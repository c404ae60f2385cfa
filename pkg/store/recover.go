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
func (s *Store) Recover(o RecoverOptions) (*RecoverResult, error) {
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
		a := RecoverAction{JobID: j.ID, From: job.Running}
		if j.OnInterrupt == job.OnInterruptRetry && j.AttemptsLeft() {
			a.To = job.Pending
			a.Reason = fmt.Sprintf("interrupted on attempt %d; recovered and queued again", j.Attempts)
			res.Requeued++
		} else {
			a.To = job.Failed
			a.Reason = fmt.Sprintf("interrupted: secauto stopped while the job was running; marked failed by crash recovery at %s", now.Format(time.RFC3339))
			if j.OnInterrupt == job.OnInterruptRetry {
				a.Reason = fmt.Sprintf("interrupted on attempt %d with no attempts left; marked failed by crash recovery at %s", j.Attempts, now.Format(time.RFC3339))
			}
			res.FailedRunning++
		}
		res.Actions = append(res.Actions, a)
		if o.DryRun {
			continue
		}
		nj, err := s.UpdateWith(j.ID, func(cur *job.Job) error {
			if cur.Status != job.Running {
				return errSettled
			}
			if a.To == job.Pending {
				return cur.Requeue()
			}
			return cur.Finish(job.Failed, a.Reason, now)
		}, o.Also)
		if errors.Is(err, errSettled) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recover job %s: %w", j.ID, err)
		}
		res.Recovered = append(res.Recovered, nj)
		s.opts.Logger.Debug("job recovered", "job_id", nj.ID, "status", string(nj.Status), "attempts", nj.Attempts)
	}
	s.idx.mu.Lock()
	res.Pending = s.idx.counts[job.Pending]
	s.idx.mu.Unlock()
	if o.DryRun {
		res.Pending += res.Requeued
	}
	return res, nil
}

var errSettled = errors.New("job is no longer running")
