//go:build soak

package main

// The soak: mixed load on one data directory for a long time, with kill -9
// of the daemon every few minutes, cleanups and backups beside it and a
// webhook receiver that fails a third of the deliveries. It is not part of
// "go test ./..."; docs/operations.md says how to run it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/webhook"
)

var (
	soakDuration = flag.Duration("soak.duration", time.Hour, "how long TestSoak loads the daemon")
	soakRate     = flag.Float64("soak.rate", 5, "submissions per second, over all clients")
	soakClients  = flag.Int("soak.clients", 4, "clients submitting at the same time")
	soakKillMin  = flag.Duration("soak.kill-min", 2*time.Minute, "shortest time between two kill -9 of the daemon")
	soakKillMax  = flag.Duration("soak.kill-max", 5*time.Minute, "longest time between two kill -9 of the daemon")
	soakEvery    = flag.Duration("soak.sample", 30*time.Second, "time between two samples of the daemon's RSS, descriptors and goroutines")
	soakAdmin    = flag.Duration("soak.admin", 45*time.Second, "time between two commands beside the daemon (cleanup and backup create, in turn)")
	soakDrain    = flag.Duration("soak.drain", 10*time.Minute, "longest wait at the end for jobs and deliveries to drain")
	soakReport   = flag.String("soak.report", "", "file to write the soak's report to as well")
	soakFlat     = flag.Float64("soak.flat", 1.5, "largest ratio of late to early medians that counts as flat")
)

// soakKinds are the playbooks of the load, with their weights.
var soakKinds = []struct {
	name   string
	weight int
	body   func(tool string, n int64) string
}{
	{"log", 25, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"note","action":"log","params":{"message":"alert {{.context.alert}}"}}],"context":{"alert":"S-%d"}}`, n)
	}},
	{"set", 15, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"tag","action":"set","params":{"ticket":"T-{{.context.alert}}"}},`+
			`{"name":"note","action":"log","params":{"message":"ticket {{.context.ticket}}"}}],"context":{"alert":"S-%d"}}`, n)
	}},
	{"http", 20, func(tool string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"call","action":"http","params":{"method":"GET","url":"%s/intel?alert={{.context.alert}}",`+
			`"headers":{"Authorization":"Bearer soak-tool-token"},"timeout":"5s"}},`+
			`{"name":"note","action":"log","params":{"message":"verdict {{.steps.call.body.verdict}}"}}],"context":{"alert":"S-%d"}}`, tool, n)
	}},
	{"fail", 10, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"note","action":"log","params":{"message":"m"}},`+
			`{"name":"stop","action":"fail","params":{"message":"refused {{.context.alert}}"}}],"context":{"alert":"S-%d"}}`, n)
	}},
	{"sleep", 15, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"500ms"}}],"context":{"alert":"S-%d"}}`, n)
	}},
	{"retry", 10, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"3s"}},`+
			`{"name":"note","action":"log","params":{"message":"done"}}],"context":{"alert":"S-%d"},"on_interrupt":"retry"}`, n)
	}},
	{"long", 5, func(_ string, n int64) string {
		return fmt.Sprintf(`{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"8s"}}],"context":{"alert":"S-%d"}}`, n)
	}},
}

func pickKind() int {
	total := 0
	for _, k := range soakKinds {
		total += k.weight
	}
	r := mrand.N(total)
	for i, k := range soakKinds {
		if r < k.weight {
			return i
		}
		r -= k.weight
	}
	return 0
}

// soakReceiver is a webhook endpoint that answers 500 to a third of the
// deliveries (no event more than twice in a row, so that the backoff
// stays short), checks both signatures of every delivery and records
// what it accepted.
type soakReceiver struct {
	secret string
	srv    *httptest.Server

	mu         sync.Mutex
	refusedFor map[string]int           // 500s answered, per event id
	accepted   map[string]webhook.Event // by event id
	deliveries int                      // requests received
	refused    int                      // answered 500
	duplicates int                      // accepted again after an earlier 200
	bad        []string                 // bad signatures or bodies
}

