package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/webhook"
)

// hookReceiver is a webhook endpoint on a fixed loopback port that can be
// taken down and brought back, as a chat or ticketing bridge would be.
type hookReceiver struct {
	t      *testing.T
	addr   string
	secret string
	srv    *http.Server

	mu     sync.Mutex
	events []webhook.Event
	bad    []string
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{t: t, addr: ln.Addr().String(), secret: secret}
	ln.Close() // down until up is called
	t.Cleanup(r.down)
	return r
}

func (r *hookReceiver) url() string { return "http://" + r.addr + "/hook" }

func (r *hookReceiver) up() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver cannot listen on %s again: %v", r.addr, err)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	go r.srv.Serve(ln)
}

func (r *hookReceiver) down() {
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := req.Header.Get("X-Secauto-Signature"); got != webhook.Sign(r.secret, body) {
		r.bad = append(r.bad, "bad signature "+got)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.bad = append(r.bad, err.Error())
		return
	}
	r.events = append(r.events, ev)
}

func (r *hookReceiver) received() ([]webhook.Event, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.events...), append([]string(nil), r.bad...)
}

// kill -9 during a running job with the receiver down, a restart, another
// restart while it is still down, then the receiver comes back: exactly one
// signed job.recovered for the interrupted job and the job.completed of the
// job that ran after the first restart both arrive.
func TestServeWebhooksSurviveCrashAndOutage(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	recv := newHookReceiver(t, "hook-secret")
	cfg := filepath.Join(work, "config.yaml")
	conf := "webhooks:\n  - url: " + recv.url() + "\n    secret: hook-secret\n    events: [job.recovered, job.completed, job.failed]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	interrupted := d.submit(sleepPlaybook)
	d.waitStatus(interrupted, job.Running)
	pending := d.submit(logPlaybook)
	d.stop(syscall.SIGKILL)

	d2 := startServe(t, dir, "--workers", "1", "--config", cfg)
	d2.waitStatus(pending, job.Completed)
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	d3 := startServe(t, dir, "--workers", "1", "--config", cfg)
	if strings.Contains(d3.out.String(), "hook-secret") || strings.Contains(d2.out.String(), "hook-secret") {
		t.Error("the webhook secret appears in the log")
	}
	recv.up()

	deadline := time.Now().Add(45 * time.Second)
	for {
		evs, bad := recv.received()
		if len(bad) > 0 {
			t.Fatalf("receiver rejected deliveries: %q", bad)
		}
		var recovered, completed int
		for _, ev := range evs {
			switch {
			case ev.Event == webhook.JobRecovered && ev.Job != nil && ev.Job.ID == interrupted:
				recovered++
				if ev.Job.Status != job.Failed || !strings.Contains(ev.Job.Error, "recover") {
					t.Errorf("job.recovered carries the job as %s %q", ev.Job.Status, ev.Job.Error)
				}
			case ev.Event == webhook.JobCompleted && ev.Job != nil && ev.Job.ID == pending:
				completed++
			default:
				t.Errorf("unexpected event %s %+v", ev.Event, ev.Job)
			}
		}
		if recovered > 1 || completed > 1 {
			t.Fatalf("duplicate deliveries: %d job.recovered, %d job.completed", recovered, completed)
		}
		if recovered == 1 && completed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the receiver came back: %d job.recovered, %d job.completed arrived", recovered, completed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := d3.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

// "secauto recover" run offline after a crash leaves the job.recovered
// event in the outbox; the next serve delivers it, once.
func TestOfflineRecoverLeavesEventsForServe(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	recv := newHookReceiver(t, "hook-secret")
	recv.up()
	cfg := filepath.Join(work, "config.yaml")
	conf := "webhooks:\n  - url: " + recv.url() + "\n    secret: hook-secret\n    events: [job.recovered]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	interrupted := d.submit(sleepPlaybook)
	d.waitStatus(interrupted, job.Running)
	d.stop(syscall.SIGKILL)

	out, err := secautoCmd(t, "--config", cfg, "--data-dir", dir, "recover").CombinedOutput()
	if err != nil || !strings.Contains(string(out), interrupted) {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	if evs, _ := recv.received(); len(evs) != 0 {
		t.Fatalf("recover delivered events itself: %+v", evs)
	}

	d2 := startServe(t, dir, "--config", cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, bad := recv.received()
		if len(bad) > 0 {
			t.Fatalf("receiver rejected deliveries: %q", bad)
		}
		if len(evs) > 0 {
			time.Sleep(300 * time.Millisecond) // room for a duplicate to show
			evs, _ = recv.received()
			if len(evs) != 1 || evs[0].Event != webhook.JobRecovered || evs[0].Job.ID != interrupted || evs[0].Job.Status != job.Failed {
				t.Fatalf("events after restart: %+v", evs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job.recovered event left by recover never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d2.stop(syscall.SIGTERM)
}
