package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

var serveRounds = flag.Int("serve.rounds", 3, "kill -9 rounds of TestServeKillUnderLoad")

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// secautoBinary is the real command: the copy of this test binary that
// TestMain puts on PATH as "secauto" (it runs cli.Main), or else a binary
// built once with go build.
func secautoBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p, err := exec.LookPath("secauto"); err == nil && strings.Contains(p, "testscript-main") {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "secauto-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "secauto")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// lockedBuffer collects a daemon's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemon is a running "secauto serve" process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	url    string
	out    *lockedBuffer
	exited chan struct{}
	err    error // valid once exited is closed
	client *http.Client
}

func secautoCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(secautoBinary(t), args...)
	cmd.Dir = t.TempDir() // logs and ./config.yaml lookups stay out of the tree
	// A race-enabled binary would otherwise sleep a second at every exit.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), "SECAUTO_CONFIG=", "NO_COLOR=1", "GORACE="+gorace)
	return cmd
}

// startServe runs serve on dataDir on a free port and waits until the lock
// file names its address and /health answers.
func startServe(t *testing.T, dataDir string, args ...string) *daemon {
	t.Helper()
	return startServeUntil(t, dataDir, "/health", args...)
}

// startServeUntil is startServe ready once path answers 200: a daemon that
// cannot write (a full disk) answers reads while /health does not.
func startServeUntil(t *testing.T, dataDir, path string, args ...string) *daemon {
	t.Helper()
	cmd := secautoCmd(t, append([]string{"serve", "--port", "0", "--data-dir", dataDir}, args...)...)
	d := &daemon{t: t, cmd: cmd, dir: dataDir, out: &lockedBuffer{}, exited: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second}}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("serve output:\n%s", d.out.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			t.Fatalf("serve exited before it was ready: %v\n%s", d.err, d.out.String())
		default:
		}
		if o, err := store.ReadOwner(dataDir); err == nil && o.PID == cmd.Process.Pid && o.Address != "" {
			d.url = "http://" + o.Address
			if code, _, err := d.do("GET", path, ""); err == nil && code == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer GET %s\n%s", path, d.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends sig and returns the exit code.
func (d *daemon) stop(sig os.Signal) int {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.t.Fatalf("serve did not exit after %v", sig)
	}
	var ee *exec.ExitError
	switch {
	case d.err == nil:
		return 0
	case errors.As(d.err, &ee):
		return ee.ExitCode()
	}
	d.t.Fatal(d.err)
	return -1
}

func (d *daemon) do(method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, d.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (d *daemon) submit(body string) string {
	d.t.Helper()
	code, b, err := d.do("POST", "/playbook/async", body)
	if err != nil || code != http.StatusAccepted {
		d.t.Fatalf("submit: %d %s %v", code, b, err)
	}
	var r struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.JobID == "" {
		d.t.Fatalf("submit answered %s", b)
	}
	return r.JobID
}

func (d *daemon) job(id string) job.Job {
	d.t.Helper()
	code, b, err := d.do("GET", "/job/"+id, "")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("GET /job/%s: %d %s %v", id, code, b, err)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		d.t.Fatal(err)
	}
	return j
}

func (d *daemon) waitStatus(id string, want job.Status) job.Job {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := d.job(id)
		if j.Status == want {
			return j
		}
		if j.Status.Terminal() || time.Now().After(deadline) {
			d.t.Fatalf("job %s is %s (%q), waited for %s", id, j.Status, j.Error, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readSnapshot parses jobs.json, checking every job's invariants.
func readSnapshot(t *testing.T, dir string) map[string]job.Job {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, store.SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]job.Job
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatalf("jobs.json is not complete JSON: %v", err)
	}
	for id, j := range snap {
		if j.ID != id {
			t.Errorf("jobs.json: key %s holds job %s", id, j.ID)
		}
		if err := j.Validate(); err != nil {
			t.Errorf("jobs.json: job %s: %v", id, err)
		}
	}
	return snap
}

func checkUnlocked(t *testing.T, dir string) {
	t.Helper()
	locked, o, err := store.Locked(dir)
	if err != nil || locked {
		t.Errorf("data directory still locked after exit: %v %+v", err, o)
	}
}

const (
	logPlaybook   = `{"playbook":[{"name":"note","action":"log","params":{"message":"alert {{.context.alert}}"}}],"context":{"alert":"A-1"}}`
	sleepPlaybook = `{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"1h"}}]}`
)

func TestServeSubmitAndComplete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir)
	id := d.submit(logPlaybook)
	j := d.waitStatus(id, job.Completed)
	if len(j.Results) != 1 || j.Results[0].Status != job.StepOK {
		t.Errorf("results: %+v", j.Results)
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	if s := readSnapshot(t, dir); s[id].Status != job.Completed {
		t.Errorf("jobs.json holds %+v", s[id])
	}
	checkUnlocked(t, dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode: %v %v", fi.Mode(), err)
	}
}

