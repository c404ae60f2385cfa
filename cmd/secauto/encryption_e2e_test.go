package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
	"github.com/secauto/secauto/pkg/store"
)

// writeKeyFile writes a key file of the given keys (the first encrypts)
// and returns its path.
func writeKeyFile(t *testing.T, dir, name string, keys ...[]byte) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# secauto keys: the first encrypts, all decrypt\n")
	for _, k := range keys {
		b.WriteString(hex.EncodeToString(k) + "\n")
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, seal.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// With a key configured, the values of contexts and step outputs appear in
// no file of the data directory: not in jobs.json, the journal, the
// webhook outbox or a backup. Everything reads back through the commands,
// and a command without the key says which key it needs.
func TestEncryptionAtRestLeavesNoSecretOnDisk(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	key := randomKey(t)
	keys := writeKeyFile(t, work, "keys", key)
	kid := seal.KeyID(key)
	// A webhook that cannot be reached keeps every event, whole jobs
	// included, in the outbox.
	cfg := writeConfig(t, work, fmt.Sprintf("jobs:\n  backup_enabled: false\n  snapshot_interval: 100ms\n  encryption_key_file: %s\nwebhooks:\n  - url: http://127.0.0.1:9/hook\n", keys))
	d := startServe(t, dir, "--config", cfg)

	var secrets []string
	var ids []string
	for i := range 5 {
		ctx := fmt.Sprintf("CTXVALUE%dq7w", i)
		a, b := fmt.Sprintf("OUTA%dz", i), fmt.Sprintf("OUTB%dx", i)
		// The step output joins two context values: it is in no
		// submitted field, so finding it on disk means an output leaked.
		body := fmt.Sprintf(`{"playbook":[{"name":"join","action":"log","params":{"message":"{{.context.a}}{{.context.b}}"}},`+
			`{"name":"keep","action":"set","params":{"derived":"{{.context.b}}{{.context.a}}"}}],`+
			`"context":{"secret":%q,"a":%q,"b":%q}}`, ctx, a, b)
		ids = append(ids, d.submit(body))
		secrets = append(secrets, ctx, a+b, b+a)
	}
	for i, id := range ids {
		j := d.waitStatus(id, job.Completed)
		if out, _ := j.Results[0].Output.(map[string]any); out["message"] != secrets[3*i+1] || j.Context["derived"] != secrets[3*i+2] {
			t.Fatalf("job %s reads back as %+v", id, j)
		}
	}
	r := runSecauto(t, "backup", "create", "-o", "json", "--data-dir", dir, "--config", cfg)
	var made store.BackupResult
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &made) != nil || !slices.Equal(made.KeyIDs, []string{kid}) {
		t.Fatalf("backup create through the daemon: %v", r)
	}
	time.Sleep(300 * time.Millisecond) // a snapshot or two
	grepFiles(t, dir, secrets)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	if r := runSecauto(t, "backup", "create", "--data-dir", dir, "--config", cfg); r.code != 0 || !strings.Contains(r.stdout, "needs key id "+kid) {
		t.Fatalf("backup create offline: %v", r)
	}
	grepFiles(t, dir, secrets)

	// The readable fields stay readable to scripts.
	for id, j := range readSnapshot(t, dir) {
		if j.Status != job.Completed || !slices.Contains(ids, id) {
			t.Errorf("jobs.json: job %s is %s", id, j.Status)
		}
	}
	// The commands decrypt.
	jobs := offlineJobs(t, "--data-dir", dir, "--config", cfg)
	for i, id := range ids {
		if jobs[id].Context["secret"] != secrets[3*i] {
			t.Fatalf("jobs list: %+v", jobs[id])
		}
	}
	if r := runSecauto(t, "verify", "--data-dir", dir, "--config", cfg); r.code != 0 {
		t.Fatalf("verify: %v", r)
	}
	r = runSecauto(t, "backup", "list", "-o", "json", "--data-dir", dir, "--config", cfg)
	var list []store.BackupInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 2 {
		t.Fatalf("backup list: %v", r)
	}
	for _, b := range list {
		if !b.Verified || !slices.Equal(b.KeyIDs, []string{kid}) {
			t.Fatalf("backup %+v", b)
		}
	}

	// Without the key: clear errors naming the key id, listings go on.
	r = runSecauto(t, "jobs", "show", ids[0], "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "key id "+kid) || !strings.Contains(r.stderr, "jobs.encryption_key_file") {
		t.Fatalf("jobs show without the key: %v", r)
	}
	r = runSecauto(t, "jobs", "list", "-o", "json", "--data-dir", dir)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" || !strings.Contains(r.stderr, "5 jobs are encrypted (key id "+kid+")") {
		t.Fatalf("jobs list without the key: %v", r)
	}
	r = runSecauto(t, "verify", "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "key id "+kid) {
		t.Fatalf("verify without the key: %v", r)
	}
	other := writeKeyFile(t, work, "other", randomKey(t))
	otherDir := filepath.Join(work, "other-config")
	os.Mkdir(otherDir, 0o700)
	cfgOther := writeConfig(t, otherDir, "jobs:\n  encryption_key_file: "+other+"\n")
	if r = runSecauto(t, "jobs", "show", ids[0], "--data-dir", dir, "--config", cfgOther); r.code != 1 || !strings.Contains(r.stderr, "does not hold") {
		t.Fatalf("jobs show with another key: %v", r)
	}
	for _, s := range secrets {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Fatalf("output without the key holds %q", s)
		}
	}
}

