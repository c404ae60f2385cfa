package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// sseEvent is one event read from a stream.
type sseEvent struct {
	name string
	data string
}

// sseClient reads the events of GET /job/{id}/events.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	events chan sseEvent
	closed chan struct{}
}

func (e *env) events(id string) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/job/"+id+"/events", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("GET /job/%s/events: %d %s", id, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: e.t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel, events: make(chan sseEvent, 100), closed: make(chan struct{})}
	go c.read()
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return c
}

func (c *sseClient) read() {
	defer close(c.closed)
	var ev sseEvent
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.name != "" {
				c.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			c.events <- sseEvent{name: ":"}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// next returns the next event that is not a heartbeat.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	for {
		select {
		case ev := <-c.events:
			if ev.name != ":" {
				return ev
			}
		case <-time.After(20 * time.Second):
			c.t.Fatal("no event within 20s")
		}
	}
}

// untilEnd reads events until the stream ends, which must be soon.
func (c *sseClient) untilEnd() []sseEvent {
	c.t.Helper()
	var out []sseEvent
	for {
		select {
		case ev := <-c.events:
			if ev.name != ":" {
				out = append(out, ev)
			}
		case <-c.closed:
			for len(c.events) > 0 {
				if ev := <-c.events; ev.name != ":" {
					out = append(out, ev)
				}
			}
			return out
		case <-time.After(20 * time.Second):
			c.t.Fatalf("the stream did not end; events so far: %v", out)
		}
	}
}

func names(evs []sseEvent) string {
	var n []string
	for _, ev := range evs {
		n = append(n, ev.name)
	}
	return strings.Join(n, " ")
}

func TestJobEventsFollowAJobToItsEnd(t *testing.T) {
	e := newEnv(t, Options{Workers: 1})
	blocker := e.submit(sleepJob) // the job watched waits behind it
	e.waitStatus(blocker, job.Running)
	id := e.submit(`{"playbook":[
		{"name":"one","action":"log","params":{"message":"a"}},
		{"name":"nap","action":"sleep","params":{"duration":"50ms"}},
		{"name":"two","action":"log","params":{"message":"b"}}]}`)
	c := e.events(id)
	if ev := c.next(); ev.name != EventStatus || !strings.Contains(ev.data, `"status":"pending"`) {
		t.Fatalf("first event %v, want the pending status", ev)
	}
	if code, b := e.do("POST", "/job/"+blocker+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel blocker: %d %s", code, b)
	}
	evs := c.untilEnd()
	if got := names(evs); got != "status step step step status end" {
		t.Fatalf("events %q, want running, three steps, completed, end: %v", got, evs)
	}
	for i, step := range []string{"one", "nap", "two"} {
		var se StepEvent
		if err := json.Unmarshal([]byte(evs[1+i].data), &se); err != nil || se.Index != i || se.Result.Step != step || se.JobID != id {
			t.Fatalf("step event %d: %s (%v)", i, evs[1+i].data, err)
		}
	}
	var end job.Job
	if err := json.Unmarshal([]byte(evs[5].data), &end); err != nil || end.Status != job.Completed || len(end.Results) != 3 {
		t.Fatalf("end event %s (%v)", evs[5].data, err)
	}
	waitFor(t, "the subscription to go", func() bool { return e.srv.watch.count(id) == 0 })
}

