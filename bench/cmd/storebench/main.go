// Command storebench runs one workload against secauto's job store and the
// stores it is measured beside, in one run, and prints one table (or with
// -o json the raw figures):
//
//	cd bench && go run ./cmd/storebench                       # the full comparison
//	cd bench && go run ./cmd/storebench -prefill 1k -writers 1,16 -duration 3s -peers secauto,sqlite
//
// The workload: jobs of about 1.5 KB, each created pending and then updated
// to running and to completed (three durable changes), from 1, 16 and 64
// concurrent writers, against stores pre-filled with 1k, 100k and 1M
// completed jobs (bulk-loaded, not through the measured path). The peers:
//
//	secauto       pkg/store in its normal durable mode (journal group commit)
//	sqlite        modernc.org/sqlite, WAL, synchronous=FULL, a transaction per change
//	sqlite-group  the same, with an application group commit: one transaction per batch
//	bbolt         go.etcd.io/bbolt, DB.Update per change
//	bbolt-batch   go.etcd.io/bbolt, DB.Batch
//	river         River on PostgreSQL (riverpgxv5): inserts one-step jobs and works them
//	disk          raw append + fdatasync per write, the disk's limit
//	disk-group    raw append, fdatasync shared by concurrent writers
//
// Every peer acknowledges a change only once it is on stable storage; the
// output's footnote says how for each. Each peer and pre-fill runs in a
// child process of this binary, so its memory figure is its own. Linux
// only: the figures come from /proc and /sys.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/bench/internal/gauge"
)

const childEnv = "STOREBENCH_CHILD"

// options are the command's flags.
type options struct {
	writers  []int
	prefills []int
	duration time.Duration
	jobs     int
	peers    []peerInfo
	dir      string
	postgres string
	output   string
}

// childConfig is what a child process runs: one peer, one pre-fill, every
// writer count in turn.
type childConfig struct {
	Peer        string        `json:"peer"`
	Prefill     int           `json:"prefill"`
	Writers     []int         `json:"writers"`
	Duration    time.Duration `json:"duration"`
	Jobs        int           `json:"jobs"`
	Dir         string        `json:"dir"`
	PostgresURL string        `json:"postgres_url"`
}

func (c childConfig) maxWriters() int {
	m := 1
	for _, w := range c.Writers {
		m = max(m, w)
	}
	return m
}

// result is one peer's figures at one pre-fill and writer count.
type result struct {
	Peer    string `json:"peer"`
	Prefill int    `json:"prefill"`
	Writers int    `json:"writers"`
	// JobsBefore is how many jobs the store held when this level began:
	// the pre-fill plus the jobs of the levels before it.
	JobsBefore     int         `json:"jobs_before"`
	Jobs           int64       `json:"jobs"`
	Changes        int64       `json:"changes"`
	Seconds        float64     `json:"seconds"`
	ChangesPerSec  float64     `json:"changes_per_second"`
	JobsPerSec     float64     `json:"jobs_per_second"`
	ChangeLatency  percentiles `json:"change_latency"`
	JobLatency     percentiles `json:"job_latency"`
	WriteBytes     int64       `json:"write_bytes"`
	WritePerChange float64     `json:"write_bytes_per_change"`
	// DeviceBytes is what the whole device holding -dir wrote meanwhile,
	// other processes' writes included; -1 when it could not be read.
	DeviceBytes     int64   `json:"device_bytes"`
	DevicePerChange float64 `json:"device_bytes_per_change"`
	PeakRSS         int64   `json:"peak_rss_bytes"`
	PrefillSeconds  float64 `json:"prefill_seconds"`
	// SecautoRatio is secauto's jobs/s over this peer's at the same
	// pre-fill and writers; 0 when secauto was not run.
	SecautoRatio float64 `json:"secauto_ratio,omitempty"`
	Error        string  `json:"error,omitempty"`
}

// skipped is a peer that could not run, with the reason.
type skipped struct {
	Peer    string `json:"peer"`
	Prefill int    `json:"prefill"`
	Reason  string `json:"reason"`
}

// report is the -o json output.
type report struct {
	Started     time.Time         `json:"started"`
	GoVersion   string            `json:"go_version"`
	CPUs        int               `json:"cpus"`
	Dir         string            `json:"dir"`
	Device      string            `json:"device,omitempty"`
	Duration    time.Duration     `json:"duration_ns,omitempty"`
	JobsPerRun  int               `json:"jobs_per_level,omitempty"`
	Results     []result          `json:"results"`
	Skipped     []skipped         `json:"skipped"`
	Durability  map[string]string `json:"durability"`
	Measurement []string          `json:"measurement"`
}

