package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

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
