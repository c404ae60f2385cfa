package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// guard bounds every run so a step that ignores cancellation fails the test
// instead of hanging it. It is not a timing assertion.
const guard = 10 * time.Second

// recorder collects what Run records. Each result goes through a JSON round
// trip, as the store persists it, so an output that cannot be encoded fails
// the test.
type recorder struct {
	t       testing.TB
	mu      sync.Mutex
	results []job.Result
	ctxs    []map[string]any
	err     error // returned by record when set
	onCall  func(n int)
}

func (rc *recorder) record(res job.Result, jobCtx map[string]any) error {
	if _, err := json.Marshal(res); err != nil {
		rc.t.Errorf("result of step %q is not JSON-encodable: %v", res.Step, err)
	}
	if res.StartedAt.Location() != time.UTC || res.CompletedAt == nil || res.CompletedAt.Location() != time.UTC {
		rc.t.Errorf("result of step %q: times not set in UTC: %v %v", res.Step, res.StartedAt, res.CompletedAt)
	}
	rc.mu.Lock()
	rc.results = append(rc.results, res)
	rc.ctxs = append(rc.ctxs, jobCtx)
	n := len(rc.results)
	rc.mu.Unlock()
	if rc.onCall != nil {
		rc.onCall(n)
	}
	return rc.err
}

// statuses lists "name=status" for each recorded result.
func (rc *recorder) statuses() []string {
	var out []string
	for _, r := range rc.results {
		out = append(out, r.Step+"="+r.Status)
	}
	return out
}

// runJSON runs a playbook given as JSON and returns what was recorded.
func runJSON(t *testing.T, ctx context.Context, r *Runner, playbook string, jobCtx map[string]any) (*recorder, error) {
	t.Helper()
	return runSteps(t, ctx, r, parseSteps(t, playbook), jobCtx, &recorder{t: t})
}

func runSteps(t *testing.T, ctx context.Context, r *Runner, steps []job.Step, jobCtx map[string]any, rc *recorder) (*recorder, error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, steps, jobCtx, rc.record) }()
	select {
	case err := <-done:
		return rc, err
	case <-time.After(guard):
		t.Fatalf("Run did not return within %s", guard)
		return nil, nil
	}
}

// roundTrip returns v as the store would read it back.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return out
}

