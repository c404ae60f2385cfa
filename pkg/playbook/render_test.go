package playbook

import (
	"context"
	"errors"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// bomb is 47 bytes and renders 40,000,000: four million lines of ten.
const bomb = `{{range 4000000 }}{{printf "%09d\n" . }}{{end}}`

// spin writes nothing and would run for days.
const spin = `{{range 1000000000000}}{{end}}`

func logStep(name, msg string) job.Step {
	return job.Step{Name: name, Action: "log", Params: map[string]any{"message": msg}}
}

func TestBombFailsOnTheBudget(t *testing.T) {
	if len(bomb) != 47 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	var rc *recorder
	var err error
	start := time.Now()
	peak := peakHeap(t, func() {
		rc, err = runSteps(t, context.Background(), &Runner{}, []job.Step{logStep("boom", bomb)}, nil, &recorder{t: t})
	})
	took := time.Since(start)

	var se *StepError
	if !errors.As(err, &se) || se.Step != "boom" {
		t.Fatalf("Run = %v, want step boom to fail", err)
	}
	want := "template output budget of 1048576 bytes exceeded in params.message"
	if res := rc.results[0]; res.Status != job.StepFailed || res.Error != want {
		t.Fatalf("result %q %q, want failed with %q", res.Status, res.Error, want)
	}
	// The budget is 1 MiB; the heap grows by a small multiple of it, not
	// by the 40 MB the template asks for.
	if peak > 16<<20 {
		t.Errorf("the heap grew by %d bytes while rendering", peak)
	}
	t.Logf("failed after %s; the heap grew by at most %d bytes", took, peak)
}

// peakHeap runs f and returns by how much the heap's live and unswept
// objects grew at most meanwhile, sampled every millisecond.
func peakHeap(t *testing.T, f func()) uint64 {
	t.Helper()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if n := read(); n > base && n-base > peak {
				peak = n - base
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	return <-done
}

func TestBudgetIsConfigurable(t *testing.T) {
	r := &Runner{MaxRenderBytes: 100}
	steps := []job.Step{
		logStep("fits", strings.Repeat("x", 99)+"{{/* */}}y"),
		{Name: "over", Action: "set", Params: map[string]any{"k": map[string]any{"deep": "{{range 101}}x{{end}}"}}, ContinueOnError: true},
		logStep("after", "ok"),
	}
	rc, err := runSteps(t, context.Background(), r, steps, nil, &recorder{t: t})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := rc.results[1].Error; got != "template output budget of 100 bytes exceeded in params.k.deep" {
		t.Fatalf("over: %q", got)
	}
	if rc.results[0].Status != job.StepOK || rc.results[2].Status != job.StepOK {
		t.Fatalf("statuses %v", rc.statuses())
	}
}

// Functions that build strings are bounded before they allocate, so a
// template that doubles a variable without writing it cannot exhaust memory.
func TestFunctionsKeepTheBudget(t *testing.T) {
	big := strings.Repeat("<", 600)
	for _, tpl := range []string{
		`{{$a := printf "%0999999d" 0}}{{range 40}}{{$a = print $a $a}}{{end}}`,
		`{{$a := .context.big}}{{range 40}}{{$a = printf "%s%s" $a $a}}{{end}}`,
		`{{$a := .context.big}}{{range 40}}{{$a = println $a $a}}{{end}}`,
		`{{$a := .context.big}}{{range 40}}{{$a = html $a $a}}{{end}}`,
		`{{$a := .context.big}}{{range 40}}{{$a = js $a}}{{end}}`,
		`{{$a := .context.big}}{{range 40}}{{$a = urlquery $a}}{{end}}`,
		`{{$a := .context}}{{range 40}}{{$a = json (slice (print $a $a) 0)}}{{end}}`,
		`{{printf "%*d" 1000000 0}}`,
		`{{printf "%.999999f" 1.5}}`,
	} {
		r := &Runner{MaxRenderBytes: 1000}
		rc, err := runSteps(t, context.Background(), r, []job.Step{logStep("s", tpl)}, map[string]any{"big": big}, &recorder{t: t})
		if err == nil || !strings.Contains(rc.results[0].Error, "template output budget of 1000 bytes exceeded in params.message") {
			t.Errorf("%s: Run = %v, result %q", tpl, err, rc.results[0].Error)
		}
	}
}

// stopsRender runs a step rendering spin, calls stop once it is rendering,
// and returns the result and how long Run took after stop.
func stopsRender(t *testing.T, ctx context.Context, r *Runner, step job.Step, stop func()) (*recorder, error, time.Duration) {
	t.Helper()
	rc := &recorder{t: t}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, []job.Step{step, logStep("after", "ran")}, nil, rc.record) }()
	time.Sleep(50 * time.Millisecond)
	stopped := time.Now()
	stop()
	select {
	case err := <-done:
		return rc, err, time.Since(stopped)
	case <-time.After(guard):
		t.Fatalf("Run did not return within %s of the stop", guard)
		return nil, nil, 0
	}
}

