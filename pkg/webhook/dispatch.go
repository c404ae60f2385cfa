package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/store"
)

// Dispatcher delivers the outbox's events. A slow or dead endpoint only
// holds up its own deliveries: each endpoint has a few delivery slots of
// its own, and queueing an event never waits for delivery.
type Dispatcher struct {
	Store     store.Store
	Endpoints []Endpoint
	// Client sends the requests; nil means one with a 10s timeout.
	Client *http.Client
	Logger *slog.Logger
	Now    func() time.Time
	// MinBackoff and MaxBackoff bound the delay before a retry (defaults
	// 1s and 5m; each failure doubles it, with jitter). MaxAge moves an
	// event that no attempt delivered for this long (default 72h) to the
	// dead letters.
	MinBackoff, MaxBackoff, MaxAge time.Duration
	// PerEndpoint is how many deliveries may be in flight to one endpoint.
	PerEndpoint int
	UserAgent   string
	// OnDelivery, if set, hears about every attempt (for metrics).
	OnDelivery func(event string, err error, took time.Duration)

	once     sync.Once
	kick     chan struct{}
	mu       sync.Mutex
	cache    map[string]*item // decoded outbox records by key
	inflight map[string]bool  // keys being delivered
	busy     map[string]int   // deliveries in flight per URL
	wg       sync.WaitGroup
}

func (d *Dispatcher) init() {
	d.once.Do(func() {
		d.kick = make(chan struct{}, 1)
		d.cache = map[string]*item{}
		d.inflight = map[string]bool{}
		d.busy = map[string]int{}
		if d.Client == nil {
			d.Client = &http.Client{Timeout: 10 * time.Second}
		}
		if d.Logger == nil {
			d.Logger = slog.New(slog.DiscardHandler)
		}
		if d.Now == nil {
			d.Now = time.Now
		}
		if d.MinBackoff <= 0 {
			d.MinBackoff = time.Second
		}
		if d.MaxBackoff <= 0 {
			d.MaxBackoff = 5 * time.Minute
		}
		if d.MaxAge <= 0 {
			d.MaxAge = 72 * time.Hour
		}
		if d.PerEndpoint <= 0 {
			d.PerEndpoint = 2
		}
		if d.UserAgent == "" {
			d.UserAgent = "secauto"
		}
	})
}

// Notify tells the dispatcher that events were queued.
func (d *Dispatcher) Notify() {
	d.init()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// scanEvery bounds how often the outbox is rescanned, so a large backlog
// behind a dead endpoint costs little while events keep arriving.
const scanEvery = 100 * time.Millisecond

// On a store shared by several nodes, each node rescans the outbox at
// least this often, and a delivery is claimed for claimTTL (more than a
// request's timeout) before it is attempted, so each event is sent by one
// node at a time.
const (
	sharedScanEvery = 2 * time.Second
	claimTTL        = time.Minute
)

// Run delivers until ctx is done, then waits for deliveries in flight.
// Undelivered events stay in the store for the next Run.
func (d *Dispatcher) Run(ctx context.Context) {
	d.init()
	defer d.wg.Wait()
	for {
		next := d.dispatch(ctx)
		wait := scanEvery
		if !next.IsZero() {
			wait = max(scanEvery, next.Sub(d.Now()))
		} else {
			wait = time.Hour
		}
		if _, shared := d.Store.(store.Cluster); shared {
			// Other nodes queue events too, and one that dies leaves
			// its events for the others.
			wait = min(wait, sharedScanEvery)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.kick:
			t.Stop()
			// Coalesce bursts of events into one scan.
			select {
			case <-ctx.Done():
				return
			case <-time.After(scanEvery):
			}
		case <-t.C:
		}
	}
}

// dispatch starts every due delivery that has a free slot and returns when
// the next one falls due (zero if none is waiting).
func (d *Dispatcher) dispatch(ctx context.Context) time.Time {
	recs := d.Store.Records(recordPrefix)
	cl, shared := d.Store.(store.Cluster)
	now := d.Now()
	var next time.Time
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		seen[r.Key] = true
		if d.inflight[r.Key] {
			continue
		}
		it := d.cache[r.Key]
		if it == nil || shared {
			// Another node may have changed a shared record since.
			it = new(item)
			if err := json.Unmarshal(r.Value, it); err != nil {
				d.Logger.Error("unreadable webhook outbox record left in place", "key", r.Key, "err", err.Error())
				continue
			}
			d.cache[r.Key] = it
		}
		ep, ok := d.endpoint(it.URL)
		if !ok {
			d.bury(r.Key, it, now, "its endpoint is no longer configured")
			continue
		}
		if now.Sub(it.since()) > d.MaxAge {
			why := fmt.Sprintf("undelivered for longer than %s", d.MaxAge)
			if it.LastError != "" {
				why += " (last error: " + it.LastError + ")"
			}
			d.bury(r.Key, it, now, why)
			continue
		}
		if it.NextAt.After(now) || d.busy[it.URL] >= d.PerEndpoint {
			if next.IsZero() || it.NextAt.Before(next) {
				next = it.NextAt
			}
			continue
		}
		if shared {
			ok, err := cl.ClaimRecord(r.Key, claimTTL)
			if err != nil {
				d.Logger.Error("cannot claim a webhook delivery on the shared store", "key", r.Key, "err", err.Error())
			}
			if !ok {
				continue // another node is delivering it
			}
		}
		d.inflight[r.Key] = true
		d.busy[it.URL]++
		cp := *it
		d.wg.Go(func() { d.deliver(ctx, r.Key, &cp, ep) })
	}
	for k := range d.cache {
		if !seen[k] && !d.inflight[k] {
			delete(d.cache, k)
		}
	}
	return next
}