func TestLogAndTemplates(t *testing.T) {
	tests := []struct {
		name    string
		message string
		jobCtx  map[string]any
		want    string
		wantErr string // substring of the step error when the step must fail
	}{
		{"plain text", "hello", nil, "hello", ""},
		{"context key", "alert {{.context.alert}} from {{.context.src.ip}}",
			map[string]any{"alert": "A-1", "src": map[string]any{"ip": "10.0.0.1"}}, "alert A-1 from 10.0.0.1", ""},
		{"whole numbers print without exponent", "{{.context.n}} {{.context.f}}",
			map[string]any{"n": 1000000.0, "f": 2.5}, "1000000 2.5", ""},
		{"numbers compare with integer literals", "{{if eq .context.n 3}}three{{end}}", map[string]any{"n": 3.0}, "three", ""},
		{"null renders empty", "[{{.context.v}}]", map[string]any{"v": nil}, "[]", ""},
		{"json function", "{{json .context.obj}}", map[string]any{"obj": map[string]any{"a": []any{1.0, "x"}}}, `{"a":[1,"x"]}`, ""},
		{"missing key names the key", "{{.context.host}}", map[string]any{"other": "x"}, "", `map has no entry for key "host"`},
		{"missing step names the step", "{{index .steps \"ghost\" \"x\"}}", nil, "", "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := []job.Step{{Name: "say", Action: "log", Params: map[string]any{"message": tt.message}}}
			rc, err := runSteps(t, context.Background(), &Runner{}, steps, tt.jobCtx, &recorder{t: t})
			if len(rc.results) != 1 {
				t.Fatalf("recorded %d results, want 1", len(rc.results))
			}
			res := rc.results[0]
			if tt.wantErr != "" {
				var se *StepError
				if !errors.As(err, &se) || se.Step != "say" || se.Index != 0 {
					t.Fatalf("Run = %v, want a StepError for step say", err)
				}
				if res.Status != job.StepFailed || !strings.Contains(res.Error, tt.wantErr) || strings.Contains(res.Error, "<no value>") {
					t.Fatalf("result = %s %q, want failed with %q", res.Status, res.Error, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Status != job.StepOK || res.Action != "log" || res.Error != "" {
				t.Fatalf("result = %+v", res)
			}
			want := map[string]any{"message": tt.want}
			if !reflect.DeepEqual(res.Output, want) {
				t.Fatalf("output = %#v, want %#v", res.Output, want)
			}
		})
	}
}

func TestSetMergesIntoContext(t *testing.T) {
	jobCtx := map[string]any{"ip": "10.0.0.1", "keep": "yes", "nested": map[string]any{"a": "old"}}
	before := roundTrip(t, jobCtx)
	playbook := `[
		{"name": "first", "action": "log", "params": {"message": "ip {{.context.ip}}"}},
		{"name": "mark", "action": "set", "params": {
			"verdict": "bad {{.context.ip}}",
			"count": 3,
			"nested": {"list": ["{{.steps.first.message}}", true]}
		}},
		{"name": "after", "action": "log", "params": {"message": "{{.context.verdict}} {{.context.count}} {{index .context.nested.list 0}}"}}
	]`
	rc, err := runJSON(t, context.Background(), &Runner{}, playbook, jobCtx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := rc.statuses(); !reflect.DeepEqual(got, []string{"first=ok", "mark=ok", "after=ok"}) {
		t.Fatalf("statuses = %v", got)
	}
	if _, ok := rc.ctxs[0]["verdict"]; ok {
		t.Errorf("context recorded after the first step already has verdict: %v", rc.ctxs[0])
	}
	want := map[string]any{
		"ip": "10.0.0.1", "keep": "yes", "verdict": "bad 10.0.0.1", "count": 3.0,
		"nested": map[string]any{"list": []any{"ip 10.0.0.1", true}},
	}
	for i := 1; i < 3; i++ {
		if !reflect.DeepEqual(rc.ctxs[i], want) {
			t.Errorf("context recorded after step %d = %#v, want %#v", i+1, rc.ctxs[i], want)
		}
	}
	// Keys only, sorted: the values may be secrets and are in the context anyway.
	wantOut := map[string]any{"keys": []any{"count", "nested", "verdict"}}
	if got := roundTrip(t, rc.results[1].Output); !reflect.DeepEqual(got, wantOut) {
		t.Errorf("set output = %#v, want %#v", got, wantOut)
	}
	if msg := rc.results[2].Output.(map[string]any)["message"]; msg != "bad 10.0.0.1 3 ip 10.0.0.1" {
		t.Errorf("later step saw %q", msg)
	}
	if !reflect.DeepEqual(roundTrip(t, jobCtx), before) {
		t.Errorf("Run modified the caller's context: %v", jobCtx)
	}
}

func TestFailSkipsTheRest(t *testing.T) {
	playbook := `[
		{"name": "a", "action": "log", "params": {"message": "x"}},
		{"name": "stop", "action": "fail", "params": {"message": "blocked {{.context.ip}}"}},
		{"name": "never", "action": "set", "params": {"x": "y"}},
		{"name": "never2", "action": "log", "params": {"message": "z"}}
	]`
	rc, err := runJSON(t, context.Background(), &Runner{}, playbook, map[string]any{"ip": "1.2.3.4"})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("Run = %v, want a *StepError", err)
	}
	if se.Step != "stop" || se.Index != 1 || err.Error() != `step "stop" failed: blocked 1.2.3.4` {
		t.Fatalf("StepError = %+v (%q)", se, err)
	}
	if got := rc.statuses(); !reflect.DeepEqual(got, []string{"a=ok", "stop=failed", "never=skipped", "never2=skipped"}) {
		t.Fatalf("statuses = %v", got)
	}
	if rc.results[1].Error != "blocked 1.2.3.4" {
		t.Errorf("fail result error = %q", rc.results[1].Error)
	}
	if skipped := rc.results[2]; !strings.Contains(skipped.Error, `"stop"`) || skipped.Output != nil || skipped.Action != "set" {
		t.Errorf("skipped result = %+v", skipped)
	}
	if _, ok := rc.ctxs[3]["x"]; ok {
		t.Errorf("a skipped set step changed the context")
	}
}

func TestContinueOnError(t *testing.T) {
	playbook := `[
		{"name": "try", "action": "fail", "params": {"message": "nope"}, "continue_on_error": true},
		{"name": "next", "action": "log", "params": {"message": "went on"}}
	]`
	rc, err := runJSON(t, context.Background(), &Runner{}, playbook, nil)
	if err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := rc.statuses(); !reflect.DeepEqual(got, []string{"try=failed", "next=ok"}) {
		t.Fatalf("statuses = %v", got)
	}
	if rc.results[0].Error != "nope" {
		t.Errorf("error = %q", rc.results[0].Error)
	}
}

func TestStepTimeout(t *testing.T) {
	tests := []struct {
		name            string
		continueOnError bool
	}{
		{"fails the job", false},
		{"continues on error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := []job.Step{
				{Name: "nap", Action: "sleep", Params: map[string]any{"duration": "1h"}, Timeout: "20ms", ContinueOnError: tt.continueOnError},
				{Name: "after", Action: "log", Params: map[string]any{"message": "x"}},
			}
			rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				t.Fatalf("a step timeout was reported as a cancellation: %v", err)
			}
			want := []string{"nap=failed", "after=skipped"}
			if tt.continueOnError {
				want = []string{"nap=failed", "after=ok"}
				if err != nil {
					t.Fatalf("Run = %v, want nil", err)
				}
			} else {
				var se *StepError
				if !errors.As(err, &se) || se.Step != "nap" {
					t.Fatalf("Run = %v, want a StepError for nap", err)
				}
			}
			if got := rc.statuses(); !reflect.DeepEqual(got, want) {
				t.Fatalf("statuses = %v, want %v", got, want)
			}
			if e := rc.results[0].Error; e != "step timed out after 20ms" {
				t.Errorf("error = %q", e)
			}
		})
	}
}

