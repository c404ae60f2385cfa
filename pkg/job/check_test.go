package job

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func nested(depth int) any {
	var v any = "leaf"
	for i := range depth {
		if i%2 == 0 {
			v = []any{v}
		} else {
			v = map[string]any{"k": v}
		}
	}
	return v
}

func limitOf(t *testing.T, err error) *LimitError {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimit) {
		t.Fatalf("error %v is not a *LimitError", err)
	}
	return le
}

func TestCheckEncodedSize(t *testing.T) {
	raw, _ := AppendJSON(nil, goodJob())
	if err := CheckEncoded(raw, len(raw)); err != nil {
		t.Fatalf("a job of exactly the limit: %v", err)
	}
	if err := CheckEncoded(raw, 0); err != nil {
		t.Fatalf("no limit: %v", err)
	}
	le := limitOf(t, CheckEncoded(raw, len(raw)-1))
	if le.Limit != "jobs.max_job_bytes" || le.Got != int64(len(raw)) || le.Max != int64(len(raw)-1) {
		t.Fatalf("%+v", le)
	}
	if !strings.Contains(le.Error(), "jobs.max_job_bytes") {
		t.Fatalf("message does not name the limit: %v", le)
	}
}

func TestCheckEncodedDepth(t *testing.T) {
	// The context value sits at depth 3 (job, context, value): a value
	// nested MaxDepth-2 deep makes the job exactly MaxDepth deep.
	j := goodJob()
	j.Context["deep"] = nested(MaxDepth - 2)
	raw, err := AppendJSON(nil, j)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEncoded(raw, 0); err != nil {
		t.Fatalf("a job exactly MaxDepth deep: %v", err)
	}
	if _, err := Decode(raw); err != nil {
		t.Fatalf("a job exactly MaxDepth deep does not decode: %v", err)
	}
	j.Context["deep"] = nested(MaxDepth - 1)
	raw, _ = AppendJSON(nil, j)
	le := limitOf(t, CheckEncoded(raw, 0))
	if le.Limit != "JSON nesting depth" || le.Max != MaxDepth || !strings.Contains(le.Error(), "JSON nesting depth") {
		t.Fatalf("%+v", le)
	}
	// Brackets inside strings are text, not nesting.
	j.Context["deep"] = strings.Repeat("[{", 5*MaxDepth) + `\"[`
	raw, _ = AppendJSON(nil, j)
	if err := CheckEncoded(raw, 0); err != nil {
		t.Fatalf("brackets in a string counted: %v", err)
	}
}

// AppendJSON replaces invalid UTF-8 in context and outputs, so the check
// passes and the job decodes; the same bytes raw are refused.
func TestCheckEncodedUTF8(t *testing.T) {
	j := goodJob()
	j.Context["bad\xffkey"] = "a\xc3(b\xed\xa0\x80c"
	j.Results[0].Output = map[string]any{"body": "\xfe\xff", "list": []any{"\x80"}}
	j.Error = "step \"note\" failed: \xff"
	raw, err := AppendJSON(nil, j)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEncoded(raw, 0); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if _, err := Decode(raw); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"id":"a` + "\xff" + `"}`,
		`{"id":"` + "\xed\xa0\x80" + `"}`, // a surrogate half
		`{"id":"a` + "\x01" + `"}`,        // a raw control character
		"{\"id\":1}\xc3",
	} {
		le := limitOf(t, CheckEncoded([]byte(bad), 0))
		if !strings.Contains(le.Error(), "UTF-8") {
			t.Errorf("%q: %v", bad, le)
		}
	}
}

func TestCheckEncodedNumbers(t *testing.T) {
	for _, ok := range []string{`[1e308]`, `[-1.7976931348623157e308]`, `[1e-400]`, `[0.` + strings.Repeat("9", 400) + `]`, `["1e400"]`} {
		if err := CheckEncoded([]byte(ok), 0); err != nil {
			t.Errorf("%.40s: %v", ok, err)
		}
	}
	for _, bad := range []string{`[1e309]`, `{"a":-2E+400}`, `[1` + strings.Repeat("0", 400) + `]`} {
		if err := CheckEncoded([]byte(bad), 0); err == nil || !strings.Contains(err.Error(), "JSON number magnitude") {
			t.Errorf("%.40s: %v", bad, err)
		}
		// encoding/json cannot decode it either: the limit is real.
		var v any
		if json.Unmarshal([]byte(bad), &v) == nil {
			t.Errorf("%.40s decodes", bad)
		}
	}
	// The only way such a number reaches a job: a json.Number.
	j := goodJob()
	j.Context["n"] = json.Number("1e400")
	raw, err := AppendJSON(nil, j)
	if err != nil {
		t.Fatal(err)
	}
	le := limitOf(t, CheckEncoded(raw, 0))
	if le.Got != 400 {
		t.Errorf("exponent %d, want 400", le.Got)
	}
}

func TestCheckValue(t *testing.T) {
	if err := CheckValue(nested(MaxValueDepth), "v", 0); err != nil {
		t.Fatal(err)
	}
	if le := limitOf(t, CheckValue(nested(MaxValueDepth+1), "v", 0)); le.Limit != LimitDepth {
		t.Fatal(le)
	}
	le := limitOf(t, CheckValue(map[string]any{"a": strings.Repeat("<", 10)}, "playbook value bytes", 50))
	if le.Limit != "playbook value bytes" || le.Got != int64(len(`{"a":"`)+60+1+1) {
		t.Fatalf("%+v", le)
	}
	// The deepest value CheckValue lets through fits anywhere in a job.
	j := goodJob()
	j.Playbook[0].Params["deep"] = nested(MaxValueDepth)
	j.Results[0].Output = map[string]any{"body": nested(MaxValueDepth)}
	raw, _ := AppendJSON(nil, j)
	if err := CheckEncoded(raw, 0); err != nil {
		t.Fatal(err)
	}
}