// grepFiles fails for every file under dir holding one of the secrets.
func grepFiles(t *testing.T, dir string, secrets []string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds %q in plain", filepath.Base(p), s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("only %d files in %s", files, dir)
	}
}

// keys rotate killed with SIGKILL at any point leaves every job readable,
// and run again it finishes what the killed run began.
func TestKeysRotateKilledAndResumed(t *testing.T) {
	work := t.TempDir()
	pristine := filepath.Join(work, "pristine")
	oldKey, newKey := randomKey(t), randomKey(t)
	oldRing, err := seal.New(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	n := 4000
	if raceBuild {
		n = 1500
	}
	s, err := store.Open(store.Options{Dir: pristine, SnapshotInterval: -1, Keyring: oldRing})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		j := &job.Job{
			Playbook: []job.Step{{Name: "note", Action: "log", Params: map[string]any{"message": "m"}}},
			Context:  map[string]any{"n": fmt.Sprint(i), "pad": strings.Repeat("p", 512)},
		}
		if _, err := s.Create(j); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	keys := writeKeyFile(t, work, "keys", newKey, oldKey)
	cfg := writeConfig(t, work, "jobs:\n  encryption_key_file: "+keys+"\n")
	newOnly := filepath.Join(work, "new-only")
	os.Mkdir(newOnly, 0o700)
	cfgNew := writeConfig(t, newOnly, "jobs:\n  encryption_key_file: "+writeKeyFile(t, newOnly, "keys", newKey)+"\n")

	partial := 0
	for try := range 4 {
		dir := filepath.Join(work, fmt.Sprintf("try-%d", try))
		copyDir(t, pristine, dir)
		journal := filepath.Join(dir, store.JournalFile)
		before := fileSize(journal)
		cmd := secautoCmd(t, "keys", "rotate", "--data-dir", dir, "--config", cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed once a first batch or more is durable, a different
		// amount in each try.
		deadline := time.Now().Add(time.Minute)
		for fileSize(journal) <= before+int64(try)*200_000 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		// Every job reads, whichever key it is under now.
		jobs := offlineJobs(t, "--data-dir", dir, "--config", cfg)
		if len(jobs) != n {
			t.Fatalf("try %d: %d jobs listed after the kill, want %d", try, len(jobs), n)
		}
		for id, j := range jobs {
			if len(j.Context["pad"].(string)) != 512 {
				t.Fatalf("try %d: job %s reads as %v", try, id, j.Context)
			}
		}
		r := runSecauto(t, "keys", "rotate", "-o", "json", "--data-dir", dir, "--config", cfg)
		var res store.RotateResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			t.Fatalf("try %d: resumed rotation: %v", try, r)
		}
		if res.Jobs < n {
			partial++
		}
		t.Logf("try %d: the resumed run re-encrypted %d of %d jobs", try, res.Jobs, n)
		r = runSecauto(t, "keys", "rotate", "-o", "json", "--data-dir", dir, "--config", cfg)
		var again store.RotateResult
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &again) != nil || again.Jobs != 0 {
			t.Fatalf("try %d: a third run still had work: %v", try, r)
		}
		// The old key is no longer needed by the store.
		if jobs := offlineJobs(t, "--data-dir", dir, "--config", cfgNew); len(jobs) != n {
			t.Fatalf("try %d: %d jobs read with the new key alone", try, len(jobs))
		}
		if r := runSecauto(t, "verify", "--data-dir", dir, "--config", cfgNew); r.code != 0 {
			t.Fatalf("try %d: verify with the new key alone: %v", try, r)
		}
	}
	if partial == 0 {
		t.Fatal("no kill landed in the middle of a rotation")
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// A key file that is unusable stops the command at start with exit status
// 2, the file, line and key named, and none of the file's content shown.
func TestBadKeyFileRefused(t *testing.T) {
	work := t.TempDir()
	secretLine := "deadbeefdeadbeef is not a key!"
	bad := filepath.Join(work, "bad")
	os.WriteFile(bad, []byte(hex.EncodeToString(randomKey(t))+"\n"+secretLine+"\n"), 0o600)
	open := filepath.Join(work, "open")
	os.WriteFile(open, []byte(hex.EncodeToString(randomKey(t))+"\n"), 0o600)
	os.Chmod(open, 0o644)
	for _, tt := range []struct{ file, want string }{
		{bad, bad + " line 2: not a key"},
		{open, "mode 0644"},
		{filepath.Join(work, "missing"), "no such file"},
	} {
		cfg := writeConfig(t, work, "jobs:\n  retention_days: 3\n  encryption_key_file: "+tt.file+"\n")
		r := runSecauto(t, "serve", "--port", "0", "--data-dir", filepath.Join(work, "data"), "--config", cfg)
		if r.code != 2 || !strings.Contains(r.stderr, cfg+":3") || !strings.Contains(r.stderr, "jobs.encryption_key_file") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: %v", tt.file, r)
		}
		if strings.Contains(r.stderr, secretLine) || strings.Contains(r.stderr, "deadbeef") {
			t.Errorf("the error shows the key file's content: %s", r.stderr)
		}
	}
}
