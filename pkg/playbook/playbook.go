// Package playbook owns the steps of a secauto playbook: the built-in actions
// (log, sleep, set, http, fail), the checks a playbook passes before it is
// accepted, the templates its string parameters are written in, and the
// Runner that executes the steps of one job in order.
//
// # Templates
//
// String parameters are text/template templates over two maps:
// {{.context.KEY}} is the job context (including what earlier set steps
// added) and {{.steps.NAME.FIELD}} is the output of an earlier step, for
// example {{.steps.fetch.body.ip}} or {{.steps.fetch.status}}. Names that are
// not identifiers are reached with index: {{index .steps "geo-ip" "body"}}.
//
// A key that does not exist is an error naming the expression (for example
// `map has no entry for key "host"` at <.context.host>), never the text
// "<no value>": a request sent to a half-rendered URL does more harm than a
// step that fails and says why. A JSON null renders as the empty string, and
// whole numbers render without an exponent (1000000, not 1e+06). The
// function json renders any value as JSON, for embedding an earlier step's
// body: {{json .steps.fetch.body}}.
//
// Templated parameters are log and fail "message", every string inside set's
// values, and http "url", "headers" values and "body" (strings inside an
// object or array body included). Durations, the HTTP method and
// allow_status are literal, so that a typo in them is caught when the
// playbook is submitted instead of halfway through a run. References to
// .steps.NAME are checked at submission too: NAME must be an earlier step.
//
// # Outputs
//
// log: {"message": M}. sleep: {"duration": D}. set: {"keys": [sorted keys]}.
// http: {"status": N, "headers": {Canonical-Name: "v1, v2"}, "body": B},
// where B is the decoded JSON when the response says it is JSON and parses,
// else the text; read a header with {{index .steps.fetch.headers "X-Name"}}.
// An http step that got a disallowed status still has this output. fail has
// none; its rendered message is the step's error.
//
// Every output and every set step's values must fit in the job the store
// keeps: at most Runner.MaxValueBytes encoded, nested at most
// job.MaxValueDepth deep, numbers within float64 range. A step that would
// produce more fails, its error naming the limit, and what it produced is
// dropped (a set changes nothing). An http body that is JSON nested too
// deeply fails the step the same way, keeping status and headers: as text
// it would mislead the steps that read it as an object.
//
// # Failure
//
// The job fails at the first failed step unless that step has
// continue_on_error. Steps after a job-failing step do not run; each is
// recorded with status "skipped", so the results list every step of the
// playbook and say why the rest did nothing. When the run is cancelled, the
// interrupted step is recorded as failed with error "cancelled" and nothing
// is recorded for the steps after it.
package playbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// actionNames lists the built-in actions in the order error messages name them.
var actionNames = []string{"log", "sleep", "set", "http", "fail"}

// Validate checks a submitted playbook before it is accepted: at least one
// step; every step with a non-empty name unique within the playbook and a
// known action; params of the right types for that action (only the params
// the action knows); string params that parse as templates and refer only to
// earlier steps; a step timeout that parses as a positive duration.
//
// The error describes the first problem and names the step by name and
// 1-based position, e.g. `step "enrich" (2): unknown action "foo"; use one of
// log, sleep, set, http, fail`. Any error means the playbook is bad input.
func Validate(steps []job.Step) error {
	if len(steps) == 0 {
		return errors.New("playbook has no steps; give at least one")
	}
	seen := make(map[string]int, len(steps))
	for i, s := range steps {
		pos := i + 1
		if strings.TrimSpace(s.Name) == "" {
			return fmt.Errorf("step %d: name is missing; give every step a unique name", pos)
		}
		if first, dup := seen[s.Name]; dup {
			return fmt.Errorf("step %q (%d): name is already used by step %d; step names must be unique", s.Name, pos, first)
		}
		if err := validateStep(s, seen); err != nil {
			return fmt.Errorf("step %q (%d): %w", s.Name, pos, err)
		}
		seen[s.Name] = pos
	}
	return nil
}

// validateStep checks one step; earlier holds the names of the steps before it.
func validateStep(s job.Step, earlier map[string]int) error {
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
		if err := checkTemplates("params."+name, s.Params[name], earlier); err != nil {
			return err
		}
	}
	return nil
}

// parseDuration reads a literal duration param; zero and negative values are
// refused because they would make a step time out before it starts.
func parseDuration(name string, v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("%s must be a duration string like \"30s\", not %s", name, typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a duration; write it like \"30s\" or \"1m30s\"", name, s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s %q must be positive", name, s)
	}
	return d, nil
}

// typeName names a decoded JSON value's type the way a playbook author sees it.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}
