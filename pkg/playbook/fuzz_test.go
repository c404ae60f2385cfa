package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// The bounds the fuzz targets run under: small, so that inputs reach them
// often, and a wall-clock allowance far above them, so that only a render
// that ignores its bounds fails.
const (
	fuzzBudget    = 4096
	fuzzTimeout   = 100 * time.Millisecond
	fuzzAllowance = time.Second
)

// fuzzContext is a job context with one of each kind of value a template
// meets, s being the fuzzer's.
func fuzzContext(s string) map[string]any {
	list := make([]any, 100)
	for i := range list {
		list[i] = map[string]any{"i": float64(i), "s": s}
	}
	return map[string]any{
		"s": s, "n": 3.0, "big": 1e9, "f": 1.5, "t": true, "null": nil, "list": list,
		"map": map[string]any{"a": s, "b": []any{s, 2.0}, "c": map[string]any{"d": s}},
	}
}

func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		bomb, spin,
		`{{.context.s}} {{json .context.map}} {{.steps.prev.message}}`,
		`{{range .context.list}}{{range $.context.list}}{{range $.context.list}}{{end}}{{end}}{{end}}`,
		`{{$a := .context.s}}{{range 64}}{{$a = print $a $a}}{{end}}{{len $a}}`,
		`{{$a := printf "%0999999d" 0}}{{range .context.big}}{{$a = printf "%s%s" $a $a}}{{end}}`,
		`{{define "a"}}{{.}}{{end}}{{define "b"}}{{template "a" .}}{{template "a" .}}{{end}}{{range 1000000}}{{template "b" .}}{{end}}`,
		`{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`,
		`{{optional .context.x.y}}{{default "d" .context.null}}{{.context.s | default "p"}}{{optional $.steps.prev.x}}`,
		`{{html .context.s}}{{js .context.s}}{{urlquery .context.s}}{{printf "%q %x %*d" .context.s .context.s 7 1}}`,
		`{{range $i, $e := .context.list}}{{if eq $i 3}}{{break}}{{end}}{{$e.s}}{{end}}`,
		`{{with .context.map}}{{.a}}{{else}}none{{end}}{{slice .context.s 0}}{{index .context.map "b" 1}}`,
	} {
		f.Add(seed, "value")
	}
	f.Add(`{{.context.s}}{{.context.s}}`, "{{")
	f.Fuzz(func(t *testing.T, tpl, s string) {
		if _, err := parseTemplate("params.message", tpl); err != nil {
			return
		}
		steps := []job.Step{logStep("prev", "hello"), logStep("t", tpl)}
		steps[1].Timeout = fuzzTimeout.String()
		rc := &recorder{t: t}
		r := &Runner{MaxRenderBytes: fuzzBudget}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background(), steps, fuzzContext(s), rc.record) }()
		select {
		case <-done:
		case <-time.After(fuzzAllowance + fuzzTimeout):
			t.Fatalf("render under a %s timeout still running after %s", fuzzTimeout, time.Since(start))
		}
		if len(rc.results) != 2 {
			t.Fatalf("results %+v", rc.results)
		}
		res := rc.results[1]
		if res.Status == job.StepOK {
			// A string without actions is a literal, kept as submitted;
			// the budget bounds what templates make.
			msg, _ := res.Output.(map[string]any)["message"].(string)
			if !isTemplate(tpl) && msg != tpl {
				t.Fatalf("literal %q rendered as %q", tpl, msg)
			}
			if isTemplate(tpl) && len(msg) > fuzzBudget {
				t.Fatalf("rendered %d bytes under a budget of %d", len(msg), fuzzBudget)
			}
		}
	})
}

// FuzzSubmission decodes a submission the way the API does and validates
// it under small limits. An accepted playbook must keep them, and, run with
// its http steps left out, must finish soon after its context is done.
func FuzzSubmission(f *testing.F) {
	f.Add(`{"playbook": [{"name": "a", "action": "log", "params": {"message": "{{.context.x}}"}}], "context": {"x": 1}}`)
	f.Add(`{"playbook": [{"name": "a", "action": "sleep", "params": {"duration": "1h"}}, {"name": "b", "action": "set", "params": {"k": "{{range 100000000}}x{{end}}"}}]}`)
	f.Add(`{"playbook": [{"name": "a", "action": "set", "params": {"k": ["{{optional .context.q}}", {"v": "{{.context.k | default 3}}"}]}, "timeout": "1ms"}, {"name": "b", "action": "fail", "params": {"message": "{{.steps.a.keys}}"}, "continue_on_error": true}], "context": {"k": [1, {"z": null}]}}`)
	f.Add(`{"playbook": [{"name": "a", "action": "http", "params": {"url": "http://h/{{.context.x}}"}}], "context": {"x": "` + string(bytes.Repeat([]byte("y"), 5000)) + `"}}`)
	opts := ValidateOptions{MaxSteps: 20, MaxTemplateBytes: 1024, MaxContextBytes: 4096}
	f.Fuzz(func(t *testing.T, body string) {
		var req struct {
			Playbook []job.Step     `json:"playbook"`
			Context  map[string]any `json:"context"`
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return
		}
		if opts.Validate(req.Playbook) != nil || opts.ValidateContext(req.Context) != nil {
			return
		}
		if len(req.Playbook) == 0 || len(req.Playbook) > opts.MaxSteps {
			t.Fatalf("accepted %d steps", len(req.Playbook))
		}
		if raw, _ := json.Marshal(req.Context); req.Context != nil && len(raw) > opts.MaxContextBytes {
			t.Fatalf("accepted a context of %d bytes", len(raw))
		}
		var steps []job.Step
		for _, s := range req.Playbook {
			if s.Action != "http" {
				steps = append(steps, s)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), fuzzTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- (&Runner{MaxRenderBytes: fuzzBudget}).Run(ctx, steps, req.Context, (&recorder{t: t}).record)
		}()
		select {
		case <-done:
		case <-time.After(fuzzAllowance + fuzzTimeout):
			t.Fatalf("run still going %s after its context ended", fuzzAllowance)
		}
	})
}
