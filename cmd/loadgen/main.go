// Command loadgen measures a running secauto serve over its HTTP API.
//
// In async mode it submits one-step log playbooks to POST /playbook/async
// from -c concurrent clients for -d and prints acknowledged requests per
// second, latency percentiles and errors. In e2e mode it submits for -d and
// then waits until every acknowledged job has ended, reading GET /stats,
// and prints completed jobs per second end to end.
//
// It only talks to loopback addresses, and stops after -d or -n requests,
// whichever comes first:
//
//	go run ./cmd/loadgen -url http://127.0.0.1:8080 -c 64 -d 10s
//	go run ./cmd/loadgen -url http://127.0.0.1:8080 -c 64 -d 10s -mode e2e
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	url      string
	clients  int
	duration time.Duration
	max      int64
	token    string
	mode     string
	wait     time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of secauto serve (loopback only)")
	flag.IntVar(&o.clients, "c", 64, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "how long to submit")
	flag.Int64Var(&o.max, "n", 1_000_000, "stop after this many submissions")
	flag.StringVar(&o.token, "token", "", "bearer token, when the server requires one")
	flag.StringVar(&o.mode, "mode", "async", "async: acknowledged submissions; e2e: completed jobs")
	flag.DurationVar(&o.wait, "wait", 2*time.Minute, "e2e mode: how long to wait for submitted jobs to end")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(o options, w io.Writer) error {
	u, err := url.Parse(o.url)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-url %q is not a URL like http://127.0.0.1:8080", o.url)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("-url %q is not a loopback address; loadgen only loads the local machine", o.url)
	}
	if o.clients < 1 || o.duration <= 0 || o.max < 1 {
		return errors.New("-c, -d and -n must be positive")
	}
	if o.mode != "async" && o.mode != "e2e" {
		return fmt.Errorf("-mode %q is not valid; use async or e2e", o.mode)
	}
	base := strings.TrimSuffix(o.url, "/")
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        o.clients * 2,
			MaxIdleConnsPerHost: o.clients * 2,
			IdleConnTimeout:     time.Minute,
		},
	}
	g := &gen{o: o, base: base, client: client}

	var before map[string]int
	if o.mode == "e2e" {
		if before, err = g.counts(); err != nil {
			return err
		}
	}
	res := g.submit()
	res.print(w, "POST /playbook/async")
	if o.mode == "async" {
		return nil
	}

	// Completed jobs per second: from the first submission to the moment
	// the server reports every job it acknowledged as ended.
	want := before["completed"] + before["failed"] + before["cancelled"] + int(res.ok)
	deadline := time.Now().Add(o.wait)
	for {
		c, err := g.counts()
		if err != nil {
			return err
		}
		ended := c["completed"] + c["failed"] + c["cancelled"]
		if ended >= want {
			elapsed := time.Since(res.start)
			done := ended - before["completed"] - before["failed"] - before["cancelled"]
			fmt.Fprintf(w, "e2e: %d jobs ended (%d completed, %d failed) in %s: %.0f jobs/s end to end\n",
				done, c["completed"]-before["completed"], c["failed"]-before["failed"],
				elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after -wait %s: %d of %d jobs ended", o.wait, ended-(want-int(res.ok)), res.ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type gen struct {
	o      options
	base   string
	client *http.Client
}

// body is a one-step log playbook; the context makes the template work.
var body = []byte(`{"playbook":[{"name":"hello","action":"log","params":{"message":"alert {{.context.alert}}"}}],"context":{"alert":"A-1"}}`)

type result struct {
	start     time.Time
	elapsed   time.Duration
	ok, errs  int64
	latencies []time.Duration
	firstErr  string
}

func (g *gen) submit() *result {
	ctx, cancel := context.WithTimeout(context.Background(), g.o.duration)
	defer cancel()
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		res      = &result{start: time.Now()}
		wg       sync.WaitGroup
		firstErr sync.Once
	)
	for range g.o.clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			var ok, errs int64
			for ctx.Err() == nil && sent.Add(1) <= g.o.max {
				t0 := time.Now()
				err := g.post(ctx)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						break // cut off by -d, not a server error
					}
					errs++
					firstErr.Do(func() { mu.Lock(); res.firstErr = err.Error(); mu.Unlock() })
					continue
				}
				ok++
				lat = append(lat, d)
			}
			mu.Lock()
			res.ok += ok
			res.errs += errs
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(res.start)
	return res
}

func (g *gen) post(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/playbook/async", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if g.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.o.token)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// counts reads the jobs-by-status counts of GET /stats.
func (g *gen) counts() (map[string]int, error) {
	req, err := http.NewRequest(http.MethodGet, g.base+"/stats", nil)
	if err != nil {
		return nil, err
	}
	if g.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.o.token)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read /stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read /stats: status %d", resp.StatusCode)
	}
	var st struct {
		Jobs map[string]int `json:"jobs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("read /stats: %w", err)
	}
	return st.Jobs, nil
}

func (r *result) print(w io.Writer, what string) {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(r.latencies)-1))
		return r.latencies[i]
	}
	fmt.Fprintf(w, "%s: %d acknowledged, %d errors in %s: %.0f requests/s\n",
		what, r.ok, r.errs, r.elapsed.Round(time.Millisecond), float64(r.ok)/r.elapsed.Seconds())
	fmt.Fprintf(w, "latency: p50 %s  p90 %s  p99 %s  max %s\n",
		round(pct(.50)), round(pct(.90)), round(pct(.99)), round(pct(1)))
	if r.firstErr != "" {
		fmt.Fprintf(w, "first error: %s\n", r.firstErr)
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d > 100*time.Microsecond:
		return d.Round(10 * time.Microsecond)
	}
	return d
}
