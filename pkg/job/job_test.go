package job

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTransitions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j := &Job{ID: "a", Status: Pending, CreatedAt: now}
	if err := j.Finish(Completed, "", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("pending -> completed allowed: %v", err)
	}
	if err := j.Start(now); err != nil || j.Status != Running || j.Attempts != 1 || j.StartedAt == nil {
		t.Fatalf("start: %v %+v", err, j)
	}
	if err := j.Start(now); !errors.Is(err, ErrTransition) {
		t.Fatalf("running -> running allowed: %v", err)
	}
	if err := j.Finish(Failed, "step x failed", now); err != nil || j.Error != "step x failed" || j.CompletedAt == nil {
		t.Fatalf("finish: %v %+v", err, j)
	}
	for _, to := range Statuses {
		if CanTransition(j.Status, to) {
			t.Fatalf("terminal job may become %s", to)
		}
	}
	p := &Job{ID: "b", Status: Pending, CreatedAt: now}
	if err := p.Finish(Cancelled, "cancelled by request", now); err != nil || p.Status != Cancelled {
		t.Fatalf("pending -> cancelled: %v", err)
	}
}

func TestRequeueAndAttempts(t *testing.T) {
	now := time.Now()
	j := &Job{ID: "a", Status: Pending, CreatedAt: now, OnInterrupt: OnInterruptRetry}
	for i := 1; i <= DefaultMaxAttempts; i++ {
		if err := j.Start(now); err != nil {
			t.Fatal(err)
		}
		if got, want := j.AttemptsLeft(), i < DefaultMaxAttempts; got != want {
			t.Fatalf("after attempt %d: attempts left %v", i, got)
		}
		if err := j.Requeue(); err != nil || j.Status != Pending || j.StartedAt != nil {
			t.Fatalf("requeue: %v %+v", err, j)
		}
	}
	j.MaxAttempts = 5
	if !j.AttemptsLeft() {
		t.Fatal("max_attempts 5 ignored")
	}
}

// A set step of an interrupted attempt must not leak into the next one,
// even when the submitted context was empty.
func TestRequeueRestoresTheSubmittedContext(t *testing.T) {
	now := time.Now()
	for _, submitted := range []map[string]any{{"ip": "10.0.0.1", "nested": map[string]any{"a": 1.0}}, {}} {
		j := &Job{ID: "a", Status: Pending, CreatedAt: now, OnInterrupt: OnInterruptRetry, Context: submitted}
		want := j.OriginalContext()
		if err := j.Start(now); err != nil {
			t.Fatal(err)
		}
		j.Context["verdict"] = "block"
		if n, ok := j.Context["nested"].(map[string]any); ok {
			n["a"] = 2.0
		}
		j.Results = []Result{{Step: "s", Action: "set", Status: StepOK, StartedAt: now}}
		// What the store writes and reads back must carry it too.
		raw, err := AppendJSON(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		if j, err = Decode(raw); err != nil {
			t.Fatal(err)
		}
		if err := j.Requeue(); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(j.Context, want) || j.Results != nil {
			t.Fatalf("after requeue context %v results %v, want context %v and no results", j.Context, j.Results, want)
		}
		if !reflect.DeepEqual(j.OriginalContext(), want) {
			t.Fatalf("original context %v, want %v", j.OriginalContext(), want)
		}
		// The second start keeps the first record: Context is the submitted one
		// again, but a job of an earlier release would not know that.
		if err := j.Start(now); err != nil || !reflect.DeepEqual(j.SubmittedContext, want) {
			t.Fatalf("second start: %v %v", err, j.SubmittedContext)
		}
	}
}

// A job that ran under an earlier release has no submitted context; its
// current one is kept rather than a guess recorded.
func TestRequeueWithoutSubmittedContext(t *testing.T) {
	now := time.Now()
	j := &Job{ID: "a", Status: Running, CreatedAt: now, StartedAt: &now, Attempts: 1, Context: map[string]any{"x": "y"}}
	if err := j.Requeue(); err != nil || j.Context["x"] != "y" {
		t.Fatalf("%v %v", err, j.Context)
	}
	if err := j.Start(now); err != nil || j.SubmittedContext != nil {
		t.Fatalf("a later start recorded %v as submitted: %v", j.SubmittedContext, err)
	}
}

func TestInvariants(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		j    Job
		want string
	}{
		{Job{Status: Pending, CreatedAt: now}, "no id"},
		{Job{ID: "a", Status: "paused", CreatedAt: now}, "unknown status"},
		{Job{ID: "a", Status: Pending}, "created_at"},
		{Job{ID: "a", Status: Running, CreatedAt: now}, "started_at"},
		{Job{ID: "a", Status: Completed, CreatedAt: now, StartedAt: &now}, "completed_at"},
		{Job{ID: "a", Status: Pending, CreatedAt: now, CompletedAt: &now}, "has a completed_at"},
	} {
		err := tc.j.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.j, err, tc.want)
		}
	}
	ok := Job{ID: "a", Status: Completed, CreatedAt: now, StartedAt: &now, CompletedAt: &now}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// The seed's format: unset times are omitted, the rest keep their names.
func TestJSONFormat(t *testing.T) {
	now := time.Date(2025, 7, 9, 15, 30, 0, 0, time.UTC)
	j := Job{ID: "job-id-1", Status: Pending, Playbook: []Step{}, Context: map[string]any{}, Results: []Result{}, CreatedAt: now}
	raw, _ := json.Marshal(j)
	want := `{"id":"job-id-1","status":"pending","playbook":[],"context":{},"results":[],"error":"","created_at":"2025-07-09T15:30:00Z"}`
	if string(raw) != want {
		t.Fatalf("\n got %s\nwant %s", raw, want)
	}
}

func TestRerunStartsFromTheSubmittedContext(t *testing.T) {
	now := time.Now().UTC()
	j := &Job{ID: "a", Status: Pending, CreatedAt: now, Context: map[string]any{"ip": "10.0.0.1"},
		Playbook: []Step{{Name: "s", Action: "set", Params: map[string]any{"x": "1"}}}, OnInterrupt: OnInterruptRetry, MaxAttempts: 2}
	if err := j.Start(now); err != nil {
		t.Fatal(err)
	}
	j.Context["x"] = "1" // what the set step added
	j.Results = []Result{{Step: "s", Action: "set", Status: StepOK, StartedAt: now}}
	if err := j.Finish(Completed, "", now); err != nil {
		t.Fatal(err)
	}
	r := j.Rerun()
	if r.RerunOf != "a" || r.ID != "" || r.Status != "" || len(r.Results) != 0 || r.Attempts != 0 {
		t.Fatalf("rerun %+v", r)
	}
	if !reflect.DeepEqual(r.Context, map[string]any{"ip": "10.0.0.1"}) {
		t.Fatalf("rerun context %v, want the submitted one", r.Context)
	}
	if r.OnInterrupt != OnInterruptRetry || r.MaxAttempts != 2 || !reflect.DeepEqual(r.Playbook, j.Playbook) {
		t.Fatalf("rerun lost the submission's settings: %+v", r)
	}
	r.Playbook[0].Params["x"] = "2"
	if j.Playbook[0].Params["x"] != "1" {
		t.Fatal("the rerun shares its playbook with the original")
	}
}
