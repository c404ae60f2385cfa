package job

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// goodJob is a failed job that uses every field.
func goodJob() *Job {
	j := sampleJob()
	j.Results[1].CompletedAt = &j.Results[1].StartedAt
	return j
}

// mutated returns goodJob's JSON with fn applied to its generic form.
func mutated(t *testing.T, fn func(m map[string]any)) []byte {
	t.Helper()
	raw, err := AppendJSON(nil, goodJob())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func result(m map[string]any, i int) map[string]any {
	return m["results"].([]any)[i].(map[string]any)
}

func step(m map[string]any, i int) map[string]any {
	return m["playbook"].([]any)[i].(map[string]any)
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, j := range []*Job{goodJob(), {ID: "p", Status: Pending, CreatedAt: time.Unix(1, 0).UTC()},
		{ID: "e", Status: Pending, CreatedAt: time.Unix(1, 0).UTC(), SubmittedContext: map[string]any{}}} {
		raw, err := AppendJSON(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		// Decode agrees with encoding/json on a valid job.
		var want Job
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("Decode and json.Unmarshal differ:\n got %+v\nwant %+v", got, &want)
		}
	}
}

func TestDecodeAccepts(t *testing.T) {
	created := `"created_at":"2025-07-09T15:30:00Z"`
	for _, raw := range []string{
		// null and absent containers and optional fields
		`{"id":"a","status":"pending","playbook":null,"context":null,"results":null,"error":"",` + created + `,"started_at":null,"completed_at":null,"on_interrupt":null,"max_attempts":null,"attempts":null}`,
		`{"id":"a","status":"pending",` + created + `}`,
		// unknown keys are kept out, not refused
		`{"id":"a","status":"pending",` + created + `,"labels":["b"],"node":{"x":1}}`,
		// the rerun links, absent in earlier releases' jobs
		`{"id":"a","status":"pending",` + created + `,"rerun_of":"b","reruns":["c","d"]}`,
		`{"id":"a","status":"pending",` + created + `,"rerun_of":null,"reruns":null}`,
		// an offset other than Z is the same instant
		`{"id":"a","status":"cancelled","created_at":"2025-07-09T17:30:00+02:00","completed_at":"2025-07-09T15:30:00Z","error":"cancelled by request"}`,
		// indented, with escapes in keys and values
		"{\n  \"\\u0069d\": \"a\\n\",\n  \"status\": \"running\",\n  " + created + ",\n  \"started_at\": \"2025-07-09T15:30:00.5Z\",\n  \"playbook\": [ {\"name\": \"x\", \"params\": null, \"continue_on_error\": false} ],\n  \"results\": [ {\"step\": \"x\", \"status\": \"ok\", \"output\": [1, {\"a\": null}], \"started_at\": \"2025-07-09T15:30:01Z\", \"completed_at\": null} ]\n}",
	} {
		if _, err := Decode([]byte(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// Each case breaks one field of an otherwise valid job; the error must
// name that field.
func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(m map[string]any)
		want string
	}{
		{"status number", func(m map[string]any) { m["status"] = 5 }, "status must be a string"},
		{"status null", func(m map[string]any) { m["status"] = nil }, "status must be a string"},
		{"status unknown", func(m map[string]any) { m["status"] = "paused" }, "unknown status"},
		{"id number", func(m map[string]any) { m["id"] = 1 }, "id must be a string"},
		{"id missing", func(m map[string]any) { delete(m, "id") }, "no id"},
		{"results string", func(m map[string]any) { m["results"] = "x" }, "results must be an array"},
		{"result not object", func(m map[string]any) { m["results"] = []any{1} }, "results[0] must be an object"},
		{"playbook object", func(m map[string]any) { m["playbook"] = map[string]any{} }, "playbook must be an array"},
		{"context array", func(m map[string]any) { m["context"] = []any{} }, "context must be an object"},
		{"context string", func(m map[string]any) { m["context"] = "x" }, "context must be an object"},
		{"reruns string", func(m map[string]any) { m["reruns"] = "b" }, "reruns must be an array"},
		{"reruns number", func(m map[string]any) { m["reruns"] = []any{1} }, "reruns[0] must be a string"},
		{"reruns itself", func(m map[string]any) { m["reruns"] = []any{m["id"]} }, "reruns[0]"},
		{"reruns twice", func(m map[string]any) { m["reruns"] = []any{"b", "b"} }, "reruns[1] \"b\" is already reruns[0]"},
		{"rerun_of number", func(m map[string]any) { m["rerun_of"] = 1 }, "rerun_of must be a string"},
		{"rerun_of itself", func(m map[string]any) { m["rerun_of"] = m["id"] }, "rerun_of names the job itself"},
		{"submitted_context array", func(m map[string]any) { m["submitted_context"] = []any{} }, "submitted_context must be an object"},
		{"error null", func(m map[string]any) { m["error"] = nil }, "error must be a string"},
		{"error on completed", func(m map[string]any) { m["status"] = "completed" }, "error is set on a completed job"},
		{"created_at words", func(m map[string]any) { m["created_at"] = "yesterday" }, `created_at "yesterday" is not an RFC 3339 time`},
		{"created_at null", func(m map[string]any) { m["created_at"] = nil }, "created_at must be a string"},
		{"created_at missing", func(m map[string]any) { delete(m, "created_at") }, "created_at is missing"},
		{"created_at number", func(m map[string]any) { m["created_at"] = 1752075000 }, "created_at must be a string"},
		{"created_at no zone", func(m map[string]any) { m["created_at"] = "2025-07-09T15:30:00" }, "created_at"},
		{"started_at date only", func(m map[string]any) { m["started_at"] = "2025-07-09" }, "started_at"},
		{"completed_at bool", func(m map[string]any) { m["completed_at"] = true }, "completed_at must be a string"},
		{"started before created", func(m map[string]any) { m["started_at"] = "2025-07-09T15:29:59Z" }, "started_at 2025-07-09T15:29:59Z is before created_at"},
		{"completed before started", func(m map[string]any) { m["completed_at"] = "2025-07-09T15:30:00Z" }, "completed_at 2025-07-09T15:30:00Z is before started_at"},
		{"terminal without completed_at", func(m map[string]any) { delete(m, "completed_at") }, "failed job has no completed_at"},
		{"failed never started", func(m map[string]any) { delete(m, "started_at") }, "failed job has no started_at"},
		{"pending started", func(m map[string]any) {
			m["status"], m["error"] = "pending", ""
			delete(m, "completed_at")
		}, "pending job has a started_at"},
		{"running completed", func(m map[string]any) { m["status"], m["error"] = "running", "" }, "running job has a completed_at"},
		{"on_interrupt unknown", func(m map[string]any) { m["on_interrupt"] = "ignore" }, "on_interrupt"},
		{"on_interrupt number", func(m map[string]any) { m["on_interrupt"] = 1 }, "on_interrupt must be a string"},
		{"attempts fraction", func(m map[string]any) { m["attempts"] = 1.5 }, "attempts must be a whole number"},
		{"attempts string", func(m map[string]any) { m["attempts"] = "2" }, "attempts must be a whole number"},
		{"attempts negative", func(m map[string]any) { m["attempts"] = -1 }, "attempts is negative"},
		{"max_attempts huge", func(m map[string]any) { m["max_attempts"] = 1e30 }, "max_attempts must be a whole number"},
		{"step name number", func(m map[string]any) { step(m, 0)["name"] = 7 }, "playbook[0].name must be a string"},
		{"step name empty", func(m map[string]any) { step(m, 1)["name"] = "" }, "playbook[1].name is empty"},
		{"step names repeat", func(m map[string]any) { step(m, 1)["name"] = "fetch" }, `playbook[1].name "fetch" is already the name of playbook[0]`},
		{"step params array", func(m map[string]any) { step(m, 0)["params"] = []any{} }, "playbook[0].params must be an object"},
		{"step timeout number", func(m map[string]any) { step(m, 0)["timeout"] = 5 }, "playbook[0].timeout must be a string"},
		{"step continue string", func(m map[string]any) { step(m, 0)["continue_on_error"] = "yes" }, "playbook[0].continue_on_error must be true or false"},
		{"result status unknown", func(m map[string]any) { result(m, 0)["status"] = "done" }, `results[0].status "done" is not ok, failed or skipped`},
		{"result status null", func(m map[string]any) { result(m, 0)["status"] = nil }, "results[0].status must be a string"},
		{"result step missing", func(m map[string]any) { delete(result(m, 1), "step") }, "results[1].step is empty"},
		{"result steps repeat", func(m map[string]any) { result(m, 1)["step"] = "fetch" }, `results[1].step "fetch" is already the step of results[0]`},
		{"result error on ok", func(m map[string]any) { result(m, 0)["error"] = "x" }, "results[0].error is set on an ok result"},
		{"result error number", func(m map[string]any) { result(m, 1)["error"] = 3 }, "results[1].error must be a string"},
		{"result started missing", func(m map[string]any) { delete(result(m, 0), "started_at") }, "results[0].started_at is missing"},
		{"result started words", func(m map[string]any) { result(m, 0)["started_at"] = "now" }, `results[0].started_at "now" is not an RFC 3339 time`},
		{"result completed before started", func(m map[string]any) { result(m, 0)["completed_at"] = "2025-07-09T15:29:00Z" }, "results[0].completed_at 2025-07-09T15:29:00Z is before its started_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := mutated(t, tc.fn)
			_, err := Decode(raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s\n error %v, want one naming %q", raw, err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRefusesRaw(t *testing.T) {
	created := `"created_at":"2025-07-09T15:30:00Z"`
	for _, tc := range []struct{ raw, want string }{
		{`{"id":"a","id":"b","status":"pending",` + created + `}`, `job has the key "id" twice`},
		{`{"ID":"a","status":"pending",` + created + `}`, "no id"},
		{`{"id":"a","Status":"running","status":"pending",` + created + `}`, ""},
		{`[]`, "job must be an object"},
		{`"x"`, "job must be an object"},
		{`{"id":"a",}`, "not valid JSON"},
		{`{"id":"a"} {}`, "not valid JSON"},
		{``, "not valid JSON"},
		{`{"id":"a","status":"pending",` + created + `,"context":{"n":1e400}}`, "JSON number magnitude"},
		{"{\"id\":\"a\xff\",\"status\":\"pending\"," + created + "}", "UTF-8"},
		{`{"id":"a","status":"pending",` + created + `,"context":{"x":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}}`, "JSON nesting depth"},
	} {
		_, err := Decode([]byte(tc.raw))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.raw, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.80s: %v, want %q", tc.raw, err, tc.want)
		}
	}
}

// What the product writes passes: Start, Finish and Requeue keep a job
// valid even when the wall clock steps back between them.
func TestLifecycleStaysValid(t *testing.T) {
	created := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	check := func(j *Job) {
		t.Helper()
		if err := j.Validate(); err != nil {
			t.Fatalf("%s: %v", j.Status, err)
		}
		raw, err := AppendJSON(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if !reflect.DeepEqual(got.StartedAt, j.StartedAt) || !got.CreatedAt.Equal(j.CreatedAt) {
			t.Fatalf("times changed: %+v", got)
		}
	}
	j := &Job{ID: "a", Status: Pending, CreatedAt: created, Playbook: []Step{{Name: "s", Action: "log"}}, Context: map[string]any{}, Results: []Result{}}
	check(j)
	if err := j.Start(created.Add(-time.Hour)); err != nil { // the clock stepped back
		t.Fatal(err)
	}
	if !j.StartedAt.Equal(created) {
		t.Fatalf("started_at %v, want the creation time", j.StartedAt)
	}
	check(j)
	if err := j.Requeue(); err != nil {
		t.Fatal(err)
	}
	check(j)
	if err := j.Start(created.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	j.Results = append(j.Results, Result{Step: "s", Action: "log", Status: StepOK, StartedAt: created.Add(time.Minute)})
	if err := j.Finish(Failed, "step \"s\" failed", created.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !j.CompletedAt.Equal(*j.StartedAt) {
		t.Fatalf("completed_at %v before started_at %v", j.CompletedAt, j.StartedAt)
	}
	check(j)

	p := &Job{ID: "b", Status: Pending, CreatedAt: created}
	if err := p.Finish(Cancelled, "cancelled by request", created.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	check(p)
	c := &Job{ID: "c", Status: Pending, CreatedAt: created}
	_ = c.Start(created)
	if err := c.Finish(Completed, "ignored", created); err != nil || c.Error != "" {
		t.Fatalf("completed job kept an error: %v %q", err, c.Error)
	}
	check(c)
}

func TestValidateManySteps(t *testing.T) {
	now := time.Now().UTC()
	j := &Job{ID: "a", Status: Pending, CreatedAt: now}
	for i := range 100 {
		j.Playbook = append(j.Playbook, Step{Name: strings.Repeat("x", i+1)})
	}
	if err := j.Validate(); err != nil {
		t.Fatal(err)
	}
	j.Playbook[99].Name = "xxx"
	if err := j.Validate(); err == nil || !strings.Contains(err.Error(), "playbook[99]") {
		t.Fatalf("repeated name in a long playbook: %v", err)
	}
}

func BenchmarkValidate(b *testing.B) {
	j := goodJob()
	b.ReportAllocs()
	for range b.N {
		if err := j.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw, _ := AppendJSON(nil, goodJob())
	b.SetBytes(int64(len(raw)))
	for range b.N {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
