package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

type delivery struct {
	header http.Header
	body   []byte
}

// receiver records deliveries; fail makes it answer 503 while set.
type receiver struct {
	mu    sync.Mutex
	got   []delivery
	fail  bool
	delay time.Duration
	srv   *httptest.Server
	ch    chan delivery
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{ch: make(chan delivery, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		fail, delay := r.fail, r.delay
		r.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
				return
			}
		}
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		d := delivery{req.Header.Clone(), body}
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
		r.ch <- d
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFail(b bool) { r.mu.Lock(); r.fail = b; r.mu.Unlock() }

func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
		return delivery{}
	}
}

func openStore(t *testing.T, dir string) store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func TestOutboxFiltersEndpointsAndSigns(t *testing.T) {
	all, only := newReceiver(t), newReceiver(t)
	eps := []Endpoint{{URL: all.srv.URL, Secret: "s3cret"}, {URL: only.srv.URL, Events: []string{JobFailed}}}
	s := openStore(t, t.TempDir())
	defer s.Close()
	ob := NewOutbox(eps, nil)
	j, _ := s.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log"}}})
	j, err := s.UpdateWith(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }, ob.JobRecords(""))
	if err != nil || Pending(s) != 0 {
		t.Fatalf("a start queued events: %d %v", Pending(s), err)
	}
	j, err = s.UpdateWith(j.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) }, ob.JobRecords(""))
	if err != nil || Pending(s) != 1 {
		t.Fatalf("completion queued %d deliveries, want 1 (the second endpoint wants only job.failed): %v", Pending(s), err)
	}
	d := &Dispatcher{Store: s, Endpoints: eps}
	stop := start(t, d)
	defer stop()
	got := all.next(t)
	var ev Event
	if err := json.Unmarshal(got.body, &ev); err != nil || ev.Event != JobCompleted || ev.Job == nil || ev.Job.ID != j.ID || ev.ID == "" {
		t.Fatalf("body %s: %v", got.body, err)
	}
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write(got.body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); got.header.Get("X-Secauto-Signature") != want {
		t.Fatalf("signature %q, want %q", got.header.Get("X-Secauto-Signature"), want)
	}
	// Standard Webhooks: v1,base64(HMAC(secret, id.timestamp.body)).
	ts, _ := strconv.ParseInt(got.header.Get("webhook-timestamp"), 10, 64)
	m = hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte(got.header.Get("webhook-id") + "." + strconv.FormatInt(ts, 10) + "." + string(got.body)))
	if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); got.header.Get("webhook-signature") != want || got.header.Get("webhook-id") != ev.ID {
		t.Fatalf("standard webhook headers %v", got.header)
	}
	waitFor(t, func() bool { return Pending(s) == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRetriesKeepTheEventIDAndSurviveRestart(t *testing.T) {
	rcv := newReceiver(t)
	rcv.setFail(true)
	eps := []Endpoint{{URL: rcv.srv.URL}}
	dir := t.TempDir()
	s := openStore(t, dir)
	ob := NewOutbox(eps, nil)
	if err := ob.Enqueue(s, Event{Event: BackupCreated, Data: map[string]any{"path": "x"}}); err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int32
	twoFailures := make(chan struct{})
	d := &Dispatcher{Store: s, Endpoints: eps, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnDelivery: func(event string, err error, _ time.Duration) {
			if err != nil && failures.Add(1) == 2 {
				close(twoFailures)
			}
		}}
	stop := start(t, d)
	<-twoFailures
	stop()
	if Pending(s) != 1 {
		t.Fatalf("a failed event left the outbox")
	}
	s.Close()

	// The receiver comes back; a new process delivers what the old one could not.
	rcv.setFail(false)
	s = openStore(t, dir)
	defer s.Close()
	stop = start(t, &Dispatcher{Store: s, Endpoints: eps, MinBackoff: 5 * time.Millisecond})
	defer stop()
	got := rcv.next(t)
	var ev Event
	json.Unmarshal(got.body, &ev)
	if ev.Event != BackupCreated || got.header.Get("webhook-id") != ev.ID {
		t.Fatalf("delivery %s %v", got.body, got.header)
	}
	waitFor(t, func() bool { return Pending(s) == 0 })
}

func TestSlowEndpointDoesNotHoldUpOthers(t *testing.T) {
	slow, fast := newReceiver(t), newReceiver(t)
	slow.delay = time.Hour
	eps := []Endpoint{{URL: slow.srv.URL}, {URL: fast.srv.URL}}
	s := openStore(t, t.TempDir())
	defer s.Close()
	ob := NewOutbox(eps, nil)
	d := &Dispatcher{Store: s, Endpoints: eps, Client: &http.Client{}}
	stop := start(t, d)
	defer stop()
	for i := range 5 {
		if err := ob.Enqueue(s, Event{Event: CleanupCompleted, Data: map[string]any{"deleted": i}}); err != nil {
			t.Fatal(err)
		}
		d.Notify()
	}
	for range 5 {
		fast.next(t)
	}
}

func TestUnconfiguredEndpointIsDeadLettered(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	ob := NewOutbox([]Endpoint{{URL: "http://user:pw@127.0.0.1:1/gone?token=t"}}, nil)
	ob.Enqueue(s, Event{Event: StoreRestored})
	if Pending(s) != 1 {
		t.Fatal("not queued")
	}
	stop := start(t, &Dispatcher{Store: s})
	defer stop()
	waitFor(t, func() bool { return Pending(s) == 0 && DeadLetters(s) == 1 })
	l := List(s)
	if len(l) != 1 || l[0].State != StateDead || !strings.Contains(l[0].Reason, "no longer configured") || strings.Contains(l[0].URL, "pw") || strings.Contains(l[0].URL, "token") {
		t.Fatalf("dead letters %+v", l)
	}
}

func TestCheck(t *testing.T) {
	probs := Check([]store.Record{{Key: "webhook/x", Value: []byte(`{"event":"job.failed"}`)}, {Key: "other", Value: []byte(`1`)},
		{Key: "webhook-dead/y", Value: []byte(`[]`)}})
	if len(probs) != 2 {
		t.Fatalf("%v", probs)
	}
}
