package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// smallEnv is an env whose store refuses jobs above maxBytes.
func smallEnv(t *testing.T, maxBytes int, o Options) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, MaxJobBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return startEnv(t, dir, st, o)
}

// A submission the store refuses for a limit answers 413 for a size, 400
// for the rest, naming the limit; nothing is stored.
func TestSubmitBreaksLimit(t *testing.T) {
	e := smallEnv(t, 4096, Options{})
	big := fmt.Sprintf(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}],"context":{"blob":%q}}`, strings.Repeat("x", 5000))
	code, b := e.do("POST", "/playbook/async", big)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, b), job.LimitJobBytes) {
		t.Errorf("job above jobs.max_job_bytes: %d %s", code, b)
	}
	deep := `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}],"context":{"d":` +
		strings.Repeat(`{"d":`, job.MaxDepth) + `1` + strings.Repeat(`}`, job.MaxDepth) + `}}`
	roomy := newEnv(t, Options{})
	code, b = roomy.do("POST", "/playbook/async", deep)
	if code != http.StatusBadRequest || !strings.Contains(errorOf(t, b), job.LimitDepth) {
		t.Errorf("job nested too deeply: %d %s", code, b)
	}
	if n := e.st.Stats().Jobs + roomy.st.Stats().Jobs; n != 0 {
		t.Errorf("%d jobs stored from refused submissions", n)
	}
	e.waitStatus(e.submit(logJob), job.Completed)
}

// A step whose output (or a set step whose change to the context) would
// make the job too large is recorded failed, without its output, naming
// the limit; the job fails naming the step and the limit, and the steps
// after it are skipped.
func TestStepBreaksLimit(t *testing.T) {
	e := smallEnv(t, 4096, Options{})
	const huge = `{{printf \"%06000d\" 0}}`
	for _, tt := range []struct {
		name, steps string
		failed      string
		skipped     []string
	}{
		{"output of a step in the middle",
			`{"name":"small","action":"log","params":{"message":"hi"}},
			 {"name":"big","action":"log","params":{"message":"` + huge + `"}},
			 {"name":"after","action":"log","params":{"message":"never"}}`,
			"big", []string{"after"}},
		{"output of the last step",
			`{"name":"small","action":"log","params":{"message":"hi"}},
			 {"name":"big","action":"log","params":{"message":"` + huge + `"}}`,
			"big", nil},
		{"set in the middle",
			`{"name":"small","action":"log","params":{"message":"hi"}},
			 {"name":"grow","action":"set","params":{"blob":"` + huge + `"}},
			 {"name":"after","action":"log","params":{"message":"never"}}`,
			"grow", []string{"after"}},
		{"set at the end",
			`{"name":"small","action":"log","params":{"message":"hi"}},
			 {"name":"grow","action":"set","params":{"blob":"` + huge + `"}}`,
			"grow", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := e.submit(`{"playbook":[` + tt.steps + `],"context":{"keep":"me"}}`)
			j := e.waitStatus(id, job.Completed, job.Failed)
			if j.Status != job.Failed || !strings.Contains(j.Error, fmt.Sprintf("step %q", tt.failed)) || !strings.Contains(j.Error, job.LimitJobBytes) {
				t.Fatalf("job %s %q, want failed naming step %s and the limit", j.Status, j.Error, tt.failed)
			}
			if len(j.Results) != 2+len(tt.skipped) {
				t.Fatalf("results: %+v", j.Results)
			}
			if r := j.Results[0]; r.Step != "small" || r.Status != job.StepOK {
				t.Errorf("first step: %+v", r)
			}
			if r := j.Results[1]; r.Step != tt.failed || r.Status != job.StepFailed || r.Output != nil || !strings.Contains(r.Error, job.LimitJobBytes) {
				t.Errorf("step that broke the limit: %+v", r)
			}
			for i, name := range tt.skipped {
				if r := j.Results[2+i]; r.Step != name || r.Status != job.StepSkipped {
					t.Errorf("step after it: %+v", r)
				}
			}
			if _, ok := j.Context["blob"]; ok || j.Context["keep"] != "me" {
				t.Errorf("context after the failed set: %v", j.Context)
			}
		})
	}
}

// diskFull is a job store whose disk fills up and empties on request:
// while full, every write fails with store.ErrNoSpace and changes nothing.
type diskFull struct {
	jobWriter
	full   atomic.Bool
	broken atomic.Pointer[error]
}

func (d *diskFull) refuse() error {
	if d.full.Load() {
		return fmt.Errorf("append to the journal: %w", store.ErrNoSpace)
	}
	return nil
}

func (d *diskFull) Create(j *job.Job) (*job.Job, error) {
	if err := d.refuse(); err != nil {
		return nil, err
	}
	return d.jobWriter.Create(j)
}

