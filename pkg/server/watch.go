package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// GET /job/{id}/events streams a job's progress as Server-Sent Events. The
// events, each with a JSON object as its data:
//
//	step     {"job_id", "index", "result"}: a step result, in order; on
//	         connecting, one for each result already recorded
//	status   {"job_id", "status", "error", "time"}: the job's status on
//	         connecting, then each change
//	resync   the whole job: the stream fell behind (a slow client) or the
//	         store was replaced (a restore); what came before is replaced,
//	         and step events go on after the job's results
//	end      the whole job, terminal; the stream then ends
//	gone     {"job_id", "error"}: the job was deleted; the stream then ends
//
// Lines starting with ":" are heartbeats. A job already terminal gets its
// history and the end at once. The stream also ends, without an end event,
// when the daemon shuts down.

// Event names of GET /job/{id}/events.
const (
	EventStep   = "step"
	EventStatus = "status"
	EventResync = "resync"
	EventEnd    = "end"
	EventGone   = "gone"
)

// StepEvent is the data of a step event.
type StepEvent struct {
	JobID  string     `json:"job_id"`
	Index  int        `json:"index"`
	Result job.Result `json:"result"`
}

// StatusEvent is the data of a status event.
type StatusEvent struct {
	JobID  string     `json:"job_id"`
	Status job.Status `json:"status"`
	Error  string     `json:"error,omitempty"`
	Time   time.Time  `json:"time"`
}

// GoneEvent is the data of a gone event.
type GoneEvent struct {
	JobID string `json:"job_id"`
	Error string `json:"error"`
}

var (
	// sseHeartbeat is how often an idle stream gets a comment line, so
	// that proxies and load balancers keep it open.
	sseHeartbeat = 15 * time.Second
	// sseWriteTimeout bounds one write to a stream's client: a client that
	// stops reading is dropped once it is reached.
	sseWriteTimeout = 30 * time.Second
	// sseBuffer is how many job changes wait for one subscriber; beyond
	// it, they are dropped and the subscriber resyncs from the store.
	sseBuffer = 32
)

// watchers are the subscribers to job changes, by job id. Publishing never
// waits for a subscriber: each has a bounded buffer, and one that is full
// is marked to resync instead.
type watchers struct {
	mu   sync.Mutex
	subs map[string]map[*subscriber]struct{}
}

type subscriber struct {
	ch     chan *job.Job
	wake   chan struct{} // resync or gone set
	resync atomic.Bool
	gone   atomic.Bool
}

func newWatchers() *watchers { return &watchers{subs: map[string]map[*subscriber]struct{}{}} }

func (w *watchers) subscribe(id string) *subscriber {
	sub := &subscriber{ch: make(chan *job.Job, sseBuffer), wake: make(chan struct{}, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[id] == nil {
		w.subs[id] = map[*subscriber]struct{}{}
	}
	w.subs[id][sub] = struct{}{}
	return sub
}

func (w *watchers) unsubscribe(id string, sub *subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs[id], sub)
	if len(w.subs[id]) == 0 {
		delete(w.subs, id)
	}
}

// count is the number of subscribers to id.
// ids lists the jobs that have subscribers.
func (w *watchers) ids() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.subs))
	for id := range w.subs {
		out = append(out, id)
	}
	return out
}

func (w *watchers) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs[id])
}

// publish hands the new state of a job to its subscribers; it is called
// once the change is durable.
func (w *watchers) publish(j *job.Job) {
	if j == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	subs := w.subs[j.ID]
	if len(subs) == 0 {
		return
	}
	c := j.Clone() // shared, read-only, by every subscriber
	for sub := range subs {
		select {
		case sub.ch <- c:
		default:
			sub.mark(&sub.resync)
		}
	}
}

// publishID publishes the stored state of job id, if it has subscribers.
func (w *watchers) publishID(st store.Store, id string) {
	if id == "" || w.count(id) == 0 {
		return
	}
	if j, err := st.Get(id); err == nil {
		w.publish(j)
	}
}

// deleted tells the subscribers of id that the job is gone.
func (w *watchers) deleted(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for sub := range w.subs[id] {
		sub.mark(&sub.gone)
	}
}

// resyncAll makes every subscriber read its job from the store again, as
// after a restore replaced every job.
func (w *watchers) resyncAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, subs := range w.subs {
		for sub := range subs {
			sub.mark(&sub.resync)
		}
	}
}

func (s *subscriber) mark(flag *atomic.Bool) {
	flag.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// publishingWriter is the server's jobWriter: it publishes every change it
// made durable to the job's subscribers.
type publishingWriter struct {
	jobWriter
	w *watchers
}

func (p *publishingWriter) Create(j *job.Job) (*job.Job, error) {
	nj, err := p.jobWriter.Create(j)
	if err == nil {
		p.w.publish(nj)
	}
	return nj, err
}

func (p *publishingWriter) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	j, err := p.jobWriter.Update(id, fn)
	if err == nil {
		p.w.publish(j)
	}
	return j, err
}

