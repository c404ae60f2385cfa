package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// benchKeyring is set when $SECAUTO_BENCH_KEYRING is, so that every
// benchmark measures a store with encryption at rest (jobs.encryption_key_file):
//
//	SECAUTO_BENCH_KEYRING=1 go test -run '^$' -bench . ./pkg/store
//
// With SECAUTO_BENCH_KEYRING=both, every benchmark runs twice in turn, as
// sub-benchmarks plain and sealed, so that what encryption costs is the
// ratio of runs made side by side; both-reversed runs sealed first. On a
// busy machine, repeat the run alternating the two (-count repeats each
// sub-benchmark on its own):
//
//	for i in 1 2 3; do for m in both both-reversed; do
//		SECAUTO_BENCH_KEYRING=$m go test -run '^$' -bench . ./pkg/store
//	done; done
var benchKeyring = func() *seal.Keyring {
	if os.Getenv("SECAUTO_BENCH_KEYRING") == "" {
		return nil
	}
	return benchKey
}()

var benchKey = func() *seal.Keyring {
	kr, err := seal.New(bytes.Repeat([]byte{0x5e}, seal.KeySize))
	if err != nil {
		panic(err)
	}
	return kr
}()

// benchModes runs bench, or with SECAUTO_BENCH_KEYRING=both runs it as
// sub-benchmarks plain and sealed.
func benchModes(b *testing.B, bench func(b *testing.B)) {
	type mode struct {
		name string
		kr   *seal.Keyring
	}
	var modes []mode
	switch os.Getenv("SECAUTO_BENCH_KEYRING") {
	case "both":
		modes = []mode{{"plain", nil}, {"sealed", benchKey}}
	case "both-reversed":
		modes = []mode{{"sealed", benchKey}, {"plain", nil}}
	default:
		bench(b)
		return
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			benchKeyring = m.kr
			bench(b)
		})
	}
}

// benchJob is a job of about 1.5 KB, the size of a typical enrichment
// playbook with a few results.
func benchJob(i int) *job.Job {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	j := &job.Job{
		Playbook: []job.Step{
			{Name: "lookup", Action: "http", Params: map[string]any{"method": "GET", "url": "https://intel.example.com/v1/ip/{{.context.ip}}", "headers": map[string]any{"Accept": "application/json"}}, Timeout: "10s"},
			{Name: "note", Action: "set", Params: map[string]any{"verdict": "{{.steps.lookup.body.verdict}}", "score": "{{.steps.lookup.body.score}}"}},
			{Name: "report", Action: "log", Params: map[string]any{"message": "ip {{.context.ip}} verdict {{.context.verdict}}"}},
		},
		Context: map[string]any{"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "alert_id": fmt.Sprintf("ALRT-%08d", i), "source": "siem", "severity": "high", "analyst": "soc-tier1",
			"raw_event": fmt.Sprintf("<134>1 2026-01-01T00:00:00Z fw01 filterlog - - 5,,,1000000103,igb0,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,10.%d.%d.%d,192.168.1.20,51234,443,0,S,1234567890,,64240,,mss;sackOK;TS;nop;wscale user=%d", i>>16&255, i>>8&255, i&255, i)},
		Results: []job.Result{
			{Step: "lookup", Action: "http", Status: job.StepOK, Output: map[string]any{"status": 200, "body": map[string]any{"verdict": "malicious", "score": 87, "first_seen": "2025-12-01T10:00:00Z", "tags": []any{"botnet", "scanner"}}}, StartedAt: started, CompletedAt: &started},
			{Step: "note", Action: "set", Status: job.StepOK, Output: map[string]any{"verdict": "malicious", "score": "87"}, StartedAt: started, CompletedAt: &started},
		},
	}
	return j
}

func BenchmarkCreate(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchModes(b, func(b *testing.B) {
				s, err := Open(Options{Dir: b.TempDir(), SnapshotInterval: -1, Keyring: benchKeyring})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				jobs := make([]*job.Job, 64)
				for i := range jobs {
					jobs[i] = benchJob(i)
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := range writers {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if _, err := s.Create(jobs[w]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
				st := s.Stats()
				b.ReportMetric(float64(st.SyncedChanges)/float64(st.Syncs), "changes/fsync")
				b.ReportMetric(float64(st.SyncTime.Microseconds())/float64(st.Syncs), "µs/fsync")
			})
		})
	}
}

