package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/fsys/crashfs"
)

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(seedJobs))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"a": {"id": "a", "status": "pending", "created_at": "2025-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"a\u0041": 1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("{\n\"a\": {\"id\": \"a\", \"status\": \"pending\", \"created_at\": \"2025-01-01T00:00:00Z\"},\n\"b\": {\"id\": \"b\", \"status\": \"pending\", \"created_at\": \"2025-01-01T00:00:00Z\"}\n}\n"))
	f.Add([]byte("{\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		jobs, problems, err := decodeSnapshot(data, nil)
		checkStreamedAgrees(t, data, jobs, problems, err)
		var ref map[string]json.RawMessage
		refErr := json.Unmarshal(data, &ref)
		if err == nil && len(problems) == 0 {
			if refErr != nil {
				t.Fatalf("accepted what encoding/json rejects: %v", refErr)
			}
			if len(ref) != len(jobs) {
				t.Fatalf("%d jobs, encoding/json sees %d keys", len(jobs), len(ref))
			}
			var buf bytes.Buffer
			items := make([]keyed, 0, len(jobs))
			for id, e := range jobs {
				items = append(items, keyed{id, e})
			}
			if _, err := writeSnapshot(&buf, items, nil, nil); err != nil {
				t.Fatal(err)
			}
			back, problems, err := decodeSnapshot(buf.Bytes(), nil)
			if err != nil || len(problems) > 0 || len(back) != len(jobs) {
				t.Fatalf("rewritten snapshot does not load: %v %v", err, problems)
			}
		}
		if refErr != nil && err == nil && len(problems) == 0 {
			t.Fatal("invalid JSON accepted")
		}
	})
}

// checkStreamedAgrees holds the streaming reader, for a file it takes as
// in its layout, to what the whole-file parse found: the same jobs, with
// the same bytes, and the same problems.
func checkStreamedAgrees(t *testing.T, data []byte, jobs map[string]*entry, problems []jobProblem, err error) {
	t.Helper()
	c := crashfs.New()
	if werr := fsys.WriteNewFile(c, "/jobs.json", fileMode, data); werr != nil {
		t.Fatal(werr)
	}
	sf, oerr := openSnapFile(c, "/jobs.json")
	if oerr != nil {
		t.Fatal(oerr)
	}
	sjobs, sproblems, ok, rerr := readSnapshotLines(sf, int64(len(data)), nil)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !ok {
		return
	}
	if err != nil {
		t.Fatalf("streamed read accepts what the whole parse rejects (%v)", err)
	}
	if len(sjobs) != len(jobs) || len(sproblems) != len(problems) {
		t.Fatalf("streamed: %d jobs, %d problems; whole: %d jobs, %d problems", len(sjobs), len(sproblems), len(jobs), len(problems))
	}
	for id, e := range jobs {
		se, found := sjobs[id]
		if !found {
			t.Fatalf("job %q not streamed", id)
		}
		got, berr := se.bytes()
		if berr != nil || !bytes.Equal(got, e.raw) || se.status != e.status || se.created != e.created {
			t.Fatalf("job %q streamed as %q (%v), whole as %q", id, got, berr, e.raw)
		}
	}
	for i := range problems {
		if problems[i].id != sproblems[i].id {
			t.Fatalf("problem %d: streamed %q, whole %q", i, sproblems[i].id, problems[i].id)
		}
	}
}

// FuzzScanJobMeta holds the one-pass scanner to encoding/json's verdict and
// decoding.
func FuzzScanJobMeta(f *testing.F) {
	f.Add([]byte(`{"id": "a", "status": "pending", "created_at": "2025-01-01T00:00:00Z", "context": {"x": [1, 2.5e3, -0, true, null, "\u00e9\n"]}}`))
	f.Add([]byte(`{"ID": "a", "id": "b", "started_at": null, "completed_at": "2025-01-01T00:00:00.5+02:00"}`))
	f.Add([]byte(`{"id": 5}`))
	f.Add([]byte(`{"a": 01}`))
	f.Add([]byte(`{"a": "\x01"}`))
	f.Add([]byte(`{} x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := scanJobMeta(data)
		var want jobMeta
		wantErr := json.Unmarshal(data, &want)
		isObj := len(bytes.TrimLeft(data, " \t\r\n")) > 0 && bytes.TrimLeft(data, " \t\r\n")[0] == '{'
		if !isObj {
			if err == nil {
				t.Fatalf("accepted a non-object: %q", data)
			}
			return
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("scanner error %v, encoding/json error %v, for %q", err, wantErr, data)
		}
		if err != nil {
			return
		}
		if got.ID != want.ID || got.Status != want.Status || !got.CreatedAt.Equal(want.CreatedAt) ||
			!eqTime(got.StartedAt, want.StartedAt) || !eqTime(got.CompletedAt, want.CompletedAt) {
			t.Fatalf("scanner read %+v, encoding/json %+v, from %q", got, want, data)
		}
	})
}

func eqTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func TestUnquoteRejectsWhatJSONRejects(t *testing.T) {
	for _, s := range []string{"\"a\tb\"", "\"é\tb\"", "\"a\\qb\"", "\"\\u00zz\""} {
		if _, err := unquote([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for s, want := range map[string]string{`"abc"`: "abc", `"é"`: "é", `"a\nb"`: "a\nb", "\"\xff\"": "\ufffd"} {
		if got, err := unquote([]byte(s)); err != nil || got != want {
			t.Errorf("%q: %q %v", s, got, err)
		}
	}
}
