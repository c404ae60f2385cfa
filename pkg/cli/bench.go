package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// BenchOptions holds "bench"'s flags and dependencies.
type BenchOptions struct {
	IO *IOStreams
	// Target finds the daemon to load: the URL and token given, else the
	// daemon that holds the data directory.
	Target func(o *BenchOptions) (*benchTarget, error)

	Concurrency int
	Requests    int // 0 with Duration: as many as fit in it
	Duration    time.Duration
	Rate        float64 // submissions per second, open loop; 0: closed loop
	URL         string
	Token       string
	Mode        string
	Timeout     time.Duration
	Output      outputFormat
}

// benchTarget is the daemon a bench loads.
type benchTarget struct {
	base string // scheme://host:port
	// more are further daemons sharing one store (several nodes): the
	// requests go round base and them in turn.
	more  []string
	next  atomic.Uint64
	token string
	tls   *tls.Config
}

// pick returns the address of the daemon the next request goes to.
func (t *benchTarget) pick() string {
	if len(t.more) == 0 {
		return t.base
	}
	n := t.next.Add(1) - 1
	if i := n % uint64(len(t.more)+1); i > 0 {
		return t.more[i-1]
	}
	return t.base
}

// name is every address loaded, for the report.
func (t *benchTarget) name() string {
	return strings.Join(append([]string{t.base}, t.more...), ",")
}

// NewCmdBench is "secauto bench".
func NewCmdBench(f *Factory, runF func(*BenchOptions) error) *cobra.Command {
	opts := &BenchOptions{IO: f.IOStreams, Target: benchTargetFor(f)}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running daemon and report throughput and latency",
		Long: strings.TrimSpace(`
Submit -n one-step playbooks (a single log step) to a running secauto serve
from -c concurrent clients, and report requests per second and the latency
percentiles p50, p90, p99 and max. --duration submits for that long instead
(with -n too, whichever ends first).

--rate N submits at a steady N per second instead, whatever the latency (an
open loop, as real alerts arrive): each request is sent when it is due, up to
-c in flight (1024 unless -c is given), and its latency counts from when it
was due, so a daemon that falls behind shows it in the percentiles. A
request that had to wait for a free client is counted as delayed and
reported.

--mode ack (the default) measures the acknowledgement of POST
/playbook/async: the job is stored durably and queued. --mode e2e submits
with POST /playbook, which answers once the job has ended, and so measures
whole jobs, from submission to their end.

Without --url, the daemon is the one that holds the data directory (found
through secauto.lock, as every command finds it), reached with the first of
the configuration's server.auth_tokens. Several nodes sharing one PostgreSQL
store are loaded together with --url A,B,C: requests go to each in turn.
Every job submitted stays in the
store's history like any other, until cleanup deletes it: run bench against a
daemon whose history may hold them.
` + exitStatus("the daemon could not be loaded, or some requests failed (the figures\n       are printed all the same)")),
		Example: example(`
  # 10000 acknowledged submissions from 64 clients, against the local daemon
  secauto bench -c 64 -n 10000

  # whole jobs, end to end, against a daemon given by its address
  secauto bench --url http://127.0.0.1:8080 --mode e2e -c 16 -n 2000

  # three nodes on one PostgreSQL store, 64 clients in all
  secauto bench --url http://10.0.0.1:8080,http://10.0.0.2:8080,http://10.0.0.3:8080 -c 64 -n 20000

  # 64 clients as fast as the daemon answers, for 30 seconds
  secauto bench -c 64 --duration 30s

  # a steady 200 submissions per second for 90 seconds
  secauto bench --rate 200 --duration 90s

  # the figures for a script
  secauto bench -n 5000 -o json`),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			if fl.Changed("requests") && opts.Requests < 1 {
				return usageErrorf("invalid -n %d: give at least 1 request", opts.Requests)
			}
			if opts.Duration > 0 && !fl.Changed("requests") {
				opts.Requests = 0 // --duration alone bounds the run
			}
			if opts.Rate > 0 && !fl.Changed("concurrency") {
				opts.Concurrency = benchRateInFlight
			}
			if runF != nil {
				return runF(opts)
			}
			return benchRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&opts.Concurrency, "concurrency", "c", 16, "concurrent clients; with --rate, the most requests in flight (then 1024 unless given)")
	fl.IntVarP(&opts.Requests, "requests", "n", 1000, "playbooks to submit (with --duration and no -n: no limit)")
	fl.DurationVar(&opts.Duration, "duration", 0, "submit for this long instead of -n playbooks (with -n too: whichever ends first)")
	fl.Float64Var(&opts.Rate, "rate", 0, "submit at a steady N per second, whatever the latency (default: as fast as the clients are answered)")
	fl.StringVar(&opts.URL, "url", "", "the daemon's address, e.g. http://127.0.0.1:8080, or several nodes' separated by commas (default: the daemon that holds the data directory)")
	fl.StringVar(&opts.Token, "token", "", "bearer token (default: the first of server.auth_tokens)")
	fl.StringVar(&opts.Mode, "mode", "ack", "ack: acknowledged submissions; e2e: jobs run to their end")
	fl.DurationVar(&opts.Timeout, "timeout", time.Minute, "how long one request may take")
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions(
		[]string{"ack\tacknowledged submissions", "e2e\tjobs run to their end"}, cobra.ShellCompDirectiveNoFileComp))
	addOutputFlag(cmd, &opts.Output)
	return cmd
}

