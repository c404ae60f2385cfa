package job

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func sampleJob() *Job {
	t0 := time.Date(2025, 7, 9, 15, 30, 0, 123456789, time.UTC)
	t1 := t0.Add(time.Second)
	return &Job{
		ID: "01900000-0000-7000-8000-000000000001", Status: Failed,
		Playbook: []Step{
			{Name: "fetch", Action: "http", Params: map[string]any{"url": "https://x/{{.context.ip}}?a=1&b=<2>", "headers": map[string]any{"Accept": "application/json"}}, Timeout: "5s", ContinueOnError: true},
			{Name: "note", Action: "log"},
		},
		Context: map[string]any{"ip": "10.0.0.1", "n": 3.0, "big": 1e21, "small": 1e-7, "list": []any{true, nil, "é\u2028\x01\"\\", 12.5}, "nested": map[string]any{"z": 1.0, "a": []any{}}, "num": json.Number("42")},
		Results: []Result{
			{Step: "fetch", Action: "http", Status: "ok", Output: map[string]any{"status": 200, "headers": map[string]string{"X": "y"}, "body": map[string]any{"v": "\xff"}}, StartedAt: t0, CompletedAt: &t1},
			{Step: "note", Action: "log", Status: "failed", Output: nil, Error: "boom", StartedAt: t1},
		},
		Error: "step \"note\" failed: boom", CreatedAt: t0, StartedAt: &t0, CompletedAt: &t1,
		OnInterrupt: OnInterruptRetry, MaxAttempts: 4, Attempts: 2,
		SubmittedContext: map[string]any{"ip": "10.0.0.1", "list": []any{"<&>"}},
		RerunOf:          "0197f0a1-<&>", Reruns: []string{"r1", "r2\u2028"},
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, j := range []*Job{sampleJob(), {ID: "x", Status: Pending}, {ID: "y", Context: map[string]any{}, Playbook: []Step{}, Results: []Result{}, SubmittedContext: map[string]any{}}} {
		want, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add(`{"a": "b<>&", "c": [1, 2.5e-9, 1e300, null, true, {"d": "\u2028"}]}`, "x\x00\xff")
	f.Fuzz(func(t *testing.T, ctx string, s string) {
		var c map[string]any
		if json.Unmarshal([]byte(ctx), &c) != nil {
			return
		}
		j := &Job{ID: s, Status: Status(s), Context: c, Error: s, Playbook: []Step{{Name: s, Params: c}}, SubmittedContext: c}
		want, err := json.Marshal(j)
		if err != nil {
			return // encoding/json refuses it too (NaN cannot come from JSON, but keep the guard)
		}
		got, err := AppendJSON(nil, j)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%v\n got %s\nwant %s", err, got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	j := sampleJob()
	var buf []byte
	for range b.N {
		buf, _ = AppendJSON(buf[:0], j)
	}
}

func BenchmarkMarshal(b *testing.B) {
	j := sampleJob()
	for range b.N {
		json.Marshal(j)
	}
}
