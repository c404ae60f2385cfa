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
// A key that may be absent is marked optional: {{optional .context.ticket}}
// renders the value, or nothing when the key (or any key on the way to it)
// is missing or null, and {{default "none" .context.ticket}}, also written
// {{.context.ticket | default "none"}}, renders "none" then, and when the
// value is the empty string; 0 and false are values and are kept. Both work
// on .steps too: {{optional .steps.lookup.body.id}} is empty when lookup
// failed and continued on error. Only the references given to optional and
// default (default's last argument) are optional; everywhere else a missing
// key still fails the step.
//
// # Bounds
//
// Rendering is bounded. Each templated value renders to at most
// Runner.MaxRenderBytes (1 MiB by default); the rendering of a step's params
// stops at the step's timeout, at Runner.RenderTimeout (10 s by default)
// after the step started, and at once when the job is cancelled or the
// daemon shuts down. The step then fails with the bound named:
// "template output budget of 1048576 bytes exceeded in params.message",
// "step timeout of 5s reached while rendering params.url", "render time
// limit of 10s reached in params.body", "cancelled while rendering
// params.message". The functions that build strings (print, printf,
// println, html, js, urlquery, json) fail the same way before building a
// string over the budget, even one that is never written. A template may
// not call itself through {{template}}: it is refused when parsed.
//
// At submission, ValidateOptions bound a playbook's steps (200), each
// template's length (64 KiB) and the context (1 MiB encoded).
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
// interrupted step is recorded as failed with error "cancelled" (or
// "cancelled while rendering params.X") and nothing is recorded for the
// steps after it.
package playbook

import (
	"encoding/json"
	"fmt"
	"time"
)

// actionNames lists the built-in actions in the order error messages name them.
var actionNames = []string{"log", "sleep", "set", "http", "fail"}

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