func (p *publishingWriter) UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []store.Record) (*job.Job, error) {
	j, err := p.jobWriter.UpdateWith(id, fn, also)
	if err == nil {
		p.w.publish(j)
	}
	return j, err
}

// progressRank orders a job's states as they follow one another: pending,
// running, ended; within one, by the results recorded. A change published
// late (two writers raced) is older than what a stream has sent and is
// skipped.
func progressRank(j *job.Job) (int, int) {
	switch {
	case j.Status == job.Pending:
		return 0, len(j.Results)
	case j.Status == job.Running:
		return 1, len(j.Results)
	}
	return 2, len(j.Results)
}

func newer(cur, last *job.Job) bool {
	cs, cr := progressRank(cur)
	ls, lr := progressRank(last)
	return cs > ls || (cs == ls && cr > lr)
}

// sseStream writes events to one client.
type sseStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func (st *sseStream) send(event string, data any) error {
	st.buf.Reset()
	st.buf.WriteString("event: ")
	st.buf.WriteString(event)
	st.buf.WriteString("\ndata: ")
	enc := json.NewEncoder(&st.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(data); err != nil { // one line: JSON holds no raw newline
		return err
	}
	st.buf.WriteString("\n")
	return st.write(st.buf.Bytes())
}

func (st *sseStream) write(b []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) // unsupported in tests' recorders
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// progress sends what cur adds to last: its new step results, then its new
// status. It reports whether cur is terminal (the end was sent).
func (st *sseStream) progress(last, cur *job.Job) (bool, error) {
	for i := len(last.Results); i < len(cur.Results); i++ {
		if err := st.send(EventStep, StepEvent{JobID: cur.ID, Index: i, Result: cur.Results[i]}); err != nil {
			return false, err
		}
	}
	if cur.Status != last.Status {
		if err := st.send(EventStatus, NewStatusEvent(cur)); err != nil {
			return false, err
		}
	}
	return st.end(cur)
}

// end sends the end event when j is terminal.
func (st *sseStream) end(j *job.Job) (bool, error) {
	if !j.Status.Terminal() {
		return false, nil
	}
	return true, st.send(EventEnd, j)
}

// NewStatusEvent is the status event of j as it is now, timed by its
// latest transition.
func NewStatusEvent(j *job.Job) StatusEvent {
	t := j.CreatedAt
	switch {
	case j.CompletedAt != nil:
		t = *j.CompletedAt
	case j.StartedAt != nil:
		t = *j.StartedAt
	}
	return StatusEvent{JobID: j.ID, Status: j.Status, Error: j.Error, Time: t.UTC()}
}

// handleJobEvents is GET /job/{id}/events.
func (s *Server) handleJobEvents(w http.ResponseWriter, r *http.Request) {
	j, aerr := s.lookup(r)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	id := j.ID
	// Subscribed before the job is read again, so no change falls between.
	sub := s.watch.subscribe(id)
	defer s.watch.unsubscribe(id, sub)
	gone := func(st *sseStream) {
		_ = st.send(EventGone, GoneEvent{JobID: id, Error: "job " + id + " was deleted"})
	}

	st := &sseStream{w: w, rc: http.NewResponseController(w)}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)

	cur, err := s.st.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		gone(st)
		return
	}
	if err != nil {
		return // the 200 is out; the client sees a stream without an end
	}
	last := &job.Job{ID: id}
	if done, err := st.progress(last, cur); done || err != nil {
		return
	}
	last = cur

	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopped:
			// Jobs interrupted by the shutdown ended before this: send
			// what is queued, then let the connection go.
			for len(sub.ch) > 0 {
				if cur := <-sub.ch; newer(cur, last) {
					if done, err := st.progress(last, cur); done || err != nil {
						return
					}
					last = cur
				}
			}
			return
		case <-tick.C:
			if st.write([]byte(": heartbeat\n\n")) != nil {
				return
			}
		case <-sub.wake:
			if sub.gone.Load() {
				gone(st)
				return
			}
			if !sub.resync.Swap(false) {
				continue
			}
			for len(sub.ch) > 0 {
				<-sub.ch
			}
			cur, err := s.st.Get(id)
			if errors.Is(err, store.ErrNotFound) {
				gone(st)
				return
			}
			if err != nil {
				return
			}
			if st.send(EventResync, cur) != nil {
				return
			}
			if done, err := st.end(cur); done || err != nil {
				return
			}
			last = cur
		case cur := <-sub.ch:
			if !newer(cur, last) {
				continue
			}
			if done, err := st.progress(last, cur); done || err != nil {
				return
			}
			last = cur
		}
	}
}