// benchTargetFor finds the daemon the way every command does: --url if
// given, else the daemon recorded in the data directory's secauto.lock;
// the token is --token, else the configuration's first.
func benchTargetFor(f *Factory) func(o *BenchOptions) (*benchTarget, error) {
	return func(o *BenchOptions) (*benchTarget, error) {
		if o.URL == "" {
			dir, err := f.existingStoreDir()
			if err != nil {
				return nil, fmt.Errorf("%w, or pass --url", err)
			}
			d, err := findDaemon(dir, f.Config, f.Build.Version)
			if err != nil {
				return nil, err
			}
			if d == nil {
				return nil, fmt.Errorf("no secauto serve holds data directory %s; start the daemon, or pass --url with its address", dir)
			}
			// The daemon answers this command, with this token, before
			// any load is sent.
			if err := d.ping(context.Background()); err != nil {
				return nil, err
			}
			scheme, host := d.baseURL()
			t := &benchTarget{base: scheme + "://" + host, token: d.token, tls: d.http.Transport.(*http.Transport).TLSClientConfig}
			if o.Token != "" {
				t.token = o.Token
			}
			return t, nil
		}
		var bases []string
		var u *url.URL
		for _, one := range strings.Split(o.URL, ",") {
			var err error
			u, err = url.Parse(strings.TrimSpace(one))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, usageErrorf("invalid --url %q: give the daemon's address, such as http://127.0.0.1:8080, or several nodes' separated by commas", one)
			}
			if len(bases) > 0 && !strings.HasPrefix(bases[0], u.Scheme+"://") {
				return nil, usageErrorf("invalid --url %q: give the nodes all with http or all with https", o.URL)
			}
			bases = append(bases, u.Scheme+"://"+u.Host)
		}
		t := &benchTarget{base: bases[0], more: bases[1:], token: o.Token}
		if t.token != "" && u.Scheme == "http" {
			return t, nil // nothing to take from the configuration
		}
		cfg, err := f.Config()
		if err != nil {
			return nil, err
		}
		if t.token == "" && len(cfg.Server.AuthTokens) > 0 {
			t.token = cfg.Server.AuthTokens[0]
		}
		if u.Scheme == "https" {
			// server.tls_cert is trusted, so a self-signed daemon works.
			if t.tls, err = cfg.ClientTLS(); err != nil {
				return nil, &configError{err}
			}
		}
		return t, nil
	}
}

// BenchResult is what bench measured; its JSON is the -o json output.
type BenchResult struct {
	URL         string  `json:"url"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"` // --rate: the requests per second asked for
	Requests    int     `json:"requests"`
	OK          int     `json:"ok"`
	Errors      int     `json:"errors"`
	Completed   int     `json:"completed,omitempty"` // e2e: jobs that ended completed
	Failed      int     `json:"failed,omitempty"`    // e2e: jobs that ended failed or cancelled
	Delayed     int     `json:"delayed,omitempty"`   // --rate: requests sent late, every client being busy
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	// Latency of the successful requests, in milliseconds.
	Latency    BenchLatency `json:"latency_ms"`
	FirstError string       `json:"first_error,omitempty"`
}

// BenchLatency holds latency percentiles in milliseconds.
type BenchLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// benchBody is a one-step log playbook whose template reads the context.
var benchBody = []byte(`{"playbook":[{"name":"hello","action":"log","params":{"message":"alert {{.context.alert}}"}}],"context":{"alert":"A-1"}}`)

// benchRateInFlight is how many requests --rate keeps in flight at most
// unless -c is given: enough that a slow answer does not hold back the
// schedule, not so many that a stalled daemon runs the client out of
// connections.
const benchRateInFlight = 1024

