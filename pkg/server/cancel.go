package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// conflictError is a cancel of a job that already ended.
type conflictError struct{ j *job.Job }

func (e *conflictError) Error() string {
	return fmt.Sprintf("job %s is already %s", e.j.ID, e.j.Status)
}

var errNotPending = errors.New("job is not pending")

// cancelJob stops job id: a running job through its claim (waiting until
// its worker has recorded it cancelled), a pending one directly in the
// store. It returns the job in its final state, or a *conflictError when the
// job had already ended.
func (s *Server) cancelJob(ctx context.Context, id string) (*job.Job, error) {
	for range 5 {
		if c := s.queue.claimed(id); c != nil {
			c.cancel(errCancelled)
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			j, err := s.st.Get(id)
			if err != nil {
				return nil, err
			}
			if j.Status == job.Cancelled {
				return j, nil
			}
			if j.Status.Terminal() {
				return nil, &conflictError{j}
			}
			continue // the worker had not started it: it is pending again
		}

		var cur *job.Job
		j, err := s.jobs.UpdateWith(id, func(j *job.Job) error {
			if j.Status != job.Pending {
				cur = j
				return errNotPending
			}
			return j.Finish(job.Cancelled, errCancelled.Error(), time.Now())
		}, s.jobEvents(""))
		switch {
		case err == nil:
			s.queue.remove(id)
			s.finished(j)
			return j, nil
		case errors.Is(err, errNotPending) && cur.Status.Terminal():
			return nil, &conflictError{cur}
		case errors.Is(err, errNotPending) && s.cluster != nil && s.queue.claimed(id) == nil:
			// Running on another node: end it in the store, which tells
			// that node to stop the run; its later writes are fenced off.
			return s.cancelElsewhere(id)
		case errors.Is(err, errNotPending):
			// Running: a worker took it between the two looks; its claim
			// is registered now.
			time.Sleep(time.Millisecond)
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("job %s is running but no worker holds it; restart the server to recover it", id)
}

// cancelElsewhere records a job that another node runs as cancelled.
func (s *Server) cancelElsewhere(id string) (*job.Job, error) {
	var ended *job.Job
	j, err := s.jobs.UpdateWith(id, func(j *job.Job) error {
		if j.Status.Terminal() {
			ended = j
			return errNotPending
		}
		return j.Finish(job.Cancelled, errCancelled.Error(), time.Now())
	}, s.jobEvents(""))
	if ended != nil {
		return nil, &conflictError{ended}
	}
	if err != nil {
		return nil, err
	}
	s.finished(j)
	return j, nil
}
