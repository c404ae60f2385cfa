package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

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

// lockHolder is the backend pid of the session holding s's lock name.
func lockHolder(t *testing.T, s *Store, name string) int {
	t.Helper()
	var pid int
	err := s.pool.QueryRow(context.Background(), `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)`, "secauto:"+s.schema+":"+name).Scan(&pid)
	if err != nil {
		t.Fatalf("who holds %s: %v", name, err)
	}
	return pid
}

// A lock whose session ends while its work runs is lost: another node
// takes it, and the holder hears so when its work returns (and at once in
// its log, when a ping finds the session gone first).
func TestExclusiveLost(t *testing.T) {
	for _, ping := range []time.Duration{time.Hour, 20 * time.Millisecond} {
		t.Run(fmt.Sprint("ping every ", ping), func(t *testing.T) {
			defer func(d time.Duration) { lockPing = d }(lockPing)
			lockPing = ping
			var log syncBuffer
			a, u := openTest(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
			b := openAt(t, u)
			want := errors.New("the work's own error")
			ok, err := a.Exclusive("cleanup", func() error {
				exec(t, b, "SELECT pg_terminate_backend($1, 5000)", lockHolder(t, a, "cleanup"))
				if ok, err := b.Exclusive("cleanup", func() error { return nil }); !ok || err != nil {
					t.Errorf("another node while the lock's session is gone: %v %v, want it to take the lock", ok, err)
				}
				if ping < time.Second {
					time.Sleep(5 * ping)
				}
				return want
			})
			if !ok || err == nil || !strings.Contains(err.Error(), `the cluster-wide lock "cleanup" was lost`) || !errors.Is(err, want) {
				t.Fatalf("Exclusive after its session ended: %v %v", ok, err)
			}
			if logged := strings.Contains(log.String(), "lost the cluster-wide lock"); logged != (ping < time.Second) {
				t.Errorf("logged the loss: %v, with a ping every %s\n%s", logged, ping, log.String())
			}
			// The store goes on: the lock is taken again on a new session.
			if ok, err := a.Exclusive("cleanup", func() error { return nil }); !ok || err != nil {
				t.Fatalf("taking the lock again: %v %v", ok, err)
			}
		})
	}
}

func TestJoinOnceAtATime(t *testing.T) {
	s, _ := openTest(t)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = s.Join(store.Node{ID: fmt.Sprintf("n%d", i)}, time.Hour) })
	}
	wg.Wait()
	joined := 0
	for _, err := range errs {
		if err == nil {
			joined++
		}
	}
	var rows int
	s.pool.QueryRow(context.Background(), "SELECT count(*) FROM secauto_nodes").Scan(&rows)
	if joined != 1 || rows != 1 {
		t.Fatalf("%d of 4 concurrent joins succeeded, %d node rows: %v", joined, rows, errs)
	}
}

// A node declared dead joins again with what SetOwner said last.
func TestRejoinKeepsTheOwner(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Join(store.Node{ID: "n", Host: "h", PID: 1, Address: "http://old"}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwner(store.Owner{Address: "http://new"}); err != nil {
		t.Fatal(err)
	}
	exec(t, s, "DELETE FROM secauto_nodes WHERE id = 'n'")
	var host, address string
	eventually(t, 5*time.Second, "joined again", func() bool {
		err := s.pool.QueryRow(context.Background(), "SELECT host, address FROM secauto_nodes WHERE id = 'n'").Scan(&host, &address)
		return err == nil
	})
	if host != "h" || address != "http://new" {
		t.Fatalf("joined again as host %q, address %q; want h, http://new", host, address)
	}
}

// Wake and Settled may be called while the store closes. (The window in
// which a listener could start after Close waited for the goroutines is
// too narrow for this to hit reliably; it runs the path under -race.)
func TestWakeWhileClosing(t *testing.T) {
	u := testURL(t)
	for range 20 {
		s := openAt(t, u)
		var wg sync.WaitGroup
		wg.Go(func() { s.Wake() })
		wg.Go(func() { s.Settled() })
		s.Close()
		wg.Wait()
	}
}

// A node whose lease lapsed claims nothing (the others may be recovering
// its jobs) until its renewal has joined it again.
func TestClaimNeedsALiveLease(t *testing.T) {
	s, _ := openTest(t)
	join(t, s, "n1", 900*time.Millisecond)
	if _, err := s.Create(newJob(1)); err != nil {
		t.Fatal(err)
	}
	lapse(t, s, "n1")
	if js, err := s.Claim(1, start); err != nil || len(js) != 0 {
		t.Fatalf("claim with a lapsed lease: %d jobs, %v; want none", len(js), err)
	}
	exec(t, s, "DELETE FROM secauto_nodes WHERE id = 'n1'")
	if js, err := s.Claim(1, start); err != nil || len(js) != 0 {
		t.Fatalf("claim of a node declared dead: %d jobs, %v; want none", len(js), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		js, err := s.Claim(1, start)
		if err != nil {
			t.Fatal(err)
		}
		if len(js) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node did not claim again after its lease was renewed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