func benchRun(opts *BenchOptions) error {
	if opts.Concurrency < 1 {
		return usageErrorf("invalid -c %d: give at least 1 client", opts.Concurrency)
	}
	if opts.Requests < 0 || (opts.Requests == 0 && opts.Duration <= 0) {
		return usageErrorf("invalid -n %d: give at least 1 request", opts.Requests)
	}
	if opts.Duration < 0 {
		return usageErrorf("invalid --duration %s: give a positive duration", opts.Duration)
	}
	if opts.Rate < 0 || math.IsNaN(opts.Rate) || math.IsInf(opts.Rate, 0) {
		return usageErrorf("invalid --rate %g: give a positive number of requests per second", opts.Rate)
	}
	if opts.Mode != "ack" && opts.Mode != "e2e" {
		return usageErrorf("invalid --mode %q: use ack or e2e", opts.Mode)
	}
	if opts.Timeout <= 0 {
		return usageErrorf("invalid --timeout %s: give a positive duration", opts.Timeout)
	}
	target, err := opts.Target(opts)
	if err != nil {
		return err
	}
	conc := opts.Concurrency
	if opts.Requests > 0 {
		conc = min(conc, opts.Requests)
	}
	client := &http.Client{
		Timeout: opts.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // the daemon is measured, not a proxy
			DialContext:         (&net.Dialer{Timeout: daemonDialTimeout}).DialContext,
			TLSClientConfig:     target.tls,
			MaxIdleConns:        2 * conc,
			MaxIdleConnsPerHost: 2 * conc,
			IdleConnTimeout:     time.Minute,
		},
	}
	defer client.CloseIdleConnections()

	var bar *progressbar.ProgressBar
	if opts.IO.IsStderrTTY() {
		total := opts.Requests
		if total == 0 {
			total = -1 // bounded by --duration only: a spinner
		}
		bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(opts.IO.ErrOut),
			progressbar.OptionSetDescription("bench "+opts.Mode),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("req"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	b := &benchState{
		opts:   opts,
		client: client,
		target: target,
		bar:    bar,
		path:   "/playbook/async",
		want:   http.StatusAccepted,
		res:    &BenchResult{URL: target.name(), Mode: opts.Mode, Concurrency: conc, Rate: opts.Rate},
	}
	if opts.Mode == "e2e" {
		b.path, b.want = "/playbook", http.StatusOK
	}
	if opts.Requests > 0 {
		b.latencies = make([]time.Duration, 0, opts.Requests)
	}
	start := time.Now()
	if opts.Duration > 0 {
		b.deadline = start.Add(opts.Duration)
	}
	if opts.Rate > 0 {
		b.openLoop(start, conc)
	} else {
		b.closedLoop(conc)
	}
	elapsed := time.Since(start)
	if bar != nil {
		_ = bar.Finish()
	}
	res := b.res
	res.Requests = res.OK + res.Errors
	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(res.OK) / elapsed.Seconds()
	res.Latency = benchPercentiles(b.latencies)

	if err := printBench(opts, res); err != nil {
		return err
	}
	if res.Delayed > 0 {
		fmt.Fprintf(opts.IO.ErrOut, "%d of %d requests were sent late, all %d clients being busy: the daemon answered too slowly for --rate %g; their latency counts from when they were due\n",
			res.Delayed, res.Requests, conc, opts.Rate)
	}
	if res.OK == 0 {
		return fmt.Errorf("no request succeeded; the first error: %s", res.FirstError)
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d requests failed; the first: %s", res.Errors, res.Requests, res.FirstError)
	}
	return nil
}

// benchState is one bench run's load and what it measured.
type benchState struct {
	opts     *BenchOptions
	client   *http.Client
	target   *benchTarget
	bar      *progressbar.ProgressBar
	path     string
	want     int
	deadline time.Time // zero: -n bounds the run

	mu        sync.Mutex
	latencies []time.Duration
	res       *BenchResult
}

// done reports whether the run is over before request i (counted from 1)
// is sent.
func (b *benchState) done(i int64, now time.Time) bool {
	return (b.opts.Requests > 0 && i > int64(b.opts.Requests)) || (!b.deadline.IsZero() && !now.Before(b.deadline))
}

// tally is what one client measured.
type tally struct {
	lat                         []time.Duration
	ok, errs, completed, failed int
	first                       string
}

// one sends one request, its latency counted from due.
func (b *benchState) one(t *tally, due time.Time) {
	status, err := benchPost(b.client, b.target, b.path, b.want)
	d := time.Since(due)
	if b.bar != nil {
		_ = b.bar.Add(1)
	}
	if err != nil {
		t.errs++
		if t.first == "" {
			t.first = err.Error()
		}
		return
	}
	t.ok++
	t.lat = append(t.lat, d)
	switch status {
	case "":
	case "completed":
		t.completed++
	default:
		t.failed++
	}
}

func (b *benchState) add(t *tally) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latencies = append(b.latencies, t.lat...)
	b.res.OK += t.ok
	b.res.Errors += t.errs
	b.res.Completed += t.completed
	b.res.Failed += t.failed
	if b.res.FirstError == "" {
		b.res.FirstError = t.first
	}
}

