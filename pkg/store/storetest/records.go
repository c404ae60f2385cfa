package storetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/secauto/secauto/pkg/store"
)

func showRecords(recs []store.Record) string {
	var b strings.Builder
	b.WriteString("[")
	for i, r := range recs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", r.Key, clip(string(r.Value)))
	}
	return b.String() + "]"
}

// sameRecords fails unless got holds want's keys, in key order, with the
// same values (compared as JSON values: a driver may respace them).
func sameRecords(t *testing.T, what string, got, want []store.Record) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Key == want[i].Key && sameValue(got[i].Value, want[i].Value)
	}
	if !ok {
		t.Fatalf("%s:\n got %s\nwant %s", what, showRecords(got), showRecords(want))
	}
}

func (s *suite) records(t *testing.T) {
	s.run(t, "PutAndPrefix", func(t *testing.T) {
		st := s.open(t)
		if recs := st.Records(""); len(recs) != 0 {
			t.Fatalf("a new store holds records %s", showRecords(recs))
		}
		err := st.PutRecords(
			store.Record{Key: "webhook/b", Value: []byte(`{"n":2}`)},
			store.Record{Key: "webhook/a", Value: []byte(`{"n":1}`)},
			store.Record{Key: "webhookx", Value: []byte(`"not under webhook/"`)},
			store.Record{Key: "old/webhook/c", Value: []byte(`"not under webhook/ either"`)},
			store.Record{Key: "schedule/backup", Value: []byte(`"2025-01-01T00:00:00Z"`)},
		)
		if err != nil {
			t.Fatalf("PutRecords: %v", err)
		}
		sameRecords(t, "Records(webhook/)", st.Records("webhook/"), []store.Record{
			{Key: "webhook/a", Value: []byte(`{"n":1}`)},
			{Key: "webhook/b", Value: []byte(`{"n":2}`)},
		})
		sameRecords(t, "Records(\"\")", st.Records(""), []store.Record{
			{Key: "old/webhook/c", Value: []byte(`"not under webhook/ either"`)},
			{Key: "schedule/backup", Value: []byte(`"2025-01-01T00:00:00Z"`)},
			{Key: "webhook/a", Value: []byte(`{"n":1}`)},
			{Key: "webhook/b", Value: []byte(`{"n":2}`)},
			{Key: "webhookx", Value: []byte(`"not under webhook/"`)},
		})
		if recs := st.Records("nothing/"); len(recs) != 0 {
			t.Fatalf("Records(nothing/): %s", showRecords(recs))
		}
		// Replace one, delete another (nil Value), in one call.
		if err := st.PutRecords(
			store.Record{Key: "webhook/a", Value: []byte(`{"n":10}`)},
			store.Record{Key: "webhook/b"},
			store.Record{Key: "webhook/never-stored"},
		); err != nil {
			t.Fatalf("PutRecords replacing and deleting: %v", err)
		}
		sameRecords(t, "Records(webhook/) after replace and delete", st.Records("webhook/"), []store.Record{
			{Key: "webhook/a", Value: []byte(`{"n":10}`)},
		})
		if err := st.PutRecords(); err != nil {
			t.Fatalf("PutRecords of nothing: %v", err)
		}
	})

	s.run(t, "Refused", func(t *testing.T) {
		st := s.open(t)
		for what, recs := range map[string][]store.Record{
			"a value that is not JSON": {{Key: "ok", Value: []byte(`1`)}, {Key: "bad", Value: []byte(`{"open":`)}},
			"an empty key":             {{Key: "ok", Value: []byte(`1`)}, {Key: "", Value: []byte(`1`)}},
		} {
			if err := st.PutRecords(recs...); err == nil {
				t.Errorf("PutRecords of %s succeeded", what)
			}
		}
		if recs := st.Records(""); len(recs) != 0 {
			t.Fatalf("refused PutRecords stored %s", showRecords(recs))
		}
	})

	s.run(t, "Values", func(t *testing.T) {
		st := s.open(t)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		big := strings.Repeat("déjà vu 🔁 ", 20_000)
		values := map[string]any{
			"bytes":   base64.StdEncoding.EncodeToString(all),
			"unicode": "ünïcødé ✓ 日本語 🔥 مرحبا e\u0301",
			"escapes": "nul\x00 bell\x07 quote\" backslash\\ nl\n line\u2028sep </script>",
			"nested":  map[string]any{"a": []any{1.0, "two", nil, true, map[string]any{"b": []any{}}}},
			"large":   big,
			"number":  1e300,
			"null":    nil,
		}
		var recs []store.Record
		for k, v := range values {
			raw, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, store.Record{Key: "v/" + k, Value: raw})
		}
		if err := st.PutRecords(recs...); err != nil {
			t.Fatalf("PutRecords: %v", err)
		}
		got := st.Records("v/")
		if len(got) != len(values) {
			t.Fatalf("Records: %d of %d records", len(got), len(values))
		}
		for _, r := range got {
			want, ok := values[strings.TrimPrefix(r.Key, "v/")]
			if !ok {
				t.Fatalf("unexpected record %s", r.Key)
			}
			var v any
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("record %s reads back as invalid JSON: %v", r.Key, err)
			}
			if g, w := jsonOf(t, v), jsonOf(t, want); g != w {
				t.Fatalf("record %s reads back as\n%s\nwant\n%s", r.Key, clip(g), clip(w))
			}
		}
	})

	s.run(t, "Concurrent", func(t *testing.T) {
		st := s.open(t)
		const n = 32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		var want []store.Record
		for i := range n {
			r := store.Record{Key: fmt.Sprintf("c/%02d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i)}
			want = append(want, r)
			wg.Go(func() { errs <- st.PutRecords(r) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent PutRecords: %v", err)
			}
		}
		sameRecords(t, "Records after concurrent puts", st.Records("c/"), want)
	})
}
