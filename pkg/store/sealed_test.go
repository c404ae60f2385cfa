package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

func keyring(t testing.TB, bs ...byte) *seal.Keyring {
	t.Helper()
	var keys [][]byte
	for _, b := range bs {
		keys = append(keys, bytes.Repeat([]byte{b}, seal.KeySize))
	}
	kr, err := seal.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func openKeyed(t testing.TB, dir string, kr *seal.Keyring) *FileStore {
	t.Helper()
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Keyring: kr})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

const (
	ctxSecret = "CTX-SECRET-7f3e"
	subSecret = "SUBMITTED-SECRET-91aa"
	outSecret = "OUTPUT-SECRET-c0de"
	recSecret = "RECORD-SECRET-5eed"
)

// secretJob creates a job and runs it to completion with a result whose
// output, and a set that changes its context, hold secrets.
func secretJob(t *testing.T, s *FileStore) *job.Job {
	t.Helper()
	j := mustCreate(t, s, &job.Job{
		Playbook: []job.Step{{Name: "lookup", Action: "log", Params: map[string]any{"message": "{{.context.token}}"}}},
		Context:  map[string]any{"token": subSecret},
	})
	now := time.Now()
	steps := []func(*job.Job) error{
		func(j *job.Job) error { return j.Start(now) },
		func(j *job.Job) error {
			j.Results = append(j.Results, job.Result{Step: "lookup", Action: "log", Status: job.StepOK, Output: map[string]any{"body": outSecret, "n": 3.5}, StartedAt: now})
			return nil
		},
		func(j *job.Job) error { j.Context["found"] = ctxSecret; return nil },
		func(j *job.Job) error {
			j.Results = append(j.Results, job.Result{Step: "note", Action: "log", Status: job.StepOK, Output: "second " + outSecret, StartedAt: now})
			return nil
		},
		func(j *job.Job) error { return j.Finish(job.Completed, "", now) },
	}
	for _, fn := range steps {
		if _, err := s.Update(j.ID, fn); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func checkSecretJob(t *testing.T, j *job.Job) {
	t.Helper()
	if j.Context["token"] != subSecret || j.Context["found"] != ctxSecret || j.SubmittedContext["token"] != subSecret {
		t.Fatalf("context %v, submitted %v", j.Context, j.SubmittedContext)
	}
	if len(j.Results) != 2 || j.Results[0].Output.(map[string]any)["body"] != outSecret || j.Results[1].Output != "second "+outSecret {
		t.Fatalf("results %+v", j.Results)
	}
	if j.Status != job.Completed || j.Playbook[0].Params["message"] != "{{.context.token}}" {
		t.Fatalf("job %+v", j)
	}
}

// grepDir fails for every file under dir that holds one of the secrets.
func grepDir(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q in plain", p, s)
			}
		}
		return nil
	})
	if n < 2 {
		t.Fatalf("only %d files under %s", n, dir)
	}
}