// writeFixture writes a jobs.json of n benchJobs straight to dir, the way a
// long-running store leaves it, and returns its size.
func writeFixture(b *testing.B, dir string, n int) (int64, []string) {
	b.Helper()
	items := make([]keyed, n)
	ids := make([]string, n)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		j := benchJob(i)
		j.ID = uuid.Must(uuid.NewV7()).String()
		j.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
		j.Status = job.Completed
		j.StartedAt = &j.CreatedAt
		j.CompletedAt = &j.CreatedAt
		var e *entry
		var err error
		if benchKeyring != nil {
			e, err = encodeSealed(j, benchKeyring, nil, DefaultMaxJobBytes)
		} else {
			e, err = encodeJob(j, DefaultMaxJobBytes)
		}
		if err != nil {
			b.Fatal(err)
		}
		items[i] = keyed{j.ID, e}
		ids[i] = j.ID
	}
	path := filepath.Join(dir, SnapshotFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	// As secauto writes it, with jobs.json.sum: the common case. A file
	// placed by hand is checked job by job against the schema instead
	// (BenchmarkOpenHandPlaced).
	if _, _, err := writeJobsFile(fsys.OS, dir, items, nil); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	return st.Size(), ids
}

// BenchmarkUpdateLatency measures one durable update (a job starting) with
// stores of different sizes; it should not depend on the size.
func BenchmarkUpdateLatency(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			benchModes(b, func(b *testing.B) {
				dir := b.TempDir()
				writeFixture(b, dir, n)
				s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Keyring: benchKeyring})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ids := make([]string, b.N)
				for i := range ids {
					j, err := s.Create(benchJob(i))
					if err != nil {
						b.Fatal(err)
					}
					ids[i] = j.ID
				}
				b.ResetTimer()
				for i := range b.N {
					if _, err := s.Update(ids[i], func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

const openChildEnv = "SECAUTO_STORE_OPEN_CHILD"

func init() {
	// The open benchmark measures a fresh process so peak memory is the
	// store's own.
	if dir := os.Getenv(openChildEnv); dir != "" {
		start := time.Now()
		s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Keyring: benchKeyring})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		took := time.Since(start)
		fmt.Println("jobs", s.Stats().Jobs, "seconds", took.Seconds(), "peak_kb", peakKB())
		s.Close()
		os.Exit(0)
	}
}

func peakKB() int {
	data, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// BenchmarkOpen opens stores of 100k and 1M jobs in a child process and
// reports the open time and the process's peak resident memory against the
// size of jobs.json.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			benchModes(b, func(b *testing.B) {
				dir := b.TempDir()
				size, _ := writeFixture(b, dir, n)
				exe, _ := os.Executable()
				var secs, peak float64
				b.ResetTimer()
				for range b.N {
					cmd := exec.Command(exe, "-test.run=^$")
					mode := ""
					if benchKeyring != nil {
						mode = "1"
					}
					cmd.Env = append(os.Environ(), openChildEnv+"="+dir, "SECAUTO_BENCH_KEYRING="+mode)
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("%v: %s", err, out)
					}
					var jobs, kb int
					var s float64
					if _, err := fmt.Sscanf(string(out), "jobs %d seconds %g peak_kb %d", &jobs, &s, &kb); err != nil || jobs != n {
						b.Fatalf("child said %q", out)
					}
					secs += s
					peak = max(peak, float64(kb)/1024)
				}
				b.ReportMetric(secs/float64(b.N), "open-s")
				b.ReportMetric(peak, "peak-MB")
				b.ReportMetric(float64(size)/(1<<20), "data-MB")
				b.ReportMetric(peak/(float64(size)/(1<<20)), "peak/data")
			})
		})
	}
}

// BenchmarkOpenHandPlaced opens a jobs.json of 100k jobs with no
// jobs.json.sum, as after an operator copied a file in by hand: every job is
// checked against the whole job schema.
func BenchmarkOpenHandPlaced(b *testing.B) {
	benchModes(b, func(b *testing.B) {
		dir := b.TempDir()
		writeFixture(b, dir, 100_000)
		os.Remove(filepath.Join(dir, snapshotSumFile))
		b.ResetTimer()
		for range b.N {
			s, err := Open(Options{Dir: dir, ReadOnly: true, Keyring: benchKeyring})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}

// BenchmarkSnapshot writes jobs.json for a store of 100k jobs.
func BenchmarkSnapshot(b *testing.B) {
	benchModes(b, func(b *testing.B) {
		dir := b.TempDir()
		writeFixture(b, dir, 100_000)
		s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Keyring: benchKeyring})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ResetTimer()
		for range b.N {
			if err := s.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkList is `jobs list --limit 50` over 100k jobs.
func BenchmarkList(b *testing.B) {
	benchModes(b, func(b *testing.B) {
		dir := b.TempDir()
		writeFixture(b, dir, 100_000)
		s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Keyring: benchKeyring})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ResetTimer()
		for range b.N {
			if js, err := s.List(Filter{Limit: 50}); err != nil || len(js) != 50 {
				b.Fatal(err)
			}
		}
		_ = rand.IntN
	})
}
