package server

import (
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

func TestEndingsCountsTheLastHour(t *testing.T) {
	now := time.Date(2026, 7, 9, 15, 30, 20, 0, time.UTC)
	var e endings
	end := func(st job.Status, ago time.Duration) {
		at := now.Add(-ago)
		e.add(&job.Job{Status: st, CompletedAt: &at})
	}
	end(job.Completed, 0)
	end(job.Completed, 10*time.Second)
	end(job.Failed, 5*time.Minute)
	end(job.Cancelled, 59*time.Minute)
	end(job.Completed, 61*time.Minute) // out of the window
	e.add(&job.Job{Status: job.Running})

	tp := e.last(now)
	if len(tp.Minutes) != 60 || !tp.Start.Equal(time.Date(2026, 7, 9, 14, 31, 0, 0, time.UTC)) {
		t.Fatalf("window: %d minutes from %v", len(tp.Minutes), tp.Start)
	}
	want := map[int]EndCounts{59: {Completed: 2}, 54: {Failed: 1}, 0: {Cancelled: 1}}
	for i, got := range tp.Minutes {
		if got != want[i] {
			t.Errorf("minute %d: %+v, want %+v", i, got, want[i])
		}
	}
	// An hour on, the old minutes are gone even though no job ended since.
	if tp := e.last(now.Add(time.Hour)); tp.Minutes[0].Total()+tp.Minutes[59].Total() != 0 {
		t.Errorf("an hour later: %+v", tp.Minutes)
	}
	// A late ending into a slot reused by a newer minute is dropped.
	end(job.Completed, 0)
	old := now.Add(-60 * time.Minute)
	e.add(&job.Job{Status: job.Completed, CompletedAt: &old})
	if got := e.last(now).Minutes[59]; got.Completed != 3 {
		t.Errorf("newest minute after a late ending: %+v", got)
	}
}

func TestCheckToken(t *testing.T) {
	e := newEnv(t, Options{AuthTokens: []string{"first-token-0123456789", "second-token-0123456789"}})
	for tok, want := range map[string]bool{
		"first-token-0123456789": true, " second-token-0123456789 ": true,
		"first-token-012345678": false, "": false, "Bearer first-token-0123456789": false,
	} {
		if got := e.srv.CheckToken(tok); got != want {
			t.Errorf("CheckToken(%q) = %v, want %v", tok, got, want)
		}
	}
	if open := newEnv(t, Options{}); open.srv.CheckToken("") || open.srv.AuthRequired() {
		t.Error("with no tokens, no token checks and none is required")
	}
}
