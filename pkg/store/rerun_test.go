package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

func TestRerunLinksBothWaysDurably(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	orig, err := s.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log"}}, Context: map[string]any{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(orig.ID, func(j *job.Job) error { return j.Start(now) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(orig.ID, func(j *job.Job) error {
		j.Context["added"] = true
		j.Results = []job.Result{{Step: "a", Action: "log", Status: job.StepOK, StartedAt: now}}
		return j.Finish(job.Completed, "", now)
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Get(orig.ID)

	nj, err := s.Rerun(orig.ID[:10], func(o *job.Job) (*job.Job, error) { return o.Rerun(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if nj.RerunOf != orig.ID || nj.Status != job.Pending || nj.ID == "" || !reflect.DeepEqual(nj.Context, map[string]any{"k": "v"}) {
		t.Fatalf("rerun %+v", nj)
	}
	if _, err := s.Rerun("nope", func(o *job.Job) (*job.Job, error) { return o.Rerun(), nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	refused := errors.New("refused")
	if _, err := s.Rerun(orig.ID, func(*job.Job) (*job.Job, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("a refusal of next: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, ro := range []bool{true, false} {
		s, err = Open(Options{Dir: dir, ReadOnly: ro, SnapshotInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(orig.ID)
		if err != nil || !reflect.DeepEqual(got.Reruns, []string{nj.ID}) {
			t.Fatalf("original after reopening: %+v %v", got, err)
		}
		got.Reruns = nil
		if !reflect.DeepEqual(got, before) {
			t.Fatalf("the original changed beyond its reruns:\n%+v\n%+v", got, before)
		}
		if got, err := s.Get(nj.ID); err != nil || got.RerunOf != orig.ID {
			t.Fatalf("rerun after reopening: %+v %v", got, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Verify(dir)
	if err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// A rerun of a running job keeps up with its worker's updates.
func TestRerunOfARunningJob(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j, _ := s.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log"}, {Name: "b", Action: "log"}}})
	now := time.Now()
	if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Start(now) }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := s.Update(j.ID, func(j *job.Job) error {
			j.Results = append(j.Results, job.Result{Step: "a", Action: "log", Status: job.StepOK, StartedAt: now})
			return nil
		})
		done <- err
	}()
	nj, err := s.Rerun(j.ID, func(o *job.Job) (*job.Job, error) { return o.Rerun(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	end, err := s.Update(j.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", now) })
	if err != nil {
		t.Fatal(err)
	}
	if len(end.Results) != 1 || !reflect.DeepEqual(end.Reruns, []string{nj.ID}) {
		t.Fatalf("results %v, reruns %v: one change lost the other", end.Results, end.Reruns)
	}
}