// closedLoop runs conc clients, each sending its next request once the
// last is answered.
func (b *benchState) closedLoop(conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var t tally
			for !b.done(next.Add(1), time.Now()) {
				b.one(&t, time.Now())
			}
			b.add(&t)
		})
	}
	wg.Wait()
}

// openLoop sends request i at start + i/rate whatever the answers, from up
// to conc clients. A request due while every client is busy waits for one
// and is counted as delayed; its latency still counts from when it was
// due.
func (b *benchState) openLoop(start time.Time, conc int) {
	interval := time.Duration(float64(time.Second) / b.opts.Rate)
	slots := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var delayed int
	for i := int64(1); ; i++ {
		due := start.Add(time.Duration(i-1) * interval)
		if b.done(i, due) {
			break
		}
		time.Sleep(time.Until(due))
		select {
		case slots <- struct{}{}:
		default:
			delayed++
			slots <- struct{}{}
		}
		wg.Go(func() {
			defer func() { <-slots }()
			var t tally
			b.one(&t, due)
			b.add(&t)
		})
	}
	wg.Wait()
	b.res.Delayed = delayed
}

// benchPost submits one playbook and checks the answer; in e2e mode it
// returns the ended job's status.
func benchPost(client *http.Client, t *benchTarget, path string, want int) (string, error) {
	req, err := http.NewRequest(http.MethodPost, t.pick()+path, bytes.NewReader(benchBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is printed once, not in every error
		}
		return "", fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("POST %s: the answer broke off: %w", path, err)
	}
	var body struct {
		Error  string `json:"error"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(data, &body)
	if resp.StatusCode != want {
		msg := body.Error
		if msg == "" {
			msg = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			msg += "; give the daemon's configuration (--config) or --token"
		}
		return "", fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode, msg)
	}
	if want == http.StatusOK {
		return body.Status, nil
	}
	return "", nil
}

func benchPercentiles(d []time.Duration) BenchLatency {
	if len(d) == 0 {
		return BenchLatency{}
	}
	slices.Sort(d)
	ms := func(p float64) float64 {
		v := d[int(p*float64(len(d)-1))]
		return float64(v.Microseconds()) / 1000
	}
	return BenchLatency{P50: ms(.50), P90: ms(.90), P99: ms(.99), Max: ms(1)}
}

func printBench(opts *BenchOptions, r *BenchResult) error {
	if opts.Output != formatTable {
		return printData(opts.IO.Out, opts.Output, r)
	}
	what := "ACKNOWLEDGED/S"
	if r.Mode == "e2e" {
		what = "JOBS/S"
	}
	headers := []string{"MODE", "CLIENTS", "REQUESTS", "ERRORS", "SECONDS", what, "P50", "P90", "P99", "MAX"}
	row := []string{r.Mode, fmt.Sprint(r.Concurrency), fmt.Sprint(r.Requests), fmt.Sprint(r.Errors),
		fmt.Sprintf("%.2f", r.Seconds), fmt.Sprintf("%.0f", r.PerSecond),
		benchMs(r.Latency.P50), benchMs(r.Latency.P90), benchMs(r.Latency.P99), benchMs(r.Latency.Max)}
	if r.Mode == "e2e" {
		headers = append(headers, "COMPLETED", "FAILED")
		row = append(row, fmt.Sprint(r.Completed), fmt.Sprint(r.Failed))
	}
	if r.Rate > 0 {
		headers = append(headers, "RATE", "DELAYED")
		row = append(row, strconv.FormatFloat(r.Rate, 'f', -1, 64), fmt.Sprint(r.Delayed))
	}
	if r.OK == 0 {
		for i := 6; i < 10; i++ {
			row[i] = "-"
		}
	}
	t := newTable(opts.IO, headers...)
	t.exact = true
	t.addRow(row...)
	return t.render()
}

// benchMs writes a latency in milliseconds for people: 0.42ms, 12.3ms, 1.2s.
func benchMs(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.2fs", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}
