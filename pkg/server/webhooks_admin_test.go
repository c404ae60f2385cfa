package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// Dead letters are counted by /stats and /metrics, listed, retried to a
// configured endpoint (and delivered) and cleared only when named, all
// behind the API's auth.
func TestAdminWebhooksDeadLetters(t *testing.T) {
	rcv, hook := newReceiver(t, "")
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	// A daemon configured without the endpoints dead-letters what waits
	// for them.
	ob := webhook.NewOutbox([]webhook.Endpoint{{URL: hook.URL}, {URL: "http://127.0.0.1:1/gone"}}, nil)
	for _, ev := range []string{webhook.CleanupCompleted, webhook.BackupCreated} {
		if err := ob.Enqueue(st, webhook.Event{Event: ev, Data: map[string]any{"n": 1}}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := New(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first.Start()
	waitFor(t, "the dead letters", func() bool { return webhook.DeadLetters(st) == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	first.Shutdown(ctx)
	cancel()

	e := startEnv(t, dir, st, Options{AuthTokens: []string{"tok"}, Webhooks: []webhook.Endpoint{{URL: hook.URL}}})
	var stats StatsResponse
	code, b := e.do("GET", "/stats", "")
	if err := json.Unmarshal(b, &stats); code != http.StatusOK || err != nil || stats.WebhookDeadLetters != 4 || stats.WebhookBacklog != 0 {
		t.Fatalf("stats %d %s", code, b)
	}
	if got := deadLetterGauge(t, e); got != 4 {
		t.Fatalf("secauto_webhook_dead_letters %v, want 4", got)
	}
	for _, p := range []string{"GET /admin/webhooks", "POST /admin/webhooks/retry", "POST /admin/webhooks/clear"} {
		method, path, _ := strings.Cut(p, " ")
		if code, _ := e.doToken(method, path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", p, code)
		}
	}

	var list []webhook.Delivery
	code, b = e.do("GET", "/admin/webhooks", "")
	if err := json.Unmarshal(b, &list); code != http.StatusOK || err != nil || len(list) != 4 {
		t.Fatalf("list %d %s", code, b)
	}
	var mine, gone []string
	for _, d := range list {
		if d.State != webhook.StateDead || d.Reason == "" {
			t.Fatalf("listed %+v", d)
		}
		if d.URL == hook.URL {
			mine = append(mine, d.ID)
		} else {
			gone = append(gone, d.ID)
		}
	}

	if code, b := e.do("POST", "/admin/webhooks/retry", `{"ids":["nope"]}`); code != http.StatusNotFound || !strings.Contains(errorOf(t, b), "nope") {
		t.Fatalf("retry of an unknown id: %d %s", code, b)
	}
	if code, b := e.do("POST", "/admin/webhooks/clear", ""); code != http.StatusBadRequest {
		t.Fatalf("clear without ids: %d %s", code, b)
	}
	body, _ := json.Marshal(AdminWebhooksRequest{IDs: mine})
	code, b = e.do("POST", "/admin/webhooks/retry", string(body))
	if code != http.StatusOK || string(bytes.TrimSpace(b)) != `{"retried":2}` {
		t.Fatalf("retry: %d %s", code, b)
	}
	waitFor(t, "the retried deliveries", func() bool { return len(rcv.list()) == 2 && webhook.Pending(st) == 0 })

	body, _ = json.Marshal(AdminWebhooksRequest{IDs: gone[:1]})
	if code, b := e.do("POST", "/admin/webhooks/clear", string(body)); code != http.StatusOK || string(bytes.TrimSpace(b)) != `{"cleared":1}` {
		t.Fatalf("clear: %d %s", code, b)
	}
	code, b = e.do("GET", "/admin/webhooks", "")
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 1 || list[0].ID != gone[1] {
		t.Fatalf("after clear %d %s", code, b)
	}
	if code, b := e.do("POST", "/admin/webhooks/clear", `{"all":true}`); code != http.StatusOK || string(bytes.TrimSpace(b)) != `{"cleared":1}` {
		t.Fatalf("clear all: %d %s", code, b)
	}
	if got := deadLetterGauge(t, e); got != 0 {
		t.Fatalf("secauto_webhook_dead_letters %v after clear", got)
	}
}

func deadLetterGauge(t *testing.T, e *env) float64 {
	t.Helper()
	code, body := e.do("GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mf := families["secauto_webhook_dead_letters"]
	if mf == nil {
		t.Fatal("/metrics lacks secauto_webhook_dead_letters")
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}
