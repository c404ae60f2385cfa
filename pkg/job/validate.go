package job

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalid matches every error of Validate, CheckInvariants and Decode
// that says a job breaks the job schema (as opposed to a *LimitError).
var ErrInvalid = errors.New("invalid job")

// invalidError is a broken rule of the job schema; its text names the field.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{fmt.Sprintf(format, args...)}
}

// Validate checks the invariants every stored job keeps, naming the field
// of the first one broken:
//
//   - those of CheckInvariants (id, status, times and their order);
//   - error is empty unless the job failed or was cancelled;
//   - on_interrupt is empty, "fail" or "retry"; max_attempts and attempts
//     are not negative;
//   - rerun_of, when set, and every id in reruns name another job, and
//     reruns names none twice;
//   - every playbook step has a name, and no two share one;
//   - every result names a step, no two name the same one, its status is
//     ok, failed or skipped, an ok result has no error, and its
//     completed_at, when set, is not before its started_at.
//
// The store calls it before it writes a job and Decode after it reads one,
// so a job that passes here reads back as the same job. It allocates
// nothing for a valid job of up to 16 steps: it runs on every change.
//
// A pending job may carry results (Requeue clears them, but the store does
// not insist) and results need not name a step of the playbook; neither
// would make the job unreadable.
func (j *Job) Validate() error {
	if err := CheckInvariants(j.ID, j.Status, j.CreatedAt, j.StartedAt, j.CompletedAt); err != nil {
		return err
	}
	if j.Error != "" && j.Status != Failed && j.Status != Cancelled {
		return invalid("error is set on a %s job; only failed and cancelled jobs have one", j.Status)
	}
	switch j.OnInterrupt {
	case "", OnInterruptFail, OnInterruptRetry:
	default:
		return invalid("on_interrupt %q is not %q or %q", j.OnInterrupt, OnInterruptFail, OnInterruptRetry)
	}
	if j.MaxAttempts < 0 {
		return invalid("max_attempts is negative (%d)", j.MaxAttempts)
	}
	if j.Attempts < 0 {
		return invalid("attempts is negative (%d)", j.Attempts)
	}
	if j.RerunOf == j.ID {
		return invalid("rerun_of names the job itself")
	}
	for i, id := range j.Reruns {
		if id == "" || id == j.ID {
			return invalid("reruns[%d] %q is not the id of another job", i, id)
		}
	}
	if i, k := duplicate(len(j.Reruns), func(k int) string { return j.Reruns[k] }); i >= 0 {
		return invalid("reruns[%d] %q is already reruns[%d]", i, j.Reruns[i], k)
	}
	for i := range j.Playbook {
		if j.Playbook[i].Name == "" {
			return invalid("playbook[%d].name is empty", i)
		}
	}
	if i, k := duplicate(len(j.Playbook), func(k int) string { return j.Playbook[k].Name }); i >= 0 {
		return invalid("playbook[%d].name %q is already the name of playbook[%d]", i, j.Playbook[i].Name, k)
	}
	for i := range j.Results {
		if err := j.Results[i].validate(i); err != nil {
			return err
		}
	}
	if i, k := duplicate(len(j.Results), func(k int) string { return j.Results[k].Step }); i >= 0 {
		return invalid("results[%d].step %q is already the step of results[%d]", i, j.Results[i].Step, k)
	}
	return nil
}

// duplicate returns the first i whose name(i) equals an earlier name(k),
// and that k; or -1, -1. Playbooks are short, so below 16 names a scan
// beats building a set on every change.
func duplicate(n int, name func(int) string) (int, int) {
	if n <= 16 {
		for i := 1; i < n; i++ {
			for k := range i {
				if name(k) == name(i) {
					return i, k
				}
			}
		}
		return -1, -1
	}
	seen := make(map[string]int, n)
	for i := range n {
		if k, ok := seen[name(i)]; ok {
			return i, k
		}
		seen[name(i)] = i
	}
	return -1, -1
}

func (r *Result) validate(i int) error {
	if r.Step == "" {
		return invalid("results[%d].step is empty", i)
	}
	switch r.Status {
	case StepOK:
		if r.Error != "" {
			return invalid("results[%d].error is set on an ok result", i)
		}
	case StepFailed, StepSkipped:
	default:
		return invalid("results[%d].status %q is not ok, failed or skipped", i, r.Status)
	}
	if r.StartedAt.IsZero() {
		return invalid("results[%d].started_at is missing", i)
	}
	if r.CompletedAt != nil && r.CompletedAt.Before(r.StartedAt) {
		return invalid("results[%d].completed_at %s is before its started_at %s", i, stamp(*r.CompletedAt), stamp(r.StartedAt))
	}
	return nil
}

// CheckInvariants is the part of Validate that reads only the id, status
// and times, for callers that decode only those fields: an id; a known
// status; created_at set; a pending job has neither started_at nor
// completed_at; a running job has started_at and no completed_at; a
// completed or failed job has both (it ran); a cancelled one has
// completed_at and started_at only if it was running; started_at is not
// before created_at, and completed_at not before started_at (or created_at
// when the job never started).
func CheckInvariants(id string, st Status, created time.Time, started, completed *time.Time) error {
	switch {
	case id == "":
		return invalid("job has no id")
	case !st.Valid():
		return invalid("unknown status %q", st)
	case created.IsZero():
		return invalid("created_at is missing")
	case st == Pending && started != nil:
		return invalid("pending job has a started_at")
	case st == Running && started == nil:
		return invalid("running job has no started_at")
	case (st == Completed || st == Failed) && started == nil:
		return invalid("%s job has no started_at", st)
	case st.Terminal() && completed == nil:
		return invalid("%s job has no completed_at", st)
	case completed != nil && !st.Terminal():
		return invalid("%s job has a completed_at", st)
	case started != nil && started.Before(created):
		return invalid("started_at %s is before created_at %s", stamp(*started), stamp(created))
	case completed != nil && started != nil && completed.Before(*started):
		return invalid("completed_at %s is before started_at %s", stamp(*completed), stamp(*started))
	case completed != nil && completed.Before(created):
		return invalid("completed_at %s is before created_at %s", stamp(*completed), stamp(created))
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
