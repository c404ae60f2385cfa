package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
)

func openT(t testing.TB, dir string) *FileStore {
	t.Helper()
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

// abandon drops a store the way a killed process would: no snapshot, no
// clean release beyond what the kernel does.
func abandon(s *FileStore) {
	close(s.stop)
	s.wg.Wait()
	s.w.Close()
	s.releaseLock()
}

func newJob(i int) *job.Job {
	return &job.Job{
		Playbook: []job.Step{{Name: "greet", Action: "log", Params: map[string]any{"message": fmt.Sprintf("hello %d", i)}}},
		Context:  map[string]any{"n": float64(i), "host": "10.0.0.1"},
	}
}

func mustCreate(t testing.TB, s *FileStore, j *job.Job) *job.Job {
	t.Helper()
	got, err := s.Create(j)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return got
}

func TestCreateGetListUpdateDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	a := mustCreate(t, s, newJob(1))
	time.Sleep(2 * time.Millisecond)
	b := mustCreate(t, s, newJob(2))
	if a.ID == "" || a.Status != job.Pending || a.CreatedAt.IsZero() {
		t.Fatalf("create did not fill id, status and created_at: %+v", a)
	}
	got, err := s.Get(a.ID[:len(a.ID)-3])
	if err != nil || got.ID != a.ID {
		t.Fatalf("get by prefix: %v %v", got, err)
	}
	if _, err := s.Get("0"); !errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a short prefix: %v", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	list, _ := s.List(Filter{})
	if len(list) != 2 || list[0].ID != b.ID {
		t.Fatalf("list is not newest first: %v", ids(list))
	}
	if _, err := s.Update(a.ID, func(j *job.Job) error { j.Status = job.Completed; now := time.Now(); j.CompletedAt = &now; return nil }); !errors.Is(err, job.ErrTransition) {
		t.Fatalf("pending -> completed allowed: %v", err)
	}
	if _, err := s.Update(a.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(a.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(a.ID, func(j *job.Job) error { j.Error = "x"; return nil }); !errors.Is(err, job.ErrTransition) {
		t.Fatalf("terminal job changed: %v", err)
	}
	list, _ = s.List(Filter{Statuses: []job.Status{job.Completed}})
	if len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("status filter: %v", ids(list))
	}
	if err := s.Delete(b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir)
	defer s.Close()
	list, _ = s.List(Filter{})
	if len(list) != 1 || list[0].ID != a.ID || list[0].Status != job.Completed {
		t.Fatalf("after reopen: %+v", list)
	}
	if st := s.Stats(); st.ByStatus[job.Completed] != 1 || st.Jobs != 1 {
		t.Fatalf("stats: %+v", st)
	}
	checkFileModes(t, dir)
}

func ids(js []*job.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.ID)
	}
	return out
}

func checkFileModes(t *testing.T, dir string) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
}

func TestSnapshotIsCompleteAfterCloseAndReadable(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	var want []string
	for i := range 20 {
		want = append(want, mustCreate(t, s, newJob(i)).ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]job.Job
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("jobs.json does not parse with encoding/json: %v", err)
	}
	for _, id := range want {
		if m[id].ID != id || m[id].Context["host"] != "10.0.0.1" {
			t.Fatalf("job %s missing or wrong in jobs.json: %+v", id, m[id])
		}
	}
	jst, _ := os.Stat(filepath.Join(dir, JournalFile))
	if jst.Size() != int64(journal.HeaderSize) {
		t.Fatalf("journal holds %d bytes after close, want only its header", jst.Size())
	}
}

const seedJobs = `{
  "job-id-1": {
    "id": "job-id-1",
    "status": "completed",
    "playbook": [{"name": "a", "action": "log", "params": {"message": "hi"}}],
    "context": {"ip": "1.2.3.4"},
    "results": [{"step": "a", "action": "log", "status": "ok", "output": "hi", "error": "", "started_at": "2025-07-09T15:30:05Z"}],
    "error": "",
    "created_at": "2025-07-09T15:30:00Z",
    "started_at": "2025-07-09T15:30:05Z",
    "completed_at": "2025-07-09T15:30:45Z"
  },
  "job-id-2": {
    "id": "job-id-2",
    "status": "running",
    "playbook": [],
    "context": {},
    "results": [],
    "error": "",
    "created_at": "2025-07-09T16:00:00Z",
    "started_at": "2025-07-09T16:00:01Z"
  }
}
`