func main() {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(childMain(cfg))
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(2)
	}
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("storebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	writers := fs.String("writers", "1,16,64", "concurrent writers, comma-separated")
	prefill := fs.String("prefill", "1k,100k,1m", "jobs in the store before measuring, comma-separated (k and m suffixes)")
	peerList := fs.String("peers", "all", "peers to run, comma-separated: secauto,sqlite,sqlite-group,bbolt,bbolt-batch,river,disk,disk-group")
	o := &options{}
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each peer runs at each writer count")
	fs.IntVar(&o.jobs, "n", 0, "run this many jobs at each writer count instead of for -duration")
	fs.StringVar(&o.dir, "dir", "", "where the stores are made (default: a temporary directory in the working directory, the disk of the data directory)")
	fs.StringVar(&o.postgres, "postgres", "postgres://localhost:5432/test?sslmode=disable", "PostgreSQL for the river peer")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.writers, err = parseCounts(*writers, "-writers"); err != nil {
		return nil, err
	}
	if o.prefills, err = parseCounts(*prefill, "-prefill"); err != nil {
		return nil, err
	}
	if o.peers, err = parsePeers(*peerList); err != nil {
		return nil, err
	}
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("-o %q: use table or json", o.output)
	}
	if o.jobs < 0 || (o.jobs == 0 && o.duration <= 0) {
		return nil, errors.New("-duration or -n must be positive")
	}
	return o, nil
}

