package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
)

// worker runs jobs one after another. The end of a job is recorded while
// the worker already starts the next one, so both changes share one
// journal fsync (group commit) instead of waiting for two in a row; a job's
// end is still durable before it is reported, and a worker never has more
// than one end waiting.
func (s *Server) worker() {
	defer s.wg.Done()
	var ending <-chan struct{}
	for {
		c, j, ok := s.nextJob()
		if !ok {
			break
		}
		ending = s.runJob(c, j, ending)
	}
	if ending != nil {
		<-ending
	}
}

// nextJob waits for a job and starts it (pending → running, durably) with
// its claim registered, so a cancel always finds either the pending job in
// the store or its claim. It reports false once the queue is closed. A
// shared store (cluster.go) hands out its own pending jobs.
func (s *Server) nextJob() (*claim, *job.Job, bool) {
	if s.cluster != nil {
		return s.claimShared()
	}
	for {
		c, ok := s.queue.pop()
		if !ok {
			return nil, nil, false
		}
		if c.ctx.Err() != nil {
			// Shutting down, or a restore or cancel came first: the job
			// stays pending in the store for whoever handles it.
			s.queue.release(c)
			continue
		}
		j, err := s.durably(c.ctx, "start the job", c.id, func() (*job.Job, error) {
			return s.jobs.Update(c.id, func(j *job.Job) error { return j.Start(time.Now()) })
		})
		if err != nil {
			s.queue.release(c)
			// A job cancelled or deleted while it waited in the queue is
			// not an error.
			if !errors.Is(err, job.ErrTransition) && !errors.Is(err, store.ErrNotFound) && c.ctx.Err() == nil {
				s.log.Error("cannot start job", "job_id", c.id, "error", err)
			}
			continue
		}
		return c, j, true
	}
}

// runJob takes the started job j, claimed by c, to a terminal state.
// prev, if not nil, is closed once the previous job's end is durable; the
// returned channel is closed once this job's is.
func (s *Server) runJob(c *claim, j *job.Job, prev <-chan struct{}) <-chan struct{} {
	s.busy.Add(1)
	p := &progress{s: s, id: j.ID, attempt: j.Attempts, steps: j.Playbook, ctx: c.ctx}
	runErr := s.runner.Run(c.ctx, j.Playbook, j.Context, p.record)
	status, msg := outcome(c.ctx, runErr)
	s.busy.Add(-1)
	if prev != nil {
		<-prev
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.queue.release(c)
		s.finish(p, status, msg, runErr)
	}()
	return done
}

// errFenced is the error of a write by a run that no longer owns its job:
// another node recovered, cancelled or restarted it meanwhile. The run's
// late writes are dropped, never laid over what was recorded since.
var errFenced = errors.New("the job is no longer this run's")

// progress records a running job's step results as the runner reports
// them.
//
// Each result is durable before the next step runs, so a crash never loses
// what a finished step did. Results after which no step runs (the last
// step, a job-failing step, skipped steps, an interrupted step) are held
// back and written with the final status in one update: nothing reports
// them before that update is durable.
type progress struct {
	s  *Server
	id string
	// attempt is the job's Attempts when this run started it: the fence
	// every write of the run checks.
	attempt int
	steps   []job.Step
	ctx     context.Context

	recorded int
	held     []job.Result
	heldCtx  map[string]any
}

func (p *progress) record(res job.Result, jobCtx map[string]any) error {
	p.recorded++
	idx := p.recorded - 1
	last := p.recorded >= len(p.steps) ||
		res.Status == job.StepSkipped ||
		(res.Status == job.StepFailed && (idx >= len(p.steps) || !p.steps[idx].ContinueOnError || p.ctx.Err() != nil))
	if last || len(p.held) > 0 {
		p.held = append(p.held, res)
		p.heldCtx = jobCtx
		return nil
	}
	// A full disk is waited out until shutdown: the next step must not run
	// as if this one's result were kept.
	_, err := p.s.durably(p.s.jobsCtx, "record a step result", p.id, func() (*job.Job, error) {
		return p.s.jobs.Update(p.id, func(j *job.Job) error {
			if err := p.fence(j); err != nil {
				return err
			}
			j.Results = append(j.Results, res)
			j.Context = jobCtx
			return nil
		})
	})
	if errors.Is(err, job.ErrLimit) {
		// The runner stops at a record error; the job's end records the
		// step as failed, naming the limit.
		return p.failOnLimit(idx, res, err)
	}
	return err
}