func TestSleepCompletes(t *testing.T) {
	rc, err := runJSON(t, context.Background(), &Runner{}, `[{"name": "nap", "action": "sleep", "params": {"duration": "1ms"}}]`, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := rc.results[0]; got.Status != job.StepOK || !reflect.DeepEqual(got.Output, map[string]any{"duration": "1ms"}) {
		t.Fatalf("result = %+v", got)
	}
}

// doneWatch tells when the sleep step starts waiting on the context, so the
// test can cancel exactly while the step is in progress.
type doneWatch struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (d *doneWatch) Done() <-chan struct{} {
	d.once.Do(func() { close(d.waiting) })
	return d.Context.Done()
}

func TestCancelSleep(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := &doneWatch{Context: parent, waiting: make(chan struct{})}
	go func() {
		<-ctx.waiting
		cancel()
	}()
	steps := parseSteps(t, `[
		{"name": "first", "action": "log", "params": {"message": "x"}},
		{"name": "nap", "action": "sleep", "params": {"duration": "1h"}, "continue_on_error": true},
		{"name": "after", "action": "log", "params": {"message": "y"}}
	]`)
	rc, err := runSteps(t, ctx, &Runner{}, steps, nil, &recorder{t: t})
	assertCancelled(t, rc, err, "nap", []string{"first=ok", "nap=failed"})
}

func TestCancelHTTP(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-arrived
		cancel()
	}()
	steps := []job.Step{{Name: "slow", Action: "http", Params: map[string]any{"url": srv.URL, "timeout": "1h"}}}
	rc, err := runSteps(t, ctx, &Runner{DefaultHTTPTimeout: time.Hour}, steps, nil, &recorder{t: t})
	assertCancelled(t, rc, err, "slow", []string{"slow=failed"})
}

