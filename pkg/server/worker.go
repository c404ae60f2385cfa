package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
)

// queue is an unbounded FIFO of pending job ids. It is unbounded so that a
// submission never waits for a worker: every id in it is already durable as
// a pending job, and the queue is rebuilt from the store at start.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	ids    []string
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends id; it reports false once the queue is closed.
func (q *queue) push(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.ids = append(q.ids, id)
	q.cond.Signal()
	return true
}

// pop waits for an id; it reports false once the queue is closed, leaving
// the ids still queued alone (they stay pending in the store).
func (q *queue) pop() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ids) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	id := q.ids[0]
	q.ids[0] = ""
	q.ids = q.ids[1:]
	return id, true
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

// worker runs queued jobs one after another. The end of a job is recorded
// while the worker already starts the next one, so both changes share one
// journal fsync (group commit) instead of waiting for two in a row; a job's
// end is still durable before it is reported, and a worker never has more
// than one end waiting.
func (s *Server) worker() {
	defer s.wg.Done()
	var ending <-chan struct{}
	for {
		id, ok := s.queue.pop()
		if !ok {
			break
		}
		ending = s.runJob(id, ending)
	}
	if ending != nil {
		<-ending
	}
}

// runJob takes job id from pending to a terminal state. It registers the
// job's cancel function before starting it, so a cancel request always
// finds either the pending job in the store or the running one here.
// prev, if not nil, is closed once the previous job's end is durable; the
// returned channel is closed once this job's is (or is prev when this job
// did not run).
func (s *Server) runJob(id string, prev <-chan struct{}) <-chan struct{} {
	if s.jobsCtx.Err() != nil {
		return prev // shutting down: the job stays pending for the next start
	}
	ctx, cancel := context.WithCancelCause(s.jobsCtx)
	r := &run{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.running[id] = r
	s.mu.Unlock()
	release := func() {
		cancel(nil)
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		close(r.done)
	}

	j, err := s.st.Update(id, func(j *job.Job) error { return j.Start(time.Now()) })
	if err != nil {
		release()
		// A job cancelled or deleted while it waited in the queue is not
		// an error.
		if !errors.Is(err, job.ErrTransition) && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("cannot start job", "job_id", id, "error", err)
		}
		return prev
	}
	s.busy.Add(1)

	steps := j.Playbook
	var (
		recorded int
		held     []job.Result
		heldCtx  map[string]any
	)
	// Each result is durable before the next step runs, so a crash never
	// loses what a finished step did. Results after which no step runs
	// (the last step, a job-failing step, skipped steps, an interrupted
	// step) are held back and written with the final status in one update:
	// nothing reports them before that update is durable.
	record := func(res job.Result, jobCtx map[string]any) error {
		recorded++
		idx := recorded - 1
		last := recorded >= len(steps) ||
			res.Status == job.StepSkipped ||
			(res.Status == job.StepFailed && (idx >= len(steps) || !steps[idx].ContinueOnError || ctx.Err() != nil))
		if last || len(held) > 0 {
			held = append(held, res)
			heldCtx = jobCtx
			return nil
		}
		_, err := s.st.Update(id, func(j *job.Job) error {
			if j.Status != job.Running {
				return fmt.Errorf("%w: job %s is %s, not running", job.ErrTransition, id, j.Status)
			}
			j.Results = append(j.Results, res)
			j.Context = jobCtx
			return nil
		})
		return err
	}
	runErr := s.runner.Run(ctx, steps, j.Context, record)
	status, msg := outcome(ctx, runErr)
	s.busy.Add(-1)
	if prev != nil {
		<-prev
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer release()
		s.finish(id, status, msg, runErr, held, heldCtx)
	}()
	return done
}

// finish records the end of job id with the results held back for it, then
// reports it.
func (s *Server) finish(id string, status job.Status, msg string, runErr error, held []job.Result, heldCtx map[string]any) {
	final, err := s.st.UpdateWith(id, func(j *job.Job) error {
		if err := j.Finish(status, msg, time.Now()); err != nil {
			return err
		}
		j.Results = append(j.Results, held...)
		if heldCtx != nil {
			j.Context = heldCtx
		}
		return nil
	}, s.jobEvents(""))
	if err != nil {
		// The job stays running in the store; the next start's recovery
		// fails it, which is the truth: its end was not recorded.
		s.log.Error("cannot record the end of a job", "job_id", id, "status", string(status), "error", err)
		return
	}
	// The error text is not logged: it is rendered from templates and may
	// quote the job's context (a URL with a key in it, say).
	var se *playbook.StepError
	if status == job.Failed && errors.As(runErr, &se) {
		s.log.Info("job failed", "job_id", id, "step", se.Step)
	}
	s.finished(final)
}

// outcome maps the runner's result to the job's final status and error.
func outcome(ctx context.Context, runErr error) (job.Status, string) {
	if runErr == nil {
		return job.Completed, ""
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(cause, errCancelled) {
			return job.Cancelled, errCancelled.Error()
		}
		if errors.Is(cause, errRestoring) {
			return job.Failed, errRestoring.Error()
		}
		return job.Failed, errShutdown.Error()
	}
	var se *playbook.StepError
	if errors.As(runErr, &se) {
		return job.Failed, se.Error()
	}
	return job.Failed, runErr.Error()
}

// finished reports a job that reached a terminal state, whose webhook
// event is already queued: metrics, waiting POST /playbook clients, then
// the dispatcher.
func (s *Server) finished(j *job.Job) {
	s.metrics.jobFinished(j)
	s.mu.Lock()
	ws := s.waiters[j.ID]
	delete(s.waiters, j.ID)
	s.mu.Unlock()
	for _, w := range ws {
		w <- j
	}
	s.hooks.Notify()
}

// errConflict is a cancel of a job that already ended.
type conflictError struct{ j *job.Job }

func (e *conflictError) Error() string {
	return fmt.Sprintf("job %s is already %s", e.j.ID, e.j.Status)
}

// cancelJob stops job id: a running job through its context (waiting until
// its worker has recorded it cancelled), a pending one directly in the
// store. It returns the job in its final state, or a *conflictError when the
// job had already ended.
func (s *Server) cancelJob(ctx context.Context, id string) (*job.Job, error) {
	for range 5 {
		s.mu.Lock()
		r := s.running[id]
		s.mu.Unlock()
		if r != nil {
			r.cancel(errCancelled)
			select {
			case <-r.done:
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
		j, err := s.st.UpdateWith(id, func(j *job.Job) error {
			if j.Status != job.Pending {
				cur = j
				return errNotPending
			}
			return j.Finish(job.Cancelled, errCancelled.Error(), time.Now())
		}, s.jobEvents(""))
		switch {
		case err == nil:
			s.finished(j)
			return j, nil
		case errors.Is(err, errNotPending) && cur.Status.Terminal():
			return nil, &conflictError{cur}
		case errors.Is(err, errNotPending):
			// Running: a worker took it between the two looks; its cancel
			// function is registered now.
			time.Sleep(time.Millisecond)
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("job %s is running but no worker holds it; restart the server to recover it", id)
}

var errNotPending = errors.New("job is not pending")