func newSoakReceiver(t *testing.T, secret string) *soakReceiver {
	r := &soakReceiver{secret: secret, refusedFor: map[string]int{}, accepted: map[string]webhook.Event{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *soakReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries++
	if err != nil {
		r.bad = append(r.bad, "reading a delivery: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if got := req.Header.Get("X-Secauto-Signature"); got != webhook.Sign(r.secret, body) {
		r.bad = append(r.bad, fmt.Sprintf("bad X-Secauto-Signature %q", got))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	want := webhook.StandardSignature(r.secret, id, time.Unix(sec, 0), body)
	if err != nil || !slices.Contains(strings.Fields(req.Header.Get("webhook-signature")), want) {
		r.bad = append(r.bad, fmt.Sprintf("bad Standard Webhooks signature (id %q, timestamp %q)", id, ts))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		r.bad = append(r.bad, fmt.Sprintf("delivery does not decode: %v: %.200s", err, body))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if mrand.N(3) == 0 && r.refusedFor[ev.ID] < 2 {
		r.refusedFor[ev.ID]++
		r.refused++
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if _, ok := r.accepted[ev.ID]; ok {
		r.duplicates++
	}
	r.accepted[ev.ID] = ev
}

// soakLoad submits playbooks from several clients to the daemon of the
// moment and records every acknowledged job.
type soakLoad struct {
	token string
	tool  string
	url   atomic.Pointer[string]
	seq   atomic.Int64

	mu      sync.Mutex
	acked   map[string]string // job id -> kind
	refused map[string]int    // why a submission was not acknowledged -> count
}

func (l *soakLoad) run(ctx context.Context, interval time.Duration) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: bearerTransport{token: l.token, base: http.DefaultTransport}}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k := pickKind()
		req, err := http.NewRequestWithContext(ctx, "POST", *l.url.Load()+"/playbook/async",
			strings.NewReader(soakKinds[k].body(l.tool, l.seq.Add(1))))
		if err != nil {
			panic(err)
		}
		why := ""
		resp, err := client.Do(req)
		if err != nil {
			why = "no answer"
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var r struct {
				JobID string `json:"job_id"`
			}
			switch {
			case resp.StatusCode != http.StatusAccepted:
				why = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			case json.Unmarshal(b, &r) != nil || r.JobID == "":
				why = "202 without a job id"
			}
			if why == "" {
				l.mu.Lock()
				l.acked[r.JobID] = soakKinds[k].name
				l.mu.Unlock()
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.refused[why]++
		l.mu.Unlock()
	}
}

func (l *soakLoad) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// soakPoint is one look at the daemon.
type soakPoint struct {
	at, age     time.Duration // since the soak began, since the daemon started
	rssKiB      int64
	fds         int
	goroutines  int
	jobs        int
	storeBytes  int64
	backlog     int
	acked       int
	live        int // pending and running
	sampleError string
}

// soakLifetime is one daemon process, from its start to its kill.
type soakLifetime struct {
	n       int
	pid     int
	start   time.Time
	end     time.Time
	samples []soakPoint
	how     string // how it ended
}

func procStatusKiB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, key)
}

func sampleDaemon(d *daemon, began, started time.Time, acked int) soakPoint {
	s := soakPoint{at: time.Since(began), age: time.Since(started), acked: acked}
	var errs []string
	pid := d.cmd.Process.Pid
	rss, err := procStatusKiB(pid, "VmRSS")
	if err != nil {
		errs = append(errs, err.Error())
	}
	s.rssKiB = rss
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err != nil {
		errs = append(errs, err.Error())
	} else {
		s.fds = len(ents)
	}
	if code, b, err := d.do("GET", "/metrics", ""); err != nil || code != http.StatusOK {
		errs = append(errs, fmt.Sprintf("GET /metrics: %d %v", code, err))
	} else {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				s.goroutines = int(f)
			}
		}
	}
	var st server.StatsResponse
	if code, b, err := d.do("GET", "/stats", ""); err != nil || code != http.StatusOK || json.Unmarshal(b, &st) != nil {
		errs = append(errs, fmt.Sprintf("GET /stats: %d %v", code, err))
	} else {
		s.jobs, s.storeBytes, s.backlog = st.Total, st.StoreBytes, st.WebhookBacklog
		s.live = st.Jobs[job.Pending] + st.Jobs[job.Running]
	}
	s.sampleError = strings.Join(errs, "; ")
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// quarterRatio is the median of the last quarter of v over the median of
// its second quarter (with fewer than four values: the last over the
// first), and false when v has fewer than two values.
func quarterRatio(v []float64) (float64, bool) {
	if len(v) < 2 {
		return 0, false
	}
	if len(v) < 4 {
		if v[0] == 0 {
			return 0, false
		}
		return v[len(v)-1] / v[0], true
	}
	q := len(v) / 4
	early := median(v[q : 2*q])
	if early == 0 {
		return 0, false
	}
	return median(v[len(v)-q:]) / early, true
}

// soakMetric is one of the figures the soak watches for growth.
type soakMetric struct {
	name string
	get  func(soakPoint) float64
}

var soakMetrics = []soakMetric{
	{"RSS MiB", func(s soakPoint) float64 { return float64(s.rssKiB) / 1024 }},
	{"open fds", func(s soakPoint) float64 { return float64(s.fds) }},
	{"goroutines", func(s soakPoint) float64 { return float64(s.goroutines) }},
}

// The age window in which each lifetime is measured for the comparison
// across lifetimes: every lifetime of the load lives at least soak.kill-min.
func ageWindow() (time.Duration, time.Duration) {
	lo := min(time.Minute, *soakKillMin/2)
	return lo, max(lo+*soakEvery, *soakKillMin)
}

// soakVerdict compares, for one metric, the last quarter of each
// lifetime's samples with its second quarter (the worst lifetime counts),
// and the lifetimes with each other at the same age (the median of each
// lifetime's samples in ageWindow, the last quarter of lifetimes against
// the second). It returns the two ratios, the store's growth over the same
// lifetimes, and a line of text.
func soakVerdict(m soakMetric, lives []*soakLifetime) (within, across, store float64, line string) {
	lo, hi := ageWindow()
	var atAge, storeAtAge []float64
	worst := ""
	for _, lt := range lives {
		var v, sb []float64
		var w []float64
		for _, s := range lt.samples {
			if s.sampleError != "" {
				continue
			}
			w = append(w, m.get(s))
			if s.age >= lo && s.age <= hi {
				v = append(v, m.get(s))
				sb = append(sb, float64(s.storeBytes))
			}
		}
		if len(w) >= 4 {
			if r, ok := quarterRatio(w); ok && r > within {
				within, worst = r, fmt.Sprintf("lifetime %d", lt.n)
			}
		}
		if len(v) > 0 {
			atAge, storeAtAge = append(atAge, median(v)), append(storeAtAge, median(sb))
		}
	}
	across, _ = quarterRatio(atAge)
	store, _ = quarterRatio(storeAtAge)
	line = fmt.Sprintf("%-10s within a lifetime x%.2f (worst: %s), across %d lifetimes at age %v-%v x%.2f",
		m.name, within, orElse(worst, "none with 4 samples"), len(atAge), lo, hi, across)
	return within, across, store, line
}

func orElse(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// soakExpected is the event a job's final state must have been delivered
// as, and how many job.recovered events that put it back to pending must
// have arrived before.
func soakExpected(j job.Job) (final string, requeued int) {
	switch {
	case j.Status == job.Completed:
		final = webhook.JobCompleted
	case j.Status == job.Cancelled:
		final = webhook.JobCancelled
	case j.Status == job.Failed && strings.Contains(j.Error, "recover"):
		final = webhook.JobRecovered
	case j.Status == job.Failed:
		final = webhook.JobFailed
	}
	if j.OnInterrupt == job.OnInterruptRetry && j.Attempts > 1 {
		// Every start but the last was interrupted by a crash and
		// recovered to pending (a shutdown fails the job instead).
		requeued = j.Attempts - 1
	}
	return final, requeued
}

// TestSoak runs mixed load against one data directory for -soak.duration:
// several clients submitting at -soak.rate, kill -9 of the daemon every
// -soak.kill-min to -soak.kill-max, cleanups and backups beside it and on a
// short schedule, and a webhook receiver that fails a third of the
// deliveries. At the end, after a clean stop and a start that lets retries
// drain, no acknowledged job may be lost or left running, every job event
// must have been delivered, and the daemon's RSS, descriptors and
// goroutines must stay flat.
func TestSoak(t *testing.T) {
	if *soakKillMin <= 0 || *soakKillMax < *soakKillMin || *soakEvery <= 0 || *soakRate <= 0 || *soakClients <= 0 {
		t.Fatal("bad -soak.* flags")
	}
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	token := "soak-" + rand.Text() + rand.Text()
	secret := "soak-hook-" + rand.Text()
	var report bytes.Buffer
	logf := func(format string, args ...any) {
		t.Helper()
		line := fmt.Sprintf(format, args...)
		t.Log(line)
		report.WriteString(line + "\n")
	}
	defer func() {
		if *soakReport != "" {
			if err := os.WriteFile(*soakReport, report.Bytes(), 0o644); err != nil {
				t.Error(err)
			}
		}
	}()

	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"verdict":"benign","alert":"`+r.URL.Query().Get("alert")+`"}`)
	}))
	defer tool.Close()
	recv := newSoakReceiver(t, secret)
	cfg := writeConfig(t, work, fmt.Sprintf(`server:
  auth_tokens: [%q]
  workers: 8
  shutdown_timeout: 2s
webhooks:
  - url: %q
    secret: %q
jobs:
  retention_days: 30
  cleanup_interval: 1m
  backup_interval: 90s
  backup_keep: 5
  snapshot_interval: 10s
logging:
  level: info
  file: %q
`, token, recv.srv.URL+"/hook", secret, filepath.Join(work, "logs", "secauto.log")))

	load := &soakLoad{token: token, tool: tool.URL, acked: map[string]string{}, refused: map[string]int{}}
	none := "http://127.0.0.1:1"
	load.url.Store(&none)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var clients sync.WaitGroup
	interval := time.Duration(float64(*soakClients) / *soakRate * float64(time.Second))
	for range *soakClients {
		clients.Go(func() { load.run(ctx, interval) })
	}

	began := time.Now()
	end := began.Add(*soakDuration)
	logf("soak: %v on %s, %d clients at %.1f submissions/s, kill -9 every %v-%v, samples every %v",
		*soakDuration, dir, *soakClients, *soakRate, *soakKillMin, *soakKillMax, *soakEvery)
	logf("%8s %4s %6s %8s %5s %10s %7s %9s %7s %5s %7s", "time", "life", "age", "RSS MiB", "fds", "goroutines", "jobs", "store MiB", "backlog", "live", "acked")
	row := func(lt *soakLifetime, s soakPoint) {
		t.Helper()
		if s.sampleError != "" {
			logf("%8s %4d %6s sample failed: %s", s.at.Round(time.Second), lt.n, s.age.Round(time.Second), s.sampleError)
			return
		}
		logf("%8s %4d %6s %8.1f %5d %10d %7d %9.1f %7d %5d %7d", s.at.Round(time.Second), lt.n, s.age.Round(time.Second),
			float64(s.rssKiB)/1024, s.fds, s.goroutines, s.jobs, float64(s.storeBytes)/(1<<20), s.backlog, s.live, s.acked)
	}

	var (
		lives      []*soakLifetime
		kills      int
		adminRuns  int
		adminFails []string
		backups    int
		cleanups   int
	)
	admin := func(n int) {
		adminRuns++
		args := []string{"--config", cfg, "--data-dir", dir, "-o", "json"}
		if n%2 == 0 {
			r := runSecautoWithin(t, 5*time.Minute, append(args, "cleanup")...)
			var res struct {
				Deleted int `json:"deleted"`
			}
			switch {
			case r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil:
				adminFails = append(adminFails, "cleanup: "+r.String())
			case res.Deleted != 0:
				adminFails = append(adminFails, fmt.Sprintf("cleanup deleted %d jobs; retention is 30 days", res.Deleted))
			default:
				cleanups++
			}
			return
		}
		r := runSecautoWithin(t, 5*time.Minute, append(args, "backup", "create")...)
		var res struct {
			Jobs int `json:"jobs"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			adminFails = append(adminFails, "backup create: "+r.String())
			return
		}
		backups++
	}

	// The lifetimes under load, each ended by kill -9 but the last, which
	// is stopped cleanly once the load stops.
	for n := 1; ; n++ {
		d := startServe(t, dir, "--config", cfg)
		d.authorize(token)
		lt := &soakLifetime{n: n, pid: d.cmd.Process.Pid, start: time.Now()}
		lives = append(lives, lt)
		load.url.Store(&d.url)
		until := lt.start.Add(*soakKillMin + mrand.N(*soakKillMax-*soakKillMin+1))
		last := !until.Before(end)
		if last {
			until = end
		}
		nextSample, nextAdmin := lt.start.Add(*soakEvery), lt.start.Add(*soakAdmin/2+mrand.N(*soakAdmin/2+1))
		for now := time.Now(); now.Before(until); now = time.Now() {
			next := until
			for _, t := range []time.Time{nextSample, nextAdmin} {
				if t.Before(next) {
					next = t
				}
			}
			select {
			case <-d.exited:
				t.Fatalf("serve (lifetime %d, pid %d) exited by itself: %v\n%s", n, lt.pid, d.err, firstLines(d.out.String(), 40))
			case <-time.After(time.Until(next)):
			}
			now = time.Now()
			if !now.Before(nextSample) {
				s := sampleDaemon(d, began, lt.start, load.ackedCount())
				lt.samples = append(lt.samples, s)
				row(lt, s)
				nextSample = nextSample.Add(*soakEvery)
			}
			if !now.Before(nextAdmin) && now.Before(until) {
				admin(adminRuns)
				nextAdmin = time.Now().Add(*soakAdmin)
			}
		}
		lt.end = time.Now()
		if last {
			stopLoad()
			clients.Wait()
			if code := d.stop(syscall.SIGTERM); code != 0 {
				t.Errorf("serve exited %d after SIGTERM at the end of the load", code)
			}
			lt.how = "SIGTERM"
			break
		}
		d.stop(syscall.SIGKILL)
		lt.how = "kill -9"
		kills++
	}

	// The final start: retries and deliveries drain.
	d := startServe(t, dir, "--config", cfg)
	d.authorize(token)
	final := &soakLifetime{n: len(lives) + 1, pid: d.cmd.Process.Pid, start: time.Now(), how: "drain"}
	drainDeadline := time.Now().Add(*soakDrain)
	drained := false
	for nextSample := final.start; time.Now().Before(drainDeadline); time.Sleep(time.Second) {
		s := sampleDaemon(d, began, final.start, load.ackedCount())
		if !time.Now().Before(nextSample) {
			final.samples = append(final.samples, s)
			row(final, s)
			nextSample = nextSample.Add(*soakEvery)
		}
		if s.sampleError == "" && s.live == 0 && s.backlog == 0 {
			drained = true
			break
		}
	}
	drainTook := time.Since(final.start)
	jobs := d.jobs()
	final.samples = append(final.samples, sampleDaemon(d, began, final.start, load.ackedCount()))
	row(final, final.samples[len(final.samples)-1])
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM after the drain", code)
	}
	final.end = time.Now()
	if r := runSecautoWithin(t, 10*time.Minute, "--config", cfg, "--data-dir", dir, "verify"); r.code != 0 {
		t.Errorf("verify after the soak: %v", r)
	}
	if !drained {
		t.Errorf("jobs or webhook deliveries were still waiting %v after the final start", *soakDrain)
	}

	// Jobs: every acknowledged one present, none running.
	load.mu.Lock()
	acked := load.acked
	refused := load.refused
	load.mu.Unlock()
	var lost, running, pending []string
	byStatus := map[job.Status]int{}
	byKind := map[string]int{}
	for id, kind := range acked {
		j, ok := jobs[id]
		switch {
		case !ok:
			lost = append(lost, id+" ("+kind+")")
			continue
		case j.Status == job.Running:
			running = append(running, id)
		case j.Status == job.Pending:
			pending = append(pending, id)
		}
		byStatus[j.Status]++
		byKind[kind]++
	}
	for _, id := range lost[:min(len(lost), 10)] {
		t.Errorf("acknowledged job %s is gone", id)
	}
	for _, id := range running[:min(len(running), 10)] {
		t.Errorf("job %s is still running after the clean stop and the drain", id)
	}

	// Events: each job's final state delivered, and each return to pending.
	recv.mu.Lock()
	type delivered struct{ final, requeued map[string]int }
	got := map[string]*delivered{}
	evCount := map[string]int{}
	for _, ev := range recv.accepted {
		evCount[ev.Event]++
		if ev.Job == nil {
			continue
		}
		g := got[ev.Job.ID]
		if g == nil {
			g = &delivered{final: map[string]int{}, requeued: map[string]int{}}
			got[ev.Job.ID] = g
		}
		if ev.Event == webhook.JobRecovered && ev.Job.Status == job.Pending {
			g.requeued[ev.ID]++
		} else if ev.Job.Status.Terminal() {
			g.final[ev.Event]++
		}
	}
	deliveries, refusedDeliveries, duplicates, bad := recv.deliveries, recv.refused, recv.duplicates, slices.Clone(recv.bad)
	recv.mu.Unlock()
	var lostEvents []string
	expected := 0
	for id := range acked {
		j, ok := jobs[id]
		if !ok || !j.Status.Terminal() {
			continue
		}
		final, requeued := soakExpected(j)
		expected += 1 + requeued
		g := got[id]
		if g == nil {
			g = &delivered{final: map[string]int{}, requeued: map[string]int{}}
		}
		if g.final[final] == 0 {
			lostEvents = append(lostEvents, fmt.Sprintf("%s of job %s (%s, %q)", final, id, j.Status, j.Error))
		}
		if n := len(g.requeued); n < requeued {
			lostEvents = append(lostEvents, fmt.Sprintf("%d of %d job.recovered (back to pending) of job %s, attempts %d", requeued-n, requeued, id, j.Attempts))
		}
	}
	for _, e := range lostEvents[:min(len(lostEvents), 10)] {
		t.Errorf("never delivered: %s", e)
	}
	for _, b := range bad[:min(len(bad), 10)] {
		t.Errorf("receiver: %s", b)
	}
	for _, f := range adminFails[:min(len(adminFails), 10)] {
		t.Errorf("command beside the daemon: %s", f)
	}

	// Resources.
	logf("")
	logf("lifetimes:")
	for _, lt := range append(slices.Clone(lives), final) {
		var rss, fds, gor []float64
		for _, s := range lt.samples {
			if s.sampleError == "" {
				rss, fds, gor = append(rss, float64(s.rssKiB)/1024), append(fds, float64(s.fds)), append(gor, float64(s.goroutines))
			}
		}
		logf("  %2d pid %-7d %-8s lived %-8v %2d samples, median RSS %.1f MiB, fds %.0f, goroutines %.0f",
			lt.n, lt.pid, lt.how, lt.end.Sub(lt.start).Round(time.Second), len(lt.samples), median(rss), median(fds), median(gor))
	}
	logf("verdict (flat: late medians within x%.2f of early ones; RSS may also follow the store's growth):", *soakFlat)
	flat := true
	var figures []string
	for i, m := range soakMetrics {
		within, across, storeGrowth, line := soakVerdict(m, lives)
		limit := *soakFlat
		if i == 0 {
			limit = max(limit, storeGrowth)
			line += fmt.Sprintf(" (the store grew x%.2f)", storeGrowth)
		}
		ok := within <= limit && across <= limit
		flat = flat && ok
		logf("  %s: %s", line, map[bool]string{true: "flat", false: "GROWING"}[ok])
		var all []float64
		for _, lt := range lives {
			for _, s := range lt.samples {
				if s.sampleError == "" {
					all = append(all, m.get(s))
				}
			}
		}
		figures = append(figures, fmt.Sprintf("%s median %.1f max %.1f x%.2f/x%.2f", m.name, median(all), slices.Max(append(all, 0)), within, across))
		if !ok {
			t.Errorf("%s grows: %s", m.name, line)
		}
	}
	var refusals []string
	notAcked := 0
	for why, n := range refused {
		notAcked += n
		refusals = append(refusals, fmt.Sprintf("%d× %s", n, firstLines(why, 1)))
	}
	slices.Sort(refusals)
	logf("")
	logf("jobs acknowledged %d (%v), by status %v; submissions not acknowledged %d %q", len(acked), byKind, byStatus, notAcked, refusals[:min(len(refusals), 8)])
	logf("daemon: %d lifetimes, %d kill -9, %d commands beside it (%d cleanups, %d backups, %d failed); drain took %v",
		len(lives)+1, kills, adminRuns, cleanups, backups, len(adminFails), drainTook.Round(time.Second))
	logf("webhooks: %d deliveries, %d answered 500, %d accepted again (duplicates), %d bad signatures; events accepted %v; %d job events expected",
		deliveries, refusedDeliveries, duplicates, len(bad), evCount, expected)
	logf("SOAK RESULT: lost jobs %d, left running %d, pending %d, lost events %d; %s; resources %s",
		len(lost), len(running), len(pending), len(lostEvents), strings.Join(figures, "; "), map[bool]string{true: "flat", false: "GROWING"}[flat])
}
