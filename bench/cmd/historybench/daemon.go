package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/secauto/secauto/bench/internal/gauge"
)

// buildSecauto builds the secauto binary from the module the bench
// module's go.mod replaces it with (../), into dir.
func buildSecauto(dir string, stderr io.Writer) (string, error) {
	root, err := goList("github.com/secauto/secauto")
	if err != nil {
		return "", fmt.Errorf("cannot find the secauto module: %w; pass -secauto with a built binary", err)
	}
	bin := filepath.Join(dir, "secauto")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/secauto")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/secauto in %s: %w", root, err)
	}
	return bin, nil
}

// goList is the directory of module mod ("" for the main module, the bench
// module) as the go command resolves it from here.
func goList(mod string) (string, error) {
	args := []string{"list", "-m", "-f", "{{.Dir}}"}
	if mod != "" {
		args = append(args, mod)
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", err
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("go list printed no directory")
	}
	return dir, nil
}

// writeConfig writes the daemon's configuration for one store size:
// loopback on port, no authentication, background backups off, a
// retention no generated job reaches, logging to a file; everything else,
// the snapshot interval among it, as configured by default.
func writeConfig(path, dataDir, logFile string, port int) error {
	cfg := fmt.Sprintf(`# Written by historybench.
data_directory: %q
jobs:
  retention_days: 36500
  backup_enabled: false
server:
  address: "127.0.0.1"
  port: %d
  auth_tokens: []
logging:
  file: %q
  format: json
`, dataDir, port, logFile)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// freePort is a TCP port on the loopback no one listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// daemon is a running secauto serve.
type daemon struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	exited chan struct{}
	err    error // the process's end, once exited is closed
	http   *http.Client
}

// startDaemon starts bin serve with config cfg in dir, its output to
// outFile, and waits for /health to answer 200: the open time.
func startDaemon(bin, cfg, dir, outFile string, port int, timeout time.Duration) (*daemon, time.Duration, error) {
	out, err := os.Create(outFile)
	if err != nil {
		return nil, 0, err
	}
	defer out.Close() // the child has its own descriptor
	d := &daemon{
		base:   fmt.Sprintf("http://127.0.0.1:%d", port),
		exited: make(chan struct{}),
		http:   &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	d.cmd = exec.Command(bin, "--config", cfg, "serve")
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = out, out
	t0 := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	deadline := t0.Add(timeout)
	for {
		if d.healthy() {
			return d, time.Since(t0), nil
		}
		select {
		case <-d.exited:
			return nil, 0, fmt.Errorf("secauto serve exited before /health answered (%v); see %s", d.err, outFile)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.kill()
			return nil, 0, fmt.Errorf("/health did not answer 200 within %s; see %s", timeout, outFile)
		}
	}
}

func (d *daemon) healthy() bool {
	resp, err := d.http.Get(d.base + "/health")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// idle waits until the daemon has no job queued or running, so a phase's
// jobs do not run into the next; it returns how long that took.
func (d *daemon) idle(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	for {
		var st struct {
			BusyWorkers int64 `json:"busy_workers"`
			QueueLength int   `json:"queue_length"`
		}
		resp, err := d.http.Get(d.base + "/stats")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.BusyWorkers == 0 && st.QueueLength == 0 {
			return time.Since(t0), nil
		}
		if time.Since(t0) > timeout {
			return time.Since(t0), fmt.Errorf("jobs still queued or running after %s (%d queued, %d running; %v)", timeout, st.QueueLength, st.BusyWorkers, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the daemon to exit, reading its VmHWM
// and write_bytes meanwhile (the final snapshot is part of the run); it
// returns the peak, the last write_bytes read and the time the stop took.
func (d *daemon) stop(timeout time.Duration) (peak, written int64, took time.Duration, err error) {
	pid := d.cmd.Process.Pid
	sample := func() {
		peak = max(peak, gauge.VmHWM(pid))
		if wb, err := gauge.WriteBytes(pid); err == nil {
			written = wb
		}
	}
	sample()
	t0 := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return peak, written, 0, err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(timeout)
	for {
		select {
		case <-d.exited:
			took = time.Since(t0)
			if d.err != nil {
				return peak, written, took, fmt.Errorf("secauto serve did not exit cleanly: %w", d.err)
			}
			return peak, written, took, nil
		case <-tick.C:
			sample()
		case <-limit:
			d.kill()
			return peak, written, time.Since(t0), fmt.Errorf("secauto serve did not exit within %s of SIGTERM; killed", timeout)
		}
	}
}

func (d *daemon) kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// benchFigures is what secauto bench -o json prints (cli.BenchResult).
type benchFigures struct {
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Requests    int     `json:"requests"`
	OK          int     `json:"ok"`
	Errors      int     `json:"errors"`
	Delayed     int     `json:"delayed,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	Latency     struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
	FirstError string `json:"first_error,omitempty"`
}

// runBench runs bin bench against the daemon with args and reads its
// figures; failed requests are in the figures, not an error.
func runBench(bin, cfg, dir, url string, stderr io.Writer, args ...string) (*benchFigures, error) {
	cmd := exec.Command(bin, append([]string{"--config", cfg, "bench", "--url", url, "-o", "json"}, args...)...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var f benchFigures
	if jerr := json.Unmarshal(out.Bytes(), &f); jerr != nil {
		return nil, fmt.Errorf("secauto bench %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	if msg := strings.TrimSpace(errOut.String()); msg != "" {
		fmt.Fprintf(stderr, "historybench: secauto bench %s: %s\n", strings.Join(args, " "), msg)
	}
	return &f, nil
}
