package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	txns, jobs := s.creates.txns.Load(), s.creates.jobs.Load()
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
