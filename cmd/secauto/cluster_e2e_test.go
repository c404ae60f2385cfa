//go:build unix

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store/postgres/pgtest"
)

// Several serve processes on one PostgreSQL database (SPEC §11), killed and
// paused for real. They need $SECAUTO_TEST_POSTGRES_URL (.ci/run sets it).

var clusterRounds = flag.Int("cluster.rounds", 2, "kill -9 rounds of TestClusterKillUnderLoad")

// clusterLease is store.node_lease in these tests: short, so that a round
// takes seconds, and long beside a loaded machine's scheduling delays.
const clusterLease = 2 * time.Second

// cluster is the configuration several nodes share, and its receivers.
type cluster struct {
	t    *testing.T
	work string
	cfg  string
	hits *hitCounter
	hook *hookReceiver
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dbURL := pgtest.URL(t)
	work := t.TempDir()
	c := &cluster{t: t, work: work, cfg: filepath.Join(work, "config.yaml"), hits: newHitCounter(t), hook: newHookReceiver(t, "cluster-secret")}
	c.hook.up()
	conf := fmt.Sprintf(`store:
  driver: postgres
  postgres_url: %q
  node_lease: %s
jobs:
  backup_enabled: false
server:
  shutdown_timeout: 5s
webhooks:
  - url: %s
    secret: cluster-secret
    events: [job.recovered]
`, dbURL, clusterLease, c.hook.url())
	if err := os.WriteFile(c.cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// node starts one serve process of the cluster, with a data directory of
// its own (where its backups would go), and waits until it is healthy.
func (c *cluster) node(name string, args ...string) *daemon {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := filepath.Join(c.work, name)
	cmd := secautoCmd(c.t, append([]string{"serve", "--config", c.cfg, "--data-dir", dir, "--port", fmt.Sprint(port)}, args...)...)
	d := &daemon{t: c.t, cmd: cmd, dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d", port), out: &lockedBuffer{},
		exited: make(chan struct{}), client: &http.Client{Timeout: 30 * time.Second}}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { d.err = cmd.Wait(); close(d.exited) }()
	c.t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Signal(syscall.SIGCONT)
			cmd.Process.Kill()
			<-d.exited
		}
		if c.t.Failed() {
			c.t.Logf("%s output:\n%s", name, d.out.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-d.exited:
			c.t.Fatalf("%s exited before it was ready: %v\n%s", name, d.err, d.out.String())
		default:
		}
		if code, _, err := d.do("GET", "/health", ""); err == nil && code == http.StatusOK {
			return d
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not become healthy\n%s", name, d.out.String())
		}
	}
}

// hitCounter is the endpoint the test playbooks' http steps call with
// their job's token: a count above one for a job that was not retried
// means it ran twice.
type hitCounter struct {
	addr string
	mu   sync.Mutex
	hits map[string]int
}

func newHitCounter(t *testing.T) *hitCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hitCounter{addr: ln.Addr().String(), hits: map[string]int{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.hits[r.URL.Query().Get("tok")]++
		h.mu.Unlock()
		w.Write([]byte(`{"ok":true}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hitCounter) count(tok string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[tok]
}

// playbook is a job that calls the hit counter once, then sleeps, so that
// a kill often finds it running; retry makes it on_interrupt retry.
func (c *cluster) playbook(tok string, sleep time.Duration, retry bool) string {
	onInterrupt := ""
	if retry {
		onInterrupt = `,"on_interrupt":"retry"`
	}
	return fmt.Sprintf(`{"playbook":[{"name":"hit","action":"http","params":{"method":"GET","url":"http://%s/hit?tok={{.context.tok}}"}},{"name":"wait","action":"sleep","params":{"duration":"%s"}}],"context":{"tok":%q}%s}`,
		c.hits.addr, sleep, tok, onInterrupt)
}

// recoveredEvents counts the job.recovered deliveries per job id.
func (c *cluster) recoveredEvents() map[string]int {
	evs, bad := c.hook.received()
	if len(bad) > 0 {
		c.t.Fatalf("webhook receiver rejected deliveries: %q", bad)
	}
	n := map[string]int{}
	for _, ev := range evs {
		if ev.Event == "job.recovered" && ev.Job != nil {
			n[ev.Job.ID]++
		}
	}
	return n
}

// listAll returns every job through d.
func listAll(t *testing.T, d *daemon) map[string]job.Job {
	t.Helper()
	code, b, err := d.do("GET", "/jobs", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /jobs: %d %v", code, err)
	}
	var jobs []job.Job
	if err := json.Unmarshal(b, &jobs); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]job.Job, len(jobs))
	for _, j := range jobs {
		out[j.ID] = j
	}
	return out
}

// Three nodes under 64 clients; one is killed -9 mid-load each round and
// started again. No acknowledged job is lost, none runs twice (unless it
// asked to be retried), and every job the dead node was running is failed
// by recovery, or retried, and announced exactly once, within the lease.
func TestClusterKillUnderLoad(t *testing.T) {
	c := newCluster(t)
	// Enough workers that the survivors drain a round's jobs in seconds.
	workers := []string{"--workers", "32"}
	nodes := []*daemon{c.node("n1", workers...), c.node("n2", workers...), c.node("n3", workers...)}
	type acked struct {
		id, tok string
		retry   bool
	}
	var (
		mu  sync.Mutex
		all []acked
	)
	for round := 1; round <= *clusterRounds; round++ {
		victim := rand.N(len(nodes))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for cl := range 64 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					tok := uuid.NewString()
					retry := (cl+i)%4 == 0
					d := nodes[(cl+i)%len(nodes)]
					code, b, err := d.do("POST", "/playbook/async", c.playbook(tok, time.Duration(10+rand.N(90))*time.Millisecond, retry))
					if err != nil || code != http.StatusAccepted {
						time.Sleep(20 * time.Millisecond) // the victim is dead
						continue
					}
					var r struct {
						JobID string `json:"job_id"`
					}
					if json.Unmarshal(b, &r) == nil && r.JobID != "" {
						mu.Lock()
						all = append(all, acked{r.JobID, tok, retry})
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(500*time.Millisecond + rand.N(time.Second))
		killed := time.Now()
		nodes[victim].stop(syscall.SIGKILL)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()

		// The survivors finish everything, recovering what the victim ran.
		survivor := nodes[(victim+1)%len(nodes)]
		var jobs map[string]job.Job
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			jobs = listAll(t, survivor)
			live := 0
			for _, j := range jobs {
				if !j.Status.Terminal() {
					live++
				}
			}
			if live == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d jobs still live two minutes after node %d was killed", round, live, victim+1)
			}
		}
		mu.Lock()
		acks := append([]acked(nil), all...)
		mu.Unlock()
		recoveredBy := 0
		for _, a := range acks {
			j, ok := jobs[a.id]
			if !ok {
				t.Fatalf("round %d: acknowledged job %s is gone", round, a.id)
			}
			if n := c.hits.count(a.tok); n > 1 && !a.retry {
				t.Errorf("round %d: job %s (on_interrupt fail) ran %d times", round, a.id, n)
			}
			if j.Attempts > 1 && !a.retry {
				t.Errorf("round %d: job %s (on_interrupt fail) was started %d times", round, a.id, j.Attempts)
			}
			if j.Status == job.Failed && strings.Contains(j.Error, "recover") {
				recoveredBy++
				if j.CompletedAt != nil && j.CompletedAt.Before(killed) {
					continue // an earlier round's
				}
				// Within the lease, plus the third of it between two
				// looks, plus slack for a loaded machine.
				if j.CompletedAt != nil && j.CompletedAt.Sub(killed) > clusterLease+clusterLease/3+3*time.Second {
					t.Errorf("round %d: job %s was recovered %s after the kill; the lease is %s", round, a.id, j.CompletedAt.Sub(killed).Round(time.Millisecond), clusterLease)
				}
			}
		}
		// Every recovery is announced once: give the deliveries a moment.
		var events map[string]int
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			events = c.recoveredEvents()
			missing := 0
			for _, a := range acks {
				if j := jobs[a.id]; j.Status == job.Failed && strings.Contains(j.Error, "recover") && events[a.id] == 0 {
					missing++
				}
			}
			if missing == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, a := range acks {
			j := jobs[a.id]
			n := events[a.id]
			switch {
			case j.Status == job.Failed && strings.Contains(j.Error, "recover") && n != 1:
				t.Errorf("round %d: recovered job %s was announced %d times", round, a.id, n)
			case n > 1:
				t.Errorf("round %d: job %s was announced recovered %d times", round, a.id, n)
			}
		}
		t.Logf("round %d: node %d killed, %d jobs acknowledged so far, %d failed by recovery, %d job.recovered events", round, victim+1, len(acks), recoveredBy, len(events))
		nodes[victim] = c.node(fmt.Sprintf("n%d-%d", victim+1, round), workers...)
	}
}

// A node paused past its lease (SIGSTOP) is taken for dead and its job
// recovered by another; resumed (SIGCONT), it cannot overwrite what the
// recovery recorded, and the job is not run again.
func TestClusterPausedNodeIsFenced(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", "--workers", "1")
	tok := uuid.NewString()
	id := a.submit(c.playbook(tok, 4*time.Second, false))
	a.waitStatus(id, job.Running)
	b := c.node("b")

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var rec job.Job
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rec = b.job(id)
		if rec.Status.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s 20s after its node was paused", id, rec.Status)
		}
	}
	if rec.Status != job.Failed || !strings.Contains(rec.Error, "recover") {
		t.Fatalf("the paused node's job is %s (%q), want failed by recovery", rec.Status, rec.Error)
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Long enough for the resumed node to finish its sleep and try to
	// record the end.
	time.Sleep(5 * time.Second)
	after := b.job(id)
	if after.Status != rec.Status || after.Error != rec.Error || !after.CompletedAt.Equal(*rec.CompletedAt) || len(after.Results) != len(rec.Results) {
		t.Fatalf("the resumed node overwrote the recovery: before %s %q %d results, after %s %q %d results",
			rec.Status, rec.Error, len(rec.Results), after.Status, after.Error, len(after.Results))
	}
	if n := c.hits.count(tok); n != 1 {
		t.Errorf("the job ran %d times", n)
	}
	if n := c.recoveredEvents()[id]; n > 1 {
		t.Errorf("job.recovered sent %d times", n)
	}
	// Both nodes still serve.
	for _, d := range []*daemon{a, b} {
		d.waitStatus(d.submit(logPlaybook), job.Completed)
	}
}

// A job submitted to a node whose only worker is busy is started by an idle
// node at once: the submission's notification wakes it, well before the
// idle node would look on its own (5s); the client waiting on the first
// node is answered when the job ends on the other.
func TestClusterWakesIdleNode(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", "--workers", "1")
	busy := a.submit(c.playbook(uuid.NewString(), 10*time.Second, false))
	a.waitStatus(busy, job.Running) // on a: the only node yet
	b := c.node("b", "--workers", "1")
	// a's only worker is busy: the next job must start on b at once.
	// Submitted to a and waited for there (POST /playbook), it is
	// answered by a when it ends on b.
	start := time.Now()
	code, body, err := a.do("POST", "/playbook", c.playbook(uuid.NewString(), time.Millisecond, false))
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST /playbook: %d %s %v", code, body, err)
	}
	var done job.Job
	if err := json.Unmarshal(body, &done); err != nil || done.Status != job.Completed {
		t.Fatalf("POST /playbook answered %s", body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the second job took %s to run on the idle node and be answered; it waited for a poll", took)
	}
	// Whichever node ran it, both answer for it.
	if got := b.job(done.ID); got.Status != job.Completed {
		t.Fatalf("node b sees the job as %s", got.Status)
	}
}