// kill -9 while a job runs: after the restart that job has failed with an
// error saying it was recovered, and the job that was still pending runs.
func TestServeKillDuringRunningJob(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir, "--workers", "1")
	running := d.submit(sleepPlaybook)
	d.waitStatus(running, job.Running)
	pending := d.submit(logPlaybook)
	if j := d.job(pending); j.Status != job.Pending {
		t.Fatalf("second job is %s with the only worker busy", j.Status)
	}
	d.stop(syscall.SIGKILL)

	d2 := startServe(t, dir, "--workers", "1")
	j := d2.job(running)
	if j.Status != job.Failed || !strings.Contains(j.Error, "recover") || j.CompletedAt == nil {
		t.Errorf("interrupted job after restart: %s %q completed_at %v", j.Status, j.Error, j.CompletedAt)
	}
	d2.waitStatus(pending, job.Completed)
	if !strings.Contains(d2.out.String(), running) {
		t.Errorf("the recovery of %s was not logged:\n%s", running, d2.out.String())
	}
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

// SIGTERM during a long job: exit 0, the job failed "interrupted by
// shutdown", the pending job left pending, jobs.json complete, lock free.
func TestServeSIGTERMDuringLongJob(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(cfg, []byte("server:\n  shutdown_timeout: 500ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	long := d.submit(sleepPlaybook)
	d.waitStatus(long, job.Running)
	pending := d.submit(logPlaybook)

	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	snap := readSnapshot(t, dir)
	if j := snap[long]; j.Status != job.Failed || j.Error != "interrupted by shutdown" {
		t.Errorf("long job after SIGTERM: %s %q", j.Status, j.Error)
	}
	if j := snap[pending]; j.Status != job.Pending {
		t.Errorf("pending job after SIGTERM: %s", j.Status)
	}
	checkUnlocked(t, dir)

	// The pending job runs at the next start.
	d2 := startServe(t, dir)
	d2.waitStatus(pending, job.Completed)
	d2.stop(syscall.SIGTERM)
}

func TestServeSecondInstanceExits2(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir)
	cmd := secautoCmd(t, "serve", "--port", "0", "--data-dir", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("second serve: %v\n%s", err, stderr.String())
	}
	if want := fmt.Sprintf("pid %d", d.cmd.Process.Pid); !strings.Contains(stderr.String(), want) {
		t.Errorf("second serve's error does not name %q: %s", want, stderr.String())
	}
	if code, b, err := d.do("GET", "/health", ""); code != http.StatusOK {
		t.Errorf("first serve after the second was refused: %d %s %v", code, b, err)
	}
	d.stop(syscall.SIGTERM)
}

// kill -9 under load, several times: every job the API acknowledged is
// present after the restart, and none is left running.
func TestServeKillUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	playbooks := []string{
		logPlaybook,
		`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}},{"name":"b","action":"sleep","params":{"duration":"20ms"}},{"name":"c","action":"set","params":{"k":"v"}}]}`,
		`{"playbook":[{"name":"a","action":"sleep","params":{"duration":"5ms"}}],"on_interrupt":"retry"}`,
	}
	var (
		mu    sync.Mutex
		acked []string
	)
	d := startServe(t, dir)
	for round := 1; round <= *serveRounds; round++ {
		before := len(acked)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					code, b, err := d.do("POST", "/playbook/async", playbooks[(c+i)%len(playbooks)])
					if err != nil || code != http.StatusAccepted {
						continue // the daemon is being killed
					}
					var r struct {
						JobID string `json:"job_id"`
					}
					if json.Unmarshal(b, &r) == nil && r.JobID != "" {
						mu.Lock()
						acked = append(acked, r.JobID)
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(100*time.Millisecond + rand.N(700*time.Millisecond))
		// On a loaded machine the first answers can take longer than
		// that; a round kills a daemon that has acknowledged something.
		for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(acked) - before
			mu.Unlock()
			if n > 0 {
				break
			}
		}
		d.stop(syscall.SIGKILL)
		close(stop)
		wg.Wait()

		d = startServe(t, dir)
		// Let the restarted daemon finish what was queued, then check.
		var jobs []job.Job
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, b, err := d.do("GET", "/jobs", "")
			if err != nil || code != http.StatusOK {
				t.Fatalf("GET /jobs: %d %v", code, err)
			}
			jobs = nil
			if err := json.Unmarshal(b, &jobs); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(jobs, func(j job.Job) bool { return !j.Status.Terminal() }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("jobs still live a minute after the restart")
			}
			time.Sleep(20 * time.Millisecond)
		}
		byID := make(map[string]job.Job, len(jobs))
		recovered := 0
		for _, j := range jobs {
			byID[j.ID] = j
			if j.Status == job.Failed && strings.Contains(j.Error, "recover") {
				recovered++
			}
		}
		mu.Lock()
		missing := 0
		for _, id := range acked {
			if _, ok := byID[id]; !ok {
				missing++
				if missing <= 5 {
					t.Errorf("round %d: acknowledged job %s is gone", round, id)
				}
			}
		}
		n := len(acked) - before
		mu.Unlock()
		if missing > 0 {
			t.Fatalf("round %d: %d acknowledged jobs lost", round, missing)
		}
		if n == 0 {
			t.Errorf("round %d: no submission was acknowledged before the kill", round)
		}
		t.Logf("round %d: %d acknowledged in this round, %d jobs stored, %d failed by recovery so far", round, n, len(jobs), recovered)
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	snap := readSnapshot(t, dir)
	for _, id := range acked {
		if _, ok := snap[id]; !ok {
			t.Fatalf("acknowledged job %s is not in jobs.json after the clean stop", id)
		}
	}
}
