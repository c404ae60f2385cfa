// Command historybench measures what a long history costs secauto serve:
// for each store size it generates a data directory holding that many
// completed jobs, starts the daemon on it and loads it over its API, and
// prints one table of the figures beside the empty store's, with the
// thresholds they are held to marked pass or fail (-o json for the raw
// figures):
//
//	cd bench && go run ./cmd/historybench                    # 0 and 1m jobs
//	cd bench && go run ./cmd/historybench -jobs 0,1m,10m
//	cd bench && go run ./cmd/historybench -jobs 0,2k -a-duration 3s -b-duration 5s
//
// For each size, in turn:
//
//  1. generate: that many completed jobs of about 1.5 KB (an enrichment
//     playbook with its context and step results), UUIDv7 ids in time
//     order, created evenly over the past 30 days, written as a backup
//     file with its .sha256 and installed with "secauto backup restore
//     FILE" run offline: the product's own path, so the data directory is
//     as secauto writes it;
//  2. open: secauto serve (built from ../ with go build) starts on it with
//     a configuration of its own (loopback, a free port, no auth, logging
//     to a file, background backups off, a retention no generated job
//     reaches, the default snapshot interval), timed to /health 200;
//  3. phase B: "secauto bench --rate 200" for 90s, the daemon's
//     write_bytes (/proc/PID/io) over the phase divided by the
//     submissions acknowledged;
//  4. phase A: "secauto bench -c 64" for 30s, as fast as it answers:
//     acknowledgements per second and p99;
//  5. stop: SIGTERM, the daemon's VmHWM (/proc/PID/status) over the whole
//     run read until it exits, and jobs.json's size.
//
// Phase B runs before phase A (-order ab for the other way round) so that
// the burst phase A stores does not sit in the store B measures: on the
// empty store it would be most of the history B's snapshots write, and
// the figure the others are compared with would be inflated. Between the
// phases, and before the stop, the daemon is left to run its queued jobs.
// Data directories are made under -dir and removed afterwards unless
// -keep. Linux only: the figures come from /proc.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/secauto/secauto/bench/internal/gauge"
)

// options are the command's flags.
type options struct {
	sizes     []int
	aDuration time.Duration
	aClients  int
	bDuration time.Duration
	bRate     float64
	order     string
	dir       string
	keep      bool
	secauto   string
	output    string
	open      time.Duration // the most an open may take before the run fails
}

// phase holds one load phase's figures.
type phase struct {
	// JobsBefore is the jobs the store held when the phase began.
	JobsBefore int          `json:"jobs_before"`
	Bench      benchFigures `json:"bench"`
	// WriteBytes is the daemon's write_bytes over the phase (phase B),
	// WritePerAck divided by the acknowledged submissions.
	WriteBytes  int64   `json:"write_bytes,omitempty"`
	WritePerAck float64 `json:"write_bytes_per_ack,omitempty"`
	// IdleSeconds is how long the daemon took afterwards to run the jobs
	// still queued.
	IdleSeconds float64 `json:"idle_seconds"`
}

// result is one store size's figures.
type result struct {
	Jobs            int     `json:"jobs"`
	GenerateSeconds float64 `json:"generate_seconds,omitempty"`
	GeneratedBytes  int64   `json:"generated_bytes,omitempty"`
	RestoreSeconds  float64 `json:"restore_seconds,omitempty"`
	// JobsJSONBytes is jobs.json's size when the daemon opened it,
	// JobsJSONBytesEnd after it stopped.
	JobsJSONBytes    int64   `json:"jobs_json_bytes"`
	JobsJSONBytesEnd int64   `json:"jobs_json_bytes_end"`
	OpenSeconds      float64 `json:"open_seconds"`
	// OpenHWM is the daemon's VmHWM once /health answered, PeakHWM over
	// the whole run, its stop included.
	OpenHWM int64  `json:"open_vm_hwm_bytes"`
	PeakHWM int64  `json:"vm_hwm_bytes"`
	A       *phase `json:"phase_a,omitempty"`
	B       *phase `json:"phase_b,omitempty"`
	// WriteTotal is the daemon's write_bytes from /health 200 to the
	// last reading before it exited (read every 50ms during the stop).
	WriteTotal  int64   `json:"write_bytes_total"`
	StopSeconds float64 `json:"stop_seconds"`
	DataDir     string  `json:"data_dir,omitempty"` // when kept
	Error       string  `json:"error,omitempty"`
	Checks      []check `json:"checks"`
}