// parseCounts reads "1,16,64" or "1k,100k,1m".
func parseCounts(s, flagName string) ([]int, error) {
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
			return nil, fmt.Errorf("%s: %q is not a count like 16, 100k or 1m", flagName, part)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func run(o *options, stdout, stderr io.Writer) error {
	base := o.dir
	if base == "" {
		d, err := os.MkdirTemp(".", ".storebench-")
		if err != nil {
			return fmt.Errorf("cannot make a directory for the stores: %w; pass -dir", err)
		}
		defer os.RemoveAll(d)
		base = d
	} else if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	base, _ = filepath.Abs(base)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	rep := &report{Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Dir: base,
		Durability: map[string]string{}, Skipped: []skipped{}, Results: []result{}, Measurement: measurementNotes}
	if o.jobs > 0 {
		rep.JobsPerRun = o.jobs
	} else {
		rep.Duration = o.duration
	}
	if name, _, ok := deviceStat(base); ok {
		rep.Device = name
	}
	for _, p := range o.peers {
		rep.Durability[p.name] = p.durability
	}
	for _, n := range o.prefills {
		for _, p := range o.peers {
			dir := filepath.Join(base, fmt.Sprintf("%s-%d", p.name, n))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			cfg := childConfig{Peer: p.name, Prefill: n, Writers: o.writers, Duration: o.duration, Jobs: o.jobs, Dir: dir, PostgresURL: o.postgres}
			fmt.Fprintf(stderr, "storebench: %s, %s jobs pre-filled, writers %v\n", p.name, count(n), o.writers)
			res, skip, err := runChild(exe, cfg, stderr)
			os.RemoveAll(dir)
			switch {
			case skip != "":
				fmt.Fprintf(stderr, "storebench: skipped %s: %s\n", p.name, skip)
				rep.Skipped = append(rep.Skipped, skipped{Peer: p.name, Prefill: n, Reason: skip})
			case err != nil:
				fmt.Fprintf(stderr, "storebench: %s failed: %v\n", p.name, err)
				rep.Results = append(rep.Results, result{Peer: p.name, Prefill: n, Error: err.Error()})
			default:
				rep.Results = append(rep.Results, res...)
			}
		}
	}
	ratios(rep.Results)
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printTable(stdout, rep)
}

// runChild runs one peer and pre-fill in a child process of this binary
// and reads its results from the child's stdout.
func runChild(exe string, cfg childConfig, stderr io.Writer) ([]result, string, error) {
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	err := cmd.Run()
	var msg childOutput
	if jerr := json.Unmarshal(out.Bytes(), &msg); jerr != nil {
		if err == nil {
			err = jerr
		}
		return nil, "", fmt.Errorf("child process: %w", err)
	}
	switch {
	case msg.Skip != "":
		return nil, msg.Skip, nil
	case msg.Error != "":
		return nil, "", errors.New(msg.Error)
	case err != nil:
		return nil, "", fmt.Errorf("child process: %w", err)
	}
	return msg.Results, "", nil
}

// childOutput is what a child writes to its stdout.
type childOutput struct {
	Results []result `json:"results,omitempty"`
	Skip    string   `json:"skip,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func childMain(arg string) int {
	var cfg childConfig
	out := childOutput{}
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		out.Error = err.Error()
	} else {
		res, err := runPeer(cfg)
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			out.Skip = skip.reason
		case err != nil:
			out.Error = err.Error()
		}
		out.Results = res
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if out.Error != "" {
		return 1
	}
	return 0
}

// runPeer opens and pre-fills one peer, then runs the workload at each
// writer count in turn on the same store.
func runPeer(cfg childConfig) ([]result, error) {
	info, ok := peerByName(cfg.Peer)
	if !ok {
		return nil, fmt.Errorf("unknown peer %q", cfg.Peer)
	}
	p := info.make(cfg)
	t0 := time.Now()
	if err := p.open(cfg.Dir, cfg.Prefill); err != nil {
		p.close()
		var skip *skipError
		if errors.As(err, &skip) {
			return nil, err
		}
		return nil, fmt.Errorf("open and pre-fill %s: %w", cfg.Peer, err)
	}
	prefillSecs := time.Since(t0).Seconds()
	var results []result
	done := cfg.Prefill
	next := 0 // job numbers, unique across levels
	_, device, hasDevice := deviceStat(cfg.Dir)
	for _, w := range cfg.Writers {
		pids := []int{0}
		if info.otherPIDs != nil {
			pids = append(pids, info.otherPIDs()...)
		}
		// What the bulk load and earlier levels left on the heap is not
		// the store's: give it back before the peak is taken.
		debug.FreeOSMemory()
		resetPeakRSS()
		var dev0 int64 = -1
		if hasDevice {
			dev0 = device()
		}
		wb0 := writeBytes(pids...)
		r, err := measure(p, w, cfg, &next)
		r.WriteBytes = writeBytes(pids...) - wb0
		r.DeviceBytes = -1
		if hasDevice {
			r.DeviceBytes = device() - dev0
		}
		r.PeakRSS = gauge.VmHWM(0)
		r.Peer, r.Prefill, r.Writers, r.JobsBefore, r.PrefillSeconds = cfg.Peer, cfg.Prefill, w, done, prefillSecs
		if r.Changes > 0 {
			r.WritePerChange = float64(r.WriteBytes) / float64(r.Changes)
			if r.DeviceBytes >= 0 {
				r.DevicePerChange = float64(r.DeviceBytes) / float64(r.Changes)
			}
		}
		done += int(r.Jobs)
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	if err := p.close(); err != nil {
		return results, fmt.Errorf("close %s: %w", cfg.Peer, err)
	}
	return results, nil
}

// measure runs jobs from w writers for cfg.Duration, or until cfg.Jobs
// jobs ran.
func measure(p peer, w int, cfg childConfig, next *int) (result, error) {
	var (
		started  atomic.Int64
		mu       sync.Mutex
		changeL  []time.Duration
		jobL     []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	base := *next
	limit := int64(cfg.Jobs)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for range w {
		wg.Go(func() {
			var cl, jl []time.Duration
			for {
				n := started.Add(1)
				if (limit > 0 && n > limit) || (limit == 0 && time.Now().After(deadline)) {
					break
				}
				t := time.Now()
				if err := p.job(base+int(n), &cl); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					break
				}
				jl = append(jl, time.Since(t))
			}
			mu.Lock()
			changeL = append(changeL, cl...)
			jobL = append(jobL, jl...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if ap, ok := p.(asyncPeer); ok {
		// The jobs end in the background: the level lasts until the
		// last has, and a job's latency runs until its end.
		var err error
		jobL, err = ap.drain()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	elapsed := time.Since(start)
	*next = base + int(started.Load()) + 1
	jobs := int64(len(jobL))
	r := result{
		Jobs:          jobs,
		Changes:       3 * jobs,
		Seconds:       elapsed.Seconds(),
		ChangesPerSec: float64(3*jobs) / elapsed.Seconds(),
		JobsPerSec:    float64(jobs) / elapsed.Seconds(),
		ChangeLatency: percentilesOf(changeL),
		JobLatency:    percentilesOf(jobL),
	}
	return r, firstErr
}

// ratios fills each result's SecautoRatio from secauto's at the same
// pre-fill and writers.
func ratios(rs []result) {
	type key struct{ prefill, writers int }
	sec := map[key]float64{}
	for _, r := range rs {
		if r.Peer == "secauto" && r.Error == "" {
			sec[key{r.Prefill, r.Writers}] = r.JobsPerSec
		}
	}
	for i := range rs {
		if s, ok := sec[key{rs[i].Prefill, rs[i].Writers}]; ok && rs[i].JobsPerSec > 0 {
			rs[i].SecautoRatio = s / rs[i].JobsPerSec
		}
	}
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
