package playbook

import (
	"context"
	"errors"
	"fmt"
	"text/template"
	"time"
)

// Defaults of the rendering bounds of a zero Runner.
const (
	// DefaultMaxRenderBytes caps the text one templated value renders to.
	// It matches the largest http body a step reads by default: a value
	// longer than that is a template gone wrong, not a message.
	DefaultMaxRenderBytes = 1 << 20
	// DefaultRenderTimeout bounds the rendering of one step's params when
	// the step has no shorter timeout, so that a template without output
	// (a range over a billion) cannot hold a worker until someone notices.
	DefaultRenderTimeout = 10 * time.Second
)

// renderKey is the key under which exec hands a step's render bounds to its
// action inside the template data. Actions pass the data on to renderString
// and renderValue unchanged, so every render of a step is bounded without
// each action knowing how; renderString takes the key out again before a
// template sees the data.
const renderKey = "\x00render"

// renderEnv holds the bounds of the rendering of one step.
type renderEnv struct {
	// parent is the job's context: a cancel or shutdown ends it.
	parent context.Context
	// step is parent bounded by the step's timeout, of stepTimeout.
	step        context.Context
	stepTimeout time.Duration
	// deadline ends the step's rendering after renderTimeout. It is a
	// time rather than a context so that a step without templates costs
	// no timer.
	deadline      time.Time
	renderTimeout time.Duration
	maxBytes      int
}

// unbounded serves renders made outside a step (none in a run): only the
// byte budget applies.
var unbounded = &renderEnv{parent: context.Background(), step: context.Background(), maxBytes: DefaultMaxRenderBytes}

// renderEnv returns the bounds of a step running under step, a child of
// parent limited by the step's timeout (zero when it has none).
func (r *Runner) renderEnv(parent, step context.Context, timeout time.Duration) *renderEnv {
	d := r.renderTimeout()
	return &renderEnv{parent: parent, step: step, stepTimeout: timeout,
		deadline: time.Now().Add(d), renderTimeout: d, maxBytes: r.maxRenderBytes()}
}

func (r *Runner) maxRenderBytes() int {
	if r.MaxRenderBytes > 0 {
		return r.MaxRenderBytes
	}
	return DefaultMaxRenderBytes
}

func (r *Runner) renderTimeout() time.Duration {
	if r.RenderTimeout > 0 {
		return r.RenderTimeout
	}
	return DefaultRenderTimeout
}

// withRender returns data with env added for the action to pass on.
func withRender(data map[string]any, env *renderEnv) map[string]any {
	out := make(map[string]any, len(data)+1)
	for k, v := range data {
		out[k] = v
	}
	out[renderKey] = env
	return out
}

// splitRender returns the bounds data carries and the data a template sees.
func splitRender(data map[string]any) (*renderEnv, map[string]any) {
	env, ok := data[renderKey].(*renderEnv)
	if !ok {
		return unbounded, data
	}
	view := make(map[string]any, len(data)-1)
	for k, v := range data {
		if k != renderKey {
			view[k] = v
		}
	}
	return env, view
}

// renderError is a render stopped by one of its bounds. Its text is the
// step's error, so it says which bound and which param.
type renderError struct {
	msg string
	// cancelled is set when the job itself was stopped (a cancel, a
	// shutdown), not the step.
	cancelled bool
}

func (e *renderError) Error() string { return e.msg }

// stopped says which bound ended the render of param.
func (e *renderEnv) stopped(param string) *renderError {
	switch {
	case e.parent.Err() != nil:
		return &renderError{msg: "cancelled while rendering " + param, cancelled: true}
	case e.step.Err() != nil:
		return &renderError{msg: fmt.Sprintf("step timeout of %s reached while rendering %s", e.stepTimeout, param)}
	}
	return &renderError{msg: fmt.Sprintf("render time limit of %s reached in %s", e.renderTimeout, param)}
}

func (e *renderEnv) overBudget(param string) *renderError {
	return &renderError{msg: fmt.Sprintf("template output budget of %d bytes exceeded in %s", e.maxBytes, param)}
}

// check is called at every write and function call of a render.
func (e *renderEnv) check(param string) error {
	if e.step.Err() != nil || (!e.deadline.IsZero() && time.Now().After(e.deadline)) {
		return e.stopped(param)
	}
	return nil
}

// execute renders t over view within e's bounds.
//
// text/template cannot be cancelled, but it stops at the first error its
// writer or a function returns. So the writer checks the context and the
// budget on every write; parseTemplate has put an empty write before every
// action and at the top of every loop body and template, so that work which
// writes nothing is checked as often; and the functions that build strings
// are replaced by ones that check the budget before they allocate.
func (e *renderEnv) execute(t *template.Template, param string, view map[string]any) (string, error) {
	if err := e.check(param); err != nil {
		return "", err
	}
	// The clone shares the parsed trees; only the function table is new,
	// bound to this render's limits.
	tt, err := t.Clone()
	if err != nil {
		return "", err
	}
	tt.Funcs(e.funcs(param))
	w := &boundedWriter{env: e, param: param}
	if err := tt.Execute(w, view); err != nil {
		if re := (*renderError)(nil); errors.As(err, &re) {
			return "", re // the template's position would only bury the limit
		}
		return "", err
	}
	return string(w.buf), nil
}

// boundedWriter collects a render's output up to the budget.
type boundedWriter struct {
	env   *renderEnv
	param string
	buf   []byte
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if err := w.env.check(w.param); err != nil {
		return 0, err
	}
	if len(p) > w.env.maxBytes-len(w.buf) {
		return 0, w.env.overBudget(w.param)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}
