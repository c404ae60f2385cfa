package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// historySpan is how far back the generated history reaches: jobs are
// created evenly over it, oldest first, so they stand for a month of a
// SOC's alerts (the config written keeps them from retention).
const historySpan = 30 * 24 * time.Hour

// historyJob is completed job i of n, created at its place in the span
// ending at end: an enrichment playbook of two steps with its context
// and step results, about 1.4 KB once encoded, as a daemon leaves it
// (the submitted context kept beside the context, the times set).
func historyJob(i int, created time.Time, id string) *job.Job {
	verdicts := [...]string{"malicious", "suspicious", "benign", "unknown"}
	severities := [...]string{"low", "medium", "high", "critical"}
	verdict := verdicts[i%len(verdicts)]
	ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	j := &job.Job{
		ID:        id,
		Status:    job.Pending,
		CreatedAt: created,
		Playbook: []job.Step{
			{Name: "lookup", Action: "http", Params: map[string]any{"method": "GET", "url": "https://intel.example.com/v1/ip/{{.context.ip}}"}, Timeout: "10s"},
			{Name: "note", Action: "set", Params: map[string]any{"verdict": "{{.steps.lookup.body.verdict}}", "score": "{{.steps.lookup.body.score}}"}},
		},
		Context: map[string]any{"ip": ip, "alert_id": fmt.Sprintf("ALRT-%08d", i), "source": "siem", "severity": severities[i/7%len(severities)],
			"raw_event": fmt.Sprintf("fw01 filterlog block in igb0 tcp %s:%d -> 192.168.1.20:443 rule=1000000103 user=%d", ip, 1024+i%60000, i)},
	}
	started := created.Add(3 * time.Millisecond)
	_ = j.Start(started)
	lookedUp := started.Add(180 * time.Millisecond)
	score := 10 + i%90
	j.Results = []job.Result{
		{Step: "lookup", Action: "http", Status: job.StepOK, Output: map[string]any{"status": 200, "body": map[string]any{"verdict": verdict, "score": score, "first_seen": created.Add(-72 * time.Hour).Format(time.RFC3339), "tags": []any{"botnet", "scanner"}}}, StartedAt: started, CompletedAt: &lookedUp},
		{Step: "note", Action: "set", Status: job.StepOK, Output: map[string]any{"verdict": verdict, "score": strconv.Itoa(score)}, StartedAt: lookedUp, CompletedAt: &lookedUp},
	}
	j.Context["verdict"], j.Context["score"] = verdict, strconv.Itoa(score)
	_ = j.Finish(job.Completed, "", lookedUp.Add(time.Millisecond))
	return j
}

// uuidV7At is a version 7 UUID stamped ms (Unix milliseconds), as the
// store makes its ids, with the random bits from r.
func uuidV7At(ms int64, r *rand.Rand) string {
	var u uuid.UUID
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], uint64(ms))
	copy(u[:6], stamp[2:])
	binary.BigEndian.PutUint64(u[8:], r.Uint64())
	a := r.Uint32()
	u[6] = 0x70 | byte(a>>8)&0x0f
	u[7] = byte(a)
	u[8] = u[8]&0x3f | 0x80
	return u.String()
}

// generated is a backup file written by generate.
type generated struct {
	Path    string
	Bytes   int64
	SHA256  string
	Seconds float64
}

// generate writes n completed jobs, created over the historySpan before
// end with ids ascending in time, to a backup file in dir in the format
// of jobs.json (one JSON object keyed by job id, one job a line), with its
// .sha256 beside it as sha256sum writes it. Jobs are encoded on every CPU
// in chunks and written in order; progress is called now and then with
// the jobs written.
func generate(dir string, n int, end time.Time, progress func(done int)) (*generated, error) {
	t0 := time.Now()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	name := store.BackupName(end, false)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, sum)}
	w := bufio.NewWriterSize(cw, 4<<20)

	// The i-th job is created at start + i*step; ids are stamped with the
	// creation millisecond, moved on by one where two would share one.
	start := end.Add(-historySpan)
	step := historySpan / time.Duration(max(n, 1))
	const chunk = 10_000
	chunks := (n + chunk - 1) / chunk
	workers := max(1, runtime.GOMAXPROCS(0))
	type result struct {
		data []byte
		err  error
	}
	out := make([]chan result, chunks)
	for c := range out {
		out[c] = make(chan result, 1)
	}
	sem := make(chan struct{}, workers+1) // chunks encoded ahead of the writer
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		for c := range chunks {
			select {
			case sem <- struct{}{}:
			case <-quit:
				return
			}
			go func() {
				r := rand.New(rand.NewPCG(uint64(c), 0x5eca))
				var b []byte
				var err error
				last := int64(-1)
				for i := c * chunk; i < min(n, (c+1)*chunk); i++ {
					created := start.Add(time.Duration(i) * step)
					ms := created.UnixMilli()
					if ms <= last {
						ms = last + 1
						created = time.UnixMilli(ms).UTC()
					}
					last = ms
					j := historyJob(i, created.UTC(), uuidV7At(ms, r))
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, '\n')
					b = strconv.AppendQuote(b, j.ID)
					b = append(b, ": "...)
					if b, err = job.AppendJSON(b, j); err != nil {
						break
					}
				}
				out[c] <- result{b, err}
			}()
		}
	}()
	w.WriteString("{")
	done := 0
	for c := range chunks {
		r := <-out[c]
		<-sem
		if r.err != nil {
			return nil, r.err
		}
		if _, err := w.Write(r.data); err != nil {
			return nil, err
		}
		done = min(n, done+chunk)
		progress(done)
	}
	w.WriteString("\n}\n")
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	hexsum := hex.EncodeToString(sum.Sum(nil))
	if err := os.WriteFile(path+".sha256", []byte(hexsum+"  "+name+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &generated{Path: path, Bytes: cw.n, SHA256: hexsum, Seconds: time.Since(t0).Seconds()}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