func (d *Dispatcher) endpoint(url string) (Endpoint, bool) {
	for _, e := range d.Endpoints {
		if e.URL == url {
			return e, true
		}
	}
	return Endpoint{}, false
}

// bury moves an event no attempt will deliver to the dead letters, in one
// durable write, so it is neither lost nor retried for ever. Called with
// d.mu held.
func (d *Dispatcher) bury(key string, it *item, now time.Time, why string) {
	recs, err := deadLetterRecords(key, it, now, why)
	if err == nil {
		err = d.Store.PutRecords(recs...)
	}
	if err != nil {
		// It stays in the outbox and the next scan tries again.
		d.Logger.Error("could not move an undeliverable webhook event to the dead letters", "event_id", it.EventID, "err", err.Error())
		return
	}
	d.Logger.Error("webhook event dead-lettered; see 'secauto webhooks list' and 'secauto webhooks retry'",
		"event", it.Event, "event_id", it.EventID, "url", redactURL(it.URL), "attempts", it.Attempts, "reason", why)
	delete(d.cache, key)
}

func (d *Dispatcher) deliver(ctx context.Context, key string, it *item, ep Endpoint) {
	start := time.Now()
	err := d.post(ctx, it, ep)
	took := time.Since(start)
	defer func() {
		d.mu.Lock()
		delete(d.inflight, key)
		d.busy[it.URL]--
		d.mu.Unlock()
		d.Notify()
	}()
	if ctx.Err() != nil {
		return // shutting down: not an attempt; the event stays queued
	}
	if d.OnDelivery != nil {
		d.OnDelivery(it.Event, err, took)
	}
	if err == nil {
		if perr := d.Store.PutRecords(store.Record{Key: key}); perr != nil {
			d.Logger.Error("webhook delivered but not removed from the outbox; it will be sent again", "event_id", it.EventID, "err", perr.Error())
		}
		d.mu.Lock()
		delete(d.cache, key)
		d.mu.Unlock()
		d.Logger.Debug("webhook delivered", "event", it.Event, "event_id", it.EventID, "url", redactURL(it.URL), "attempt", it.Attempts+1)
		return
	}
	it.Attempts++
	it.LastError = err.Error()
	it.NextAt = d.Now().Add(d.backoff(it.Attempts))
	v, _ := json.Marshal(it)
	if perr := d.Store.PutRecords(store.Record{Key: key, Value: v}); perr != nil {
		d.Logger.Error("could not reschedule webhook event", "event_id", it.EventID, "err", perr.Error())
	}
	d.mu.Lock()
	d.cache[key] = it
	d.mu.Unlock()
	d.Logger.Warn("webhook delivery failed; will retry", "event", it.Event, "event_id", it.EventID,
		"url", redactURL(it.URL), "attempt", it.Attempts, "retry_at", it.NextAt.Format(time.RFC3339), "err", err.Error())
}

// backoff doubles from MinBackoff up to MaxBackoff, with full jitter over
// the upper half so that retries from many events spread out.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := d.MinBackoff
	for i := 1; i < attempts && b < d.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.MaxBackoff)
	return b/2 + time.Duration(rand.Int64N(int64(b/2)+1))
}

func (d *Dispatcher) post(ctx context.Context, it *item, ep Endpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, it.URL, bytes.NewReader(it.Body))
	if err != nil {
		return err
	}
	now := d.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.UserAgent)
	req.Header.Set("X-Secauto-Event", it.Event)
	req.Header.Set("X-Secauto-Delivery", it.EventID)
	req.Header.Set("webhook-id", it.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if ep.Secret != "" {
		req.Header.Set("X-Secauto-Signature", Sign(ep.Secret, it.Body))
		req.Header.Set("webhook-signature", StandardSignature(ep.Secret, it.EventID, now, it.Body))
	}
	resp, err := d.Client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			// The url may carry a token; say what failed without it.
			return fmt.Errorf("post to %s: %w", redactURL(it.URL), errors.Unwrap(err))
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return nil
}
