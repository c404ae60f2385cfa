package main

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
)

// newJob is a pending job of about 1.5 KB once encoded, the size of a
// typical enrichment playbook with a few results: the job pkg/store's own
// benchmarks write (benchJob in pkg/store/bench_test.go).
func newJob(i int) *job.Job {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return &job.Job{
		Status: job.Pending,
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
}

// newIDJob is newJob with an id and a creation time, as a store assigns
// them, for the peers that keep jobs as opaque bytes.
func newIDJob(i int) *job.Job {
	j := newJob(i)
	j.ID = uuid.Must(uuid.NewV7()).String()
	j.CreatedAt = time.Now().UTC()
	return j
}

// prefillJob is a completed job for pre-filling a store, as a long history
// holds them.
func prefillJob(i int, base time.Time) *job.Job {
	j := newJob(i)
	j.ID = uuid.Must(uuid.NewV7()).String()
	j.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
	_ = j.Start(j.CreatedAt)
	_ = j.Finish(job.Completed, "", j.CreatedAt)
	return j
}

// lifecycle walks j through the workload's three durable changes: written
// pending, then running, then completed. put makes one state of j durable.
func lifecycle(j *job.Job, put func(*job.Job, bool) error, lat *[]time.Duration) error {
	t0 := time.Now()
	if err := put(j, true); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	t1 := time.Now()
	if err := j.Start(t1); err != nil {
		return err
	}
	if err := put(j, false); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	t2 := time.Now()
	if err := j.Finish(job.Completed, "", t2); err != nil {
		return err
	}
	if err := put(j, false); err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	t3 := time.Now()
	*lat = append(*lat, t1.Sub(t0), t2.Sub(t1), t3.Sub(t2))
	return nil
}

// encode is the job's JSON as secauto stores it.
func encode(j *job.Job) []byte {
	b, err := job.AppendJSON(nil, j)
	if err != nil {
		panic(err)
	}
	return b
}
