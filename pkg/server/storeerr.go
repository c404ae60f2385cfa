package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// jobWriter is the part of the store that submissions, workers and cancels
// write jobs through. It is the store.Store; tests put a store in front of
// it that fails as a full disk or a small job limit makes the real one fail.
type jobWriter interface {
	Create(j *job.Job) (*job.Job, error)
	Update(id string, fn func(*job.Job) error) (*job.Job, error)
	UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []store.Record) (*job.Job, error)
	// Err is the store's sticky error: set once it stopped accepting
	// writes.
	Err() error
}

// How long a worker waits before it writes again to a full disk: doubling
// from the first to the last delay, so a long outage costs little and a
// short one little time.
var (
	noSpaceFirstDelay = 50 * time.Millisecond
	noSpaceLastDelay  = 5 * time.Second
)

// durably calls write until it succeeds, fails for another reason than a
// full disk, or ctx ends. A full disk is waited out (the store changed
// nothing and accepts writes again once space returns), so that a worker
// never goes on as if a change it could not make were made; /health
// answers 503 meanwhile.
func (s *Server) durably(ctx context.Context, what, id string, write func() (*job.Job, error)) (*job.Job, error) {
	delay := noSpaceFirstDelay
	for attempt := 1; ; attempt++ {
		j, err := write()
		if !errors.Is(err, store.ErrNoSpace) {
			if attempt > 1 {
				s.log.Info("disk space is back; the job goes on", "op", what, "job_id", id, "attempts", attempt)
			}
			return j, err
		}
		if attempt == 1 {
			s.log.Error("the disk holding the data directory is full; retrying until space returns", "op", what, "job_id", id)
			s.noSpace.Add(1)
			defer s.noSpace.Add(-1)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		delay = min(2*delay, noSpaceLastDelay)
	}
}

// storeError maps a store failure to an answer: 507 for a full disk, 413
// or 400 for a job that would break a size or nesting limit (the message
// names the limit), 503 when the store no longer accepts writes, 500
// otherwise. Other causes are logged, not sent.
func (s *Server) storeError(what string, err error) *apiError {
	var le *job.LimitError
	switch {
	case errors.Is(err, store.ErrNoSpace):
		s.log.Error("store failure", "op", what, "error", err)
		return &apiError{http.StatusInsufficientStorage, fmt.Sprintf("cannot %s: the disk holding the data directory is full; nothing was changed, try again once space is freed", what)}
	case errors.As(err, &le):
		code := http.StatusBadRequest
		if strings.Contains(le.Limit, "bytes") {
			code = http.StatusRequestEntityTooLarge
		}
		return &apiError{code, fmt.Sprintf("cannot %s: %v", what, le)}
	case errors.Is(err, job.ErrLimit):
		return &apiError{http.StatusBadRequest, fmt.Sprintf("cannot %s: %v", what, err)}
	}
	s.log.Error("store failure", "op", what, "error", err)
	if errors.Is(err, store.ErrClosed) || s.jobs.Err() != nil {
		return &apiError{http.StatusServiceUnavailable, fmt.Sprintf("cannot %s: the job store is not accepting writes; check the server log", what)}
	}
	return &apiError{http.StatusInternalServerError, fmt.Sprintf("cannot %s; check the server log", what)}
}

// adminFailure is the answer to a maintenance operation the store could
// not do: 507 for a full disk, 503 when the store no longer accepts writes,
// 500 otherwise. The cause is named: only an authenticated operator sees
// it, and it is what they need (a full disk, a permission).
func (s *Server) adminFailure(what string, err error) *apiError {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrNoSpace):
		code = http.StatusInsufficientStorage
	case errors.Is(err, store.ErrClosed) || s.jobs.Err() != nil:
		code = http.StatusServiceUnavailable
	}
	return &apiError{code, fmt.Sprintf("%s: %v", what, err)}
}
