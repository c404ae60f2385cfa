package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
)

// lockedBuffer is written by the live line's ticker and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// On a terminal, each event's line is printed above a status line, which
// is cleared first and redrawn after; at the end nothing of it is left.
func TestLiveLineKeepsStatusBelowEventLines(t *testing.T) {
	var out lockedBuffer
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live := newLiveLine(&out, "job-1", func() time.Time { return clock })
	print := live.wrap(func(ev jobEvent) error {
		_, err := out.Write([]byte("event " + ev.Kind + "\n"))
		return err
	})
	clock = clock.Add(3 * time.Second)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(print(jobEvent{Kind: server.EventStatus, Status: &server.StatusEvent{JobID: "job-1", Status: job.Running}}))
	must(print(jobEvent{Kind: server.EventStep, Step: &server.StepEvent{JobID: "job-1", Index: 0}}))
	if got := out.String(); !strings.HasSuffix(got, "event step\n"+clearLine+"job job-1 running · 1 steps done · 3s") ||
		!strings.Contains(got, clearLine+"job job-1 running · 0 steps done · 3s"+clearLine+"event step\n") {
		t.Fatalf("output %q", got)
	}
	end := &job.Job{ID: "job-1", Status: job.Completed, Results: []job.Result{{}, {}}}
	must(print(jobEvent{Kind: server.EventEnd, Job: end}))
	live.close()
	if got := out.String(); !strings.HasSuffix(got, clearLine+"event end\n") {
		t.Fatalf("the status line outlived the end: %q", got)
	}
}
