package server

import (
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// A run whose job was recovered and started again by someone else (as a
// node taken for dead finds when it resumes) cannot lay its results or its
// end over the newer attempt's.
func TestRunIsFencedByItsAttempt(t *testing.T) {
	e := newEnv(t, Options{Workers: 1})
	id := e.submit(`{"playbook":[
		{"name":"wait","action":"sleep","params":{"duration":"300ms"}},
		{"name":"after","action":"log","params":{"message":"late"}}
	],"on_interrupt":"retry"}`)
	e.waitStatus(id, job.Running)

	// What a recovery elsewhere followed by another node's start writes:
	// running → pending (retry), then a new attempt.
	if _, err := e.st.Update(id, func(j *job.Job) error {
		j.Status, j.StartedAt = job.Pending, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	second, err := e.st.Update(id, func(j *job.Job) error { return j.Start(time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	if second.Attempts != 2 {
		t.Fatalf("attempts %d after the second start, want 2", second.Attempts)
	}

	waitFor(t, "the first run to end", func() bool { return e.srv.busy.Load() == 0 && e.srv.queue.busy() == 0 })
	got, err := e.st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != job.Running || got.Attempts != 2 || len(got.Results) != 0 {
		t.Fatalf("after the fenced run the job is %s at attempt %d with %d results; want the second attempt untouched (running, 2, none)",
			got.Status, got.Attempts, len(got.Results))
	}
}
