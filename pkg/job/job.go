// Package job owns the Job record of secauto: its JSON form (the format of
// jobs.json, unchanged since the first release), its states and the
// transitions between them. It does no I/O.
package job

import (
	"errors"
	"fmt"
	"time"
)

// Status is the lifecycle state of a job.
type Status string

// The states a job moves through. Pending and Running are live; the other
// three are terminal and never change again.
const (
	Pending   Status = "pending"
	Running   Status = "running"
	Completed Status = "completed"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
)

// Statuses lists every valid status, live ones first.
var Statuses = []Status{Pending, Running, Completed, Failed, Cancelled}

// Valid reports whether s is one of the five known states.
func (s Status) Valid() bool {
	switch s {
	case Pending, Running, Completed, Failed, Cancelled:
		return true
	}
	return false
}

// Terminal reports whether s is a final state.
func (s Status) Terminal() bool {
	return s == Completed || s == Failed || s == Cancelled
}

// ParseStatus returns the status named by s, or an error listing the valid ones.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown status %q; use one of pending, running, completed, failed, cancelled", s)
	}
	return st, nil
}

// Interrupt policies: what recovery does with a job that was running when
// the server died. SOAR actions are rarely idempotent, so failing is the
// default.
const (
	OnInterruptFail  = "fail"
	OnInterruptRetry = "retry"
)

// DefaultMaxAttempts bounds how often a job with on_interrupt "retry" is
// started, so a playbook that crashes the server cannot loop forever.
const DefaultMaxAttempts = 3

// Step is one playbook step as submitted.
type Step struct {
	Name            string         `json:"name"`
	Action          string         `json:"action"`
	Params          map[string]any `json:"params,omitempty"`
	Timeout         string         `json:"timeout,omitempty"`
	ContinueOnError bool           `json:"continue_on_error,omitempty"`
}

// Result statuses of a step.
const (
	StepOK      = "ok"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// Result records one executed step.
type Result struct {
	Step        string     `json:"step"`
	Action      string     `json:"action"`
	Status      string     `json:"status"`
	Output      any        `json:"output"`
	Error       string     `json:"error"`
	StartedAt   time.Time  `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

// Job is one playbook run. Its JSON form is the value stored under the job's
// id in jobs.json.
type Job struct {
	ID          string         `json:"id"`
	Status      Status         `json:"status"`
	Playbook    []Step         `json:"playbook"`
	Context     map[string]any `json:"context"`
	Results     []Result       `json:"results"`
	Error       string         `json:"error"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	CompletedAt *time.Time     `json:"completed_at,omitempty"`

	// OnInterrupt is "fail" (the default when empty) or "retry".
	OnInterrupt string `json:"on_interrupt,omitempty"`
	// MaxAttempts caps the starts of a job with OnInterrupt "retry";
	// zero means DefaultMaxAttempts.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Attempts counts how often the job has been started.
	Attempts int `json:"attempts,omitempty"`
	// SubmittedContext is the context as submitted, kept from the first
	// start on because set steps change Context: a retried attempt and a
	// rerun must begin from what the operator sent, not from what an
	// interrupted attempt left. Nil for a job that never started (its
	// Context is still the submitted one) and for jobs of earlier
	// releases; an empty submitted context is kept as an empty map.
	SubmittedContext map[string]any `json:"submitted_context,omitzero"`

	// RerunOf is the id of the job this one was started from by a rerun
	// (the same playbook and submitted context); empty for a job that was
	// submitted. Reruns lists, oldest first, the ids of the jobs started
	// from this one. The two are written in the same durable change, so
	// the link is never one-sided. Jobs of earlier releases have neither.
	RerunOf string   `json:"rerun_of,omitempty"`
	Reruns  []string `json:"reruns,omitempty"`
}

// ErrTransition is returned for a state change the lifecycle forbids.
var ErrTransition = errors.New("invalid job transition")

// CanTransition reports whether a job may move from one status to another:
// pending → running → completed | failed | cancelled, and pending → cancelled.
// Recovery's running → pending (retry) is allowed too.
func CanTransition(from, to Status) bool {
	switch from {
	case Pending:
		return to == Running || to == Cancelled
	case Running:
		return to == Completed || to == Failed || to == Cancelled || to == Pending
	}
	return false
}

// Start moves a pending job to running and counts the attempt. The first
// start keeps a copy of the context as SubmittedContext, in the same write
// that marks the job running, so it is durable before any step changes the
// context.
func (j *Job) Start(now time.Time) error {
	if err := j.check(Running); err != nil {
		return err
	}
	if j.SubmittedContext == nil && j.Attempts == 0 {
		// Only before the first attempt is Context surely the submitted
		// one; a job of an earlier release that already ran keeps none.
		j.SubmittedContext = cloneMap(j.Context)
		if j.SubmittedContext == nil {
			j.SubmittedContext = map[string]any{}
		}
	}
	// A wall clock stepped back between creation and start must not write
	// a history that runs backwards, which Validate would then refuse.
	t := later(now.UTC(), j.CreatedAt)
	j.Status = Running
	j.StartedAt = &t
	j.Attempts++
	return nil
}

// Finish moves a running (or, for Cancelled, pending) job to a terminal
// status. errMsg is kept for failed and cancelled jobs.
func (j *Job) Finish(to Status, errMsg string, now time.Time) error {
	if !to.Terminal() {
		return fmt.Errorf("%w: %s is not a terminal status", ErrTransition, to)
	}
	if err := j.check(to); err != nil {
		return err
	}
	t := later(now.UTC(), j.CreatedAt)
	if j.StartedAt != nil {
		t = later(t, *j.StartedAt)
	}
	j.Status = to
	j.CompletedAt = &t
	if to == Completed {
		j.Error = ""
	} else {
		j.Error = errMsg
	}
	return nil
}

// Requeue moves a running job back to pending, as recovery does for jobs
// submitted with on_interrupt "retry". The attempt counter is kept. The
// context goes back to the submitted one and the results are cleared: the
// next attempt runs the playbook from its first step, so what the
// interrupted attempt's set steps wrote must not leak into it.
func (j *Job) Requeue() error {
	if err := j.check(Pending); err != nil {
		return err
	}
	j.Status = Pending
	j.StartedAt = nil
	j.Results = nil
	j.Error = ""
	if j.SubmittedContext != nil {
		j.Context = cloneMap(j.SubmittedContext)
	}
	return nil
}

// OriginalContext returns a copy of the context the job was submitted
// with: SubmittedContext once the job has started, else its Context, which
// nothing has changed yet. A job of an earlier release that ran has no
// record of it; its current context is the best there is.
func (j *Job) OriginalContext() map[string]any {
	if j.SubmittedContext != nil {
		return cloneMap(j.SubmittedContext)
	}
	c := cloneMap(j.Context)
	if c == nil {
		c = map[string]any{}
	}
	return c
}

// AttemptsLeft reports whether a retry-on-interrupt job may be started again.
func (j *Job) AttemptsLeft() bool {
	max := j.MaxAttempts
	if max <= 0 {
		max = DefaultMaxAttempts
	}
	return j.Attempts < max
}

func (j *Job) check(to Status) error {
	if !CanTransition(j.Status, to) {
		return fmt.Errorf("%w: job %s is %s and cannot become %s", ErrTransition, j.ID, j.Status, to)
	}
	return nil
}

// later returns the later of t and floor, in t's location.
func later(t, floor time.Time) time.Time {
	if t.Before(floor) {
		return floor.In(t.Location())
	}
	return t
}