func TestSeedFormatLoadsAsIs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile), []byte(seedJobs), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir)
	j, err := s.Get("job-id-1")
	if err != nil || j.Status != job.Completed || j.Context["ip"] != "1.2.3.4" || len(j.Results) != 1 {
		t.Fatalf("seed job: %+v %v", j, err)
	}
	res, err := s.Recover(RecoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FailedRunning != 1 {
		t.Fatalf("recover: %+v", res)
	}
	j, _ = s.Get("job-id-2")
	if j.Status != job.Failed || !strings.Contains(j.Error, "recover") || j.CompletedAt == nil {
		t.Fatalf("running seed job after recover: %+v", j)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(dir)
	if err != nil || !v.OK {
		t.Fatalf("verify after recover: %+v %v", v, err)
	}
}

func dirListing(t *testing.T, dir string) string {
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "%s %x\n", e.Name(), data)
	}
	return b.String()
}

func TestSecondWriterIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Owner: Owner{Command: "secauto serve", Address: "127.0.0.1:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(Options{Dir: dir})
	var le *LockedError
	if !errors.As(err, &le) || le.Owner.PID != os.Getpid() || !strings.Contains(err.Error(), "127.0.0.1:8080") {
		t.Fatalf("second open: %v", err)
	}
	locked, o, err := Locked(dir)
	if err != nil || !locked || o.Address != "127.0.0.1:8080" {
		t.Fatalf("Locked: %v %+v %v", locked, o, err)
	}
	ro, err := Open(Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open beside a writer: %v", err)
	}
	if _, err := ro.Create(newJob(1)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write through a read-only store: %v", err)
	}
}

func TestConcurrentWritersAndUpdates(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	j := mustCreate(t, s, newJob(0))
	if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				mustCreate(t, s, newJob(w*100+i))
				if _, err := s.Update(j.ID, func(j *job.Job) error {
					j.Results = append(j.Results, job.Result{Step: fmt.Sprint(w, "-", i), Status: job.StepOK, StartedAt: time.Now()})
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, _ := s.Get(j.ID)
	if len(got.Results) != 8*10 {
		t.Fatalf("concurrent updates lost: %d results, want %d", len(got.Results), 8*10)
	}
	abandon(s)
	s = openT(t, dir)
	defer s.Close()
	got, _ = s.Get(j.ID)
	all, _ := s.List(Filter{})
	if len(got.Results) != 80 || len(all) != 81 {
		t.Fatalf("after crash: %d results, %d jobs", len(got.Results), len(all))
	}
}

// A running job's next update starts from a kept copy instead of decoding
// the stored job; the result must be the same as decoding it, which a
// store reopened before every update does.
func TestUpdatesOfRunningJobsMatchDecoding(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	steps := []func(*job.Job) error{
		func(j *job.Job) error { return j.Start(at) },
		func(j *job.Job) error {
			j.Results = append(j.Results, job.Result{Step: "a", Action: "http", Status: job.StepOK, StartedAt: at,
				Output: map[string]any{"status": 200, "headers": map[string]string{"X": "1"}, "keys": []string{"k"}, "body": []any{1.5, "x"}}})
			j.Context["seen"] = map[string]any{"n": 1}
			return nil
		},
		func(j *job.Job) error { return j.Finish(job.Completed, "", at.Add(time.Second)) },
	}
	run := func(reopen bool) []byte {
		dir := t.TempDir()
		s := openT(t, dir)
		mustCreate(t, s, &job.Job{ID: "j1", CreatedAt: at, Playbook: []job.Step{{Name: "a", Action: "log"}}, Context: map[string]any{"alert": "A-1"}})
		for _, fn := range steps {
			if reopen {
				s.Close()
				s = openT(t, dir)
			}
			j, err := s.Update("j1", fn)
			if err != nil {
				t.Fatal(err)
			}
			// What Update returns is the caller's to change.
			if seen, ok := j.Context["seen"].(map[string]any); ok {
				seen["n"] = 99
			}
		}
		s.Close()
		data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	kept, decoded := run(false), run(true)
	if !bytes.Equal(kept, decoded) {
		t.Errorf("updates from the kept copy:\n%s\nfrom decoding:\n%s", kept, decoded)
	}
}

// rawOf is an entry's JSON, wherever it is kept.
func rawOf(t *testing.T, e *entry) []byte {
	t.Helper()
	raw, err := e.bytes()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
