package job

import (
	"encoding/json"
	"errors"
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
