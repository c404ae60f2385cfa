package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The command runs every step against the real daemon at a tiny size:
// generate and restore, open, both phases, stop; the figures are all
// there and checked.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs secauto serve")
	}
	dir := t.TempDir()
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-jobs", "0,2000", "-a-duration", "1s", "-a-clients", "4", "-b-duration", "2s", "-b-rate", "40", "-dir", dir, "-o", "json"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(o, &out, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2\n%s", len(rep.Results), stderr.String())
	}
	for _, r := range rep.Results {
		if r.Error != "" || r.A == nil || r.B == nil {
			t.Fatalf("%d jobs: %+v\n%s", r.Jobs, r, stderr.String())
		}
		if r.OpenSeconds <= 0 || r.PeakHWM <= 0 || r.PeakHWM < r.OpenHWM || r.JobsJSONBytesEnd <= 0 || r.WriteTotal <= 0 {
			t.Errorf("%d jobs: %+v", r.Jobs, r)
		}
		if a := r.A.Bench; a.OK < 1 || a.Errors != 0 || a.PerSecond <= 0 || a.Latency.P99 <= 0 || a.Concurrency != 4 {
			t.Errorf("%d jobs, phase A: %+v", r.Jobs, a)
		}
		// 40/s for 2s: due at 0, 25ms, …, 1975ms.
		if b := r.B.Bench; b.OK != 80 || b.Errors != 0 || b.Rate != 40 || r.B.WriteBytes <= 0 || r.B.WritePerAck <= 0 {
			t.Errorf("%d jobs, phase B: %+v %+v", r.Jobs, b, r.B)
		}
		// B ran first, then A on the store B left.
		if r.B.JobsBefore != r.Jobs || r.A.JobsBefore != r.Jobs+80 {
			t.Errorf("%d jobs: phase B began with %d jobs, A with %d", r.Jobs, r.B.JobsBefore, r.A.JobsBefore)
		}
	}
	small, big := rep.Results[0], rep.Results[1]
	if small.JobsJSONBytes != 0 || big.GeneratedBytes < 2000*1300 || big.JobsJSONBytes < big.GeneratedBytes*9/10 || big.RestoreSeconds <= 0 {
		t.Errorf("sizes: empty %d bytes; 2000 jobs generated %d bytes, jobs.json %d", small.JobsJSONBytes, big.GeneratedBytes, big.JobsJSONBytes)
	}
	figures := map[string]bool{}
	for _, c := range big.Checks {
		figures[c.Figure] = true
	}
	for _, f := range []string{"open", "acks", "p99", "write", "memory", "errors"} {
		if !figures[f] {
			t.Errorf("no %s check: %+v", f, big.Checks)
		}
	}
	// The data directories are gone; the binary built stays in -dir.
	if ents, _ := filepath.Glob(filepath.Join(dir, "jobs-*")); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if !strings.Contains(stderr.String(), "2k jobs: generated 2000 of 2000 (100%)") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

