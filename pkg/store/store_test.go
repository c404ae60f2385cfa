package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
)

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

// abandon drops a store the way a killed process would: no snapshot, no
// clean release beyond what the kernel does.
func abandon(s *Store) {
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

func mustCreate(t testing.TB, s *Store, j *job.Job) *job.Job {
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

func TestRecoverRetryPolicy(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	defer s.Close()
	mk := func(attempts int) string {
		j := newJob(0)
		j.OnInterrupt = job.OnInterruptRetry
		j.MaxAttempts = 2
		j = mustCreate(t, s, j)
		for range attempts {
			if _, err := s.Update(j.ID, func(j *job.Job) error {
				if j.Status == job.Running {
					if err := j.Requeue(); err != nil {
						return err
					}
				}
				return j.Start(time.Now())
			}); err != nil {
				t.Fatal(err)
			}
		}
		return j.ID
	}
	first, last := mk(1), mk(2)
	dry, err := s.Recover(RecoverOptions{DryRun: true})
	if err != nil || dry.Requeued != 1 || dry.FailedRunning != 1 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if j, _ := s.Get(first); j.Status != job.Running {
		t.Fatalf("dry run changed a job: %+v", j)
	}
	res, err := s.Recover(RecoverOptions{})
	if err != nil || res.Requeued != 1 || res.FailedRunning != 1 || len(res.Recovered) != 2 || res.Pending != 1 {
		t.Fatalf("recover: %+v %v", res, err)
	}
	if j, _ := s.Get(first); j.Status != job.Pending || j.Attempts != 1 {
		t.Fatalf("retry job with attempts left: %+v", j)
	}
	if j, _ := s.Get(last); j.Status != job.Failed || !strings.Contains(j.Error, "recover") {
		t.Fatalf("retry job without attempts left: %+v", j)
	}
}

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mk := func(st job.Status, age time.Duration) string {
		c := now.Add(-age)
		j := newJob(0)
		j.CreatedAt = c.Add(-time.Minute)
		j.Status = st
		if st != job.Pending {
			j.StartedAt = &c
		}
		if st.Terminal() {
			j.CompletedAt = &c
			if st != job.Completed {
				j.Error = "boom"
			}
		}
		return mustCreate(t, s, j).ID
	}
	oldDone := mk(job.Completed, 40*24*time.Hour)
	oldFailed := mk(job.Failed, 40*24*time.Hour)
	newDone := mk(job.Completed, time.Hour)
	oldPending := mk(job.Pending, 400*24*time.Hour)
	oldRunning := mk(job.Running, 400*24*time.Hour)
	opts := CleanupOptions{Retention: 30 * 24 * time.Hour, ByStatus: map[job.Status]time.Duration{job.Failed: 90 * 24 * time.Hour}, DryRun: true}
	res, err := s.Cleanup(opts)
	if err != nil || res.Deleted != 1 || res.IDs[0] != oldDone || !res.DryRun {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, err := s.Get(oldDone); err != nil {
		t.Fatal("dry run deleted")
	}
	opts.DryRun = false
	opts.ByStatus = nil
	res, err = s.Cleanup(opts)
	if err != nil || res.Deleted != 2 {
		t.Fatalf("cleanup: %+v %v", res, err)
	}
	for _, id := range []string{oldDone, oldFailed} {
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s not deleted", id)
		}
	}
	for _, id := range []string{newDone, oldPending, oldRunning} {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("%s deleted: %v", id, err)
		}
	}
}

