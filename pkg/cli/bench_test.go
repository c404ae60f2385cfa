package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/server"
)

// bench loads the daemon that holds the data directory, or the one --url
// names, and reports what it measured as a table or as JSON.
func TestBenchAgainstDaemon(t *testing.T) {
	t.Chdir(t.TempDir()) // no config.yaml: defaults
	addr, _ := startDaemon(t, "data", server.Options{})

	code, out, errOut := run(t, nil, "bench", "-c", "4", "-n", "30")
	if code != ExitOK || errOut != "" {
		t.Fatalf("bench: exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "MODE  CLIENTS  REQUESTS  ERRORS  SECONDS  ACKNOWLEDGED/S  P50") ||
		!strings.HasPrefix(lines[1], "ack   4        30        0 ") {
		t.Errorf("bench table:\n%s", out)
	}

	var res BenchResult
	code, out, errOut = run(t, nil, "bench", "--mode", "e2e", "-c", "3", "-n", "12", "-o", "json")
	if code != ExitOK {
		t.Fatalf("bench e2e: exit %d\n%s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json does not parse: %v\n%s", err, out)
	}
	if res.Mode != "e2e" || res.OK != 12 || res.Completed != 12 || res.Errors != 0 || res.Concurrency != 3 ||
		res.PerSecond <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.URL != "http://"+addr {
		t.Errorf("bench e2e: %+v", res)
	}

	code, out, errOut = run(t, nil, "bench", "--url", "http://"+addr, "-n", "5", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.OK != 5 || res.Mode != "ack" {
		t.Errorf("bench --url: exit %d\n%s%s", code, out, errOut)
	}

	// Every job it submitted is in the store, and ended.
	code, out, _ = run(t, nil, "jobs", "list", "-o", "json")
	var jobs []map[string]any
	if code != ExitOK || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 47 {
		t.Errorf("jobs list after bench: exit %d, %d jobs, want 47", code, len(jobs))
	}
}

// The configured token is sent; a wrong one fails every request and says
// what to do.
func TestBenchWithTokens(t *testing.T) {
	t.Chdir(t.TempDir())
	addr, _ := startDaemon(t, "data", server.Options{AuthTokens: []string{"s3cret-0123456789-1"}})
	if err := os.WriteFile("config.yaml", []byte("server:\n  auth_tokens: [s3cret-0123456789-1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"bench", "-n", "3"}, {"bench", "-n", "3", "--url", "http://" + addr}} {
		if code, out, errOut := run(t, nil, args...); code != ExitOK {
			t.Errorf("%v with the configured token: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	code, out, errOut := run(t, nil, "bench", "-n", "3", "-c", "1", "--url", "http://"+addr, "--token", "wrong-0123456789abcdef")
	if code != ExitFailure || !strings.Contains(out, "ack   1        3         3 ") ||
		!strings.Contains(errOut, "secauto: no request succeeded; the first error: POST /playbook/async: status 401") || strings.Contains(errOut, "s3cret") {
		t.Errorf("wrong token: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestBenchUsage(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data", 0o700); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "bench", "-n", "3")
	if code != ExitFailure || out != "" || !strings.Contains(errOut, "no secauto serve holds data directory data; start the daemon, or pass --url") {
		t.Errorf("no daemon: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"-c", "0"}, {"-n", "0"}, {"--mode", "fast"}, {"--url", "127.0.0.1:8080"}, {"extra"},
		{"--rate", "-1"}, {"--rate", "inf"}, {"--duration", "-1s"}, {"--duration", "1s", "-n", "0"}} {
		code, out, errOut := run(t, nil, append([]string{"bench"}, args...)...)
		if code != ExitUsage || out != "" || errOut == "" {
			t.Errorf("bench %v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}

// On a terminal a progress bar runs on stderr; stdout has only the table.
func TestBenchProgressOnTerminal(t *testing.T) {
	t.Chdir(t.TempDir())
	addr, _ := startDaemon(t, "data", server.Options{})
	ios, _, out, errOut := TestStreams()
	ios.SetStderrTTY(true)
	f := NewFactory(ios, nil)
	opts := &BenchOptions{IO: ios, Target: benchTargetFor(f), Concurrency: 2, Requests: 20, URL: "http://" + addr, Mode: "ack", Timeout: 10e9, Output: formatTable}
	if err := benchRun(opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "bench ack") || strings.Contains(out.String(), "bench ack") || !strings.HasPrefix(out.String(), "MODE") {
		t.Errorf("stdout %q\nstderr %q", out.String(), errOut.String())
	}
}

func TestBenchFlags(t *testing.T) {
	ios, _, _, _ := TestStreams()
	var got *BenchOptions
	cmd := NewCmdBench(NewFactory(ios, nil), func(o *BenchOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"-c", "64", "-n", "10000", "--mode", "e2e", "--url", "https://127.0.0.1:8443", "--token", "t", "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Concurrency != 64 || got.Requests != 10000 || got.Mode != "e2e" || got.URL != "https://127.0.0.1:8443" || got.Token != "t" || got.Output != formatJSON {
		t.Errorf("options: %+v", got)
	}
	// --duration alone is not bounded by -n's default; --rate without -c
	// keeps enough requests in flight.
	for _, tc := range []struct {
		args     []string
		n, c     int
		rate     float64
		duration time.Duration
	}{
		{[]string{"--rate", "200", "--duration", "90s"}, 0, benchRateInFlight, 200, 90 * time.Second},
		{[]string{"--rate", "200", "-n", "500", "-c", "8"}, 500, 8, 200, 0},
		{[]string{"-c", "64", "--duration", "30s", "-n", "9"}, 9, 64, 0, 30 * time.Second},
	} {
		cmd := NewCmdBench(NewFactory(ios, nil), func(o *BenchOptions) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if got.Requests != tc.n || got.Concurrency != tc.c || got.Rate != tc.rate || got.Duration != tc.duration {
			t.Errorf("%v: options %+v", tc.args, got)
		}
	}
}

// --rate submits on a schedule, bounded by -n or by --duration; a closed
// loop may be bounded by --duration too.
func TestBenchRateAndDuration(t *testing.T) {
	t.Chdir(t.TempDir())
	startDaemon(t, "data", server.Options{})

	var res BenchResult
	code, out, errOut := run(t, nil, "bench", "--rate", "100", "-n", "20", "-o", "json")
	if code != ExitOK || errOut != "" || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("bench --rate -n: exit %d\n%s%s", code, out, errOut)
	}
	// 20 requests, one every 10ms: the last is sent 190ms after the first.
	if res.OK != 20 || res.Requests != 20 || res.Rate != 100 || res.Concurrency != 20 || res.Seconds < 0.19 || res.PerSecond > 106 || res.Latency.P50 <= 0 {
		t.Errorf("bench --rate 100 -n 20: %+v", res)
	}

	code, out, errOut = run(t, nil, "bench", "--rate", "50", "--duration", "400ms", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("bench --rate --duration: exit %d\n%s%s", code, out, errOut)
	}
	// Due at 0, 20ms, …, 380ms: 20 requests.
	if res.OK != 20 || res.Errors != 0 || res.Concurrency != benchRateInFlight || res.Seconds < 0.38 {
		t.Errorf("bench --rate 50 --duration 400ms: %+v", res)
	}

	res = BenchResult{}
	code, out, errOut = run(t, nil, "bench", "-c", "2", "--duration", "200ms", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("bench --duration: exit %d\n%s%s", code, out, errOut)
	}
	if res.OK < 1 || res.Requests != res.OK || res.Rate != 0 || res.Seconds < 0.2 || res.Concurrency != 2 {
		t.Errorf("bench -c 2 --duration 200ms: %+v", res)
	}

	code, out, errOut = run(t, nil, "bench", "--rate", "200", "-n", "10")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != ExitOK || len(lines) != 2 ||
		!strings.HasSuffix(strings.TrimRight(lines[0], " "), "RATE  DELAYED") || !strings.HasSuffix(strings.TrimRight(lines[1], " "), "200   0") {
		t.Errorf("bench --rate table: exit %d\n%s%s", code, out, errOut)
	}
}

// A daemon slower than the schedule does not slow it down unless every
// client is busy: such requests are sent late, counted and reported, and
// their latency counts from when they were due.
func TestBenchRateFallsBehind(t *testing.T) {
	t.Chdir(t.TempDir())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x"}`)
	}))
	defer srv.Close()

	var res BenchResult
	// Four clients keep up with 50/s at 40ms each.
	code, out, errOut := run(t, nil, "bench", "--url", srv.URL, "--rate", "50", "-n", "10", "-c", "4", "-o", "json")
	if code != ExitOK || errOut != "" || json.Unmarshal([]byte(out), &res) != nil || res.Delayed != 0 || res.Latency.Max > 500 {
		t.Errorf("-c 4: exit %d, %+v\n%s%s", code, res, out, errOut)
	}
	// One client cannot: each request waits for the one before.
	res = BenchResult{}
	code, out, errOut = run(t, nil, "bench", "--url", srv.URL, "--rate", "50", "-n", "10", "-c", "1", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Delayed == 0 || res.OK != 10 ||
		res.Latency.Max < 200 || !strings.Contains(errOut, "were sent late, all 1 clients being busy") {
		t.Errorf("-c 1: exit %d, %+v\n%s%s", code, res, out, errOut)
	}
}

// --url with several nodes' addresses sends the requests to each in turn.
func TestBenchSeveralNodes(t *testing.T) {
	t.Chdir(t.TempDir())
	a, _ := startDaemon(t, "a", server.Options{})
	b, _ := startDaemon(t, "b", server.Options{})
	var res BenchResult
	code, out, errOut := run(t, nil, "bench", "--url", "http://"+a+",http://"+b, "-c", "2", "-n", "10", "-o", "json")
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.OK != 10 || res.URL != "http://"+a+",http://"+b {
		t.Fatalf("bench on two nodes: exit %d\n%s%s", code, out, errOut)
	}
	for _, dir := range []string{"a", "b"} {
		var jobs []map[string]any
		code, out, _ := run(t, nil, "--data-dir", dir, "jobs", "list", "-o", "json")
		if code != ExitOK || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 5 {
			t.Errorf("daemon on %s got %d of the 10 jobs, want 5", dir, len(jobs))
		}
	}
	code, _, errOut = run(t, nil, "bench", "--url", "http://"+a+",https://"+b, "-n", "1")
	if code != ExitUsage || !strings.Contains(errOut, "all with http or all with https") {
		t.Errorf("mixed schemes: exit %d %q", code, errOut)
	}
}