func TestJobEventsOfAnEndedJobComeAtOnce(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{"playbook":[{"name":"one","action":"log","params":{"message":"a"}},{"name":"no","action":"fail","params":{"message":"refused"}}]}`)
	e.waitStatus(id, job.Failed)
	evs := e.events(id[:13]).untilEnd() // a prefix is enough
	if got := names(evs); got != "step step status end" {
		t.Fatalf("events %q: %v", got, evs)
	}
	if !strings.Contains(evs[2].data, `"status":"failed"`) || !strings.Contains(evs[2].data, `refused`) {
		t.Fatalf("status event %s", evs[2].data)
	}
}

func TestJobEventsRefusals(t *testing.T) {
	e := newEnv(t, Options{AuthTokens: []string{"a-token-of-16-chars"}})
	id := e.submit(sleepJob)
	if code, b := e.do("GET", "/job/0000ffff/events", ""); code != http.StatusNotFound || !strings.Contains(errorOf(t, b), "not found") {
		t.Fatalf("unknown job: %d %s", code, b)
	}
	if code, _ := e.doToken("GET", "/job/"+id+"/events", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := e.do("GET", "/job/"+id+"%2F..%2F/events", ""); code != http.StatusNotFound {
		t.Fatalf("an id with / and ..: %d", code)
	}
}

// A client that goes away frees its subscription; the job goes on.
func TestJobEventsClientDisconnects(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c := e.events(id)
	c.next()
	if n := e.srv.watch.count(id); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	c.cancel()
	waitFor(t, "the subscription to go", func() bool { return e.srv.watch.count(id) == 0 })
	if j := e.job(id); j.Status != job.Running {
		t.Fatalf("the job is %s after its watcher left", j.Status)
	}
}

// A job cancelled or deleted while watched ends the stream.
func TestJobEventsJobEndsOrGoesWhileWatched(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c := e.events(id)
	c.next()
	if code, b := e.do("POST", "/job/"+id+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, b)
	}
	evs := c.untilEnd()
	if got := names(evs); got != "step status end" || !strings.Contains(evs[2].data, `"status":"cancelled"`) {
		t.Fatalf("events %q: %v", got, evs)
	}

	id = e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c = e.events(id)
	c.next()
	if code, b := e.do("DELETE", "/job/"+id, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, b)
	}
	// Deleting a live job cancels it first: that is its end.
	if got := names(c.untilEnd()); got != "step status end" {
		t.Fatalf("events %q", got)
	}

	// A job that is gone without an end (a restore replaced the store)
	// ends the stream with gone.
	id = e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c = e.events(id)
	c.next()
	e.srv.watch.deleted(id)
	evs = c.untilEnd()
	if len(evs) != 1 || evs[0].name != EventGone || !strings.Contains(evs[0].data, "was deleted") {
		t.Fatalf("events %v, want the stream to end with gone", evs)
	}
}

// Heartbeats keep an idle stream open.
func TestJobEventsHeartbeat(t *testing.T) {
	old := sseHeartbeat
	sseHeartbeat = 20 * time.Millisecond
	t.Cleanup(func() { sseHeartbeat = old })
	e := newEnv(t, Options{})
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c := e.events(id)
	c.next()
	select {
	case ev := <-c.events:
		if ev.name != ":" {
			t.Fatalf("got %v, want a heartbeat", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
}

// Publishing never waits for a subscriber that does not read: past its
// buffer, the subscriber is marked to resync from the store.
func TestWatchersNeverWaitForASlowSubscriber(t *testing.T) {
	w := newWatchers()
	slow := w.subscribe("a")
	other := w.subscribe("b")
	j := &job.Job{ID: "a", Status: job.Running}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 10*sseBuffer; i++ {
			j.Results = append(j.Results, job.Result{Step: fmt.Sprint(i)})
			w.publish(j)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish waited for a subscriber that does not read")
	}
	if !slow.resync.Load() || len(slow.ch) != sseBuffer {
		t.Fatalf("resync %v, %d buffered; want resync and a full buffer of %d", slow.resync.Load(), len(slow.ch), sseBuffer)
	}
	select {
	case <-slow.wake:
	default:
		t.Fatal("the slow subscriber was not woken to resync")
	}
	if len(other.ch) != 0 || other.resync.Load() {
		t.Fatal("another job's subscriber heard of the change")
	}
	w.unsubscribe("a", slow)
	w.unsubscribe("b", other)
	if len(w.subs) != 0 {
		t.Fatalf("subscriptions left: %v", w.subs)
	}
}

// A stream that fell behind gets a resync with the whole job, then goes on.
func TestJobEventsResyncAfterFallingBehind(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c := e.events(id)
	c.next() // running
	e.srv.watch.resyncAll()
	ev := c.next()
	var j job.Job
	if ev.name != EventResync || json.Unmarshal([]byte(ev.data), &j) != nil || j.ID != id || j.Status != job.Running {
		t.Fatalf("got %v, want a resync with the running job", ev)
	}
	if code, b := e.do("POST", "/job/"+id+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, b)
	}
	if got := names(c.untilEnd()); got != "step status end" {
		t.Fatalf("after the resync: %q", got)
	}
}

// The daemon's ReadTimeout does not end a stream that outlives it.
func TestJobEventsOutliveTheReadTimeout(t *testing.T) {
	old := sseHeartbeat
	sseHeartbeat = 50 * time.Millisecond
	t.Cleanup(func() { sseHeartbeat = old })
	e := newEnv(t, Options{})
	e.ts.Close()
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	e.ts.Config.ReadTimeout = 200 * time.Millisecond
	e.ts.Start()
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	c := e.events(id)
	c.next()
	deadline := time.After(time.Second)
	for {
		select {
		case <-c.closed:
			t.Fatal("the stream ended at the read timeout")
		case <-c.events:
			continue
		case <-deadline:
		}
		break
	}
	if code, b := e.do("POST", "/job/"+id+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel: %d %s", code, b)
	}
	if got := names(c.untilEnd()); got != "step status end" {
		t.Fatalf("events %q", got)
	}
}

// A client that never reads is dropped once a write to it times out, and
// its subscription goes; the job goes on.
func TestJobEventsClientThatNeverReads(t *testing.T) {
	old := sseWriteTimeout
	sseWriteTimeout = 100 * time.Millisecond
	t.Cleanup(func() { sseWriteTimeout = old })
	e := newEnv(t, Options{})
	e.ts.Close()
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	e.ts.Start() // a real connection, whose buffers fill
	big := strings.Repeat("x", 700<<10)
	id := e.submit(`{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"1h"}}],"context":{"big":"` + big + `"}}`)
	e.waitStatus(id, job.Running)

	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /job/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription", func() bool { return e.srv.watch.count(id) == 1 })
	// Every resync sends the whole job, 700 KiB, to a client that reads
	// none of it.
	deadline := time.Now().Add(20 * time.Second)
	for e.srv.watch.count(id) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream of a client that never reads was kept")
		}
		e.srv.watch.resyncAll()
		time.Sleep(5 * time.Millisecond)
	}
	if j := e.job(id); j.Status != job.Running {
		t.Fatalf("the job is %s", j.Status)
	}
}
