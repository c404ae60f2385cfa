package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// clusterOf returns st as a store.Cluster, skipping the test when it is
// not one.
func clusterOf(t *testing.T, st store.Store) store.Cluster {
	t.Helper()
	c, ok := st.(store.Cluster)
	if !ok {
		t.Skipf("%T is not a store.Cluster: it has one node, which needs no claims or cluster locks", st)
	}
	return c
}

// peerOf returns a second node over st's data, skipping the test when the
// driver offers none.
func (s *suite) peerOf(t *testing.T, st store.Store) store.Cluster {
	t.Helper()
	if s.d.Peer == nil {
		t.Skip("the driver has no Peer")
	}
	return clusterOf(t, s.d.Peer(t, st))
}

func startNow(j *job.Job) error { return j.Start(now()) }

func (s *suite) cluster(t *testing.T) {
	s.run(t, "ClaimOnce", func(t *testing.T) {
		st := s.open(t)
		c := clusterOf(t, st)
		claimers := []store.Cluster{c}
		if s.d.Peer != nil {
			claimers = append(claimers, clusterOf(t, s.d.Peer(t, st)))
		}
		const n = 24
		want := make([]string, 0, n)
		for range n {
			want = append(want, mustCreate(t, st, newJob("claim me")).ID)
		}
		var mu sync.Mutex
		claimed := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, 8*len(claimers))
		for _, cl := range claimers {
			for range 8 {
				wg.Go(func() {
					for {
						js, err := cl.Claim(2, startNow)
						if err != nil {
							errs <- err
							return
						}
						if len(js) == 0 {
							return
						}
						mu.Lock()
						for _, j := range js {
							claimed[j.ID]++
							if j.Status != job.Running {
								errs <- errors.New("Claim answered a job that is " + string(j.Status))
							}
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent Claim: %v", err)
		}
		for _, id := range want {
			if claimed[id] != 1 {
				t.Errorf("job %s claimed %d times, want once", id, claimed[id])
			}
			if j := mustGet(t, st, id); j.Status != job.Running || j.Attempts != 1 {
				t.Errorf("a claimed job: %s; want running, attempt 1", jsonOf(t, j))
			}
		}
		if len(claimed) != n {
			t.Errorf("%d jobs claimed, %d stored", len(claimed), n)
		}
	})

	s.run(t, "ClaimOldestFirst", func(t *testing.T) {
		st := s.open(t)
		c := clusterOf(t, st)
		idAt := map[time.Duration]string{}
		for _, h := range []time.Duration{3, 1, 4, 0, 2} {
			j := newJob("pending")
			j.CreatedAt = at(h * time.Hour)
			idAt[h] = mustCreate(t, st, j).ID
		}
		byAge := []string{idAt[0], idAt[1]}
		mustCreate(t, st, ended(job.Completed, at(-time.Hour), at(-time.Minute)))
		js, err := c.Claim(2, startNow)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if got := ids(js); !slices.Equal(got, byAge) {
			t.Fatalf("Claim(2) started %v, want the two oldest pending jobs %v", got, byAge)
		}
		for _, j := range js {
			sameJob(t, "a claimed job as Claim answered it", mustGet(t, st, j.ID), j)
		}
		// A job that cannot be started is left pending and the others
		// are still handed out: one bad job never stops the queue.
		tried := 0
		js, err = c.Claim(1, func(*job.Job) error { tried++; return errors.New("boom") })
		if err != nil || len(js) != 0 || tried != 3 {
			t.Fatalf("Claim whose start always fails: %d jobs, %v, after %d tries; want none, no error, 3 tries", len(js), err, tried)
		}
		if n := len(mustList(t, st, store.Filter{Statuses: []job.Status{job.Pending}})); n != 3 {
			t.Fatalf("%d pending jobs after a failed Claim, want 3", n)
		}
	})

	s.run(t, "Exclusive", func(t *testing.T) {
		st := s.open(t)
		c := clusterOf(t, st)
		ran := 0
		for range 2 {
			ok, err := c.Exclusive("cleanup", func() error { ran++; return nil })
			if !ok || err != nil {
				t.Fatalf("Exclusive on a free lock: %v, %v", ok, err)
			}
		}
		if ran != 2 {
			t.Fatalf("Exclusive ran its fn %d times in two calls", ran)
		}
		boom := errors.New("boom")
		if _, err := c.Exclusive("cleanup", func() error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Exclusive whose fn fails: %v, want its error", err)
		}
	})

	s.run(t, "ExclusiveAcrossNodes", func(t *testing.T) {
		st := s.open(t)
		c := clusterOf(t, st)
		peer := s.peerOf(t, st)
		held, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			ok, err := c.Exclusive("backup", func() error {
				close(held)
				<-release
				return nil
			})
			if err == nil && !ok {
				err = errors.New("Exclusive on a free lock did not run")
			}
			done <- err
		}()
		<-held
		ok, err := peer.Exclusive("backup", func() error {
			t.Error("the peer ran while the first node held the lock")
			return nil
		})
		if ok || err != nil {
			t.Errorf("Exclusive on a lock another node holds: %v, %v; want false, nil", ok, err)
		}
		if ok, err := peer.Exclusive("another lock", func() error { return nil }); !ok || err != nil {
			t.Errorf("Exclusive on another, free lock: %v, %v", ok, err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if ok, err := peer.Exclusive("backup", func() error { return nil }); !ok || err != nil {
			t.Fatalf("Exclusive on a lock released: %v, %v", ok, err)
		}
	})

	s.run(t, "ClaimRecord", func(t *testing.T) {
		st := s.open(t)
		c := clusterOf(t, st)
		const ttl = 300 * time.Millisecond
		if err := st.PutRecords(store.Record{Key: "webhook/1", Value: []byte(`{}`)}, store.Record{Key: "webhook/2", Value: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.ClaimRecord("webhook/none", ttl); ok || err != nil {
			t.Fatalf("ClaimRecord of a record that does not exist: %v, %v; want false", ok, err)
		}
		ok, err := c.ClaimRecord("webhook/1", ttl)
		if !ok || err != nil {
			t.Fatalf("ClaimRecord of a free key: %v, %v", ok, err)
		}
		peer := s.peerOf(t, st)
		if ok, err := peer.ClaimRecord("webhook/1", ttl); ok || err != nil {
			t.Fatalf("ClaimRecord of a key another node holds: %v, %v; want false", ok, err)
		}
		if ok, err := peer.ClaimRecord("webhook/2", ttl); !ok || err != nil {
			t.Fatalf("ClaimRecord of another, free key: %v, %v", ok, err)
		}
		time.Sleep(ttl + 200*time.Millisecond)
		if ok, err := peer.ClaimRecord("webhook/1", ttl); !ok || err != nil {
			t.Fatalf("ClaimRecord of a key whose claim lapsed: %v, %v; want true", ok, err)
		}
	})
}
