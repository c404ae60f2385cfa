package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets run start this test binary as its child processes.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(childMain(cfg))
	}
	os.Exit(m.Run())
}

// Every peer runs a tiny workload through the path the command measures.
// River skips with a message when PostgreSQL cannot be reached.
func TestEveryPeer(t *testing.T) {
	for _, info := range peers {
		t.Run(info.name, func(t *testing.T) {
			cfg := childConfig{Peer: info.name, Prefill: 50, Writers: []int{1, 4}, Jobs: 8, Dir: t.TempDir(),
				PostgresURL: "postgres://localhost:5432/test?sslmode=disable&connect_timeout=3"}
			res, err := runPeer(cfg)
			var skip *skipError
			if errors.As(err, &skip) {
				t.Skipf("%s cannot run here: %s", info.name, skip.reason)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 {
				t.Fatalf("%d results, want one per writer count", len(res))
			}
			for _, r := range res {
				if r.Error != "" || r.Jobs != 8 || r.Changes != 24 || r.JobsPerSec <= 0 || r.ChangeLatency.P50 <= 0 || r.JobLatency.Max <= 0 || r.PeakRSS <= 0 {
					t.Errorf("writers %d: %+v", r.Writers, r)
				}
			}
			if res[0].JobsBefore != 50 || res[1].JobsBefore != 58 {
				t.Errorf("jobs before each level: %d and %d, want 50 and 58", res[0].JobsBefore, res[1].JobsBefore)
			}
		})
	}
}

// The command runs each peer in a child process and reports every figure
// as JSON, with the ratio to secauto; an unknown peer is refused.
func TestRunJSON(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-peers", "secauto,disk-group", "-prefill", "20", "-writers", "2", "-n", "5", "-dir", t.TempDir(), "-o", "json"}, &stderr)
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
	if len(rep.Results) != 2 || rep.Results[0].Peer != "secauto" || rep.Results[0].SecautoRatio != 1 || rep.Results[1].SecautoRatio <= 0 {
		t.Fatalf("results: %+v", rep.Results)
	}
	if rep.Durability["secauto"] == "" || rep.JobsPerRun != 5 {
		t.Errorf("report: %+v", rep)
	}
	if _, err := parseFlags([]string{"-peers", "mysql"}, &stderr); err == nil || !strings.Contains(err.Error(), "unknown peer") {
		t.Errorf("-peers mysql: %v", err)
	}
	if got, _ := parseCounts("1k,100k,1m", "-prefill"); len(got) != 3 || got[2] != 1_000_000 {
		t.Errorf("parseCounts: %v", got)
	}
}

// The table names every peer's durability and says why a peer was skipped.
func TestTable(t *testing.T) {
	rep := &report{CPUs: 2, GoVersion: "go", Dir: "/d", Duration: time.Second,
		Durability: map[string]string{"secauto": "journal"},
		Results:    []result{{Peer: "secauto", Prefill: 1000, Writers: 1, Jobs: 3, JobsPerSec: 3, ChangesPerSec: 9, SecautoRatio: 1}},
		Skipped:    []skipped{{Peer: "river", Prefill: 1000, Reason: "PostgreSQL at x cannot be reached"}}}
	var out bytes.Buffer
	if err := printTable(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"secauto", "1.00×", "journal", "Skipped river (1k jobs pre-filled): PostgreSQL at x cannot be reached"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
