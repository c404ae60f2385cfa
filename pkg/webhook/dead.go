package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/store"
)

// deadPrefix keys the dead letters: events that exhausted their attempts
// or lost their endpoint. They are kept until an operator retries or
// clears them, since an event a receiver never got (a job.failed for an
// incident, say) must not disappear with only a log line to show for it.
const deadPrefix = "webhook-dead/"

// deadLetter is the record of an event that will not be delivered unless
// an operator sends it again: the outbox item as it was, and why.
type deadLetter struct {
	item
	DeadAt time.Time `json:"dead_at"`
	Reason string    `json:"reason"`
}

// Delivery states, as List reports them.
const (
	StatePending = "pending"
	StateDead    = "dead"
)

// Delivery is one event's delivery to one endpoint, as an operator sees
// it: waiting in the outbox (pending) or among the dead letters (dead).
type Delivery struct {
	// ID names the delivery for Retry and Clear: the event id, a slash and
	// a short hash of the endpoint's url.
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	Event   string `json:"event"`
	// URL is the endpoint's url without credentials or query, which often
	// hold tokens.
	URL       string    `json:"url"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	// NextAttemptAt is when a pending delivery is tried next.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// RetriedAt is when an operator last sent it again from the dead
	// letters.
	RetriedAt *time.Time `json:"retried_at,omitempty"`
	// DeadAt and Reason say when and why a dead letter gave up.
	DeadAt    *time.Time `json:"dead_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// ErrNoDeadLetter is returned by Retry and Clear for an id that names no
// dead letter; nothing was changed then.
var ErrNoDeadLetter = errors.New("no such webhook dead letter")

func deadLetterRecords(key string, it *item, now time.Time, why string) ([]store.Record, error) {
	dl := deadLetter{item: *it, DeadAt: now.UTC(), Reason: why}
	v, err := json.Marshal(dl)
	if err != nil {
		return nil, err
	}
	id := strings.TrimPrefix(key, recordPrefix)
	return []store.Record{{Key: key}, {Key: deadPrefix + id, Value: v}}, nil
}

// DeadLetters counts the dead letters in the store.
func DeadLetters(s store.Store) int { return len(s.Records(deadPrefix)) }

// List returns the dead letters and the pending deliveries, newest first.
// Records that do not decode are left out; verify reports them.
func List(s store.Store) []Delivery {
	out := []Delivery{}
	for _, r := range s.Records(deadPrefix) {
		var dl deadLetter
		if json.Unmarshal(r.Value, &dl) != nil {
			continue
		}
		d := dl.delivery(strings.TrimPrefix(r.Key, deadPrefix), StateDead)
		dead := dl.DeadAt
		d.DeadAt, d.Reason = &dead, dl.Reason
		out = append(out, d)
	}
	for _, r := range s.Records(recordPrefix) {
		var it item
		if json.Unmarshal(r.Value, &it) != nil {
			continue
		}
		d := it.delivery(strings.TrimPrefix(r.Key, recordPrefix), StatePending)
		next := it.NextAt
		d.NextAttemptAt = &next
		out = append(out, d)
	}
	slices.SortStableFunc(out, func(a, b Delivery) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

func (it *item) delivery(id, state string) Delivery {
	return Delivery{
		ID: id, EventID: it.EventID, Event: it.Event, URL: redactURL(it.URL), State: state,
		Attempts: it.Attempts, CreatedAt: it.CreatedAt, RetriedAt: it.RetriedAt, LastError: it.LastError,
	}
}

// selectDead returns the dead letters ids name, all of them when ids is
// empty. An id is a delivery id or an event id (every dead delivery of
// that event). An id that names none is an error wrapping
// ErrNoDeadLetter, so that a mistyped id changes nothing.
func selectDead(s store.Store, ids []string) ([]store.Record, error) {
	recs := s.Records(deadPrefix)
	if len(ids) == 0 {
		return recs, nil
	}
	var picked []store.Record
	var unknown []string
	for _, id := range ids {
		found := false
		for _, r := range recs {
			rid := strings.TrimPrefix(r.Key, deadPrefix)
			eventID, _, _ := strings.Cut(rid, "/")
			if rid != id && eventID != id {
				continue
			}
			found = true
			if !slices.ContainsFunc(picked, func(p store.Record) bool { return p.Key == r.Key }) {
				picked = append(picked, r)
			}
		}
		if !found {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w: %s; 'secauto webhooks list' shows them", ErrNoDeadLetter, strings.Join(unknown, ", "))
	}
	return picked, nil
}

// Retry moves the dead letters ids name (all when ids is empty) back to
// the outbox, in one durable write, and returns how many it moved. Each
// is tried at once and then with the usual backoff, its age limit counted
// from now; its event id stays the same, so receivers can tell a repeat.
// A running dispatcher picks them up at its next scan (Notify it).
func Retry(s store.Store, ids []string, now time.Time) (int, error) {
	recs, err := selectDead(s, ids)
	if err != nil {
		return 0, err
	}
	now = now.UTC()
	changes := make([]store.Record, 0, 2*len(recs))
	for _, r := range recs {
		var dl deadLetter
		if err := json.Unmarshal(r.Value, &dl); err != nil {
			return 0, fmt.Errorf("webhook dead letter %s does not decode: %w; 'secauto verify' reports it", r.Key, err)
		}
		it := dl.item
		it.Attempts = 0
		it.NextAt = now
		it.RetriedAt = &now
		v, err := json.Marshal(it)
		if err != nil {
			return 0, err
		}
		id := strings.TrimPrefix(r.Key, deadPrefix)
		changes = append(changes, store.Record{Key: r.Key}, store.Record{Key: recordPrefix + id, Value: v})
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if err := s.PutRecords(changes...); err != nil {
		return 0, err
	}
	return len(recs), nil
}

// Clear deletes the dead letters ids name, in one durable write, and
// returns how many it deleted. With no ids it deletes every dead letter:
// callers ask the operator to confirm that. Pending deliveries are never
// touched.
func Clear(s store.Store, ids []string) (int, error) {
	recs, err := selectDead(s, ids)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	changes := make([]store.Record, len(recs))
	for i, r := range recs {
		changes[i] = store.Record{Key: r.Key}
	}
	if err := s.PutRecords(changes...); err != nil {
		return 0, err
	}
	return len(recs), nil
}