func TestCheckDepth(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	if le := limitOf(t, CheckDepth([]byte(deep), 10)); le.Got != 100000 || le.Max != 10 {
		t.Fatalf("%+v", le)
	}
	if err := CheckDepth([]byte(`{"a":"[[[[","b":[{}]}`), 3); err != nil {
		t.Fatal(err)
	}
}

// Anything AppendJSON produces is valid JSON that passes CheckEncoded (up
// to its depth) and, for a valid job, decodes with Decode to what
// encoding/json reads.
func FuzzCheckEncoded(f *testing.F) {
	f.Add(`{"a": "b<>&", "c": [1, 2.5e-9, 1e300, null, true, {"d": "\u2028"}]}`, "x\x00\xff", "out\xc3")
	f.Add(`{"x": [[[[{"y": -0.0}]]]]}`, "é", "\ufffd\xed\xa0\x80")
	f.Fuzz(func(t *testing.T, ctx, s, out string) {
		var c map[string]any
		if json.Unmarshal([]byte(ctx), &c) != nil {
			return
		}
		var o any = out
		if json.Unmarshal([]byte(out), &o) != nil {
			o = out
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		name := s
		if name == "" {
			name = "step"
		}
		j := &Job{ID: "id" + s, Status: Failed, Context: c, Error: s, CreatedAt: now, StartedAt: &now, CompletedAt: &now,
			Playbook: []Step{{Name: name, Action: s, Params: c, Timeout: s}},
			Results:  []Result{{Step: name, Action: s, Status: StepFailed, Output: o, Error: s, StartedAt: now, CompletedAt: &now}}}
		raw, err := AppendJSON(nil, j)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(raw) {
			t.Fatalf("not valid JSON: %s", raw)
		}
		if err := CheckEncoded(raw, 0); err != nil {
			if errors.As(err, new(*LimitError)) && strings.Contains(err.Error(), LimitDepth) {
				return
			}
			t.Fatalf("%s: %v", raw, err)
		}
		got, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var want Job
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		a, _ := AppendJSON(nil, got)
		b, _ := AppendJSON(nil, &want)
		if string(a) != string(b) {
			t.Fatalf("Decode and json.Unmarshal differ:\n%s\n%s", a, b)
		}
	})
}

func BenchmarkCheckEncoded(b *testing.B) {
	raw, _ := AppendJSON(nil, goodJob())
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for range b.N {
		if err := CheckEncoded(raw, 16<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONValid(b *testing.B) {
	raw, _ := AppendJSON(nil, goodJob())
	b.SetBytes(int64(len(raw)))
	for range b.N {
		if !json.Valid(raw) {
			b.Fatal("invalid")
		}
	}
}
