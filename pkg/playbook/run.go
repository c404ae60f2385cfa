package playbook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// Defaults of a zero Runner.
const (
	// DefaultMaxResponseBytes caps the response body an http step reads.
	DefaultMaxResponseBytes = 1 << 20
	// DefaultRequestTimeout bounds an http step that sets no timeout.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxValueBytes caps the encoded size of one step's output and
	// of the values one set step merges into the context. It leaves room
	// for several such steps in a job of the default jobs.max_job_bytes
	// (16 MiB), and for a full-size http body (1 MiB) even when escaping
	// makes its JSON several times longer.
	DefaultMaxValueBytes = 4 << 20
)

// Names of the limits a step's output or set values can break, as the
// failed step's error names them.
const (
	LimitOutputBytes = "step output bytes"
	LimitSetBytes    = "set value bytes"
)

// defaultClient keeps net/http's behaviour: up to 10 redirects, and
// Authorization and Cookie headers dropped when a redirect leaves the host.
// Timeouts come from each request's context, not from the client.
var defaultClient = &http.Client{}

// Runner runs playbooks. The zero value is usable, and one Runner may run
// many jobs at once: Run does not modify it.
type Runner struct {
	// Client sends the requests of http steps; nil means a client with
	// net/http's defaults.
	Client *http.Client
	// MaxResponseBytes caps the response body of an http step; a larger
	// body fails the step. Zero means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// DefaultHTTPTimeout bounds an http step that has no timeout param.
	// Zero means DefaultRequestTimeout.
	DefaultHTTPTimeout time.Duration
	// MaxValueBytes caps the encoded size of a step's output and of a set
	// step's values; a step that would produce more fails, naming the
	// limit. Zero means DefaultMaxValueBytes. The store still bounds the
	// whole job (jobs.max_job_bytes); this fails the step that produced
	// the excess, where it can be named, before the job is refused.
	MaxValueBytes int
	// MaxRenderBytes caps the text one templated value (a message, a URL,
	// each string of a set or of a body) renders to; a template that would
	// write more fails its step, naming the budget and the param. Zero
	// means DefaultMaxRenderBytes.
	MaxRenderBytes int
	// RenderTimeout bounds the time the rendering of one step's params may
	// take, counted from the step's start; the step's own timeout, a
	// cancel and a shutdown stop a render sooner. Zero means
	// DefaultRenderTimeout.
	RenderTimeout time.Duration
}

func (r *Runner) client() *http.Client {
	if r.Client != nil {
		return r.Client
	}
	return defaultClient
}

func (r *Runner) maxResponseBytes() int64 {
	if r.MaxResponseBytes > 0 {
		return r.MaxResponseBytes
	}
	return DefaultMaxResponseBytes
}

func (r *Runner) maxValueBytes() int {
	if r.MaxValueBytes > 0 {
		return r.MaxValueBytes
	}
	return DefaultMaxValueBytes
}

func (r *Runner) httpTimeout() time.Duration {
	if r.DefaultHTTPTimeout > 0 {
		return r.DefaultHTTPTimeout
	}
	return DefaultRequestTimeout
}