// failOnLimit holds, in place of the result of step idx that would have
// made the job break a store limit, a failed result without its output
// that names the limit, and skipped results for the steps after it. The
// context is left as it was last recorded: a set step's change may be what
// broke the limit. It returns the job's failure.
// fence refuses a write to j unless j is still running the attempt this
// run started.
func (p *progress) fence(j *job.Job) error {
	if j.Status != job.Running || j.Attempts != p.attempt {
		return fmt.Errorf("%w: job %s is %s at attempt %d, this run started attempt %d", errFenced, p.id, j.Status, j.Attempts, p.attempt)
	}
	return nil
}

func (p *progress) failOnLimit(idx int, res job.Result, limitErr error) *playbook.StepError {
	reason := limitReason(limitErr)
	res.Status, res.Output, res.Error = job.StepFailed, nil, reason
	p.held = []job.Result{res}
	p.heldCtx = nil
	if idx+1 < len(p.steps) {
		for _, st := range p.steps[idx+1:] {
			t := time.Now()
			p.held = append(p.held, job.Result{
				Step: st.Name, Action: st.Action, Status: job.StepSkipped,
				Error: fmt.Sprintf("not run because step %q failed", res.Step), StartedAt: t, CompletedAt: &t,
			})
		}
	}
	return &playbook.StepError{Step: res.Step, Index: idx, Err: errors.New(reason)}
}

// limitReason is what a step result and the job's error say of a broken
// limit: the limit's own message, which names it.
func limitReason(err error) string {
	var le *job.LimitError
	if errors.As(err, &le) {
		return "result not recorded: " + le.Error()
	}
	return "result not recorded: " + err.Error()
}

// finish records the end of the job with the results held back for it,
// then reports it. When that end would break a store limit (the last
// step's output, or a set step's context, is too large or too deeply
// nested), the step is recorded failed instead, naming the limit; should
// even that not fit, the job ends failed without the held results.
func (s *Server) finish(p *progress, status job.Status, msg string, runErr error) {
	end := func(status job.Status, msg string, held []job.Result, heldCtx map[string]any) (*job.Job, error) {
		return s.durably(s.jobsCtx, "record the end of a job", p.id, func() (*job.Job, error) {
			return s.jobs.UpdateWith(p.id, func(j *job.Job) error {
				if err := p.fence(j); err != nil {
					return err
				}
				if err := j.Finish(status, msg, time.Now()); err != nil {
					return err
				}
				j.Results = append(j.Results, held...)
				if heldCtx != nil {
					j.Context = heldCtx
				}
				return nil
			}, s.jobEvents(""))
		})
	}
	final, err := end(status, msg, p.held, p.heldCtx)
	if errors.Is(err, job.ErrLimit) && len(p.held) > 0 {
		se := p.failOnLimit(p.recorded-len(p.held), p.held[0], err)
		status, msg, runErr = job.Failed, se.Error(), se
		final, err = end(status, msg, p.held, nil)
	}
	if errors.Is(err, job.ErrLimit) {
		status, msg = job.Failed, "job end not recorded as it was: "+limitReason(err)
		final, err = end(status, msg, nil, nil)
	}
	if errors.Is(err, errFenced) {
		// Recorded elsewhere first (a cancel through another node, or a
		// recovery after this node was taken for dead): that stands.
		s.log.Warn("job was ended elsewhere while this node ran it; this run's end is dropped", "job_id", p.id, "attempt", p.attempt)
		if cur, gerr := s.st.Get(p.id); gerr == nil && cur.Status.Terminal() {
			s.answerWaiters(cur)
		}
		return
	}
	if err != nil {
		// The job stays running in the store; the next start's recovery
		// fails it, which is the truth: its end was not recorded.
		s.log.Error("cannot record the end of a job", "job_id", p.id, "status", string(status), "error", err)
		return
	}
	// The error text is not logged: it is rendered from templates and may
	// quote the job's context (a URL with a key in it, say).
	var se *playbook.StepError
	if status == job.Failed && errors.As(runErr, &se) {
		s.log.Info("job failed", "job_id", p.id, "step", se.Step)
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
		if errors.Is(cause, errEndedElsewhere) {
			return job.Failed, errEndedElsewhere.Error()
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
	s.ended.add(j)
	s.answerWaiters(j)
	s.hooks.Notify()
}

// answerWaiters hands j, which has ended, to the POST /playbook clients
// waiting for it.
func (s *Server) answerWaiters(j *job.Job) {
	s.mu.Lock()
	ws := s.waiters[j.ID]
	delete(s.waiters, j.ID)
	s.mu.Unlock()
	for _, w := range ws {
		w <- j
	}
}
