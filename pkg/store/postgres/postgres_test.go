package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	u := testURL(t)
	ctx := context.Background()
	st, err := Status(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 0 || st.Pending != latest() || st.Latest != latest() {
		t.Fatalf("fresh schema: %+v", st)
	}
	if _, err := Open(ctx, Options{URL: u, ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "secauto migrate up") {
		t.Fatalf("read-only open of an empty schema: %v, want an error naming `secauto migrate up`", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = Migrate(ctx, u) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		st, err := Migrate(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if st != (MigrationStatus{Version: latest(), Pending: 0, Latest: latest()}) {
			t.Fatalf("after migrate: %+v", st)
		}
	}
	s := openAt(t, u, func(o *Options) { o.ReadOnly = true })
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM secauto_schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != latest() {
		t.Fatalf("%d migrations recorded, want %d", n, latest())
	}
	if _, err := s.Create(newJob(1)); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("create on a read-only store: %v", err)
	}
}

func TestCreateGroupCommit(t *testing.T) {
	s, _ := openTest(t)
	const n = 300
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			j, err := s.Create(newJob(i))
			errs[i] = err
			if err == nil {
				ids[i] = j.ID
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	for i, id := range ids {
		j, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Context["n"] != float64(i) || j.Status != job.Pending {
			t.Fatalf("job %s read back as %+v", id, j)
		}
	}
	txns, jobs := s.createTxns.Load(), s.createJobs.Load()
	t.Logf("%d creates in %d transactions", jobs, txns)
	if jobs != n || txns >= n {
		t.Fatalf("%d jobs in %d transactions: the creates were not grouped", jobs, txns)
	}
	if st := s.Stats(); st.Jobs != n || st.ByStatus[job.Pending] != n || !st.Healthy {
		t.Fatalf("stats: %+v", st)
	}
}

func TestCreateExistsAndGet(t *testing.T) {
	s, _ := openTest(t)
	a := newJob(1)
	a.ID = "abc-1"
	if _, err := s.Create(a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(a); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	b := newJob(2)
	b.ID = "abc-2"
	if _, err := s.Create(b); err != nil {
		t.Fatal(err)
	}
	if j, err := s.Get("abc-1"); err != nil || j.ID != "abc-1" {
		t.Fatalf("get by id: %v %v", j, err)
	}
	if j, err := s.Get("abc-2"[:5]); err != nil || j.ID != "abc-2" {
		t.Fatalf("get by prefix: %v %v", j, err)
	}
	if _, err := s.Get("abc"); !errors.Is(err, store.ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	for _, id := range []string{"", "zzz", "ab%", "a_c"} {
		if _, err := s.Get(id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get %q: %v, want ErrNotFound", id, err)
		}
	}
	if err := s.Delete("abc-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("abc-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestListOrderAndFilters(t *testing.T) {
	s, _ := openTest(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	for i := range 6 {
		j := newJob(i)
		j.ID = fmt.Sprintf("job-%d", i)
		j.CreatedAt = base.Add(time.Duration(i/2) * time.Hour) // pairs share a time: id breaks the tie
		if i%3 == 2 {
			st := j.CreatedAt
			j.Status, j.StartedAt = job.Running, &st
		}
		if _, err := s.Create(j); err != nil {
			t.Fatal(err)
		}
		want = append(want, j.ID)
	}
	ids := func(js []*job.Job) string {
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return strings.Join(out, ",")
	}
	all, _ := s.List(store.Filter{})
	if got := ids(all); got != "job-5,job-4,job-3,job-2,job-1,job-0" {
		t.Fatalf("newest first: %s", got)
	}
	old, _ := s.List(store.Filter{Oldest: true, Limit: 2})
	if got := ids(old); got != "job-0,job-1" {
		t.Fatalf("oldest first, limited: %s", got)
	}
	run, _ := s.List(store.Filter{Statuses: []job.Status{job.Running}})
	if got := ids(run); got != "job-5,job-2" {
		t.Fatalf("running: %s", got)
	}
	since, _ := s.List(store.Filter{Since: base.Add(time.Hour), Statuses: []job.Status{job.Pending}})
	if got := ids(since); got != "job-4,job-3" {
		t.Fatalf("since: %s", got)
	}
}

func TestLimitsAsTheFileDriver(t *testing.T) {
	s, _ := openTest(t, func(o *Options) { o.MaxJobBytes = 4096 })
	fs, err := store.Open(store.Options{Dir: t.TempDir(), MaxJobBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	big := newJob(1)
	big.ID = "big"
	big.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) // the same size in both
	big.Context["blob"] = strings.Repeat("x", 5000)
	_, perr := s.Create(big)
	_, ferr := fs.Create(big)
	if !errors.Is(perr, job.ErrLimit) || ferr == nil || perr.Error() != ferr.Error() {
		t.Fatalf("postgres: %v\nfile:     %v", perr, ferr)
	}
	bad := newJob(2)
	bad.Playbook = append(bad.Playbook, bad.Playbook[0])
	_, perr = s.Create(bad)
	_, ferr = fs.Create(bad)
	if perr == nil || ferr == nil || !errors.Is(perr, job.ErrInvalid) {
		t.Fatalf("duplicate step names: postgres %v, file %v", perr, ferr)
	}
}

func TestUpdateRetriesUnderConcurrency(t *testing.T) {
	s, u := openTest(t)
	other := openAt(t, u)
	nj := newJob(0)
	nj.Context["count"] = 0.0
	j, err := s.Create(nj)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		st := s
		if i%2 == 1 {
			st = other
		}
		wg.Go(func() {
			_, err := st.Update(j.ID, func(j *job.Job) error {
				j.Context["count"] = j.Context["count"].(float64) + 1
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.Get(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Context["count"] != float64(n) {
		t.Fatalf("count %v after %d concurrent increments", got.Context["count"], n)
	}
}

func TestUpdateTransitions(t *testing.T) {
	s, _ := openTest(t)
	j, err := s.Create(newJob(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(j.ID, func(j *job.Job) error { j.Status = job.Completed; return nil }); !errors.Is(err, job.ErrTransition) {
		t.Fatalf("pending → completed: %v", err)
	}
	if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Finish(job.Cancelled, "no", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(j.ID, func(j *job.Job) error { j.Context["x"] = 1.0; return nil }); !errors.Is(err, job.ErrTransition) {
		t.Fatalf("changing a cancelled job: %v", err)
	}
	if _, err := s.Update("nope", func(*job.Job) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	// UpdateWith stores the records in the same change.
	k, _ := s.Create(newJob(1))
	_, err = s.UpdateWith(k.ID, func(j *job.Job) error { return j.Start(time.Now()) }, func(j *job.Job) []store.Record {
		return []store.Record{{Key: "webhook/" + j.ID, Value: json.RawMessage(`{"status":"` + string(j.Status) + `"}`)}}
	})
	if err != nil {
		t.Fatal(err)
	}
	recs := s.Records("webhook/")
	if len(recs) != 1 || string(recs[0].Value) != `{"status":"running"}` {
		t.Fatalf("records: %+v", recs)
	}
}

func TestRerun(t *testing.T) {
	s, _ := openTest(t)
	j, _ := s.Create(newJob(7))
	nj, err := s.Rerun(j.ID[:8], func(orig *job.Job) (*job.Job, error) { return orig.Rerun(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if nj.RerunOf != j.ID || nj.Status != job.Pending || nj.ID == j.ID {
		t.Fatalf("rerun: %+v", nj)
	}
	orig, _ := s.Get(j.ID)
	if len(orig.Reruns) != 1 || orig.Reruns[0] != nj.ID {
		t.Fatalf("original's reruns: %v", orig.Reruns)
	}
}

func join(t *testing.T, s *Store, id string, lease time.Duration) {
	t.Helper()
	if err := s.Join(store.Node{ID: id, Host: "test", PID: 1, StartedAt: time.Now()}, lease); err != nil {
		t.Fatal(err)
	}
}

func start(j *job.Job) error { return j.Start(time.Now()) }

func TestClaimExactlyOnce(t *testing.T) {
	s, u := openTest(t)
	const n = 200
	for i := range n {
		if _, err := s.Create(newJob(i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	claimed := map[string]string{}
	var wg sync.WaitGroup
	for c := range 4 {
		node := openAt(t, u)
		join(t, node, fmt.Sprintf("node-%d", c), time.Hour)
		wg.Go(func() {
			for {
				js, err := node.Claim(7, start)
				if err != nil {
					t.Error(err)
					return
				}
				if len(js) == 0 {
					return
				}
				mu.Lock()
				for _, j := range js {
					if prev, dup := claimed[j.ID]; dup {
						t.Errorf("job %s claimed by %s and node-%d", j.ID, prev, c)
					}
					claimed[j.ID] = fmt.Sprintf("node-%d", c)
					if j.Status != job.Running || j.Attempts != 1 {
						t.Errorf("claimed job %+v", j)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Fatalf("%d jobs claimed, want %d", len(claimed), n)
	}
	var bad int
	s.pool.QueryRow(context.Background(), "SELECT count(*) FROM secauto_jobs WHERE status <> 'running' OR node IS NULL OR attempt <> 1").Scan(&bad)
	if bad != 0 {
		t.Fatalf("%d jobs not running on a node after the claims", bad)
	}
}

func TestClaimOldestFirstAndNeedsJoin(t *testing.T) {
	s, _ := openTest(t)
	base := time.Now().Add(-time.Hour)
	for i := range 3 {
		j := newJob(i)
		j.ID = fmt.Sprintf("j%d", 2-i)
		j.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		s.Create(j)
	}
	if _, err := s.Claim(1, start); err == nil {
		t.Fatal("claim before join succeeded")
	}
	join(t, s, "n1", time.Hour)
	js, err := s.Claim(2, start)
	if err != nil || len(js) != 2 || js[0].ID != "j2" || js[1].ID != "j1" {
		t.Fatalf("claim: %v %v", js, err)
	}
}

// lapse makes node's lease lapse now.
func lapse(t *testing.T, s *Store, node string) {
	t.Helper()
	if exec(t, s, "UPDATE secauto_nodes SET lease_until = now() - interval '1 second' WHERE id = $1", node) != 1 {
		t.Fatalf("node %s has no row", node)
	}
}

func TestRescueDeadExactlyOnce(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	const n = 20
	for i := range n {
		j := newJob(i)
		if i%2 == 0 {
			j.OnInterrupt = job.OnInterruptRetry
		}
		a.Create(j)
	}
	if js, err := a.Claim(n, start); err != nil || len(js) != n {
		t.Fatalf("claim: %d %v", len(js), err)
	}
	lapse(t, a, "a")
	b, c := openAt(t, u), openAt(t, u)
	join(t, b, "b", time.Hour)
	join(t, c, "c", time.Hour)
	also := func(j *job.Job) []store.Record {
		return []store.Record{{Key: "webhook/recovered/" + j.ID, Value: json.RawMessage(`{}`)}}
	}
	var wg sync.WaitGroup
	results := make([][]*job.Job, 2)
	for i, r := range []*Store{b, c} {
		wg.Go(func() {
			js, err := r.RescueDead(time.Now(), also)
			if err != nil {
				t.Error(err)
			}
			results[i] = js
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	failed, requeued := 0, 0
	for _, js := range results {
		for _, j := range js {
			if seen[j.ID] {
				t.Fatalf("job %s rescued twice", j.ID)
			}
			seen[j.ID] = true
			switch j.Status {
			case job.Failed:
				failed++
				if !strings.Contains(j.Error, "recover") {
					t.Fatalf("error %q does not say it was recovered", j.Error)
				}
			case job.Pending:
				requeued++
			}
		}
	}
	if len(seen) != n || failed != n/2 || requeued != n/2 {
		t.Fatalf("rescued %d (failed %d, requeued %d), want %d", len(seen), failed, requeued, n)
	}
	if recs := b.Records("webhook/recovered/"); len(recs) != n {
		t.Fatalf("%d recovery records, want %d", len(recs), n)
	}
	if js, _ := b.RescueDead(time.Now(), also); len(js) != 0 {
		t.Fatalf("a second rescue changed %d jobs", len(js))
	}
	var nodes int
	b.pool.QueryRow(context.Background(), "SELECT count(*) FROM secauto_nodes WHERE id = 'a'").Scan(&nodes)
	if nodes != 0 {
		t.Fatal("the dead node's row is still there")
	}
}

func TestFencing(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	j := newJob(0)
	j.OnInterrupt = job.OnInterruptRetry
	a.Create(j)
	js, err := a.Claim(1, start)
	if err != nil || len(js) != 1 {
		t.Fatal(js, err)
	}
	id, attempt := js[0].ID, js[0].Attempts
	lapse(t, a, "a")
	b := openAt(t, u)
	join(t, b, "b", time.Hour)
	if js, err := b.RescueDead(time.Now(), nil); err != nil || len(js) != 1 || js[0].Status != job.Pending {
		t.Fatalf("rescue: %v %v", js, err)
	}
	if js, err := b.Claim(1, start); err != nil || len(js) != 1 || js[0].Attempts != attempt+1 {
		t.Fatalf("reclaim: %v %v", js, err)
	}
	errStale := errors.New("stale attempt")
	fenced := func(j *job.Job) error {
		if j.Status != job.Running || j.Attempts != attempt {
			return errStale
		}
		j.Results = append(j.Results, job.Result{Step: "a", Action: "log", Status: job.StepOK, StartedAt: time.Now()})
		return nil
	}
	if _, err := a.Update(id, fenced); !errors.Is(err, errStale) {
		t.Fatalf("the dead node's late write: %v, want it fenced", err)
	}
	got, _ := b.Get(id)
	if len(got.Results) != 0 || got.Attempts != attempt+1 {
		t.Fatalf("the late write landed: %+v", got)
	}
}

func TestWakeOnNotify(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	b := openAt(t, u)
	wake := a.Wake()
	// Joining wakes the node once, for what was pending before it listened.
	waitFor(t, wake, 5*time.Second, "wake after join")
	if _, err := b.Create(newJob(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wake, 5*time.Second, "wake after another process's create")
	// A dropped connection is re-established, and wakes the node.
	exec(t, b, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'secauto' AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
	waitFor(t, wake, 10*time.Second, "wake after reconnecting")
	if _, err := b.Create(newJob(2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wake, 5*time.Second, "wake after a create once reconnected")
}

func TestSettled(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	b := openAt(t, u)
	join(t, b, "b", time.Hour)
	for i := range 2 {
		a.Create(newJob(i))
	}
	js, err := a.Claim(2, start)
	if err != nil || len(js) != 2 {
		t.Fatal(js, err)
	}
	settled := a.Settled()
	if _, err := b.Update(js[0].ID, func(j *job.Job) error { return j.Finish(job.Cancelled, "cancelled by operator", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if id := waitFor(t, settled, 5*time.Second, "settled after a cancel"); id != js[0].ID {
		t.Fatalf("settled %s, want %s", id, js[0].ID)
	}
	if err := b.Delete(js[1].ID); err != nil {
		t.Fatal(err)
	}
	if id := waitFor(t, settled, 5*time.Second, "settled after a delete"); id != js[1].ID {
		t.Fatalf("settled %s, want %s", id, js[1].ID)
	}
	// A node's own change of its job is not announced to it; b hears nothing of a's jobs.
	a.Create(newJob(3))
	js, _ = a.Claim(1, start)
	a.Update(js[0].ID, func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) })
	select {
	case id := <-settled:
		t.Fatalf("own change announced: %s", id)
	case id := <-b.Settled():
		t.Fatalf("b heard of a's job %s", id)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestExclusive(t *testing.T) {
	a, u := openTest(t)
	b := openAt(t, u)
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan bool)
	go func() {
		ok, err := a.Exclusive("cleanup", func() error {
			close(inside)
			<-release
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- ok
	}()
	<-inside
	for _, s := range []*Store{a, b} {
		ok, err := s.Exclusive("cleanup", func() error { t.Error("ran while another held the lock"); return nil })
		if ok || err != nil {
			t.Fatalf("second holder: %v %v", ok, err)
		}
	}
	if ok, err := b.Exclusive("backup", func() error { return nil }); !ok || err != nil {
		t.Fatalf("another lock name: %v %v", ok, err)
	}
	close(release)
	if !<-done {
		t.Fatal("the first holder did not get the lock")
	}
	want := errors.New("boom")
	if ok, err := b.Exclusive("cleanup", func() error { return want }); !ok || !errors.Is(err, want) {
		t.Fatalf("after release: %v %v", ok, err)
	}
}

func TestClaimRecord(t *testing.T) {
	a, u := openTest(t)
	b := openAt(t, u)
	join(t, a, "a", time.Hour)
	join(t, b, "b", time.Hour)
	if err := a.PutRecords(store.Record{Key: "webhook/1", Value: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	claim := func(s *Store, ttl time.Duration) bool {
		ok, err := s.ClaimRecord("webhook/1", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(a, 300*time.Millisecond) || claim(b, time.Second) || !claim(a, 300*time.Millisecond) {
		t.Fatal("a claim is not held by one node")
	}
	time.Sleep(400 * time.Millisecond)
	if !claim(b, time.Minute) || claim(a, time.Minute) {
		t.Fatal("a lapsed claim was not taken over")
	}
	if ok, _ := a.ClaimRecord("webhook/none", time.Minute); ok {
		t.Fatal("claimed a record that does not exist")
	}
	if err := a.PutRecords(store.Record{Key: "webhook/1"}); err != nil {
		t.Fatal(err)
	}
	if recs := a.Records("webhook/"); len(recs) != 0 {
		t.Fatalf("deleted record still there: %v", recs)
	}
}

func TestCleanupInBatches(t *testing.T) {
	s, _ := openTest(t)
	old := time.Now().Add(-48 * time.Hour)
	const n = 2*cleanupBatch + 17
	jobs := make([]store.StoredJob, 0, n)
	for i := range n {
		j := store.CompleteNew(newJob(i), fmt.Sprintf("old-%05d", i), time.Now)
		j.CreatedAt = old
		st := old.Add(time.Second)
		j.StartedAt, j.CompletedAt, j.Status = &st, &st, job.Completed
		doc, err := s.codec.EncodeJob(j)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, store.StoredJob{ID: j.ID, Doc: doc})
	}
	ids := make([]string, n)
	docs := make([][]byte, n)
	for i, sj := range jobs {
		ids[i], docs[i] = sj.ID, sj.Doc
	}
	exec(t, s, `INSERT INTO secauto_jobs (id, status, created_at, completed_at, doc)
		SELECT id, 'completed', $3, $3, doc FROM unnest($1::text[], $2::bytea[]) AS u(id, doc)`, ids, docs, old.Add(time.Second))
	fresh, _ := s.Create(newJob(-1))
	dry, err := s.Cleanup(store.CleanupOptions{Retention: 24 * time.Hour, DryRun: true})
	if err != nil || dry.Deleted != n || !dry.DryRun || len(dry.IDs) != n {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if st := s.Stats(); st.Jobs != n+1 {
		t.Fatalf("dry run deleted: %+v", st)
	}
	res, err := s.Cleanup(store.CleanupOptions{Retention: 24 * time.Hour})
	if err != nil || res.Deleted != n || res.IDs[0] != "old-00000" {
		t.Fatalf("cleanup: %d %v", res.Deleted, err)
	}
	if st := s.Stats(); st.Jobs != 1 {
		t.Fatalf("after cleanup: %+v", st)
	}
	if _, err := s.Get(fresh.ID); err != nil {
		t.Fatal(err)
	}
	// ByStatus overrides the retention.
	res, err = s.Cleanup(store.CleanupOptions{Retention: time.Nanosecond, ByStatus: map[job.Status]time.Duration{job.Completed: time.Hour}})
	if err != nil || res.Deleted != 0 {
		t.Fatalf("pending job cleaned: %+v %v", res, err)
	}
}

func sameJobs(t *testing.T, a, b []*job.Job) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d jobs and %d jobs", len(a), len(b))
	}
	for i := range a {
		ja, _ := json.Marshal(a[i])
		jb, _ := json.Marshal(b[i])
		if string(ja) != string(jb) {
			t.Fatalf("job %d differs:\n%s\n%s", i, ja, jb)
		}
	}
}

func TestBackupRestoreWithTheFileDriver(t *testing.T) {
	kr := testKeyring(t, 0x11)
	dir := t.TempDir()
	s, _ := openTest(t, func(o *Options) { o.Keyring = kr; o.Dir = dir })
	for i := range 30 {
		j, err := s.Create(newJob(i))
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			s.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) })
		}
	}
	s.PutRecords(store.Record{Key: "schedule/backup", Value: json.RawMessage(`{"at":1}`)})
	res, err := s.Backup(store.BackupOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 30 || len(res.KeyIDs) != 1 || filepath.Dir(res.Path) != dir {
		t.Fatalf("backup: %+v", res)
	}
	if n, err := store.VerifyBackup(res.Path); err != nil || n != 30 {
		t.Fatalf("verify backup: %d %v", n, err)
	}
	want, _ := s.List(store.Filter{})

	// The file driver restores the postgres backup, and reads the same jobs.
	fs, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := fs.Restore(res.Path, store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := fs.List(store.Filter{})
	sameJobs(t, want, got)

	// And back: a file driver backup restores into postgres.
	fs.Create(newJob(99))
	fres, err := fs.Backup(store.BackupOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ = fs.List(store.Filter{})
	rr, err := s.Restore(fres.Path, store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rr.RestoredJobs != 31 || rr.SafetyBackup == "" {
		t.Fatalf("restore: %+v", rr)
	}
	got, _ = s.List(store.Filter{})
	sameJobs(t, want, got)
	if _, err := store.VerifyBackup(rr.SafetyBackup); err != nil {
		t.Fatalf("safety backup: %v", err)
	}
	v, err := s.Verify(store.VerifyOptions{})
	if err != nil || !v.OK {
		t.Fatalf("verify after restore: %+v %v", v, err)
	}
	if v.Backups < 2 {
		t.Fatalf("verify checked %d backups", v.Backups)
	}
}

func TestVerifyFindsACorruptDoc(t *testing.T) {
	s, _ := openTest(t)
	a, _ := s.Create(newJob(1))
	b, _ := s.Create(newJob(2))
	s.Backup(store.BackupOptions{})
	if v, err := s.Verify(store.VerifyOptions{}); err != nil || !v.OK || v.Jobs != 2 || v.Backups != 1 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	exec(t, s, "UPDATE secauto_jobs SET doc = convert_to('{\"id\": \"'||id||'\", \"status\": \"bogus\"', 'UTF8') WHERE id = $1", a.ID)
	exec(t, s, "UPDATE secauto_jobs SET status = 'completed' WHERE id = $1", b.ID)
	v, err := s.Verify(store.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || len(v.Problems) != 2 || v.Problems[0].JobID != a.ID || v.Problems[1].JobID != b.ID {
		t.Fatalf("verify: %+v", v)
	}
	if _, err := s.Get(a.ID); err == nil {
		t.Fatal("a corrupt job read back")
	}
	// A listing leaves the bad job out and names it.
	var named []string
	s.o.OnUnreadable = func(id string, err error) { named = append(named, id) }
	js, err := s.List(store.Filter{})
	if err != nil || len(js) != 1 || len(named) != 1 || named[0] != a.ID {
		t.Fatalf("list: %v %v %v", js, named, err)
	}
}

func TestRecoverSparesLiveNodes(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	a.Create(newJob(1))
	live, _ := a.Claim(1, start)
	orphanStore := openAt(t, u)
	j := newJob(2)
	now := time.Now()
	j.CreatedAt, j.Status, j.StartedAt = now, job.Running, &now
	orphan, err := orphanStore.Create(j) // running on no node
	if err != nil {
		t.Fatal(err)
	}
	pend, _ := a.Create(newJob(3))
	c := openAt(t, u)
	dry, err := c.Recover(store.RecoverOptions{DryRun: true})
	if err != nil || len(dry.Actions) != 1 || dry.Actions[0].JobID != orphan.ID || dry.FailedRunning != 1 || dry.Pending != 1 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if got, _ := c.Get(orphan.ID); got.Status != job.Running {
		t.Fatal("the dry run changed the job")
	}
	res, err := c.Recover(store.RecoverOptions{})
	if err != nil || res.FailedRunning != 1 || len(res.Recovered) != 1 || res.Recovered[0].ID != orphan.ID || res.Pending != 1 {
		t.Fatalf("recover: %+v %v", res, err)
	}
	if got, _ := c.Get(live[0].ID); got.Status != job.Running {
		t.Fatal("recovery failed a live node's job")
	}
	if got, _ := c.Get(pend.ID); got.Status != job.Pending {
		t.Fatal("recovery touched a pending job")
	}
}

func TestCloseOrphansLeftJobs(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	a.Create(newJob(1))
	js, _ := a.Claim(1, start)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openAt(t, u)
	got, err := b.RescueDead(time.Now(), nil)
	if err != nil || len(got) != 1 || got[0].ID != js[0].ID || got[0].Status != job.Failed {
		t.Fatalf("rescue after a close: %v %v", got, err)
	}
	if _, err := a.Create(newJob(2)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
}

func TestRotateKeys(t *testing.T) {
	u := testURL(t)
	old := openAt(t, u, func(o *Options) { o.Keyring = testKeyring(t, 0x01) })
	for i := range 7 {
		old.Create(newJob(i))
	}
	old.PutRecords(store.Record{Key: "webhook/x", Value: json.RawMessage(`{"a":1}`)})
	old.Close()
	kr := testKeyring(t, 0x02, 0x01)
	s := openAt(t, u, func(o *Options) { o.Keyring = kr })
	res, err := s.RotateKeys(store.RotateOptions{Batch: 3})
	if err != nil || res.Jobs != 7 || res.Records != 1 || res.KeyID != kr.Primary() {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if res, err := s.RotateKeys(store.RotateOptions{}); err != nil || res.Jobs != 0 || res.Records != 0 {
		t.Fatalf("second rotate: %+v %v", res, err)
	}
	onlyNew := openAt(t, u, func(o *Options) { o.Keyring = testKeyring(t, 0x02) })
	js, err := onlyNew.List(store.Filter{})
	if err != nil || len(js) != 7 || js[0].Context["secret"] != "s3cr3t" {
		t.Fatalf("read with the new key only: %v %v", js, err)
	}
	if recs := onlyNew.Records("webhook/"); len(recs) != 1 || string(recs[0].Value) != `{"a":1}` {
		t.Fatalf("records: %v", recs)
	}
	var plain int
	s.pool.QueryRow(context.Background(), "SELECT count(*) FROM secauto_jobs WHERE position('s3cr3t' in convert_from(doc, 'UTF8')) > 0").Scan(&plain)
	if plain != 0 {
		t.Fatal("a secret is stored in plain")
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	testURL(t) // skips without a server
	const pw = "S3cretPassw0rd"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range []string{
		"postgres://secauto:" + pw + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"postgres://secauto:" + pw + "@no-such-host.invalid:5432/test?connect_timeout=2",
		"postgres://secauto:" + pw + "@127.0.0.1:nope/test",
		"postgres://secauto@127.0.0.1:1/test?password=" + pw + "&connect_timeout=2",
		"host=127.0.0.1 port=1 user=secauto password=" + pw + " connect_timeout=2",
		"postgres://secauto:" + pw + "@127.0.0.1:5432/test?sslmode=disable&search_path=no_such_schema",
	} {
		_, err := Open(ctx, Options{URL: u})
		if err == nil {
			t.Fatalf("open %s succeeded", Redact(u))
		}
		if strings.Contains(err.Error(), pw) {
			t.Fatalf("the password is in the error: %v", err)
		}
		for _, f := range []func(context.Context, string) (MigrationStatus, error){Migrate, Status} {
			if _, err := f(ctx, u); err == nil || strings.Contains(err.Error(), pw) {
				t.Fatalf("migrate/status of %s: %v", Redact(u), err)
			}
		}
		if strings.Contains(Redact(u), pw) {
			t.Fatalf("Redact(%q) = %q", u, Redact(u))
		}
	}
}

func TestRestoreSettlesRunningJobs(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	b := openAt(t, u)
	join(t, b, "b", time.Hour)
	a.Create(newJob(1))
	b.Create(newJob(2))
	bk, err := b.Backup(store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.Claim(1, start)
	jb, _ := b.Claim(1, start)
	if len(ja) != 1 || len(jb) != 1 {
		t.Fatal("claims failed")
	}
	if _, err := b.Restore(bk.Path, store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if id := waitFor(t, a.Settled(), 5*time.Second, "settled on the other node"); id != ja[0].ID {
		t.Fatalf("a settled %s", id)
	}
	if id := waitFor(t, b.Settled(), 5*time.Second, "settled on the restoring node"); id != jb[0].ID {
		t.Fatalf("b settled %s", id)
	}
	if st := b.Stats(); st.ByStatus[job.Pending] != 2 {
		t.Fatalf("after restore: %+v", st)
	}
}