func TestBackupVerifyRestore(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", compress), func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir)
			a := mustCreate(t, s, newJob(1))
			bo := BackupOptions{Compress: compress, Keep: 3}
			b1, err := s.Backup(bo)
			if err != nil || b1.Jobs != 1 {
				t.Fatalf("backup: %+v %v", b1, err)
			}
			if compress != strings.HasSuffix(b1.Path, ".gz") {
				t.Fatalf("backup name %s", b1.Path)
			}
			side, _ := os.ReadFile(b1.Path + ".sha256")
			if string(side) != b1.SHA256+"  "+filepath.Base(b1.Path)+"\n" {
				t.Fatalf("sidecar %q is not in sha256sum format", side)
			}
			b := mustCreate(t, s, newJob(2))
			if n, err := VerifyBackup(b1.Path); err != nil || n != 1 {
				t.Fatalf("verify backup: %d %v", n, err)
			}
			res, err := s.Restore(b1.Path, bo)
			if err != nil || res.RestoredJobs != 1 {
				t.Fatalf("restore: %+v %v", res, err)
			}
			if n, err := VerifyBackup(res.SafetyBackup); err != nil || n != 2 {
				t.Fatalf("safety backup: %d %v", n, err)
			}
			if _, err := s.Get(b.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("job created after the backup survived the restore: %v", err)
			}
			c := mustCreate(t, s, newJob(3))
			abandon(s)
			s = openT(t, dir)
			got, _ := s.List(Filter{})
			if strings.Join(ids(got), ",") != c.ID+","+a.ID {
				t.Fatalf("after restore and crash: %v, want %s,%s", ids(got), c.ID, a.ID)
			}
			for range 5 {
				if _, err := s.Backup(bo); err != nil {
					t.Fatal(err)
				}
			}
			infos, err := ListBackups(dir)
			if err != nil || len(infos) != 3 {
				t.Fatalf("keep 3: %d backups, %v", len(infos), err)
			}
			for _, in := range infos {
				if !in.Verified || in.Jobs != 2 {
					t.Fatalf("backup info: %+v", in)
				}
			}
			s.Close()
			v, err := Verify(dir)
			if err != nil || !v.OK {
				t.Fatalf("verify: %+v %v", v, err)
			}
			// Tamper with one byte of the newest backup.
			data, _ := os.ReadFile(infos[0].Path)
			data[len(data)/2] ^= 0x20
			os.WriteFile(infos[0].Path, data, 0o600)
			v, _ = Verify(dir)
			if v.OK || len(v.Problems) != 1 || v.Problems[0].File != infos[0].Path || !strings.Contains(v.Problems[0].Message, "checksum") {
				t.Fatalf("verify after tamper: %+v", v)
			}
		})
	}
}

func TestRestoreRefusesGarbageAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	a := mustCreate(t, s, newJob(1))
	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("not json at all"), 0o600)
	before := dirListing(t, dir)
	if _, err := s.Restore(garbage, BackupOptions{}); err == nil {
		t.Fatal("garbage restored")
	}
	if after := dirListing(t, dir); after != before {
		t.Fatalf("failed restore changed the directory:\n%s\n---\n%s", before, after)
	}
	if _, err := s.Get(a.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
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

func TestProgressReachesTheTotal(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	for i := range 3000 {
		if i%1000 == 0 {
			mustCreate(t, s, newJob(i))
			continue
		}
		j := newJob(i)
		j.ID = fmt.Sprintf("job-%05d", i)
		mustCreate(t, s, j)
	}
	var calls int
	var last [2]int64
	res, err := s.Backup(BackupOptions{Progress: func(done, total int64) { calls++; last = [2]int64{done, total} }})
	if err != nil || calls < 3 || last != [2]int64{3000, 3000} {
		t.Fatalf("backup progress: %d calls, last %v, %v", calls, last, err)
	}
	s.Close()
	calls = 0
	v, err := VerifyWith(dir, VerifyOptions{Progress: func(done, total int64) { calls++; last = [2]int64{done, total} }})
	st, _ := os.Stat(res.Path)
	if err != nil || !v.OK || calls != 3 || last[0] != last[1] || last[1] < st.Size() {
		t.Fatalf("verify progress: %d calls, last %v, %+v %v", calls, last, v, err)
	}
}

// Verify hands the auxiliary records, those still in the journal too, to
// CheckRecords and reports what it finds against the records file.
func TestVerifyChecksRecords(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if err := s.PutRecords(Record{Key: "a/good", Value: []byte(`{"ok":true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecords(Record{Key: "a/bad", Value: []byte(`{"ok":false}`)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var seen []string
	res, err := VerifyWith(dir, VerifyOptions{CheckRecords: func(recs []Record) []string {
		var problems []string
		for _, r := range recs {
			seen = append(seen, r.Key)
			if string(r.Value) == `{"ok":false}` {
				problems = append(problems, r.Key+" is bad")
			}
		}
		return problems
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"a/bad", "a/good"}) {
		t.Errorf("CheckRecords saw %q", seen)
	}
	if res.OK || len(res.Problems) != 1 || res.Problems[0].Message != "a/bad is bad" || filepath.Base(res.Problems[0].File) != RecordsFile {
		t.Errorf("verify: %+v", res)
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
