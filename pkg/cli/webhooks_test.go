package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// seedDeadLetters gives a new data directory two events for each url, all
// dead-lettered, as a daemon configured without those endpoints leaves
// them.
func seedDeadLetters(t *testing.T, dir string, urls ...string) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var eps []webhook.Endpoint
	for _, u := range urls {
		eps = append(eps, webhook.Endpoint{URL: u})
	}
	ob := webhook.NewOutbox(eps, nil)
	for _, ev := range []string{webhook.CleanupCompleted, webhook.BackupCreated} {
		if err := ob.Enqueue(st, webhook.Event{Event: ev, Data: map[string]any{"n": 1}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { (&webhook.Dispatcher{Store: st}).Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for webhook.DeadLetters(st) != 2*len(urls) {
		if time.Now().After(deadline) {
			t.Fatal("events not dead-lettered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

func listDeliveries(t *testing.T, args ...string) []webhook.Delivery {
	t.Helper()
	code, out, errOut := run(t, nil, append(args, "webhooks", "list", "-o", "json")...)
	var list []webhook.Delivery
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("webhooks list: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	return list
}

func TestWebhooksCommandsOffline(t *testing.T) {
	t.Chdir(t.TempDir())
	seedDeadLetters(t, "data", "http://127.0.0.1:1/a", "http://user:secret@127.0.0.1:1/b?token=t")
	dd := []string{"--data-dir", "data"}

	list := listDeliveries(t, dd...)
	if len(list) != 4 {
		t.Fatalf("listed %+v", list)
	}
	for _, d := range list {
		if d.State != webhook.StateDead || !strings.Contains(d.Reason, "no longer configured") || strings.Contains(d.URL, "secret") || strings.Contains(d.URL, "token=") {
			t.Fatalf("listed %+v", d)
		}
	}
	code, out, _ := run(t, nil, append(dd, "webhooks", "list")...)
	if code != 0 || !strings.HasPrefix(out, "ID ") || strings.Count(out, " dead ") != 4 || !strings.Contains(out, list[0].ID) {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, nil, append(dd, "webhooks", "list", "-o", "yaml")...)
	if code != 0 || !strings.Contains(out, "state: dead") {
		t.Fatalf("yaml: exit %d\n%s", code, out)
	}

	// Mistakes change nothing.
	if code, _, errOut := run(t, nil, append(dd, "webhooks", "retry", "nope")...); code != ExitFailure || !strings.Contains(errOut, "nope") {
		t.Fatalf("retry of an unknown id: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run(t, nil, append(dd, "webhooks", "clear", list[0].ID)...); code != ExitUsage || !strings.Contains(errOut, "--yes") {
		t.Fatalf("clear without --yes: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run(t, nil, append(dd, "webhooks", "clear", list[0].ID, "nope", "--yes")...); code != ExitFailure || !strings.Contains(errOut, "nope") {
		t.Fatalf("clear with an unknown id: exit %d: %s", code, errOut)
	}
	if n := len(listDeliveries(t, dd...)); n != 4 {
		t.Fatalf("%d deliveries left after refused commands", n)
	}

	// Clear the one named; retry one event's dead letters (both endpoints).
	code, out, _ = run(t, nil, append(dd, "webhooks", "clear", list[0].ID, "--yes", "-o", "json")...)
	if code != 0 || strings.TrimSpace(out) != "{\n  \"cleared\": 1\n}" {
		t.Fatalf("clear: exit %d %s", code, out)
	}
	var other webhook.Delivery
	for _, d := range list[1:] {
		if d.EventID != list[0].EventID {
			other = d
		}
	}
	code, out, _ = run(t, nil, append(dd, "webhooks", "retry", other.EventID, "-o", "json")...)
	var retried WebhooksRetried
	if err := json.Unmarshal([]byte(out), &retried); code != 0 || err != nil || retried.Retried != 2 {
		t.Fatalf("retry: exit %d %s", code, out)
	}
	states := map[string]int{}
	for _, d := range listDeliveries(t, dd...) {
		states[d.State]++
		if d.State == webhook.StatePending && (d.EventID != other.EventID || d.RetriedAt == nil) {
			t.Fatalf("pending %+v", d)
		}
	}
	if states[webhook.StatePending] != 2 || states[webhook.StateDead] != 1 {
		t.Fatalf("after retry: %v", states)
	}
	// Clearing everything leaves the deliveries being tried alone.
	if code, out, _ := run(t, nil, append(dd, "webhooks", "clear", "--yes")...); code != 0 || out != "Deleted 1 dead letter\n" {
		t.Fatalf("clear all: exit %d %q", code, out)
	}
	if code, out, _ := run(t, nil, append(dd, "webhooks", "retry")...); code != 0 || out != "No dead letters to retry\n" {
		t.Fatalf("retry with none: exit %d %q", code, out)
	}
	if n := len(listDeliveries(t, dd...)); n != 2 {
		t.Fatalf("%d deliveries left, want the 2 pending", n)
	}
}

// Beside a running daemon the commands ask it, print what they print
// offline, and a retried dead letter is delivered at once.
func TestWebhooksCommandsBesideDaemon(t *testing.T) {
	t.Chdir(t.TempDir())
	var got atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer rcv.Close()
	seedDeadLetters(t, "data", rcv.URL)
	copyDir(t, "data", "twin")
	addr, _ := startDaemon(t, "data", server.Options{Webhooks: []webhook.Endpoint{{URL: rcv.URL}}})

	list := listDeliveries(t, "--data-dir", "data")
	if len(list) != 2 || list[0].State != webhook.StateDead {
		t.Fatalf("listed %+v", list)
	}
	same := func(args ...string) string {
		t.Helper()
		dCode, dOut, dErr := run(t, nil, append([]string{"--data-dir", "data"}, args...)...)
		oCode, oOut, oErr := run(t, nil, append([]string{"--data-dir", "twin"}, args...)...)
		oErr = strings.ReplaceAll(oErr, "twin", "data")
		if dCode != oCode || dOut != oOut || dErr != oErr {
			t.Errorf("%s: through the daemon (exit %d):\n%s%s\noffline (exit %d):\n%s%s", strings.Join(args, " "), dCode, dOut, dErr, oCode, oOut, oErr)
		}
		return dOut
	}
	same("webhooks", "list", "-o", "json")
	same("webhooks", "list")
	same("webhooks", "retry", "nope")
	same("webhooks", "clear", "nope", "--yes")
	same("webhooks", "clear", list[0].ID)
	if out := same("webhooks", "retry", list[0].ID, "-o", "json"); strings.TrimSpace(out) != "{\n  \"retried\": 1\n}" {
		t.Fatalf("retry answered %q", out)
	}
	if out := same("webhooks", "clear", "--yes", "-o", "json"); strings.TrimSpace(out) != "{\n  \"cleared\": 1\n}" {
		t.Fatalf("clear answered %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() != 1 || len(listDeliveries(t, "--data-dir", "data")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the retried event was not delivered: %d deliveries, %+v", got.Load(), listDeliveries(t, "--data-dir", "data"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := listDeliveries(t, "--data-dir", "twin"); len(l) != 1 || l[0].State != webhook.StatePending {
		t.Fatalf("offline, the retried event waits for the next serve: %+v", l)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, route := range []string{"GET /admin/webhooks", "POST /admin/webhooks/retry", "POST /admin/webhooks/clear"} {
		if !strings.Contains(string(metrics), `route="`+route+`"`) {
			t.Errorf("the daemon answered no %s", route)
		}
	}
}
