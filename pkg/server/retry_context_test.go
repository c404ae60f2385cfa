package server

import (
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// A job retried after a crash runs again from the context it was
// submitted with: a set step that appends to a context value gives the
// same result as an uninterrupted run, not the value appended twice.
func TestRetriedJobRunsFromTheSubmittedContext(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	steps := []job.Step{{Name: "tag", Action: "set", Params: map[string]any{"tags": "{{.context.tags}},seen"}}}
	j, err := st.Create(&job.Job{Playbook: steps, Context: map[string]any{"tags": "new"}, OnInterrupt: job.OnInterruptRetry})
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt ran its set step; then the process died.
	if _, err := st.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(j.ID, func(j *job.Job) error {
		j.Context["tags"] = "new,seen"
		j.Results = []job.Result{{Step: "tag", Action: "set", Status: job.StepOK, StartedAt: time.Now()}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Recover(store.RecoverOptions{}); err != nil || res.Requeued != 1 {
		t.Fatalf("recover: %+v %v", res, err)
	}

	e := startEnv(t, dir, st, Options{})
	done := e.waitStatus(j.ID, job.Completed, job.Failed)
	if done.Status != job.Completed || done.Context["tags"] != "new,seen" || done.Attempts != 2 || len(done.Results) != 1 {
		t.Fatalf("retried job: status %s attempts %d context %v results %+v", done.Status, done.Attempts, done.Context, done.Results)
	}
	if done.SubmittedContext["tags"] != "new" {
		t.Fatalf("submitted context %v", done.SubmittedContext)
	}
}
