package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake time source the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// An event its endpoint refuses for longer than MaxAge becomes a dead
// letter; retried once the endpoint is back, it is delivered under the
// same event id.
func TestDeadLetterAfterMaxAgeAndRetry(t *testing.T) {
	rcv := newReceiver(t)
	rcv.setFail(true)
	eps := []Endpoint{{URL: rcv.srv.URL}}
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := openStore(t, t.TempDir())
	defer s.Close()
	if err := NewOutbox(eps, clk.now).Enqueue(s, Event{Event: BackupFailed, Data: map[string]any{"error": "disk"}}); err != nil {
		t.Fatal(err)
	}
	failed := make(chan struct{}, 100)
	d := &Dispatcher{Store: s, Endpoints: eps, Now: clk.now, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAge: time.Hour,
		OnDelivery: func(_ string, err error, _ time.Duration) {
			if err != nil {
				failed <- struct{}{}
			}
		}}
	stop := start(t, d)
	defer stop()
	<-failed
	if DeadLetters(s) != 0 || Pending(s) != 1 {
		t.Fatalf("a young event was dead-lettered: %d dead, %d pending", DeadLetters(s), Pending(s))
	}
	clk.add(61 * time.Minute)
	d.Notify()
	waitFor(t, func() bool { return DeadLetters(s) == 1 && Pending(s) == 0 })
	l := List(s)
	if len(l) != 1 || l[0].State != StateDead || l[0].Attempts < 1 || !strings.Contains(l[0].Reason, "longer than 1h0m0s") ||
		!strings.Contains(l[0].LastError, "503") || l[0].DeadAt == nil || !l[0].DeadAt.Equal(clk.now()) {
		t.Fatalf("dead letter %+v", l)
	}
	eventID := l[0].EventID

	// The endpoint is back; a retry is delivered although the event is
	// older than MaxAge.
	rcv.setFail(false)
	n, err := Retry(s, []string{l[0].ID}, clk.now())
	if err != nil || n != 1 || DeadLetters(s) != 0 {
		t.Fatalf("retry: %d %v; %d dead letters left", n, err, DeadLetters(s))
	}
	if l := List(s); len(l) != 1 || l[0].State != StatePending || l[0].Attempts != 0 || l[0].RetriedAt == nil {
		t.Fatalf("after retry %+v", l)
	}
	d.Notify()
	got := rcv.next(t)
	var ev Event
	if err := json.Unmarshal(got.body, &ev); err != nil || ev.ID != eventID || ev.Event != BackupFailed {
		t.Fatalf("delivered %s: %v", got.body, err)
	}
	waitFor(t, func() bool { return Pending(s) == 0 && DeadLetters(s) == 0 })
}

// Clear deletes only the dead letters it is given, by delivery or event
// id; an unknown id changes nothing; pending deliveries are never touched.
func TestClearRemovesOnlyTheNamedDeadLetters(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	gone := []Endpoint{{URL: "http://127.0.0.1:1/a"}, {URL: "http://127.0.0.1:1/b"}}
	ob := NewOutbox(gone, nil)
	for range 3 {
		if err := ob.Enqueue(s, Event{Event: CleanupCompleted}); err != nil {
			t.Fatal(err)
		}
	}
	// No endpoint configured: all six deliveries become dead letters.
	stop := start(t, &Dispatcher{Store: s})
	waitFor(t, func() bool { return DeadLetters(s) == 6 })
	stop()
	// A pending delivery, which Clear must leave alone.
	if err := NewOutbox([]Endpoint{{URL: "http://127.0.0.1:1/c"}}, nil).Enqueue(s, Event{Event: StoreRestored}); err != nil {
		t.Fatal(err)
	}
	var dead []Delivery
	for _, d := range List(s) {
		if d.State == StateDead {
			dead = append(dead, d)
		}
	}
	if len(dead) != 6 || len(List(s)) != 7 {
		t.Fatalf("list %+v", List(s))
	}

	if n, err := Clear(s, []string{dead[0].ID, "no-such-id"}); !errors.Is(err, ErrNoDeadLetter) || n != 0 || !strings.Contains(err.Error(), "no-such-id") || DeadLetters(s) != 6 {
		t.Fatalf("clear with an unknown id: %d %v, %d left", n, err, DeadLetters(s))
	}
	if n, err := Clear(s, []string{dead[0].ID}); err != nil || n != 1 || DeadLetters(s) != 5 {
		t.Fatalf("clear one: %d %v, %d left", n, err, DeadLetters(s))
	}
	for _, d := range List(s) {
		if d.ID == dead[0].ID {
			t.Fatalf("%s still listed", d.ID)
		}
	}
	// An event id names both its deliveries; one of them is already gone.
	var other string
	for _, d := range dead[1:] {
		if d.EventID != dead[0].EventID {
			other = d.EventID
			break
		}
	}
	if n, err := Clear(s, []string{dead[0].EventID, other}); err != nil || n != 3 || DeadLetters(s) != 2 {
		t.Fatalf("clear by event id: %d %v, %d left", n, err, DeadLetters(s))
	}
	if n, err := Clear(s, nil); err != nil || n != 2 || DeadLetters(s) != 0 || Pending(s) != 1 {
		t.Fatalf("clear all: %d %v; %d dead, %d pending", n, err, DeadLetters(s), Pending(s))
	}
	if n, err := Retry(s, nil, time.Now()); err != nil || n != 0 {
		t.Fatalf("retry with none: %d %v", n, err)
	}
}
