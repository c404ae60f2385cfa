package playbook

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/secauto/secauto/pkg/job"
)

// Defaults of the submission limits of zero ValidateOptions.
const (
	// DefaultMaxSteps caps the steps of one playbook. Playbooks are
	// written by people; hundreds of steps is a loop in whatever generated
	// it, and every step costs a result in the stored job.
	DefaultMaxSteps = 200
	// DefaultMaxTemplateBytes caps one templated string: far more than a
	// message or a request body template needs, little enough to parse
	// and check at once.
	DefaultMaxTemplateBytes = 64 << 10
	// DefaultMaxContextBytes caps a submitted context, encoded as JSON.
	DefaultMaxContextBytes = 1 << 20
)

// Names of the submission limits, as their errors name them.
const (
	LimitSteps         = "steps per playbook"
	LimitTemplateBytes = "template bytes"
	LimitContextBytes  = "context bytes"
)

// ValidateOptions are the limits a submission must keep besides being a
// well-formed playbook. The zero value applies the defaults; a negative
// field turns that limit off.
type ValidateOptions struct {
	// MaxSteps caps the steps of a playbook. Zero means DefaultMaxSteps.
	MaxSteps int
	// MaxTemplateBytes caps the length of each templated string param
	// (strings nested in set values and http bodies included). Plain
	// strings without {{ are not templates and are not counted. Zero means
	// DefaultMaxTemplateBytes.
	MaxTemplateBytes int
	// MaxContextBytes caps the submitted context, encoded as JSON. Zero
	// means DefaultMaxContextBytes.
	MaxContextBytes int
}

func limit(v, def int) int {
	switch {
	case v > 0:
		return v
	case v < 0:
		return 0
	}
	return def
}

// Validate checks a submitted playbook with the default limits; see
// ValidateOptions.Validate.
func Validate(steps []job.Step) error {
	return ValidateOptions{}.Validate(steps)
}

// Validate checks a submitted playbook before it is accepted: at least one
// step and at most MaxSteps; every step with a non-empty name unique within
// the playbook and a known action; params of the right types for that
// action (only the params the action knows); string params that parse as
// templates, no longer than MaxTemplateBytes, and refer only to earlier
// steps; a step timeout that parses as a positive duration.
//
// The error describes the first problem and names the step by name and
// 1-based position, e.g. `step "enrich" (2): unknown action "foo"; use one of
// log, sleep, set, http, fail`. A broken limit is a *job.LimitError naming
// it (LimitSteps, LimitTemplateBytes). Any error means the playbook is bad
// input.
func (o ValidateOptions) Validate(steps []job.Step) error {
	if len(steps) == 0 {
		return errors.New("playbook has no steps; give at least one")
	}
	if n := limit(o.MaxSteps, DefaultMaxSteps); n > 0 && len(steps) > n {
		return &job.LimitError{Limit: LimitSteps, Max: int64(n), Got: int64(len(steps))}
	}
	maxTemplate := limit(o.MaxTemplateBytes, DefaultMaxTemplateBytes)
	seen := make(map[string]int, len(steps))
	for i, s := range steps {
		pos := i + 1
		if strings.TrimSpace(s.Name) == "" {
			return fmt.Errorf("step %d: name is missing; give every step a unique name", pos)
		}
		if first, dup := seen[s.Name]; dup {
			return fmt.Errorf("step %q (%d): name is already used by step %d; step names must be unique", s.Name, pos, first)
		}
		if err := validateStep(s, seen, maxTemplate); err != nil {
			return fmt.Errorf("step %q (%d): %w", s.Name, pos, err)
		}
		seen[s.Name] = pos
	}
	return nil
}

// ValidateContext checks a submitted context: at most MaxContextBytes
// encoded, and a value the store can keep (nesting depth, numbers). A
// broken limit is a *job.LimitError naming it (LimitContextBytes).
func (o ValidateOptions) ValidateContext(c map[string]any) error {
	if c == nil {
		return nil
	}
	err := job.CheckValue(c, LimitContextBytes, limit(o.MaxContextBytes, DefaultMaxContextBytes))
	if le := (*job.LimitError)(nil); err != nil && !(errors.As(err, &le) && le.Limit == LimitContextBytes) {
		return fmt.Errorf("context: %w", err) // the other limits do not say what they were checking
	}
	return err
}

// validateStep checks one step; earlier holds the names of the steps before
// it, maxTemplate the longest template allowed (0: any).
func validateStep(s job.Step, earlier map[string]int, maxTemplate int) error {
	act, ok := actions[s.Action]
	if !ok {
		if s.Action == "" {
			return fmt.Errorf("action is missing; use one of %s", strings.Join(actionNames, ", "))
		}
		return fmt.Errorf("unknown action %q; use one of %s", s.Action, strings.Join(actionNames, ", "))
	}
	if s.Timeout != "" {
		if _, err := parseDuration("timeout", s.Timeout); err != nil {
			return err
		}
	}
	if act.params != nil {
		for _, k := range sortedKeys(s.Params) {
			if !slices.Contains(act.params, k) {
				return fmt.Errorf("unknown param %q for action %s; it takes %s", k, s.Action, strings.Join(act.params, ", "))
			}
		}
	}
	if err := act.check(s.Params); err != nil {
		return err
	}
	for _, name := range act.templated(s.Params) {
		if err := checkTemplates("params."+name, s.Params[name], earlier, maxTemplate); err != nil {
			return err
		}
	}
	return nil
}