func TestCancelStopsRender(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cause error
	}{
		{"cancel", errors.New("cancelled by request")},
		{"shutdown", errors.New("server shutting down")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			rc, err, took := stopsRender(t, ctx, &Runner{}, logStep("spin", spin), func() { cancel(tt.cause) })
			if !errors.Is(err, context.Canceled) || !errors.Is(err, tt.cause) {
				t.Fatalf("Run = %v, want the cancellation and its cause", err)
			}
			if len(rc.results) != 1 || rc.results[0].Error != "cancelled while rendering params.message" {
				t.Fatalf("results %+v", rc.results)
			}
			if took > 100*time.Millisecond {
				t.Errorf("render stopped %s after the cancel", took)
			}
			t.Logf("stopped %s after the cancel", took)
		})
	}
}

func TestStepTimeoutStopsRender(t *testing.T) {
	step := logStep("spin", spin)
	step.Timeout, step.ContinueOnError = "100ms", true
	start := time.Now()
	rc, err := runSteps(t, context.Background(), &Runner{}, []job.Step{step, logStep("after", "ran")}, nil, &recorder{t: t})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := rc.results[0].Error; got != "step timeout of 100ms reached while rendering params.message" {
		t.Fatalf("spin: %q", got)
	}
	if rc.results[1].Status != job.StepOK {
		t.Fatalf("continue_on_error ignored: %v", rc.statuses())
	}
	if took > 200*time.Millisecond {
		t.Errorf("a 100ms timeout stopped the render after %s", took)
	}
}

func TestRenderTimeoutStopsRender(t *testing.T) {
	r := &Runner{RenderTimeout: 50 * time.Millisecond}
	// Rendering that writes without end is stopped by time before the
	// budget when the budget is large.
	for _, tpl := range []string{spin, `{{range 1000000000000}}{{if eq . 0}}x{{end}}{{end}}`} {
		rc, err := runSteps(t, context.Background(), r, []job.Step{logStep("spin", tpl)}, nil, &recorder{t: t})
		if err == nil || rc.results[0].Error != "render time limit of 50ms reached in params.message" {
			t.Fatalf("%s: Run = %v, result %q", tpl, err, rc.results[0].Error)
		}
	}
	// The limit is per step: a step with a shorter timeout is named by it.
	step := logStep("spin", spin)
	step.Timeout = "20ms"
	rc, _ := runSteps(t, context.Background(), r, []job.Step{step}, nil, &recorder{t: t})
	if got := rc.results[0].Error; got != "step timeout of 20ms reached while rendering params.message" {
		t.Fatalf("step timeout under a render limit: %q", got)
	}
}