func assertCancelled(t *testing.T, rc *recorder, err error, step string, want []string) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want an error wrapping context.Canceled", err)
	}
	var se *StepError
	if errors.As(err, &se) {
		t.Fatalf("cancellation reported as a step failure: %v", err)
	}
	if !strings.Contains(err.Error(), step) {
		t.Errorf("error %q does not name step %q", err, step)
	}
	if got := rc.statuses(); !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if last := rc.results[len(rc.results)-1]; last.Error != "cancelled" || last.Output != nil {
		t.Fatalf("interrupted result = %+v, want error \"cancelled\"", last)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rc, err := runJSON(t, ctx, &Runner{}, `[{"name": "a", "action": "log", "params": {"message": "x"}}]`, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if len(rc.results) != 0 {
		t.Fatalf("recorded %v for a run cancelled before it started", rc.statuses())
	}
}

func TestCancelCauseIsKept(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	shutdown := errors.New("server shutting down")
	cancel(shutdown)
	_, err := runJSON(t, ctx, &Runner{}, `[{"name": "a", "action": "log", "params": {"message": "x"}}]`, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, shutdown) {
		t.Fatalf("Run = %v, want context.Canceled and the cause", err)
	}
}

func TestRecordErrorStopsTheRun(t *testing.T) {
	var hits int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer srv.Close()

	diskFull := errors.New("disk full")
	for _, tt := range []struct {
		name     string
		playbook string
	}{
		{"after a successful step", `[{"name": "a", "action": "log", "params": {"message": "x"}}, {"name": "b", "action": "http", "params": {"url": "` + srv.URL + `"}}]`},
		{"after a failed step", `[{"name": "a", "action": "fail", "params": {"message": "x"}, "continue_on_error": true}, {"name": "b", "action": "http", "params": {"url": "` + srv.URL + `"}}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{t: t, err: diskFull}
			_, err := runSteps(t, context.Background(), &Runner{}, parseSteps(t, tt.playbook), nil, rc)
			if !errors.Is(err, diskFull) {
				t.Fatalf("Run = %v, want the record error", err)
			}
			var se *StepError
			if errors.As(err, &se) {
				t.Fatalf("record error reported as a step failure: %v", err)
			}
			if len(rc.results) != 1 {
				t.Fatalf("record called %d times, want 1", len(rc.results))
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Fatalf("the step after a failed record ran (%d requests)", hits)
	}
}

func TestUnvalidatedStepFailsAtRunTime(t *testing.T) {
	tests := []struct {
		name string
		step job.Step
		want string
	}{
		{"unknown action", job.Step{Name: "x", Action: "exec"}, `unknown action "exec"`},
		{"missing param", job.Step{Name: "x", Action: "log"}, "params.message is missing"},
		{"bad step timeout", job.Step{Name: "x", Action: "log", Params: map[string]any{"message": "m"}, Timeout: "later"}, "not a duration"},
		{"templated url that renders badly", job.Step{Name: "x", Action: "http", Params: map[string]any{"url": "{{.context.u}}"}}, "http:// or https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := runSteps(t, context.Background(), &Runner{}, []job.Step{tt.step}, map[string]any{"u": "file:///etc/passwd"}, &recorder{t: t})
			var se *StepError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want a StepError containing %q", err, tt.want)
			}
			if rc.results[0].Status != job.StepFailed {
				t.Fatalf("status = %s", rc.results[0].Status)
			}
		})
	}
}

// TestConcurrentRunsShareSteps runs one playbook in several jobs at once:
// the stored steps must never be modified (the race detector checks the
// sharing, the comparison checks the content).
func TestConcurrentRunsShareSteps(t *testing.T) {
	playbook := `[
		{"name": "s", "action": "set", "params": {"v": {"list": ["{{.context.n}}", {"deep": "{{.context.n}}"}]}}},
		{"name": "l", "action": "log", "params": {"message": "{{json .context.v}}"}}
	]`
	steps := parseSteps(t, playbook)
	pristine := parseSteps(t, playbook)
	runner := &Runner{}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	msgs := make([]any, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := &recorder{t: t}
			errs[i] = runner.Run(context.Background(), steps, map[string]any{"n": float64(i)}, rc.record)
			if len(rc.results) == 2 {
				msgs[i] = rc.results[1].Output.(map[string]any)["message"]
			}
		}()
	}
	wg.Wait()
	for i := range 4 {
		want := fmt.Sprintf(`{"list":["%d",{"deep":"%d"}]}`, i, i)
		if errs[i] != nil || msgs[i] != want {
			t.Errorf("run %d: err %v, message %v, want %s", i, errs[i], msgs[i], want)
		}
	}
	if !reflect.DeepEqual(steps, pristine) {
		t.Fatalf("Run modified the steps")
	}
}

// readAll is io.ReadAll for handlers, failing the test on error.
func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Errorf("read request body: %v", err)
	}
	return string(b)
}

// The template cache must not mix up templates that share a text but not a
// name (error messages name the param), nor grow without bound.
func TestTemplateCache(t *testing.T) {
	a1, err := parseTemplate("a", "{{.x}}")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := parseTemplate("a", "{{.x}}")
	b, _ := parseTemplate("b", "{{.x}}")
	if a1 != a2 || a1 == b || b.Name() != "b" {
		t.Errorf("cache: same key gave %p and %p, other name gave %p named %q", a1, a2, b, b.Name())
	}
	for i := range maxCachedTemplates + 10 {
		if _, err := parseTemplate(fmt.Sprint("t", i), "{{.x}}"); err != nil {
			t.Fatal(err)
		}
	}
	parsedMu.Lock()
	n := len(parsed)
	parsedMu.Unlock()
	if n > maxCachedTemplates {
		t.Errorf("cache holds %d templates, bound is %d", n, maxCachedTemplates)
	}
	if _, err := renderString("c", "{{.missing}}", map[string]any{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("cached template lost missingkey=error: %v", err)
	}
}