func (d *diskFull) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	if err := d.refuse(); err != nil {
		return nil, err
	}
	return d.jobWriter.Update(id, fn)
}

func (d *diskFull) UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []store.Record) (*job.Job, error) {
	if err := d.refuse(); err != nil {
		return nil, err
	}
	return d.jobWriter.UpdateWith(id, fn, also)
}

func (d *diskFull) Err() error {
	if p := d.broken.Load(); p != nil {
		return *p
	}
	return d.jobWriter.Err()
}

func fullDiskEnv(t *testing.T, o Options) (*env, *diskFull) {
	d := &diskFull{}
	o.wrapJobs = func(w jobWriter) jobWriter { d.jobWriter = w; return d }
	return newEnv(t, o), d
}

// With the disk full, submissions get 507 and /health 503; workers keep a
// step's result and a job's end waiting, reporting nothing, until space
// returns, then go on by themselves.
func TestWorkersWaitOutFullDisk(t *testing.T) {
	e, disk := fullDiskEnv(t, Options{Workers: 2})
	steps := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}},
		{"name":"nap","action":"sleep","params":{"duration":"300ms"}},
		{"name":"c","action":"log","params":{"message":"y"}}]}`)
	end := e.submit(`{"playbook":[{"name":"nap","action":"sleep","params":{"duration":"300ms"}}]}`)
	waitFor(t, "both jobs to run, the first past its first step", func() bool {
		return len(e.job(steps).Results) == 1 && e.job(end).Status == job.Running
	})
	disk.full.Store(true)
	waitFor(t, "both workers to wait for space", func() bool { return e.srv.noSpace.Load() == 2 })

	code, b := e.do("POST", "/playbook/async", logJob)
	if code != http.StatusInsufficientStorage || !strings.Contains(errorOf(t, b), "full") {
		t.Errorf("submission to a full disk: %d %s", code, b)
	}
	code, b = e.do("GET", "/health", "")
	if h := decodeBody[HealthResponse](t, b); code != http.StatusServiceUnavailable || h.Status != "disk_full" {
		t.Errorf("health with a full disk: %d %s", code, b)
	}
	if j := e.job(steps); j.Status != job.Running || len(j.Results) != 1 {
		t.Errorf("job with a step result waiting: %s, %d results", j.Status, len(j.Results))
	}
	if j := e.job(end); j.Status != job.Running || j.CompletedAt != nil {
		t.Errorf("job with its end waiting: %s", j.Status)
	}

	disk.full.Store(false)
	if j := e.waitStatus(steps, job.Completed, job.Failed); j.Status != job.Completed || len(j.Results) != 3 {
		t.Errorf("job after space returned: %s %q, %d results", j.Status, j.Error, len(j.Results))
	}
	if j := e.waitStatus(end, job.Completed, job.Failed); j.Status != job.Completed || len(j.Results) != 1 {
		t.Errorf("job after space returned: %s %q", j.Status, j.Error)
	}
	if code, b := e.do("GET", "/health", ""); code != http.StatusOK {
		t.Errorf("health after space returned: %d %s", code, b)
	}
	e.waitStatus(e.submit(logJob), job.Completed)
}

// A job whose end cannot be written when the shutdown timeout comes stays
// running in the store, for the next start's recovery to fail: its end was
// never recorded, so it is not reported either.
func TestFullDiskAtShutdown(t *testing.T) {
	e, disk := fullDiskEnv(t, Options{})
	id := e.submit(`{"playbook":[{"name":"nap","action":"sleep","params":{"duration":"100ms"}}]}`)
	e.waitStatus(id, job.Running)
	disk.full.Store(true)
	waitFor(t, "the worker to wait for space", func() bool { return e.srv.noSpace.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline", err)
	}
	if j, err := e.st.Get(id); err != nil || j.Status != job.Running || j.CompletedAt != nil {
		t.Errorf("job after shutdown: %+v %v", j, err)
	}
}

// /health answers 503 once the store stops accepting writes.
func TestHealthWhenStoreStopsWriting(t *testing.T) {
	e, disk := fullDiskEnv(t, Options{})
	if code, b := e.do("GET", "/health", ""); code != http.StatusOK {
		t.Fatalf("health: %d %s", code, b)
	}
	broken := errors.New("write jobs.journal: input/output error")
	disk.broken.Store(&broken)
	code, b := e.do("GET", "/health", "")
	if h := decodeBody[HealthResponse](t, b); code != http.StatusServiceUnavailable || h.Status != "unavailable" || !strings.Contains(h.Error, "input/output error") {
		t.Errorf("health of a store that stopped writing: %d %s", code, b)
	}
}
