package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// On a shared store (store.Cluster, SPEC §11) several serve processes take
// jobs from one database: workers claim pending jobs from the store rather
// than from the local queue, which then only holds this node's claims; a
// wake from any node's submission reaches every idle worker at once; one
// survivor recovers the running jobs of a node whose lease lapsed; and a
// job ended elsewhere (a cancel through another node) stops its run here.

// clusterPoll is how often an idle worker looks for pending jobs when no
// wake came: a safety net for a notification lost while the store
// reconnected, never the way jobs are normally found.
const clusterPoll = 5 * time.Second

// errEndedElsewhere is the cause given to a run whose job another node
// ended.
var errEndedElsewhere = errors.New("ended by another node")

// broadcast wakes every waiter at once: wait returns a channel that is
// closed at the next fire.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// queued is how many jobs wait to run: those of the local queue, or on a
// shared store every pending job, whichever node takes it.
func (s *Server) queued(byStatus map[job.Status]int) int {
	if s.cluster != nil {
		return byStatus[job.Pending]
	}
	return s.queue.len()
}

// claimShared waits until the store hands this node a pending job, started
// by the claim itself, and registers its claim. It reports false once the
// queue is closed.
func (s *Server) claimShared() (*claim, *job.Job, bool) {
	delay := noSpaceFirstDelay
	for {
		woken := s.wakes.wait()
		if !s.queue.waitOpen() {
			return nil, nil, false
		}
		c, j, err := s.claimOne()
		if c != nil {
			return c, j, true
		}
		wait := clusterPoll
		if err != nil {
			s.log.Error("cannot claim a pending job from the store; retrying", "error", err)
			wait, delay = delay, min(2*delay, noSpaceLastDelay)
		} else {
			delay = noSpaceFirstDelay
		}
		t := time.NewTimer(wait)
		select {
		case <-woken:
		case <-s.queue.closedCh():
		case <-t.C:
		}
		t.Stop()
	}
}

// claimOne claims at most one job, holding off a restore meanwhile so that
// a restore never misses a claim made while it stopped the running jobs.
func (s *Server) claimOne() (*claim, *job.Job, error) {
	defer s.keeper.admit()()
	jobs, err := s.cluster.Claim(1, func(j *job.Job) error { return j.Start(time.Now()) })
	if err != nil || len(jobs) == 0 {
		return nil, nil, err
	}
	j := jobs[0]
	s.watch.publish(j)
	return s.queue.adopt(j.ID), j, nil
}

// runCluster joins the cluster and runs this node's part until ctx ends:
// wakes, ends from elsewhere, and the rescue of dead nodes' jobs.
func (s *Server) runCluster(ctx context.Context, lease time.Duration) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.cluster.Wake():
				s.wakes.fire()
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-s.cluster.Settled():
				if c := s.queue.claimed(id); c != nil {
					s.log.Warn("job was ended through another node; stopping its run here", "job_id", id)
					c.cancel(errEndedElsewhere)
				}
				s.watch.publishID(s.st, id)
			}
		}
	})
	wg.Go(func() {
		// Clients of this node waiting for a job another node runs (POST
		// /playbook, event streams) hear of its end from the store, and
		// look now and then on their own, in case a notice was dropped.
		t := time.NewTicker(remoteCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-s.cluster.Ended():
				s.checkRemote(id)
			case <-t.C:
				for _, id := range s.remoteWatched() {
					s.checkRemote(id)
				}
			}
		}
	})
	wg.Go(func() {
		// A third of the lease: a dead node's jobs are recovered within
		// the lease plus that.
		t := time.NewTicker(max(lease/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			s.rescueDead()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Wait()
}

// remoteCheckEvery is how often a node looks at the jobs its clients wait
// for or watch that it does not run itself.
const remoteCheckEvery = time.Second

// remoteWatched lists the jobs that clients of this node wait for or watch
// and that no worker of this node runs.
func (s *Server) remoteWatched() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.waiters))
	for id := range s.waiters {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	ids = append(ids, s.watch.ids()...)
	out := ids[:0]
	for _, id := range ids {
		if s.queue.claimed(id) == nil {
			out = append(out, id)
		}
	}
	return out
}

// checkRemote reads job id again for this node's clients: its event
// streams get its newest state, and those waiting for its end are answered
// once it ended (or nil once it is gone).
func (s *Server) checkRemote(id string) {
	s.mu.Lock()
	waiting := len(s.waiters[id]) > 0
	s.mu.Unlock()
	if !waiting && s.watch.count(id) == 0 {
		return
	}
	j, err := s.st.Get(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.watch.deleted(id)
		s.releaseWaiters(id)
	case err != nil:
		s.log.Warn("cannot read a job another node changed", "job_id", id, "error", err)
	default:
		s.watch.publish(j)
		if j.Status.Terminal() {
			s.answerWaiters(j)
		}
	}
}

// rescueDead applies SPEC §5 step 3 to the running jobs of nodes whose
// lease lapsed; their job.recovered events are stored with them.
func (s *Server) rescueDead() {
	jobs, err := s.cluster.RescueDead(s.now(), s.jobEvents(webhook.JobRecovered))
	if err != nil {
		s.log.Error("cannot recover the jobs of dead nodes; retrying", "error", err)
		return
	}
	for _, j := range jobs {
		s.log.Warn("recovered job of a node that stopped renewing its lease", "job_id", j.ID, "to", string(j.Status), "attempts", j.Attempts)
		s.metrics.recovered.Inc()
		s.watch.publish(j)
		if j.Status.Terminal() {
			s.metrics.jobFinished(j)
			s.ended.add(j)
			s.answerWaiters(j)
		}
	}
	if len(jobs) > 0 {
		s.hooks.Notify()
		s.wakes.fire() // a retried job is pending again
	}
}
