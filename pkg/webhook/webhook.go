// Package webhook owns event delivery to operators' endpoints: the event
// payloads, their signatures, the outbox that keeps undelivered events in
// the store (so they survive restarts and crashes), and the Dispatcher
// that delivers them at least once, retrying with backoff.
//
// An event is queued as one store record per endpoint that wants it,
// ideally in the same durable write as the job change that caused it
// (store.UpdateWith), so it can be neither lost nor sent for a change that
// did not happen. Delivery removes the record; a failure reschedules it.
// An event no attempt delivered within the dispatcher's MaxAge, or whose
// endpoint left the configuration, becomes a dead letter (dead.go): kept
// in the store until an operator sends it again or clears it.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Event names.
const (
	JobRecovered     = "job.recovered"
	JobCompleted     = "job.completed"
	JobFailed        = "job.failed"
	JobCancelled     = "job.cancelled"
	BackupCreated    = "backup.created"
	BackupFailed     = "backup.failed"
	CleanupCompleted = "cleanup.completed"
	StoreRestored    = "store.restored"
)

// Events lists every event name.
var Events = []string{JobRecovered, JobCompleted, JobFailed, JobCancelled, BackupCreated, BackupFailed, CleanupCompleted, StoreRestored}

// JobEvent names the event announcing that a job reached status st, or ""
// for a status that has none.
func JobEvent(st job.Status) string {
	switch st {
	case job.Completed:
		return JobCompleted
	case job.Failed:
		return JobFailed
	case job.Cancelled:
		return JobCancelled
	}
	return ""
}

// Endpoint is one configured receiver.
type Endpoint struct {
	URL    string
	Events []string // empty means every event
	Secret string   // empty means unsigned
}

func (e Endpoint) wants(event string) bool {
	return len(e.Events) == 0 || slices.Contains(e.Events, event)
}

// Event is what a receiver gets: the JSON body of the POST.
type Event struct {
	ID    string    `json:"id"`
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	Job   *job.Job  `json:"job,omitempty"`
	Data  any       `json:"data,omitempty"`
}

// recordPrefix keys the outbox's records in the store.
const recordPrefix = "webhook/"

// item is an outbox record: one event waiting for one endpoint.
type item struct {
	EventID   string          `json:"event_id"`
	Event     string          `json:"event"`
	URL       string          `json:"url"`
	Body      json.RawMessage `json:"body"`
	CreatedAt time.Time       `json:"created_at"`
	Attempts  int             `json:"attempts"`
	NextAt    time.Time       `json:"next_attempt_at"`
	LastError string          `json:"last_error,omitempty"`
	// RetriedAt is when an operator sent the event again from the dead
	// letters; the age limit counts from then, or the retry would expire
	// at once.
	RetriedAt *time.Time `json:"retried_at,omitempty"`
}

// since is when the event's current run of attempts began.
func (it *item) since() time.Time {
	if it.RetriedAt != nil {
		return *it.RetriedAt
	}
	return it.CreatedAt
}

func itemKey(eventID, url string) string { return recordPrefix + deliveryID(eventID, url) }

// deliveryID names one event's delivery to one endpoint: the event id and
// a short hash of the url, which may hold a token and so is not shown.
func deliveryID(eventID, url string) string {
	h := sha256.Sum256([]byte(url))
	return eventID + "/" + hex.EncodeToString(h[:6])
}

// Outbox turns events into store records for the endpoints that want them.
type Outbox struct {
	endpoints []Endpoint
	now       func() time.Time
}

// NewOutbox returns an outbox for these endpoints; now nil means time.Now.
func NewOutbox(endpoints []Endpoint, now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{endpoints: endpoints, now: now}
}

// Records returns the records that queue ev (its ID and Time filled in if
// empty) for every endpoint that wants it; none when no endpoint does.
func (o *Outbox) Records(ev Event) ([]store.Record, error) {
	if o == nil {
		return nil, nil
	}
	var targets []Endpoint
	for _, e := range o.endpoints {
		if e.wants(ev.Event) {
			targets = append(targets, e)
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	if ev.ID == "" {
		ev.ID = uuid.Must(uuid.NewV7()).String()
	}
	if ev.Time.IsZero() {
		ev.Time = o.now()
	}
	ev.Time = ev.Time.UTC().Truncate(time.Second)
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", ev.Event, err)
	}
	recs := make([]store.Record, 0, len(targets))
	for _, e := range targets {
		it := item{EventID: ev.ID, Event: ev.Event, URL: e.URL, Body: body, CreatedAt: ev.Time, NextAt: ev.Time}
		v, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		recs = append(recs, store.Record{Key: itemKey(ev.ID, e.URL), Value: v})
	}
	return recs, nil
}

// JobRecords returns a store.UpdateWith callback that queues event name
// for the updated job; with name "" it queues the event JobEvent names for
// the job's new status, if any.
func (o *Outbox) JobRecords(name string) func(*job.Job) []store.Record {
	return func(j *job.Job) []store.Record {
		ev := name
		if ev == "" {
			ev = JobEvent(j.Status)
		}
		if ev == "" {
			return nil
		}
		recs, err := o.Records(Event{Event: ev, Job: j})
		if err != nil {
			return nil
		}
		return recs
	}
}

// Enqueue queues ev durably.
func (o *Outbox) Enqueue(s store.Store, ev Event) error {
	recs, err := o.Records(ev)
	if err != nil || len(recs) == 0 {
		return err
	}
	return s.PutRecords(recs...)
}

// Pending counts the deliveries waiting in the store.
func Pending(s store.Store) int {
	return len(s.Records(recordPrefix))
}

// Check reports outbox records and dead letters that do not decode, for
// verify.
func Check(recs []store.Record) []string {
	var problems []string
	for _, r := range recs {
		what := "outbox record"
		switch {
		case strings.HasPrefix(r.Key, recordPrefix):
		case strings.HasPrefix(r.Key, deadPrefix):
			what = "webhook dead letter"
		default:
			continue
		}
		var it item
		if err := json.Unmarshal(r.Value, &it); err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", what, r.Key, err))
			continue
		}
		if it.URL == "" || it.Event == "" || !json.Valid(it.Body) {
			problems = append(problems, fmt.Sprintf("%s %s: missing url, event or body", what, r.Key))
		}
	}
	return problems
}

// Sign returns the X-Secauto-Signature value for body: sha256=HEX of its
// HMAC-SHA256 under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// StandardSignature returns the Standard Webhooks webhook-signature value:
// "v1," and the base64 HMAC-SHA256 of "id.timestamp.body". A secret in the
// usual "whsec_BASE64" form is decoded to its key bytes first.
func StandardSignature(secret, id string, ts time.Time, body []byte) string {
	key := []byte(secret)
	if b64, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(b64); err == nil {
			key = k
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
