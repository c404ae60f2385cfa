package server

import (
	"context"
	"slices"
	"sync"
)

// jobQueue holds the jobs the workers are to run and the ones they are
// running. Pending ids wait in order; pop moves one to the running set,
// with the cancel function of its run, in one step under the queue's lock.
// So every job the server has taken on is either waiting here or
// cancellable here, never both and never twice: an id already waiting or
// running is not pushed again.
//
// The queue is unbounded so that a submission never waits for a worker:
// every id in it is already durable as a pending job, and the queue is
// rebuilt from the store at start and after a restore.
type jobQueue struct {
	// base is the parent of every run's context.
	base context.Context

	mu      sync.Mutex
	cond    *sync.Cond
	ids     []string
	waiting map[string]struct{}
	running map[string]*claim
	// paused keeps pop from handing out jobs while a restore replaces
	// what the store holds.
	paused bool
	closed bool
	// done is closed by close, for waiters outside the queue's lock.
	done chan struct{}
}

// claim is a job a worker has taken: the context it runs under and a
// channel closed once the worker is done with it.
type claim struct {
	id     string
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func newJobQueue(base context.Context) *jobQueue {
	q := &jobQueue{base: base, waiting: map[string]struct{}{}, running: map[string]*claim{}, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends id. It reports false, and queues nothing, once the queue is
// closed or when id is already waiting or running.
func (q *jobQueue) push(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.has(id) {
		return false
	}
	q.ids = append(q.ids, id)
	q.waiting[id] = struct{}{}
	q.cond.Signal()
	return true
}

func (q *jobQueue) has(id string) bool {
	_, w := q.waiting[id]
	return w || q.running[id] != nil
}

// pop waits for a job and claims it for the caller, who must pass the
// claim to release when done. It reports false once the queue is closed,
// leaving the ids still waiting alone (they stay pending in the store).
func (q *jobQueue) pop() (*claim, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for (len(q.ids) == 0 || q.paused) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	id := q.ids[0]
	q.ids[0] = ""
	q.ids = q.ids[1:]
	delete(q.waiting, id)
	return q.claimLocked(id), true
}

func (q *jobQueue) claimLocked(id string) *claim {
	ctx, cancel := context.WithCancelCause(q.base)
	c := &claim{id: id, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	q.running[id] = c
	return c
}

// adopt registers the claim of a job the store started for this process
// (a shared store's Claim), even once the queue is closed: the job is
// running and its worker must see it to its end.
func (q *jobQueue) adopt(id string) *claim {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.waiting, id)
	return q.claimLocked(id)
}

// waitOpen waits while the queue is paused, and reports false once it is
// closed: what pop waits for, for workers that take jobs elsewhere.
func (q *jobQueue) waitOpen() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.paused && !q.closed {
		q.cond.Wait()
	}
	return !q.closed
}

// closedCh is closed once the queue is.
func (q *jobQueue) closedCh() <-chan struct{} { return q.done }

// release ends a claim: its context is cancelled and whoever waits on it
// (a cancel request, a restore) is let go.
func (q *jobQueue) release(c *claim) {
	c.cancel(nil)
	q.mu.Lock()
	if q.running[c.id] == c {
		delete(q.running, c.id)
	}
	q.mu.Unlock()
	close(c.done)
}

// claimed returns the claim of the running job id, nil when no worker holds
// it.
func (q *jobQueue) claimed(id string) *claim {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running[id]
}

// claims returns the claims of every running job.
func (q *jobQueue) claims() []*claim {
	q.mu.Lock()
	defer q.mu.Unlock()
	cs := make([]*claim, 0, len(q.running))
	for _, c := range q.running {
		cs = append(cs, c)
	}
	return cs
}

// remove drops id from the waiting jobs (a pending job cancelled or
// deleted); a running job is left alone. It reports whether id was waiting.
func (q *jobQueue) remove(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.waiting[id]; !ok {
		return false
	}
	delete(q.waiting, id)
	if i := slices.Index(q.ids, id); i >= 0 {
		q.ids = slices.Delete(q.ids, i, i+1)
	}
	return true
}

// pause stops pop from handing out jobs until replace or resume. It
// reports false when the queue is closed.
func (q *jobQueue) pause() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.paused = true
	return true
}

// resume undoes pause, keeping the waiting jobs.
func (q *jobQueue) resume() {
	q.mu.Lock()
	q.paused = false
	q.mu.Unlock()
	q.cond.Broadcast()
}

// replace makes ids (in that order, without repeats and without the jobs
// running now) the waiting jobs, in place of those waiting before, and
// resumes the queue.
func (q *jobQueue) replace(ids []string) {
	q.mu.Lock()
	q.ids = make([]string, 0, len(ids))
	q.waiting = make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if !q.has(id) {
			q.ids = append(q.ids, id)
			q.waiting[id] = struct{}{}
		}
	}
	q.paused = false
	q.mu.Unlock()
	q.cond.Broadcast()
}

// close wakes every waiting pop, which reports false from now on; push
// refuses everything.
func (q *jobQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// len counts the waiting jobs.
func (q *jobQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

// busy counts the running jobs.
func (q *jobQueue) busy() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.running)
}

// contents returns the waiting ids in order and the running ones.
func (q *jobQueue) contents() (waiting, running []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	waiting = append([]string(nil), q.ids...)
	for id := range q.running {
		running = append(running, id)
	}
	return waiting, running
}
