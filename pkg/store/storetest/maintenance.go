package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// fill stores jobs of every status, a rerun and a few records, as a store
// in use holds them, and returns the jobs newest first.
func fill(t *testing.T, st store.Store) []*job.Job {
	t.Helper()
	for i, stt := range []job.Status{job.Completed, job.Failed, job.Cancelled} {
		mustCreate(t, st, ended(stt, at(time.Duration(i)*time.Hour), at(time.Duration(i)*time.Hour+time.Minute)))
	}
	p := mustCreate(t, st, newJob("pending ✓"))
	r := mustCreate(t, st, newJob("running"))
	start(t, st, r.ID)
	if _, err := st.Update(r.ID, func(j *job.Job) error {
		j.Results = append(j.Results, result("greet", map[string]any{"said": "hello ünïcødé"}))
		j.Context["set"] = 1.0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	retry := newJob("retry")
	retry.OnInterrupt, retry.MaxAttempts = job.OnInterruptRetry, 2
	mustCreate(t, st, retry)
	if _, err := st.Rerun(p.ID, rerunOf); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecords(store.Record{Key: "outbox/1", Value: []byte(`{"event":"job.completed"}`)}); err != nil {
		t.Fatal(err)
	}
	return mustList(t, st, store.Filter{})
}

func (s *suite) stats(t *testing.T) {
	s.run(t, "Counts", func(t *testing.T) {
		st := s.open(t)
		check := func(when string, want map[job.Status]int) {
			t.Helper()
			got := st.Stats()
			total := 0
			for _, stt := range job.Statuses {
				total += want[stt]
				if got.ByStatus[stt] != want[stt] {
					t.Fatalf("%s: Stats().ByStatus[%s] = %d, want %d (%v)", when, stt, got.ByStatus[stt], want[stt], got.ByStatus)
				}
			}
			if got.Jobs != total {
				t.Fatalf("%s: Stats().Jobs = %d, want %d", when, got.Jobs, total)
			}
			if !got.Healthy {
				t.Fatalf("%s: an open store is not Healthy", when)
			}
		}
		check("a new store", nil)
		fill(t, st)
		check("after fill", map[job.Status]int{job.Pending: 3, job.Running: 1, job.Completed: 1, job.Failed: 1, job.Cancelled: 1})
		running := mustList(t, st, store.Filter{Statuses: []job.Status{job.Running}})[0]
		finish(t, st, running.ID, job.Completed, "")
		pending := mustList(t, st, store.Filter{Statuses: []job.Status{job.Pending}})
		if err := st.Delete(pending[0].ID); err != nil {
			t.Fatal(err)
		}
		check("after an end and a delete", map[job.Status]int{job.Pending: 2, job.Completed: 2, job.Failed: 1, job.Cancelled: 1})
		if err := st.Err(); err != nil {
			t.Fatalf("Err of a healthy store: %v", err)
		}
	})
}

func (s *suite) cleanup(t *testing.T) {
	// setup stores jobs ended long ago and lately, and live jobs created
	// long ago; it returns the ids that a cleanup at cleanNow with a 30-day
	// retention, failed jobs kept 90 days, deletes.
	cleanNow := at(400 * day)
	setup := func(t *testing.T) (store.Store, []string, []*job.Job) {
		st := s.open(t)
		var due []string
		add := func(j *job.Job, deleted bool) {
			c := mustCreate(t, st, j)
			if deleted {
				due = append(due, c.ID)
			}
		}
		add(ended(job.Completed, at(0), at(time.Hour)), true)
		add(ended(job.Cancelled, at(0), at(time.Hour)), true)
		add(ended(job.Failed, at(200*day), at(200*day+time.Hour)), true)      // past 90 days
		add(ended(job.Failed, at(300*day), at(340*day)), false)               // 60 days: failed kept 90
		add(ended(job.Completed, at(300*day), at(390*day)), false)            // ended 10 days ago
		add(ended(job.Completed, at(0), at(399*day)), false)                  // created long ago, ended lately
		add(ended(job.Cancelled, at(360*day), at(370*day-time.Minute)), true) // 30 days and a minute
		old := newJob("old pending")
		old.CreatedAt = at(0)
		add(old, false)
		oldRunning := newJob("old running")
		oldRunning.CreatedAt = at(0)
		t0 := at(time.Hour)
		oldRunning.Status, oldRunning.StartedAt, oldRunning.Attempts = job.Running, &t0, 1
		add(oldRunning, false)
		slices.Sort(due)
		return st, due, mustList(t, st, store.Filter{})
	}
	opts := store.CleanupOptions{Retention: 30 * day, ByStatus: map[job.Status]time.Duration{job.Failed: 90 * day}, Now: cleanNow}

	s.run(t, "DryRun", func(t *testing.T) {
		st, due, before := setup(t)
		o := opts
		o.DryRun = true
		res, err := st.Cleanup(o)
		if err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		got := slices.Sorted(slices.Values(res.IDs))
		if !res.DryRun || res.Deleted != len(due) || !slices.Equal(got, due) {
			t.Fatalf("dry run reported %+v, want the %d ids %v", res, len(due), due)
		}
		sameJobs(t, "List after a dry run", mustList(t, st, store.Filter{}), before)
	})

	s.run(t, "Deletes", func(t *testing.T) {
		st, due, before := setup(t)
		res, err := st.Cleanup(opts)
		if err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		got := slices.Sorted(slices.Values(res.IDs))
		if res.DryRun || res.Deleted != len(due) || !slices.Equal(got, due) {
			t.Fatalf("cleanup reported %+v, want the %d ids %v", res, len(due), due)
		}
		var kept []*job.Job
		for _, j := range before {
			if !slices.Contains(due, j.ID) {
				kept = append(kept, j)
			}
		}
		sameJobs(t, "List after cleanup", mustList(t, st, store.Filter{}), kept)
		for _, id := range due {
			_, err := st.Get(id)
			isErr(t, "Get of a cleaned job", err, store.ErrNotFound)
		}
		again, err := st.Cleanup(opts)
		if err != nil || again.Deleted != 0 {
			t.Fatalf("a second cleanup: %+v, %v; want nothing deleted", again, err)
		}
	})

	s.run(t, "NeverLive", func(t *testing.T) {
		st, _, before := setup(t)
		res, err := st.Cleanup(store.CleanupOptions{Retention: 0, Now: at(10000 * day)})
		if err != nil {
			t.Fatal(err)
		}
		var live []*job.Job
		for _, j := range before {
			if !j.Status.Terminal() {
				live = append(live, j)
			}
		}
		if res.Deleted != len(before)-len(live) {
			t.Fatalf("a zero retention deleted %d of %d terminal jobs", res.Deleted, len(before)-len(live))
		}
		sameJobs(t, "the jobs a zero retention leaves", mustList(t, st, store.Filter{}), live)
	})
}

// checkBackupFile checks a backup against its result: the file's SHA-256 is
// res.SHA256, and its .sha256 sidecar says so in `sha256sum -c` format.
func checkBackupFile(t *testing.T, res *store.BackupResult) {
	t.Helper()
	data, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatalf("the backup %s: %v", res.Path, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != res.SHA256 {
		t.Fatalf("backup %s has SHA-256 %s, its result says %s", res.Path, got, res.SHA256)
	}
	if res.Size != int64(len(data)) {
		t.Fatalf("backup %s has %d bytes, its result says %d", res.Path, len(data), res.Size)
	}
	side, err := os.ReadFile(res.Path + ".sha256")
	if err != nil {
		t.Fatalf("the backup's checksum file: %v", err)
	}
	if want := res.SHA256 + "  " + filepath.Base(res.Path) + "\n"; string(side) != want {
		t.Fatalf("%s.sha256 holds %q, want %q", res.Path, side, want)
	}
}

func (s *suite) backupRestore(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "Plain"
		if compress {
			name = "Compressed"
		}
		s.run(t, name, func(t *testing.T) {
			src := s.open(t)
			jobs := fill(t, src)
			res, err := src.Backup(store.BackupOptions{Compress: compress})
			if err != nil {
				t.Fatalf("Backup: %v", err)
			}
			if res.Jobs != len(jobs) {
				t.Fatalf("Backup reports %d jobs, the store holds %d", res.Jobs, len(jobs))
			}
			if compress != strings.HasSuffix(res.Path, ".gz") {
				t.Fatalf("backup %s: compressed %v", res.Path, compress)
			}
			checkBackupFile(t, res)
			// A change after the backup is not in it.
			mustCreate(t, src, newJob("after the backup"))

			dst := s.open(t)
			replaced := mustCreate(t, dst, newJob("replaced by the restore"))
			rr, err := dst.Restore(res.Path, store.BackupOptions{})
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if rr.RestoredJobs != len(jobs) || rr.SafetyBackup == "" {
				t.Fatalf("Restore reports %+v, want %d jobs and a safety backup", rr, len(jobs))
			}
			sameJobs(t, "the restored store", mustList(t, dst, store.Filter{}), jobs)
			_, err = dst.Get(replaced.ID)
			isErr(t, "Get of a job the restore replaced", err, store.ErrNotFound)
			if got := dst.Stats().Jobs; got != len(jobs) {
				t.Fatalf("Stats after restore: %d jobs, want %d", got, len(jobs))
			}
			// The restored store works on: its jobs change as before.
			pending := mustList(t, dst, store.Filter{Statuses: []job.Status{job.Pending}, Oldest: true})[0]
			start(t, dst, pending.ID)
			finish(t, dst, pending.ID, job.Completed, "")
			// The safety backup holds what the restore replaced.
			back := s.open(t)
			if _, err := back.Restore(rr.SafetyBackup, store.BackupOptions{}); err != nil {
				t.Fatalf("Restore of the safety backup: %v", err)
			}
			sameJobs(t, "the safety backup", mustList(t, back, store.Filter{}), []*job.Job{replaced})
		})
	}

	s.run(t, "Empty", func(t *testing.T) {
		src := s.open(t)
		res, err := src.Backup(store.BackupOptions{})
		if err != nil {
			t.Fatalf("Backup of an empty store: %v", err)
		}
		if res.Jobs != 0 {
			t.Fatalf("Backup of an empty store reports %d jobs", res.Jobs)
		}
		checkBackupFile(t, res)
		dst := s.open(t)
		mustCreate(t, dst, newJob("x"))
		if _, err := dst.Restore(res.Path, store.BackupOptions{}); err != nil {
			t.Fatalf("Restore of an empty backup: %v", err)
		}
		if n := len(mustList(t, dst, store.Filter{})); n != 0 {
			t.Fatalf("%d jobs after restoring an empty backup", n)
		}
	})

	s.run(t, "Damaged", func(t *testing.T) {
		src := s.open(t)
		fill(t, src)
		res, err := src.Backup(store.BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(res.Path)
		if err != nil {
			t.Fatal(err)
		}
		// Change one letter inside a job: the file still parses, only its
		// checksum tells.
		i := strings.Index(string(data), "hello ünïcødé")
		if i < 0 {
			t.Fatalf("backup %s does not hold the running job's output", res.Path)
		}
		data[i] = 'j'
		bad := filepath.Join(t.TempDir(), filepath.Base(res.Path))
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		side, _ := os.ReadFile(res.Path + ".sha256")
		if err := os.WriteFile(bad+".sha256", side, 0o600); err != nil {
			t.Fatal(err)
		}
		dst := s.open(t)
		keep := mustCreate(t, dst, newJob("kept"))
		if _, err := dst.Restore(bad, store.BackupOptions{}); err == nil {
			t.Fatal("Restore of a backup that fails its checksum succeeded")
		}
		sameJobs(t, "the store after a refused restore", mustList(t, dst, store.Filter{}), []*job.Job{keep})
		if _, err := dst.Restore(filepath.Join(t.TempDir(), "missing"), store.BackupOptions{}); err == nil {
			t.Fatal("Restore of a missing file succeeded")
		}
	})
}

func (s *suite) verify(t *testing.T) {
	s.run(t, "Healthy", func(t *testing.T) {
		st := s.open(t)
		check := func(when string) {
			t.Helper()
			res, err := st.Verify(store.VerifyOptions{})
			if err != nil {
				t.Fatalf("Verify %s: %v", when, err)
			}
			if !res.OK || len(res.Problems) != 0 {
				t.Fatalf("Verify %s: ok %v, problems %v", when, res.OK, res.Problems)
			}
		}
		check("of a new store")
		fill(t, st)
		if _, err := st.Backup(store.BackupOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Backup(store.BackupOptions{Compress: true}); err != nil {
			t.Fatal(err)
		}
		check("after changes and backups")
		if err := st.Snapshot(); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		check("after Snapshot")
		res, _ := st.Verify(store.VerifyOptions{})
		if res.Jobs != 7 {
			t.Fatalf("Verify counts %d jobs, the store holds 7", res.Jobs)
		}
	})
}

func (s *suite) close(t *testing.T) {
	s.run(t, "Writes", func(t *testing.T) {
		st := s.open(t)
		jobs := fill(t, st)
		res, err := st.Backup(store.BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		old := mustCreate(t, st, ended(job.Completed, at(0), at(time.Hour)))
		var running, pending *job.Job
		for _, j := range jobs {
			switch j.Status {
			case job.Running:
				running = j
			case job.Pending:
				pending = j
			}
		}
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		calls := map[string]func() error{
			"Create": func() error { _, err := st.Create(newJob("late")); return err },
			"Update": func() error {
				_, err := st.Update(running.ID, func(j *job.Job) error { j.Context["late"] = true; return nil })
				return err
			},
			"UpdateWith": func() error {
				_, err := st.UpdateWith(running.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", now()) },
					func(*job.Job) []store.Record { return nil })
				return err
			},
			"Delete":     func() error { return st.Delete(pending.ID) },
			"Rerun":      func() error { _, err := st.Rerun(pending.ID, rerunOf); return err },
			"PutRecords": func() error { return st.PutRecords(store.Record{Key: "late", Value: []byte(`1`)}) },
			"Backup":     func() error { _, err := st.Backup(store.BackupOptions{}); return err },
			"Restore":    func() error { _, err := st.Restore(res.Path, store.BackupOptions{}); return err },
			"Cleanup": func() error {
				_, err := st.Cleanup(store.CleanupOptions{Retention: day, Now: old.CompletedAt.Add(2 * day)})
				return err
			},
			"Recover":  func() error { _, err := st.Recover(store.RecoverOptions{}); return err },
			"Snapshot": func() error { return st.Snapshot() },
			"SetOwner": func() error { return st.SetOwner(store.Owner{PID: 1, Address: "127.0.0.1:1"}) },
		}
		for _, name := range slices.Sorted(maps.Keys(calls)) {
			s.check(t, name, func(t *testing.T) {
				if err := calls[name](); !errors.Is(err, store.ErrClosed) {
					t.Errorf("%s after Close: %v, want store.ErrClosed", name, err)
				}
			})
		}
		if st.Stats().Healthy {
			t.Error("a closed store reports Healthy")
		}
		if err := st.Close(); err != nil {
			t.Errorf("a second Close: %v", err)
		}
	})

	s.run(t, "Reads", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("x"))
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		s.check(t, "Get", func(t *testing.T) {
			if got, err := st.Get(j.ID); !errors.Is(err, store.ErrClosed) {
				t.Errorf("Get after Close: %v, %v; want store.ErrClosed", got != nil, err)
			}
		})
		s.check(t, "List", func(t *testing.T) {
			if got, err := st.List(store.Filter{}); !errors.Is(err, store.ErrClosed) {
				t.Errorf("List after Close: %d jobs, %v; want store.ErrClosed", len(got), err)
			}
		})
		s.check(t, "Verify", func(t *testing.T) {
			if _, err := st.Verify(store.VerifyOptions{}); !errors.Is(err, store.ErrClosed) {
				t.Errorf("Verify after Close: %v; want store.ErrClosed", err)
			}
		})
	})
}

func (s *suite) reopen(t *testing.T) {
	skip := func(t *testing.T) {
		if s.d.Reopen == nil {
			t.Skip("the driver has no Reopen")
		}
	}
	s.run(t, "Durable", func(t *testing.T) {
		skip(t)
		st := s.open(t)
		jobs := fill(t, st)
		gone := mustCreate(t, st, newJob("deleted"))
		if err := st.Delete(gone.ID); err != nil {
			t.Fatal(err)
		}
		recs := st.Records("")
		again := s.d.Reopen(t, st)
		sameJobs(t, "the jobs after Reopen", mustList(t, again, store.Filter{}), jobs)
		sameRecords(t, "the records after Reopen", again.Records(""), recs)
		_, err := again.Get(gone.ID)
		isErr(t, "Get of a deleted job after Reopen", err, store.ErrNotFound)
		// It goes on writing.
		j := mustCreate(t, again, newJob("after reopen"))
		sameJob(t, "a job created after Reopen", mustGet(t, again, j.ID), j)
	})

	s.run(t, "Recover", func(t *testing.T) {
		skip(t)
		st := s.open(t)
		mk := func(name string, retry bool, max, attempts int) *job.Job {
			j := newJob(name)
			if retry {
				j.OnInterrupt = job.OnInterruptRetry
			}
			j.MaxAttempts = max
			c := mustCreate(t, st, j)
			// Earlier attempts, ended by earlier recoveries.
			for range attempts - 1 {
				start(t, st, c.ID)
				if _, err := st.Update(c.ID, func(j *job.Job) error { return j.Requeue() }); err != nil {
					t.Fatal(err)
				}
			}
			if attempts > 0 {
				start(t, st, c.ID)
				if _, err := st.Update(c.ID, func(j *job.Job) error {
					j.Context["set_by_a_step"] = "x"
					j.Results = append(j.Results, result("greet", "hi"))
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			return mustGet(t, st, c.ID)
		}
		failRun := mk("fail", false, 0, 1)
		retryRun := mk("retry", true, 3, 1)
		spent := mk("spent", true, 2, 2)
		pend := mk("pending", true, 0, 0)
		done := mustCreate(t, st, ended(job.Completed, at(0), at(time.Hour)))

		again := s.d.Reopen(t, st)
		before := time.Now().UTC().Add(-time.Second)
		var changed []*job.Job
		also := func(j *job.Job) []store.Record {
			return []store.Record{{Key: "recovered/" + j.ID, Value: []byte(`"` + string(j.Status) + `"`)}}
		}
		if c, ok := again.(store.Cluster); ok {
			var err error
			if changed, err = c.RescueDead(time.Now(), also); err != nil {
				t.Fatalf("RescueDead: %v", err)
			}
		} else {
			res, err := again.Recover(store.RecoverOptions{Also: also})
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if res.FailedRunning != 2 || res.Requeued != 1 || res.Pending != 2 {
				t.Fatalf("Recover reports %d failed, %d requeued, %d pending; want 2, 1, 2", res.FailedRunning, res.Requeued, res.Pending)
			}
			changed = res.Recovered
		}
		after := time.Now().UTC().Add(time.Second)
		if got := slices.Sorted(slices.Values(ids(changed))); !slices.Equal(got, slices.Sorted(slices.Values([]string{failRun.ID, retryRun.ID, spent.ID}))) {
			t.Fatalf("recovery changed %v, want the three running jobs", got)
		}
		for _, c := range changed {
			sameJob(t, "a recovered job as recovery answered it", mustGet(t, again, c.ID), c)
		}
		for _, j := range []*job.Job{failRun, spent} {
			got := mustGet(t, again, j.ID)
			if got.Status != job.Failed || !strings.Contains(got.Error, "recover") || got.CompletedAt == nil ||
				got.CompletedAt.Before(before) || got.CompletedAt.After(after) || got.Attempts != j.Attempts {
				t.Errorf("a running job after recovery: %s; want failed now, its error saying recover", jsonOf(t, got))
			}
		}
		got := mustGet(t, again, retryRun.ID)
		if got.Status != job.Pending || got.StartedAt != nil || got.Error != "" || got.Attempts != 1 ||
			len(got.Results) != 0 || got.Context["set_by_a_step"] != nil {
			t.Errorf("a running retry job with attempts left after recovery: %s; want pending again, as submitted", jsonOf(t, got))
		}
		sameJob(t, "a pending job after recovery", mustGet(t, again, pend.ID), pend)
		sameJob(t, "an ended job after recovery", mustGet(t, again, done.ID), done)
		var want []store.Record
		for _, id := range slices.Sorted(slices.Values([]string{failRun.ID, retryRun.ID, spent.ID})) {
			st := "failed"
			if id == retryRun.ID {
				st = "pending"
			}
			want = append(want, store.Record{Key: "recovered/" + id, Value: fmt.Appendf(nil, "%q", st)})
		}
		sameRecords(t, "the records recovery stored with its jobs", again.Records("recovered/"), want)

		// A second pass finds nothing to do.
		if c, ok := again.(store.Cluster); ok {
			if more, err := c.RescueDead(time.Now(), also); err != nil || len(more) != 0 {
				t.Fatalf("a second RescueDead: %v, %v", ids(more), err)
			}
		} else if res, err := again.Recover(store.RecoverOptions{}); err != nil || len(res.Actions) != 0 {
			t.Fatalf("a second Recover: %+v, %v", res, err)
		}
	})

	s.run(t, "RecoverDryRun", func(t *testing.T) {
		skip(t)
		st := s.open(t)
		jobs := fill(t, st)
		again := s.d.Reopen(t, st)
		if _, ok := again.(store.Cluster); ok {
			t.Skip("a Cluster recovers through RescueDead, which has no dry run")
		}
		res, err := again.Recover(store.RecoverOptions{DryRun: true})
		if err != nil {
			t.Fatalf("Recover: %v", err)
		}
		if !res.DryRun || res.FailedRunning != 1 || len(res.Actions) != 1 || res.Actions[0].To != job.Failed {
			t.Fatalf("a dry run reports %+v; want one running job to fail", res)
		}
		sameJobs(t, "the jobs after a dry run", mustList(t, again, store.Filter{}), jobs)
	})
}