// The generated backup is in the format secauto restores: its checksum
// verifies with sha256sum's format, ids ascend with creation times that
// reach back 30 days.
func TestGenerate(t *testing.T) {
	end := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	g, err := generate(t.TempDir(), 50, end, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(g.Path)
	if err != nil {
		t.Fatal(err)
	}
	side, _ := os.ReadFile(g.Path + ".sha256")
	if string(side) != g.SHA256+"  jobs.json.backup.20260601-120000\n" || int64(len(data)) != g.Bytes {
		t.Errorf("sidecar %q, %d bytes of %d", side, len(data), g.Bytes)
	}
	var jobs map[string]struct {
		ID        string    `json:"id"`
		Status    string    `json:"status"`
		CreatedAt time.Time `json:"created_at"`
	}
	if err := json.Unmarshal(data, &jobs); err != nil || len(jobs) != 50 {
		t.Fatalf("%d jobs, %v", len(jobs), err)
	}
	var ids []string
	for _, l := range strings.Split(string(data), "\n")[1:51] {
		ids = append(ids, l[1:37])
	}
	for i, id := range ids {
		j := jobs[id]
		if j.ID != id || j.Status != "completed" || id[14] != '7' {
			t.Errorf("job %d: %+v", i, j)
		}
		if i > 0 && (id <= ids[i-1] || !j.CreatedAt.After(jobs[ids[i-1]].CreatedAt)) {
			t.Errorf("job %d is not after job %d", i, i-1)
		}
	}
	if first := jobs[ids[0]].CreatedAt; !first.Equal(end.Add(-historySpan)) {
		t.Errorf("oldest job created %s", first)
	}
	if per := g.Bytes / 50; per < 1300 || per > 1700 {
		t.Errorf("%d bytes a job", per)
	}
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags(nil, &stderr)
	if err != nil || len(o.sizes) != 2 || o.sizes[0] != 0 || o.sizes[1] != 1_000_000 || o.aDuration != 30*time.Second ||
		o.aClients != 64 || o.bDuration != 90*time.Second || o.bRate != 200 || o.order != "ba" || o.keep {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	if o, _ := parseFlags([]string{"-jobs", "0,1m,10m"}, &stderr); o == nil || o.sizes[2] != 10_000_000 {
		t.Errorf("-jobs 0,1m,10m: %+v", o)
	}
	for _, args := range [][]string{{"-jobs", "x"}, {"-order", "ca"}, {"-o", "yaml"}, {"-b-rate", "0"}, {"extra"}} {
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// Thresholds: the figures beside the empty store's, and beyond 1m jobs
// beside 1m's.
func TestEvaluate(t *testing.T) {
	mk := func(jobs int, open, acks, p99, perAck float64, hwm, size int64) *result {
		r := &result{Jobs: jobs, OpenSeconds: open, PeakHWM: hwm, JobsJSONBytes: size, A: &phase{}, B: &phase{WritePerAck: perAck}}
		r.A.Bench.PerSecond, r.A.Bench.Latency.P99 = acks, p99
		return r
	}
	rs := []*result{
		mk(0, 0.1, 1000, 10, 4000, 50<<20, 0),
		mk(1_000_000, 4, 850, 30, 5000, 1500<<20, 1400<<20),
		mk(10_000_000, 25, 300, 70, 9000, 30<<30, 14<<30),
	}
	if evaluate(rs) {
		t.Error("all passed")
	}
	failed := func(r *result) (out []string) {
		for _, c := range r.Checks {
			if !c.Pass {
				out = append(out, c.Figure+": "+c.Rule)
			}
		}
		return out
	}
	if f := failed(rs[0]); len(f) != 0 || len(rs[0].Checks) != 4 {
		t.Errorf("empty store: %v", rs[0].Checks)
	}
	if f := failed(rs[1]); len(f) != 0 || len(rs[1].Checks) != 6 {
		t.Errorf("1m: failed %v of %v", f, rs[1].Checks)
	}
	// 10m, held to thresholds twice as loose: open 25s (> 20s); acks
	// 0.3× empty (< 0.4×), 2.83× worse than 1m; p99 70ms (< 100ms) but
	// 2.33× 1m's; written 2.25× empty (≤ 3×); memory 30 GiB (≤ 42 GiB),
	// per byte of jobs.json 2× 1m's.
	want := []string{"open: ≤ 20s", "acks: 0.30× empty, ≥ 0.4×", "acks: 2.83× worse than 1m, ≤ 2×", "p99: 2.33× worse than 1m, ≤ 2×"}
	if got := failed(rs[2]); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("10m failed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var out bytes.Buffer
	if err := printTable(&out, &report{Results: rs, Order: "ba"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"0.85× empty, ≥ 0.8× pass", "2.83× worse than 1m, ≤ 2× FAIL", "Some checks FAILED"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}