func TestRecursiveTemplatesAreRefused(t *testing.T) {
	for _, tpl := range []string{
		`{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`,
		`{{define "a"}}{{template "b"}}{{end}}{{define "b"}}{{if 1}}{{template "a"}}{{end}}{{end}}x`,
		`{{block "a" .}}{{range .}}{{template "a" .}}{{end}}{{end}}`,
	} {
		err := Validate([]job.Step{logStep("r", tpl)})
		if err == nil || !strings.Contains(err.Error(), "calls itself") || !strings.Contains(err.Error(), "params.message") {
			t.Errorf("%s: Validate = %v", tpl, err)
		}
	}
	ok := `{{define "a"}}[{{.}}]{{end}}{{define "b"}}{{template "a" .}}{{template "a" .}}{{end}}{{template "b" 1}}`
	rc, err := runSteps(t, context.Background(), &Runner{}, []job.Step{logStep("ok", ok)}, nil, &recorder{t: t})
	if err != nil || rc.results[0].Output.(map[string]any)["message"] != "[1][1]" {
		t.Fatalf("non-recursive calls: %v %+v", err, rc.results)
	}
}

func TestOptionalKeys(t *testing.T) {
	jobCtx := map[string]any{"host": "10.0.0.1", "zero": 0.0, "no": false, "empty": "", "null": nil,
		"nested": map[string]any{"a": "b"}}
	tests := []struct{ tpl, want string }{
		{`[{{optional .context.ticket}}]`, `[]`},
		{`[{{optional .context.host}}]`, `[10.0.0.1]`},
		{`[{{optional .context.nested.a}}|{{optional .context.nested.x}}|{{optional .context.gone.x.y}}]`, `[b||]`},
		{`[{{optional $.context.ticket}}]`, `[]`},
		{`{{default "none" .context.ticket}}`, `none`},
		{`{{default "none" .context.host}}`, `10.0.0.1`},
		{`{{.context.ticket | default "none"}}`, `none`},
		{`{{.context.ticket | optional | printf "<%s>"}}`, `<>`},
		{`{{default "d" .context.zero}} {{default "d" .context.no}} {{default "d" .context.empty}} {{default "d" .context.null}}`, `0 false d d`},
		{`{{with optional .context.ticket}}T{{else}}no ticket{{end}}`, `no ticket`},
		{`{{if optional .context.ticket}}T{{end}}`, ``},
		{`{{range $k, $v := .context.nested}}{{optional $v}}{{optional $.context.x}}{{end}}`, `b`},
		{`{{$c := .context}}{{optional $c.ticket}}{{default "n" $c.host}}`, `10.0.0.1`},
		{`{{optional .steps.first.message}}-{{optional .steps.failed.body.id}}`, `hi-`},
	}
	for _, tt := range tests {
		steps := []job.Step{
			logStep("first", "hi"),
			{Name: "failed", Action: "fail", Params: map[string]any{"message": "down"}, ContinueOnError: true},
			logStep("t", tt.tpl),
		}
		if err := Validate(steps); err != nil {
			t.Errorf("%s: Validate = %v", tt.tpl, err)
			continue
		}
		rc, err := runSteps(t, context.Background(), &Runner{}, steps, jobCtx, &recorder{t: t})
		if err != nil {
			t.Errorf("%s: Run = %v", tt.tpl, err)
			continue
		}
		if got := rc.results[2].Output.(map[string]any)["message"]; got != tt.want {
			t.Errorf("%s = %q, want %q", tt.tpl, got, tt.want)
		}
	}
}

func TestMissingKeysStillFail(t *testing.T) {
	for _, tt := range []struct{ tpl, key string }{
		{`{{.context.ticket}}`, `"ticket"`},
		{`{{default .context.fallback .context.ticket}}`, `"fallback"`},
		{`{{optional .context.host.x}}`, `field x in a string`},
		{`{{printf "%s" .context.ticket | default "x"}}`, `"ticket"`},
	} {
		rc, err := runSteps(t, context.Background(), &Runner{}, []job.Step{logStep("t", tt.tpl)}, map[string]any{"host": "h"}, &recorder{t: t})
		if err == nil || !strings.Contains(rc.results[0].Error, tt.key) {
			t.Errorf("%s: Run = %v, result %q, want the error to name %s", tt.tpl, err, rc.results[0].Error, tt.key)
		}
	}
	// An optional reference to a step is still checked to be an earlier one.
	err := Validate([]job.Step{logStep("a", `{{optional .steps.later.x}}`), logStep("later", "x")})
	if err == nil || !strings.Contains(err.Error(), `refers to step "later"`) {
		t.Fatalf("Validate = %v", err)
	}
}
