package playbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/job"
)

// parseSteps decodes a playbook the way the API does, so params hold
// float64 numbers, []any and map[string]any.
func parseSteps(t testing.TB, js string) []job.Step {
	t.Helper()
	var steps []job.Step
	if err := json.Unmarshal([]byte(js), &steps); err != nil {
		t.Fatalf("bad test playbook: %v\n%s", err, js)
	}
	return steps
}

func TestValidateAcceptsGoodPlaybooks(t *testing.T) {
	tests := []struct {
		name     string
		playbook string
	}{
		{"every action", `[
			{"name": "start", "action": "log", "params": {"message": "alert {{.context.alert_id}}"}},
			{"name": "wait", "action": "sleep", "params": {"duration": "1s"}, "timeout": "5s"},
			{"name": "fetch", "action": "http", "params": {
				"method": "post", "url": "https://intel.example/v1/{{.context.ip}}",
				"headers": {"Authorization": "Bearer {{.context.token}}", "X-Trace": "1"},
				"body": {"ip": "{{.context.ip}}", "tags": ["a", "{{.steps.start.message}}"], "n": 3},
				"timeout": "10s", "allow_status": [404, 409]
			}, "continue_on_error": true},
			{"name": "remember", "action": "set", "params": {"score": "{{.steps.fetch.body.score}}", "raw": {"x": [1, "{{.steps.fetch.status}}"]}}},
			{"name": "stop", "action": "fail", "params": {"message": "score {{.context.score}}"}}
		]`},
		{"step referenced through index and $", `[
			{"name": "geo-ip", "action": "log", "params": {"message": "x"}},
			{"name": "b", "action": "log", "params": {"message": "{{index .steps \"geo-ip\" \"message\"}} {{index $.steps \"geo-ip\"}}"}}
		]`},
		{"steps inside range refers to the element, not the playbook", `[
			{"name": "a", "action": "log", "params": {"message": "{{range .context.items}}{{.steps.later}}{{end}}"}}
		]`},
		{"templated url is checked at run time", `[
			{"name": "a", "action": "http", "params": {"url": "{{.context.url}}"}}
		]`},
		{"body as a plain string", `[
			{"name": "a", "action": "http", "params": {"url": "http://127.0.0.1/", "method": "PUT", "body": "x={{.context.x}}"}}
		]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(parseSteps(t, tt.playbook)); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestValidateRejectsBadPlaybooks(t *testing.T) {
	tests := []struct {
		name     string
		playbook string
		want     []string // substrings of the error, in any order
	}{
		{"no steps", `[]`, []string{"no steps"}},
		{"missing name", `[{"action": "log", "params": {"message": "x"}}]`, []string{"step 1:", "name is missing"}},
		{"blank name", `[{"name": "a", "action": "log", "params": {"message": "x"}}, {"name": "  ", "action": "log", "params": {"message": "x"}}]`,
			[]string{"step 2:", "name is missing"}},
		{"duplicate name", `[{"name": "a", "action": "log", "params": {"message": "x"}}, {"name": "a", "action": "log", "params": {"message": "y"}}]`,
			[]string{`step "a" (2)`, "already used by step 1"}},
		{"missing action", `[{"name": "a"}]`, []string{`step "a" (1)`, "action is missing", "log, sleep, set, http, fail"}},
		{"unknown action", `[{"name": "start", "action": "log", "params": {"message": "x"}}, {"name": "enrich", "action": "foo"}]`,
			[]string{`step "enrich" (2): unknown action "foo"; use one of log, sleep, set, http, fail`}},
		{"step timeout not a duration", `[{"name": "a", "action": "log", "params": {"message": "x"}, "timeout": "soon"}]`,
			[]string{`step "a" (1)`, `timeout "soon" is not a duration`}},
		{"step timeout negative", `[{"name": "a", "action": "log", "params": {"message": "x"}, "timeout": "-1s"}]`,
			[]string{`timeout "-1s" must be positive`}},
		{"log without message", `[{"name": "a", "action": "log"}]`, []string{`step "a" (1)`, "params.message is missing"}},
		{"log message not a string", `[{"name": "a", "action": "log", "params": {"message": 3}}]`,
			[]string{"params.message must be a string, not a number"}},
		{"log unknown param", `[{"name": "a", "action": "log", "params": {"message": "x", "level": "warn"}}]`,
			[]string{`unknown param "level" for action log`}},
		{"log template does not parse", `[{"name": "a", "action": "log", "params": {"message": "{{.context.x"}}]`,
			[]string{`step "a" (1)`, "params.message"}},
		{"log template calls unknown function", `[{"name": "a", "action": "log", "params": {"message": "{{upper .context.x}}"}}]`,
			[]string{`function "upper" not defined`}},
		{"sleep without duration", `[{"name": "a", "action": "sleep"}]`, []string{"params.duration is missing"}},
		{"sleep duration not a duration", `[{"name": "a", "action": "sleep", "params": {"duration": "2 seconds"}}]`,
			[]string{`params.duration "2 seconds" is not a duration`}},
		{"sleep duration a number", `[{"name": "a", "action": "sleep", "params": {"duration": 2}}]`,
			[]string{"params.duration must be a duration string", "not a number"}},
		{"sleep duration negative", `[{"name": "a", "action": "sleep", "params": {"duration": "-2s"}}]`,
			[]string{"must be positive"}},
		{"set without keys", `[{"name": "a", "action": "set"}]`, []string{"set needs at least one key"}},
		{"set with empty key", `[{"name": "a", "action": "set", "params": {"": "x"}}]`, []string{"empty key"}},
		{"set nested template does not parse", `[{"name": "a", "action": "set", "params": {"k": {"inner": ["ok", "{{end}}"]}}}]`,
			[]string{"params.k.inner[1]"}},
		{"http without url", `[{"name": "a", "action": "http", "params": {"method": "GET"}}]`, []string{"params.url is missing"}},
		{"http url not a string", `[{"name": "a", "action": "http", "params": {"url": ["x"]}}]`,
			[]string{"params.url must be a string, not an array"}},
		{"http url empty", `[{"name": "a", "action": "http", "params": {"url": ""}}]`, []string{"params.url is empty"}},
		{"http url other scheme", `[{"name": "a", "action": "http", "params": {"url": "ftp://host/x"}}]`,
			[]string{"http:// or https://"}},
		{"http url without host", `[{"name": "a", "action": "http", "params": {"url": "http:///x"}}]`, []string{"no host"}},
		{"http url does not parse", `[{"name": "a", "action": "http", "params": {"url": "http://a b/%zz"}}]`,
			[]string{"params.url is not a URL"}},
		{"http bad method", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "method": "FETCH"}}]`,
			[]string{`params.method "FETCH" is not an HTTP method`, "GET, HEAD, POST"}},
		{"http method not a string", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "method": true}}]`,
			[]string{"params.method must be a string, not a boolean"}},
		{"http bad timeout", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "timeout": "10"}}]`,
			[]string{`params.timeout "10" is not a duration`}},
		{"http headers not an object", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "headers": "X: y"}}]`,
			[]string{"params.headers must be an object of strings, not a string"}},
		{"http header value not a string", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "headers": {"X-N": 1}}}]`,
			[]string{"params.headers.X-N must be a string, not a number"}},
		{"http header name invalid", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "headers": {"Bad Name": "x"}}}]`,
			[]string{`"Bad Name" is not a valid header name`}},
		{"http header template does not parse", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "headers": {"X": "{{"}}}]`,
			[]string{"params.headers.X"}},
		{"http allow_status not an array", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "allow_status": 404}}]`,
			[]string{"params.allow_status must be an array"}},
		{"http allow_status not integers", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "allow_status": [404, 4.5]}}]`,
			[]string{"params.allow_status[1]"}},
		{"http allow_status out of range", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "allow_status": ["404"]}}]`,
			[]string{"params.allow_status[0] must be an HTTP status code"}},
		{"http unknown param", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "heders": {}}}]`,
			[]string{`unknown param "heders" for action http`}},
		{"http body template does not parse", `[{"name": "a", "action": "http", "params": {"url": "http://h/", "body": {"q": "{{.x"}}}]`,
			[]string{"params.body.q"}},
		{"fail without message", `[{"name": "a", "action": "fail", "params": {}}]`, []string{"params.message is missing"}},
		{"reference to a later step", `[
			{"name": "a", "action": "log", "params": {"message": "{{.steps.b.message}}"}},
			{"name": "b", "action": "log", "params": {"message": "x"}}]`,
			[]string{`step "a" (1)`, `refers to step "b", which does not run before this step`}},
		{"reference to itself", `[{"name": "a", "action": "log", "params": {"message": "{{.steps.a.message}}"}}]`,
			[]string{`refers to step "a"`}},
		{"reference to an unknown step through index", `[
			{"name": "a", "action": "log", "params": {"message": "x"}},
			{"name": "b", "action": "http", "params": {"url": "http://h/{{index .steps \"nope\" \"body\"}}"}}]`,
			[]string{`step "b" (2)`, `params.url refers to step "nope"`}},
		{"reference to an unknown step through $ inside with", `[
			{"name": "a", "action": "log", "params": {"message": "{{with .context.x}}{{$.steps.zz}}{{end}}"}}]`,
			[]string{`refers to step "zz"`}},
		{"reference in an if condition", `[
			{"name": "a", "action": "log", "params": {"message": "{{if .steps.zz}}y{{end}}"}}]`,
			[]string{`refers to step "zz"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(parseSteps(t, tt.playbook))
			if err == nil {
				t.Fatal("Validate accepted the playbook")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateGoValues covers playbooks built in Go rather than decoded from
// JSON: integers arrive as int.
func TestValidateGoValues(t *testing.T) {
	ok := []job.Step{{Name: "a", Action: "http", Params: map[string]any{"url": "http://h/", "allow_status": []any{404, int64(409)}}}}
	if err := Validate(ok); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	bad := []job.Step{{Name: "a", Action: "http", Params: map[string]any{"url": "http://h/", "allow_status": []any{99}}}}
	if err := Validate(bad); err == nil || !strings.Contains(err.Error(), "allow_status[0]") {
		t.Fatalf("Validate = %v, want an allow_status error", err)
	}
}

func deep(n int) any {
	var v any = "leaf"
	for range n {
		v = []any{v}
	}
	return v
}

func TestSubmissionLimits(t *testing.T) {
	steps := func(n int, msg string) []job.Step {
		out := make([]job.Step, n)
		for i := range out {
			out[i] = job.Step{Name: fmt.Sprint("s", i), Action: "log", Params: map[string]any{"message": msg}}
		}
		return out
	}
	long := "{{.context.x}}" + strings.Repeat("y", DefaultMaxTemplateBytes)
	bigCtx := map[string]any{"blob": strings.Repeat("z", DefaultMaxContextBytes)}

	tests := []struct {
		name string
		err  error
		want string // empty: accepted
	}{
		{"steps at the default", Validate(steps(DefaultMaxSteps, "x")), ""},
		{"steps over the default", Validate(steps(DefaultMaxSteps+1, "x")), "steps per playbook exceeded: 201, at most 200 allowed"},
		{"steps over a set limit", ValidateOptions{MaxSteps: 2}.Validate(steps(3, "x")), "steps per playbook exceeded: 3, at most 2 allowed"},
		{"steps limit off", ValidateOptions{MaxSteps: -1}.Validate(steps(1000, "x")), ""},
		{"template over the default", Validate(steps(1, long)),
			`step "s0" (1): params.message: template bytes exceeded: 65550, at most 65536 allowed`},
		{"nested template over a set limit", ValidateOptions{MaxTemplateBytes: 10}.Validate([]job.Step{
			{Name: "a", Action: "set", Params: map[string]any{"k": []any{"{{.context.abcdef}}"}}}}),
			`params.k[0]: template bytes exceeded: 19, at most 10 allowed`},
		{"plain strings are not templates", ValidateOptions{MaxTemplateBytes: 10}.Validate(steps(1, strings.Repeat("p", 100))), ""},
		{"template limit off", ValidateOptions{MaxTemplateBytes: -1}.Validate(steps(1, long)), ""},
		{"context over the default", ValidateOptions{}.ValidateContext(bigCtx), "context bytes exceeded: 1048587, at most 1048576 allowed"},
		{"context over a set limit", ValidateOptions{MaxContextBytes: 10}.ValidateContext(map[string]any{"k": "0123456789"}),
			"context bytes exceeded: 18, at most 10 allowed"},
		{"context limit off", ValidateOptions{MaxContextBytes: -1}.ValidateContext(bigCtx), ""},
		{"no context", ValidateOptions{}.ValidateContext(nil), ""},
		{"context too deep", ValidateOptions{}.ValidateContext(map[string]any{"d": deep(job.MaxValueDepth)}), "context: JSON nesting depth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch {
			case tt.want == "" && tt.err != nil:
				t.Fatalf("refused: %v", tt.err)
			case tt.want == "":
			case tt.err == nil || !strings.Contains(tt.err.Error(), tt.want):
				t.Fatalf("error %v, want %q", tt.err, tt.want)
			case !errors.Is(tt.err, job.ErrLimit):
				t.Fatalf("error %v is not a job.LimitError", tt.err)
			}
		})
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(`[{"name": "a", "action": "log", "params": {"message": "{{.context.x}}"}}]`)
	f.Add(`[{"name": "a", "action": "http", "params": {"url": "http://h/{{index .steps \"b\" 1}}", "allow_status": [1e300, -1]}}]`)
	f.Add(`[{"name": "a", "action": "set", "params": {"k": [{"v": "{{range $.steps}}{{.}}{{end}}"}]}, "timeout": "1h"}]`)
	f.Fuzz(func(t *testing.T, js string) {
		var steps []job.Step
		if json.Unmarshal([]byte(js), &steps) != nil {
			return
		}
		err := Validate(steps)
		if err == nil && len(steps) == 0 {
			t.Fatal("Validate accepted an empty playbook")
		}
	})
}
