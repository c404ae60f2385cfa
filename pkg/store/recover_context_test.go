package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// A retried job starts again from the context it was submitted with: its
// interrupted attempt ran a set step, the process died, and recovery
// requeues it with the submitted context and no results.
func TestRecoverRetryRestoresTheSubmittedContext(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	j := newJob(1)
	j.OnInterrupt = job.OnInterruptRetry
	j = mustCreate(t, s, j)
	submitted := j.OriginalContext()
	if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	// What the worker writes after a set step.
	if _, err := s.Update(j.ID, func(j *job.Job) error {
		j.Context["host"] = "10.9.9.9"
		j.Context["verdict"] = "malicious"
		j.Results = append(j.Results, job.Result{Step: "greet", Action: "set", Status: job.StepOK, StartedAt: time.Now()})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	abandon(s)

	s = openT(t, dir)
	defer s.Close()
	res, err := s.Recover(RecoverOptions{})
	if err != nil || res.Requeued != 1 {
		t.Fatalf("recover: %+v %v", res, err)
	}
	got, err := s.Get(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != job.Pending || !reflect.DeepEqual(got.Context, submitted) || len(got.Results) != 0 {
		t.Fatalf("requeued job: status %s context %v results %v; want pending, context %v, no results", got.Status, got.Context, got.Results, submitted)
	}
	if !reflect.DeepEqual(got.SubmittedContext, submitted) {
		t.Fatalf("submitted context %v not kept for the next attempt", got.SubmittedContext)
	}
}