// report is the -o json output.
type report struct {
	Started   time.Time `json:"started"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Dir       string    `json:"dir"`
	Order     string    `json:"order"`
	A         struct {
		Clients int     `json:"clients"`
		Seconds float64 `json:"seconds"`
	} `json:"phase_a"`
	B struct {
		Rate    float64 `json:"rate"`
		Seconds float64 `json:"seconds"`
	} `json:"phase_b"`
	Results []*result `json:"results"`
	// Pass is whether every check of every size passed and every size ran.
	Pass bool `json:"pass"`
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "historybench:", err)
		os.Exit(2)
	}
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "historybench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("historybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.String("jobs", "0,1000000", "store sizes, comma-separated (k and m suffixes: 0,1m,10m); the first is the one the others are compared with")
	o := &options{}
	fs.DurationVar(&o.aDuration, "a-duration", 30*time.Second, "phase A: how long bench -c runs")
	fs.IntVar(&o.aClients, "a-clients", 64, "phase A: concurrent clients")
	fs.DurationVar(&o.bDuration, "b-duration", 90*time.Second, "phase B: how long bench --rate runs")
	fs.Float64Var(&o.bRate, "b-rate", 200, "phase B: submissions per second")
	fs.StringVar(&o.order, "order", "ba", "the phases' order: ba (B first) or ab")
	fs.StringVar(&o.dir, "dir", "", "where the data directories are made (default: a temporary directory in the bench module, on the disk of a checkout)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directories")
	fs.StringVar(&o.secauto, "secauto", "", "the secauto binary to run (default: built from the module bench's go.mod replaces secauto with)")
	fs.DurationVar(&o.open, "open-timeout", 10*time.Minute, "the most the daemon may take to answer /health before the run fails")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.sizes, err = parseCounts(*jobs); err != nil {
		return nil, err
	}
	switch {
	case o.output != "table" && o.output != "json":
		return nil, fmt.Errorf("-o %q: use table or json", o.output)
	case o.order != "ab" && o.order != "ba":
		return nil, fmt.Errorf("-order %q: use ba or ab", o.order)
	case o.aDuration <= 0 || o.bDuration <= 0:
		return nil, errors.New("-a-duration and -b-duration must be positive")
	case o.aClients < 1 || o.bRate <= 0:
		return nil, errors.New("-a-clients and -b-rate must be positive")
	}
	return o, nil
}

// parseCounts reads "0,1000000" or "0,1m,10m".
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		mult := 1
		switch {
		case strings.HasSuffix(part, "k"):
			mult, part = 1_000, strings.TrimSuffix(part, "k")
		case strings.HasSuffix(part, "m"):
			mult, part = 1_000_000, strings.TrimSuffix(part, "m")
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-jobs: %q is not a count like 0, 2000 or 1m", part)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func run(o *options, stdout, stderr io.Writer) error {
	base := o.dir
	if base == "" {
		parent := "."
		if d, err := goList(""); err == nil {
			parent = d // the bench module: a checkout's disk
		}
		d, err := os.MkdirTemp(parent, ".historybench-")
		if err != nil {
			return fmt.Errorf("cannot make a directory for the stores: %w; pass -dir", err)
		}
		if !o.keep {
			defer os.RemoveAll(d)
		}
		base = d
	} else if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	base, _ = filepath.Abs(base)
	bin := o.secauto
	if bin == "" {
		fmt.Fprintln(stderr, "historybench: building secauto")
		var err error
		if bin, err = buildSecauto(base, stderr); err != nil {
			return err
		}
	} else if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	rep := &report{Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Dir: base, Order: o.order}
	rep.A.Clients, rep.A.Seconds = o.aClients, o.aDuration.Seconds()
	rep.B.Rate, rep.B.Seconds = o.bRate, o.bDuration.Seconds()
	for _, n := range o.sizes {
		dir := filepath.Join(base, "jobs-"+count(n))
		r := measureSize(o, bin, dir, n, stderr)
		if o.keep {
			r.DataDir = dir
		} else {
			os.RemoveAll(dir)
		}
		if r.Error != "" {
			fmt.Fprintf(stderr, "historybench: %s jobs: %s\n", count(n), r.Error)
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Pass = evaluate(rep.Results)
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printTable(stdout, rep)
}

// measureSize runs every step for one store size in dir; what failed is
// in the result's Error, with the figures measured before it.
func measureSize(o *options, bin, dir string, n int, stderr io.Writer) *result {
	r := &result{Jobs: n, Checks: []check{}}
	if err := measureInto(r, o, bin, dir, n, stderr); err != nil {
		r.Error = err.Error()
	}
	return r
}

func measureInto(r *result, o *options, bin, dir string, n int, stderr io.Writer) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "historybench: %s jobs: %s\n", count(n), fmt.Sprintf(format, args...))
	}
	dataDir := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The port is written into the configuration before the daemon
	// starts; the restore below reads the configuration too.
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := writeConfig(cfg, dataDir, filepath.Join(dir, "secauto.log"), port); err != nil {
		return err
	}
	if n > 0 {
		// backup restore works on an existing data directory, as every
		// command but serve and run does.
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return err
		}
		genDir := filepath.Join(dir, "generated")
		last := time.Now()
		g, err := generate(genDir, n, time.Now().UTC(), func(done int) {
			if time.Since(last) >= 2*time.Second || done == n {
				last = time.Now()
				logf("generated %d of %d (%.0f%%)", done, n, 100*float64(done)/float64(n))
			}
		})
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		r.GenerateSeconds, r.GeneratedBytes = g.Seconds, g.Bytes
		logf("wrote %s (%s) in %.1fs; restoring it", filepath.Base(g.Path), gauge.Bytes(float64(g.Bytes)), g.Seconds)
		t0 := time.Now()
		cmd := exec.Command(bin, "--config", cfg, "backup", "restore", g.Path, "-o", "json")
		cmd.Dir = dir
		cmd.Stderr = stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("secauto backup restore: %w", err)
		}
		var res struct {
			RestoredJobs int `json:"restored_jobs"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.RestoredJobs != n {
			return fmt.Errorf("secauto backup restore restored %d jobs, want %d (%v): %s", res.RestoredJobs, n, err, out)
		}
		r.RestoreSeconds = time.Since(t0).Seconds()
		os.RemoveAll(genDir)
		logf("restored in %.1fs", r.RestoreSeconds)
	}
	if st, err := os.Stat(filepath.Join(dataDir, "jobs.json")); err == nil {
		r.JobsJSONBytes = st.Size()
	}

	d, open, err := startDaemon(bin, cfg, dir, filepath.Join(dir, "serve.out"), port, o.open)
	if err != nil {
		return err
	}
	running := true
	defer func() {
		if running {
			d.kill()
		}
	}()
	pid := d.cmd.Process.Pid
	r.OpenSeconds = open.Seconds()
	r.OpenHWM = gauge.VmHWM(pid)
	logf("open: /health answered after %.2fs", r.OpenSeconds)
	wb0, err := gauge.WriteBytes(pid)
	if err != nil {
		return err
	}

	stored := n
	runA := func() error {
		logf("phase A: bench -c %d for %s", o.aClients, o.aDuration)
		f, err := runBench(bin, cfg, dir, d.base, stderr, "-c", strconv.Itoa(o.aClients), "--duration", o.aDuration.String())
		if err != nil {
			return err
		}
		r.A = &phase{JobsBefore: stored, Bench: *f}
		stored += f.OK
		idle, err := d.idle(10 * time.Minute)
		r.A.IdleSeconds = idle.Seconds()
		logf("phase A: %.0f acks/s, p99 %s, %d errors", f.PerSecond, ms(f.Latency.P99), f.Errors)
		return err
	}
	runB := func() error {
		logf("phase B: bench --rate %g for %s", o.bRate, o.bDuration)
		w0, err := gauge.WriteBytes(pid)
		if err != nil {
			return err
		}
		f, err := runBench(bin, cfg, dir, d.base, stderr, "--rate", strconv.FormatFloat(o.bRate, 'f', -1, 64), "--duration", o.bDuration.String())
		if err != nil {
			return err
		}
		w1, err := gauge.WriteBytes(pid)
		if err != nil {
			return err
		}
		r.B = &phase{JobsBefore: stored, Bench: *f, WriteBytes: w1 - w0}
		if f.OK > 0 {
			r.B.WritePerAck = float64(w1-w0) / float64(f.OK)
		}
		stored += f.OK
		idle, err := d.idle(10 * time.Minute)
		r.B.IdleSeconds = idle.Seconds()
		logf("phase B: %.0f acks/s, %s written per ack, p99 %s, %d errors", f.PerSecond, gauge.Bytes(r.B.WritePerAck), ms(f.Latency.P99), f.Errors)
		return err
	}
	phases := []func() error{runB, runA}
	if o.order == "ab" {
		phases = []func() error{runA, runB}
	}
	for _, p := range phases {
		if err := p(); err != nil {
			return err
		}
	}

	logf("stopping")
	peak, wb, took, err := d.stop(10 * time.Minute)
	running = false
	r.PeakHWM, r.StopSeconds, r.WriteTotal = peak, took.Seconds(), wb-wb0
	if err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(dataDir, "jobs.json")); err == nil {
		r.JobsJSONBytesEnd = st.Size()
	}
	logf("stopped in %.1fs; peak memory %s, jobs.json %s", r.StopSeconds, gauge.Bytes(float64(r.PeakHWM)), gauge.Bytes(float64(r.JobsJSONBytesEnd)))
	return nil
}

// count writes 1000 as 1k and 1000000 as 1m.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "m"
	case n >= 1_000 && n%1_000 == 0:
		return strconv.Itoa(n/1_000) + "k"
	}
	return strconv.Itoa(n)
}