// StepError reports the step that failed a job.
type StepError struct {
	// Step is the failed step's name.
	Step string
	// Index is the step's zero-based position in the playbook.
	Index int
	// Err is what went wrong; its text is the step result's error.
	Err error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %q failed: %v", e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Run executes steps in order against a deep copy of jobCtx; the caller's
// map is never modified.
//
// After each step it calls record with that step's Result and the job
// context as it now stands (set steps merge into it). Run never modifies a
// map after passing it to record, so record may keep it; record must not
// modify it either. If record returns an error, Run stops at once and
// returns that error wrapped: the caller could not persist the result and
// must not run more steps as if it had.
//
// Run returns nil when every step succeeded or continued on error, and a
// *StepError naming the failed step when the job fails; the steps after it
// are recorded as skipped. When ctx is done, a sleeping or in-flight http
// step stops at once, its result is recorded with status failed and error
// "cancelled" ("cancelled while rendering params.X" when it stopped a
// render), and Run returns an error wrapping ctx.Err(). A step's timeout
// is not a cancellation: it fails the step like any other error, and
// continue_on_error applies.
//
// Run does not validate the playbook as a whole; a step Validate would
// refuse (an unknown action, bad params) fails when it is reached.
func (r *Runner) Run(ctx context.Context, steps []job.Step, jobCtx map[string]any,
	record func(res job.Result, jobCtx map[string]any) error) error {
	cur, _ := cloneValue(jobCtx).(map[string]any)
	if cur == nil {
		cur = map[string]any{}
	}
	views := map[string]any{}
	data := map[string]any{"context": templateView(cur), "steps": views}

	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("run stopped before step %q: %w", s.Name, interruption(ctx))
		}
		started := now()
		oc, err := r.bound(r.exec(ctx, s, data))
		res := job.Result{Step: s.Name, Action: s.Action, Status: job.StepOK, Output: oc.output, StartedAt: started}
		// A wall clock stepped back during the step must not record it
		// as ending before it started: the store would refuse the result.
		done := now()
		if done.Before(started) {
			done = started
		}
		res.CompletedAt = &done

		if err != nil && ctx.Err() != nil {
			res.Status, res.Output, res.Error = job.StepFailed, nil, "cancelled"
			if re := (*renderError)(nil); errors.As(err, &re) && re.cancelled {
				res.Error = re.msg // "cancelled while rendering params.url"
			}
			stop := fmt.Errorf("step %q interrupted: %w", s.Name, interruption(ctx))
			if rerr := record(res, cur); rerr != nil {
				return fmt.Errorf("%w; recording it failed too: %w", stop, rerr)
			}
			return stop
		}
		if err != nil {
			res.Status, res.Error = job.StepFailed, err.Error()
		} else if oc.set != nil {
			next := maps.Clone(cur)
			maps.Copy(next, oc.set)
			cur = next
			data = map[string]any{"context": templateView(cur), "steps": views}
		}
		views[s.Name] = templateView(oc.output)
		if rerr := record(res, cur); rerr != nil {
			return fmt.Errorf("record result of step %q: %w", s.Name, rerr)
		}
		if err != nil && !s.ContinueOnError {
			return r.skipRest(steps[i+1:], s.Name, cur, record, &StepError{Step: s.Name, Index: i, Err: err})
		}
	}
	return nil
}

// skipRest records the steps after a job-failing step as skipped and
// returns failure.
func (r *Runner) skipRest(rest []job.Step, failed string, cur map[string]any,
	record func(job.Result, map[string]any) error, failure *StepError) error {
	for _, s := range rest {
		t := now()
		res := job.Result{
			Step: s.Name, Action: s.Action, Status: job.StepSkipped,
			Error: fmt.Sprintf("not run because step %q failed", failed), StartedAt: t, CompletedAt: &t,
		}
		if err := record(res, cur); err != nil {
			return fmt.Errorf("record result of step %q: %w", s.Name, err)
		}
	}
	return failure
}

// bound fails a step whose output or set values the store could not keep
// (too large for MaxValueBytes, nested too deeply, a number beyond float64)
// and drops them, so the job records a failed step that names the limit
// instead of a change the store refuses or could not read back.
func (r *Runner) bound(oc outcome, err error) (outcome, error) {
	if oc.output != nil {
		if lerr := job.CheckValue(oc.output, LimitOutputBytes, r.maxValueBytes()); lerr != nil {
			oc.output = nil
			err = keptError(err, "step output not kept", lerr)
		}
	}
	if oc.set != nil {
		if lerr := job.CheckValue(oc.set, LimitSetBytes, r.maxValueBytes()); lerr != nil {
			oc.set = nil
			err = keptError(err, "values not set", lerr)
		}
	}
	return oc, err
}

// keptError adds what was dropped to the step's own error, if it had one.
func keptError(err error, what string, lerr error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", what, lerr)
	}
	return fmt.Errorf("%w; %s: %w", err, what, lerr)
}

// exec runs one step under its timeout. A timeout of the step's own
// deadline is reported as such; the parent's cancellation is left for Run
// to see. The action gets the step's render bounds inside data.
func (r *Runner) exec(parent context.Context, s job.Step, data map[string]any) (outcome, error) {
	act, ok := actions[s.Action]
	if !ok {
		return outcome{}, fmt.Errorf("unknown action %q", s.Action)
	}
	if err := act.check(s.Params); err != nil {
		return outcome{}, err
	}
	ctx, d := parent, time.Duration(0)
	if s.Timeout != "" {
		var err error
		if d, err = parseDuration("timeout", s.Timeout); err != nil {
			return outcome{}, err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(parent, d)
		defer cancel()
	}
	oc, err := act.run(ctx, r, s.Params, withRender(data, r.renderEnv(parent, ctx, d)))
	if re := (*renderError)(nil); errors.As(err, &re) {
		return oc, err // it already says which bound stopped it
	}
	if err != nil && s.Timeout != "" && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return oc, fmt.Errorf("step timed out after %s", d)
	}
	return oc, err
}

// interruption is ctx's error, with the cancellation cause attached when
// the canceller gave one (shutdown, user cancel), so callers can still match
// it with errors.Is(err, context.Canceled).
func interruption(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// cloneValue deep-copies the objects and arrays of a decoded JSON value.
func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

func now() time.Time { return time.Now().UTC() }