func TestSealedFieldsNeverReachTheFiles(t *testing.T) {
	dir := t.TempDir()
	kr := keyring(t, 1)
	s := openKeyed(t, dir, kr)
	j := secretJob(t, s)
	checkSecretJob(t, j)
	if err := s.PutRecords(Record{Key: "webhook/x", Value: json.RawMessage(`{"job":{"context":{"t":"` + recSecret + `"}}}`)}); err != nil {
		t.Fatal(err)
	}
	if recs := s.Records("webhook/"); len(recs) != 1 || !strings.Contains(string(recs[0].Value), recSecret) {
		t.Fatalf("records read back as %v", recs)
	}
	// The journal holds every change, before any snapshot.
	grepDir(t, dir, ctxSecret, subSecret, outSecret, recSecret)
	if _, err := s.Backup(BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	grepDir(t, dir, ctxSecret, subSecret, outSecret, recSecret)

	// What stays readable: operators' scripts read jobs.json.
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]map[string]any
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	raw := snap[j.ID]
	if raw["id"] != j.ID || raw["status"] != "completed" || raw["sealed_key"] != kr.Primary() || raw["created_at"] == nil || raw["completed_at"] == nil {
		t.Fatalf("readable fields lost: %v", raw)
	}
	// The encrypted fields are left out of the plain part; their values
	// are in one envelope, "sealed".
	if m, _ := raw["context"].(map[string]any); len(m) != 1 || m["$sealed"] != true {
		t.Fatalf("context is stored as %v", raw["context"])
	}
	if sub, ok := raw["submitted_context"]; ok || raw["results"].([]any)[0].(map[string]any)["output"] != nil || raw["results"].([]any)[1].(map[string]any)["output"] != nil {
		t.Fatalf("an encrypted field is stored as %v", sub)
	}
	if env, _ := raw["sealed"].(string); !strings.HasPrefix(env, "v1:"+kr.Primary()+":") {
		t.Fatalf("the envelope is stored as %v", raw["sealed"])
	}
	if r := raw["results"].([]any)[1].(map[string]any); r["step"] != "note" || r["status"] != "ok" {
		t.Fatalf("a result's plain fields are not readable: %v", r)
	}
	if pb := raw["playbook"].([]any)[0].(map[string]any); pb["name"] != "lookup" {
		t.Fatalf("playbook not readable: %v", pb)
	}

	s = openKeyed(t, dir, kr)
	defer s.Close()
	got, err := s.Get(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkSecretJob(t, got)
	if r := s.Report(); r.SealedJobs != 1 || r.UnreadableJobs != 0 {
		t.Fatalf("report %+v", r)
	}
	list, err := ListBackups(dir)
	if err != nil || len(list) != 1 || !slices.Equal(list[0].KeyIDs, []string{kr.Primary()}) {
		t.Fatalf("backups %+v %v", list, err)
	}
	if res, err := s.Verify(VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

func TestNoKeyringWritesPlain(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	j := secretJob(t, s)
	s.Close()
	data, _ := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if !bytes.Contains(data, []byte(ctxSecret)) || bytes.Contains(data, []byte("$sealed")) || bytes.Contains(data, []byte(sealedKeyField)) {
		t.Fatalf("a store without a key changed its format: %s", data)
	}
	// A plain job stays readable once a key is configured, and a context
	// that merely looks sealed is a plain job's context.
	s = openKeyed(t, dir, keyring(t, 1))
	defer s.Close()
	got, err := s.Get(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkSecretJob(t, got)
	look := mustCreate(t, s, &job.Job{Context: map[string]any{"$sealed": "v1:00000000:AAAA"}})
	if got, err := s.Get(look.ID); err != nil || got.Context["$sealed"] != "v1:00000000:AAAA" {
		t.Fatalf("a context shaped like an envelope: %v %v", got, err)
	}
}

func TestSealedJobWithoutItsKey(t *testing.T) {
	dir := t.TempDir()
	kr := keyring(t, 1)
	s := openKeyed(t, dir, kr)
	j := secretJob(t, s)
	s.Close()

	for _, tt := range []struct {
		name string
		kr   *seal.Keyring
		want []string
	}{
		{"no keyring", nil, []string{"job " + j.ID, "key id " + kr.Primary(), "no jobs.encryption_key_file is configured"}},
		{"wrong key", keyring(t, 2), []string{"job " + j.ID, "key id " + kr.Primary(), "does not hold"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var unreadable []string
			s, err := Open(Options{Dir: dir, ReadOnly: true, Keyring: tt.kr, OnUnreadable: func(id string, err error) { unreadable = append(unreadable, id) }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := s.Report()
			if r.SealedJobs != 1 || r.UnreadableJobs != 1 || !slices.Equal(r.MissingKeyIDs, []string{kr.Primary()}) {
				t.Fatalf("report %+v", r)
			}
			if msg := MissingKeysMessage(r, tt.kr != nil); !strings.Contains(msg, kr.Primary()) {
				t.Fatalf("message %q", msg)
			}
			_, err = s.Get(j.ID)
			var se *SealedError
			if !errors.As(err, &se) || !errors.Is(err, seal.ErrNoKey) || se.KeyID != kr.Primary() {
				t.Fatalf("get: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// Listing goes on without it, and filters still work
			// from the readable fields.
			list, err := s.List(Filter{Statuses: []job.Status{job.Completed}})
			if err != nil || len(list) != 0 || !slices.Equal(unreadable, []string{j.ID}) {
				t.Fatalf("list: %v %v, unreadable %v", list, err, unreadable)
			}
			if st := s.Stats(); st.ByStatus[job.Completed] != 1 {
				t.Fatalf("stats %+v", st)
			}
			res, err := VerifyWith(dir, VerifyOptions{Keyring: tt.kr})
			if err != nil || res.OK || len(res.Problems) == 0 || !strings.Contains(res.Problems[0].Message, "key id "+kr.Primary()) {
				t.Fatalf("verify: %+v %v", res, err)
			}
		})
	}
	// A writable store without the key still cleans the job up: deleting
	// needs no decryption.
	s = openKeyed(t, dir, keyring(t, 2))
	defer s.Close()
	res, err := s.Cleanup(CleanupOptions{Retention: time.Nanosecond, Now: time.Now().Add(time.Hour)})
	if err != nil || res.Deleted != 1 {
		t.Fatalf("cleanup: %+v %v", res, err)
	}
}

// rewriteSnapshot applies edit to jobs.json as a file written by hand
// (without its checksum file, which would otherwise catch the change
// before decryption does).
func rewriteSnapshot(t *testing.T, dir string, edit func(map[string]map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]map[string]any
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	edit(snap)
	out, _ := json.Marshal(snap)
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile), out, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, snapshotSumFile))
}

func TestTamperedAndMovedCiphertexts(t *testing.T) {
	kr := keyring(t, 1)
	setup := func(t *testing.T) (string, *job.Job, *job.Job) {
		dir := t.TempDir()
		s := openKeyed(t, dir, kr)
		a, b := secretJob(t, s), secretJob(t, s)
		s.Close()
		return dir, a, b
	}
	edit := func(env string, i int) string {
		c := byte('A')
		if env[i] == 'A' {
			c = 'B'
		}
		return env[:i] + string(c) + env[i+1:]
	}
	results := func(j map[string]any) []any { return j["results"].([]any) }
	tests := []struct {
		name  string
		edit  func(snap map[string]map[string]any, a, b string)
		bad   func(a, b string) []string // the jobs that must not read
		field string
		want  error
	}{
		{"byte flipped", func(snap map[string]map[string]any, a, _ string) {
			env := snap[a]["sealed"].(string)
			snap[a]["sealed"] = edit(env, len(env)-5)
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrAuth},
		{"key id edited", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["sealed"] = "v1:00000000:" + snap[a]["sealed"].(string)[12:]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrNoKey},
		{"truncated", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["sealed"] = snap[a]["sealed"].(string)[:20]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrMalformed},
		{"unknown version", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["sealed"] = "v2" + snap[a]["sealed"].(string)[2:]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrMalformed},
		{"bad base64", func(snap map[string]map[string]any, a, _ string) {
			env := snap[a]["sealed"].(string)
			snap[a]["sealed"] = env[:15] + "*" + env[16:]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrMalformed},
		{"plain value where a sealed one belongs", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["context"] = map[string]any{"token": "injected"}
		}, func(a, _ string) []string { return []string{a} }, "context", seal.ErrMalformed},
		{"plain output where a sealed one belongs", func(snap map[string]map[string]any, a, _ string) {
			results(snap[a])[1].(map[string]any)["output"] = "injected"
		}, func(a, _ string) []string { return []string{a} }, "results.1.output", seal.ErrMalformed},
		{"plain submitted context where a sealed one belongs", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["submitted_context"] = map[string]any{"token": "injected"}
		}, func(a, _ string) []string { return []string{a} }, "submitted_context", seal.ErrMalformed},
		{"context cleared", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["context"] = nil
		}, func(a, _ string) []string { return []string{a} }, "context", seal.ErrMalformed},
		{"the envelope removed", func(snap map[string]map[string]any, a, _ string) {
			delete(snap[a], "sealed")
		}, func(a, _ string) []string { return []string{a} }, "context", seal.ErrMalformed},
		{"envelopes swapped between jobs", func(snap map[string]map[string]any, a, b string) {
			snap[a]["sealed"], snap[b]["sealed"] = snap[b]["sealed"], snap[a]["sealed"]
		}, func(a, b string) []string { return []string{a, b} }, "sealed", seal.ErrAuth},
		{"results swapped", func(snap map[string]map[string]any, a, _ string) {
			rs := results(snap[a])
			rs[0], rs[1] = rs[1], rs[0]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrAuth},
		{"a result removed", func(snap map[string]map[string]any, a, _ string) {
			snap[a]["results"] = results(snap[a])[:1]
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrAuth},
		{"a step renamed", func(snap map[string]map[string]any, a, _ string) {
			results(snap[a])[0].(map[string]any)["step"] = "other"
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrAuth},
		{"a field's envelope in place of the job's", func(snap map[string]map[string]any, a, _ string) {
			// Sealed for the same job under the same key, but for one
			// field, as an earlier release sealed each: it does not
			// open as the job's.
			snap[a]["sealed"] = kr.SealString([]byte(`[{},null,null,null]`), a, "context")
		}, func(a, _ string) []string { return []string{a} }, "sealed", seal.ErrAuth},
		{"job renamed", func(snap map[string]map[string]any, a, _ string) {
			moved := snap[a]
			delete(snap, a)
			id := "0190a000-0000-7000-8000-000000000001"
			moved["id"] = id
			snap[id] = moved
		}, func(_, _ string) []string { return []string{"0190a000-0000-7000-8000-000000000001"} }, "sealed", seal.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, a, b := setup(t)
			rewriteSnapshot(t, dir, func(snap map[string]map[string]any) { tt.edit(snap, a.ID, b.ID) })
			var unreadable []string
			s, err := Open(Options{Dir: dir, ReadOnly: true, Keyring: kr, OnUnreadable: func(id string, _ error) { unreadable = append(unreadable, id) }})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			bad := tt.bad(a.ID, b.ID)
			for _, id := range bad {
				_, err := s.Get(id)
				var se *SealedError
				if !errors.As(err, &se) || !errors.Is(err, tt.want) || se.JobID != id || se.Field != tt.field {
					t.Fatalf("get %s: %#v", id, err)
				}
				if strings.Contains(err.Error(), subSecret) || strings.Contains(err.Error(), "v1:") {
					t.Fatalf("error quotes a secret or the envelope: %v", err)
				}
			}
			list, _ := s.List(Filter{})
			if len(list)+len(bad) != 2 || len(unreadable) != len(bad) {
				t.Fatalf("list: %d jobs, %v unreadable", len(list), unreadable)
			}
			for _, j := range list {
				checkSecretJob(t, j)
			}
			res, err := VerifyWith(dir, VerifyOptions{Keyring: kr})
			if err != nil || res.OK {
				t.Fatalf("verify passed a tampered job: %+v %v", res, err)
			}
			found := 0
			for _, p := range res.Problems {
				if slices.Contains(bad, p.JobID) || p.MissingKeyID != "" {
					found++
				}
			}
			if found < len(bad) {
				t.Fatalf("verify problems %+v do not name %v", res.Problems, bad)
			}
		})
	}
}

// envelopeOf is the envelope of a sealed entry.
func envelopeOf(t *testing.T, e *entry) string {
	t.Helper()
	raw := rawOf(t, e)
	_, env, ok := splitSealed(raw)
	if !ok {
		t.Fatalf("no envelope at the end of %s", raw)
	}
	return string(env)
}

func TestUpdatesReuseUnchangedSeals(t *testing.T) {
	dir := t.TempDir()
	kr := keyring(t, 1)
	s := openKeyed(t, dir, kr)
	defer s.Close()
	j := mustCreate(t, s, &job.Job{Context: map[string]any{"a": "1"}})
	created := envelopeOf(t, s.idx.jobs[j.ID])
	update := func(fn func(*job.Job) error) string {
		t.Helper()
		if _, err := s.Update(j.ID, fn); err != nil {
			t.Fatal(err)
		}
		return envelopeOf(t, s.idx.jobs[j.ID])
	}
	// Starting keeps the submitted context: a new envelope.
	started := update(func(j *job.Job) error { return j.Start(time.Now()) })
	if started == created {
		t.Fatal("a changed job kept its envelope")
	}
	one := update(func(j *job.Job) error {
		j.Results = append(j.Results, job.Result{Step: "x", Action: "log", Status: job.StepOK, Output: "one", StartedAt: time.Now()})
		return nil
	})
	if c := s.idx.jobs[j.ID].sealCache(); c == nil || string(c.env) != one {
		t.Fatalf("a running job keeps no sealed part: %+v", c)
	}
	if same := update(func(j *job.Job) error { j.Attempts++; return nil }); same != one {
		t.Fatal("a change to plain fields only sealed again")
	}
	two := update(func(j *job.Job) error {
		j.Results = append(j.Results, job.Result{Step: "y", Action: "log", Status: job.StepOK, Output: "two", StartedAt: time.Now()})
		j.Context["b"] = "2"
		return nil
	})
	if two == one {
		t.Fatal("a changed context kept its old envelope")
	}
	if done := update(func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) }); done != two {
		t.Fatal("finishing sealed again")
	}
	if s.idx.jobs[j.ID].sealCache() != nil {
		t.Fatal("a finished job keeps its plaintext cache")
	}
	got, err := s.Get(j.ID)
	if err != nil || got.Context["b"] != "2" || got.Results[1].Output != "two" || got.SubmittedContext["a"] != "1" || got.Status != job.Completed {
		t.Fatalf("%+v %v", got, err)
	}

	// A job that is not running reuses the envelope it was read with.
	p := mustCreate(t, s, &job.Job{Context: map[string]any{"c": "3"}})
	before := envelopeOf(t, s.idx.jobs[p.ID])
	if _, err := s.Update(p.ID, func(j *job.Job) error { return j.Finish(job.Cancelled, "by hand", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if after := envelopeOf(t, s.idx.jobs[p.ID]); after != before {
		t.Fatal("cancelling a pending job sealed it again")
	}
	if got, err := s.Get(p.ID); err != nil || got.Context["c"] != "3" || got.Status != job.Cancelled {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestRotateKeys(t *testing.T) {
	dir := t.TempDir()
	old := keyring(t, 1)
	s := openT(t, dir)
	plainJob := secretJob(t, s)
	s.Close()
	s = openKeyed(t, dir, old)
	var ids []string
	for range 5 {
		ids = append(ids, secretJob(t, s).ID)
	}
	if err := s.PutRecords(Record{Key: "webhook/x", Value: json.RawMessage(`{"v":"` + recSecret + `"}`)}); err != nil {
		t.Fatal(err)
	}
	oldBackup, err := s.Backup(BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKeys(RotateOptions{}); err != nil {
		t.Fatalf("rotating to the same key: %v", err)
	}
	s.Close()

	rotated := keyring(t, 2, 1)
	s = openKeyed(t, dir, rotated)
	var seen []int64
	res, err := s.RotateKeys(RotateOptions{Batch: 2, Progress: func(done, total int64) { seen = append(seen, done) }})
	if err != nil || res.Jobs != 6 || res.Records != 1 || res.KeyID != rotated.Primary() {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if !slices.Equal(seen, []int64{0, 2, 4, 6}) {
		t.Fatalf("progress %v", seen)
	}
	if res, err := s.RotateKeys(RotateOptions{}); err != nil || res.Jobs != 0 || res.Records != 0 {
		t.Fatalf("second rotation: %+v %v", res, err)
	}
	s.Close()

	// Only the new key is needed now, for every job and record.
	newOnly := keyring(t, 2)
	s = openKeyed(t, dir, newOnly)
	for _, id := range append(ids, plainJob.ID) {
		j, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		checkSecretJob(t, j)
	}
	if recs := s.Records("webhook/"); len(recs) != 1 || !strings.Contains(string(recs[0].Value), recSecret) {
		t.Fatalf("records %v", recs)
	}
	// The backup taken before still needs the old key, and says so.
	list, _ := ListBackups(dir)
	if len(list) != 1 || !slices.Equal(list[0].KeyIDs, []string{old.Primary()}) {
		t.Fatalf("backups %+v", list)
	}
	if res, err := s.Verify(VerifyOptions{}); err != nil || res.OK {
		t.Fatalf("verify without the backup's key: %+v %v", res, err)
	}
	s.Close()

	// Restored with the old key still in the file, it lists in full.
	s = openKeyed(t, dir, rotated)
	defer s.Close()
	if _, err := s.Restore(oldBackup.Path, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	list2, err := s.List(Filter{})
	if err != nil || len(list2) != 6 {
		t.Fatalf("list after restore: %d %v", len(list2), err)
	}
	for _, j := range list2 {
		checkSecretJob(t, j)
	}
	if res, err := s.Verify(VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

func TestRotateWithoutKeyring(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	if _, err := s.RotateKeys(RotateOptions{}); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("rotate without keyring: %v", err)
	}
}

func TestSealedJobKeepsTheLimits(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SnapshotInterval: -1, Keyring: keyring(t, 1), MaxJobBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(&job.Job{Context: map[string]any{"pad": strings.Repeat("x", 4096)}}); !errors.Is(err, job.ErrLimit) {
		t.Fatalf("oversized sealed job: %v", err)
	}
	deep := any("x")
	for range job.MaxDepth {
		deep = []any{deep}
	}
	if _, err := s.Create(&job.Job{Context: map[string]any{"deep": deep}}); !errors.Is(err, job.ErrLimit) {
		t.Fatalf("too deeply nested sealed context: %v", err)
	}
}

// A rerun of an encrypted job starts from its decrypted submitted
// context, and both jobs stay encrypted and readable.
func TestRerunOfSealedJob(t *testing.T) {
	dir := t.TempDir()
	kr := keyring(t, 1)
	s := openKeyed(t, dir, kr)
	orig := secretJob(t, s)
	nj, err := s.Rerun(orig.ID, func(o *job.Job) (*job.Job, error) { return o.Rerun(), nil })
	if err != nil {
		t.Fatal(err)
	}
	if nj.Context["token"] != subSecret || len(nj.Context) != 1 {
		t.Fatalf("rerun context %v", nj.Context)
	}
	s.Close()
	grepDir(t, dir, ctxSecret, subSecret, outSecret)
	s = openKeyed(t, dir, kr)
	defer s.Close()
	got, err := s.Get(nj.ID)
	if err != nil || got.Context["token"] != subSecret || got.RerunOf != orig.ID {
		t.Fatalf("rerun read back: %+v %v", got, err)
	}
	o, err := s.Get(orig.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkSecretJob(t, o)
	if len(o.Reruns) != 1 || o.Reruns[0] != nj.ID {
		t.Fatalf("reruns %v", o.Reruns)
	}
}

// testdata/sealed-v1 is a data directory written by the release that
// sealed each field apart (key 0x11…): a plain job from before the key,
// and a completed, a running and (only in the journal) a pending sealed
// job, a sealed webhook record and a backup of them all. It must read as it
// did, take updates, rotate and restore.
func TestSealedJobsOfEarlierReleases(t *testing.T) {
	const (
		plainID     = "01a23321-f6d3-7965-8425-dfd61865166d"
		completedID = "01a23321-f6ea-70ab-99aa-300a0adaebc4"
		runningID   = "01a23321-f6ed-70b4-a94c-d23e94a2a4c1"
		pendingID   = "01a23321-f713-7879-b61e-a56ad10a06fb"
	)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/sealed-v1")); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		os.Chmod(filepath.Join(dir, f.Name()), 0o600)
	}
	old := keyring(t, 0x11)
	checkAll := func(t *testing.T, s *FileStore, ended bool) {
		t.Helper()
		for _, id := range []string{plainID, completedID} {
			j, err := s.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			checkSecretJob(t, j)
		}
		r, err := s.Get(runningID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Context["token"] != subSecret || r.Context["found"] != ctxSecret || r.SubmittedContext["token"] != subSecret ||
			r.Results[0].Output.(map[string]any)["message"] != outSecret {
			t.Fatalf("running job %+v", r)
		}
		if ended && (r.Status != job.Completed || len(r.Results) != 2 || r.Results[1].Output != "b "+outSecret) {
			t.Fatalf("running job did not keep its update: %+v", r)
		}
		p, err := s.Get(pendingID)
		if err != nil || p.Context["token"] != subSecret {
			t.Fatalf("pending job %+v %v", p, err)
		}
		if recs := s.Records("webhook/"); len(recs) != 1 || !strings.Contains(string(recs[0].Value), recSecret) {
			t.Fatalf("records %v", recs)
		}
	}

	s := openKeyed(t, dir, old)
	if r := s.Report(); r.SealedJobs != 3 || r.UnreadableJobs != 0 || r.SnapshotJobs != 3 {
		t.Fatalf("report %+v", r)
	}
	checkAll(t, s, false)
	if res, err := s.Verify(VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
	list, err := ListBackups(dir)
	if err != nil || len(list) != 1 || !list[0].Verified || !slices.Equal(list[0].KeyIDs, []string{old.Primary()}) {
		t.Fatalf("backups %+v %v", list, err)
	}
	backup := list[0].Path
	// An update writes the job in this release's form.
	if _, err := s.Update(runningID, func(j *job.Job) error {
		j.Results = append(j.Results, job.Result{Step: "b", Action: "log", Status: job.StepOK, Output: "b " + outSecret, StartedAt: time.Now()})
		return j.Finish(job.Completed, "", time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := splitSealed(rawOf(t, s.idx.jobs[runningID])); !ok {
		t.Fatalf("an updated job is still in the earlier form: %s", rawOf(t, s.idx.jobs[runningID]))
	}
	if _, _, ok := splitSealed(rawOf(t, s.idx.jobs[completedID])); ok {
		t.Fatal("an unchanged job was rewritten")
	}
	checkAll(t, s, true)
	s.Close()

	rotated := keyring(t, 2, 0x11)
	s = openKeyed(t, dir, rotated)
	res, err := s.RotateKeys(RotateOptions{})
	if err != nil || res.Jobs != 4 || res.Records != 1 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	s.Close()
	os.Remove(backup) // it holds the plain job
	os.Remove(backup + ".sha256")
	grepDir(t, dir, ctxSecret, subSecret, outSecret, recSecret)
	s = openKeyed(t, dir, keyring(t, 2))
	checkAll(t, s, true)
	for id, e := range s.idx.jobs {
		if _, _, ok := splitSealed(rawOf(t, e)); !ok {
			t.Fatalf("job %s is in the earlier form after rotation", id)
		}
	}
	s.Close()

	// The backup of the earlier release restores, and reads with its key.
	s = openKeyed(t, dir, rotated)
	defer s.Close()
	if _, err := s.Restore(filepath.Join("testdata/sealed-v1", filepath.Base(backup)), BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, s, false)
}

// A sealed job reads back exactly as the same job stored in plain, whatever
// its secret-bearing fields hold or leave unset.
func TestSealedJobsReadBackAsPlain(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	shapes := []func(j *job.Job){
		func(j *job.Job) {},
		func(j *job.Job) { j.Context = nil },
		func(j *job.Job) { j.Context = map[string]any{} },
		func(j *job.Job) { j.SubmittedContext = map[string]any{} },
		func(j *job.Job) { j.SubmittedContext = map[string]any{"k": []any{1.5, "x", nil, true}} },
		func(j *job.Job) { j.Results = nil },
		func(j *job.Job) { j.Results = []job.Result{} },
		func(j *job.Job) {
			j.Results = []job.Result{
				{Step: "a", Action: "log", Status: job.StepFailed, Error: "boom", StartedAt: now},
				{Step: "b\x00c", Action: "log", Status: job.StepOK, Output: "<&> \u2028 é", StartedAt: now, CompletedAt: &now},
				{Step: "bc", Action: "set", Status: job.StepOK, Output: map[string]any{"n": 1e300, "nested": map[string]any{"a": []any{}}}, StartedAt: now},
				{Step: "d", Action: "set", Status: job.StepOK, Output: false, StartedAt: now},
			}
		},
	}
	kr := keyring(t, 1)
	for i, shape := range shapes {
		j := &job.Job{
			ID:       fmt.Sprintf("0190a000-0000-7000-8000-%012d", i),
			Status:   job.Running,
			Playbook: []job.Step{{Name: "a", Action: "log"}},
			Context:  map[string]any{"token": "x", "n": 2.0},
			Results: []job.Result{
				{Step: "a", Action: "log", Status: job.StepOK, Output: map[string]any{"message": "m"}, StartedAt: now},
			},
			CreatedAt: now,
			StartedAt: &now,
		}
		shape(j)
		pe, err := encodeJob(j, 0)
		if err != nil {
			t.Fatal(err)
		}
		want, err := loadJob(pe.raw)
		if err != nil {
			t.Fatal(err)
		}
		se, err := encodeSealed(j, kr, nil, 0)
		if err != nil {
			t.Fatalf("shape %d: %v", i, err)
		}
		if _, _, err := decodeEntry(se.raw, true); err != nil {
			t.Fatalf("shape %d: the sealed job does not pass the schema: %v", i, err)
		}
		for _, raw := range [][]byte{se.raw, reorder(t, se.raw)} {
			got, _, err := openSealed(raw, kr.Primary(), kr, false)
			if err != nil {
				t.Fatalf("shape %d: %v", i, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("shape %d reads back as\n%+v\nnot\n%+v", i, got, want)
			}
		}
	}
}

// reorder is raw with its members in another order, as a tool that
// rewrites jobs.json may leave it.
func reorder(t *testing.T, raw []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m) // sorted keys: "sealed" is no longer last
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := splitSealed(out); ok {
		t.Fatal("the envelope is still last")
	}
	return out
}
