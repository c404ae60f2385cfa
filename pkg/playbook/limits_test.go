package playbook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/job"
)

// storable builds the job the store would write after the run recorded in
// rc and checks that the store accepts it and can read it back.
func storable(t *testing.T, steps []job.Step, rc *recorder) {
	t.Helper()
	at := rc.results[0].StartedAt
	end := *rc.results[len(rc.results)-1].CompletedAt
	j := &job.Job{ID: "j", Status: job.Failed, Playbook: steps, Context: rc.ctxs[len(rc.ctxs)-1], Results: rc.results,
		Error: "step failed", CreatedAt: at, StartedAt: &at, CompletedAt: &end}
	if err := j.Validate(); err != nil {
		t.Fatalf("job invalid: %v", err)
	}
	raw, err := job.AppendJSON(nil, j)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.CheckEncoded(raw, 16<<20); err != nil {
		t.Fatalf("store would refuse the job: %v", err)
	}
	if _, err := job.Decode(raw); err != nil {
		t.Fatalf("stored job cannot be read back: %v", err)
	}
}

// jsonServer answers every request with body as application/json.
func jsonServer(t *testing.T, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPBodyTooDeep(t *testing.T) {
	for _, depth := range []int{100000, 10001, maxBodyDepth + 1} {
		body := strings.Repeat(`{"a":[`, depth/2) + strings.Repeat(`]}`, depth/2)
		if depth%2 == 1 {
			body = "[" + body + "]"
		}
		srv := jsonServer(t, body)
		steps := []job.Step{
			{Name: "call", Action: "http", Params: map[string]any{"url": srv.URL}},
			{Name: "after", Action: "log", Params: map[string]any{"message": "x"}},
		}
		rc, err := runSteps(t, context.Background(), &Runner{MaxResponseBytes: 1 << 20}, steps, nil, &recorder{t: t})
		var se *StepError
		if !errors.As(err, &se) || se.Step != "call" {
			t.Fatalf("depth %d: Run = %v, want step call to fail", depth, err)
		}
		res := rc.results[0]
		if res.Status != job.StepFailed || !strings.Contains(res.Error, "JSON nesting depth") || !errors.Is(err, job.ErrLimit) {
			t.Fatalf("depth %d: result %q %q, want a failure naming the JSON nesting depth", depth, res.Status, res.Error)
		}
		out, _ := res.Output.(map[string]any)
		if _, ok := out["body"]; ok || out["status"] != 200 {
			t.Fatalf("depth %d: output %v, want status and headers without the body", depth, out)
		}
		storable(t, steps, rc)
	}
}

func TestHTTPBodyAtDepthLimit(t *testing.T) {
	body := strings.Repeat("[", maxBodyDepth) + strings.Repeat("]", maxBodyDepth)
	srv := jsonServer(t, body)
	steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": srv.URL}}}
	rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
	if err != nil {
		t.Fatalf("a body at the depth limit: %v", err)
	}
	storable(t, steps, rc)
}

// encoding/json reads 1e400 into a json.Number but not back into an any.
func TestHTTPBodyNumberOutOfRange(t *testing.T) {
	srv := jsonServer(t, `{"score": 1e400}`)
	steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": srv.URL}}}
	rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
	if err == nil || !strings.Contains(rc.results[0].Error, "JSON number magnitude") {
		t.Fatalf("Run = %v, result error %q", err, rc.results[0].Error)
	}
	if rc.results[0].Output != nil {
		t.Fatalf("output kept: %v", rc.results[0].Output)
	}
	storable(t, steps, rc)
}

func TestOutputBudget(t *testing.T) {
	r := &Runner{MaxValueBytes: 100}
	big := strings.Repeat("x", 200)
	steps := []job.Step{
		{Name: "small", Action: "log", Params: map[string]any{"message": "ok"}},
		{Name: "big", Action: "log", Params: map[string]any{"message": "{{.context.big}}"}, ContinueOnError: true},
		{Name: "next", Action: "log", Params: map[string]any{"message": "still runs"}},
	}
	rc, err := runSteps(t, context.Background(), r, steps, map[string]any{"big": big}, &recorder{t: t})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	res := rc.results[1]
	if res.Status != job.StepFailed || res.Output != nil || !strings.Contains(res.Error, "step output bytes exceeded") {
		t.Fatalf("big output: %+v", res)
	}
	if rc.results[2].Status != job.StepOK {
		t.Fatalf("continue_on_error ignored: %v", rc.statuses())
	}
	storable(t, steps, rc)
}

func TestSetBudget(t *testing.T) {
	r := &Runner{MaxValueBytes: 100}
	steps := []job.Step{
		{Name: "keep", Action: "set", Params: map[string]any{"small": "{{.context.n}}"}},
		{Name: "grow", Action: "set", Params: map[string]any{"blob": "{{.context.big}}{{.context.big}}"}},
	}
	jobCtx := map[string]any{"n": "1", "big": strings.Repeat("y", 60)}
	rc, err := runSteps(t, context.Background(), r, steps, jobCtx, &recorder{t: t})
	if err == nil || !strings.Contains(rc.results[1].Error, "set value bytes exceeded") {
		t.Fatalf("Run = %v, result %+v", err, rc.results[1])
	}
	final := rc.ctxs[1]
	if _, ok := final["blob"]; ok || final["small"] != "1" {
		t.Fatalf("context after the refused set: %v", final)
	}
	storable(t, steps, rc)
}

// A set of a value nested too deeply fails even within the byte budget.
func TestSetTooDeep(t *testing.T) {
	var v any = "leaf"
	for range job.MaxValueDepth {
		v = []any{v}
	}
	steps := []job.Step{{Name: "deep", Action: "set", Params: map[string]any{"tree": v}}}
	rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
	if err == nil || !strings.Contains(rc.results[0].Error, "JSON nesting depth") {
		t.Fatalf("Run = %v, result %+v", err, rc.results[0])
	}
	storable(t, steps, rc)
}
