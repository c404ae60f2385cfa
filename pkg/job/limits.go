package job

import (
	"errors"
	"fmt"
)

// ErrLimit matches every *LimitError.
var ErrLimit = errors.New("job exceeds a limit")

// LimitError says which limit a job (or a part of one) broke. A job is
// refused when it is made, never stored and found unreadable later.
type LimitError struct {
	// Limit names the limit, as an operator would look it up: for example
	// "jobs.max_job_bytes" or "JSON nesting depth".
	Limit string
	Max   int64
	Got   int64
	// Detail, when set, replaces the figures in the message, for limits
	// that are a rule rather than a number (valid UTF-8).
	Detail string
}

func (e *LimitError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: %s", e.Limit, e.Detail)
	}
	return fmt.Sprintf("%s exceeded: %d, at most %d allowed", e.Limit, e.Got, e.Max)
}

func (e *LimitError) Is(target error) bool { return target == ErrLimit }
