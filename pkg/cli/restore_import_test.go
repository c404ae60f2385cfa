package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// Beside a running daemon, "backup restore FILE" with a FILE from outside
// the data directory copies it in, with its checksum, under a backup name
// of its own, and has the daemon restore that; a backup already in the
// directory is named as it is.
func TestRestoreCopiesFileIn(t *testing.T) {
	t.Chdir(t.TempDir())
	ids, backup := seedJobs(t, "data")
	if err := os.Mkdir("elsewhere", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", ".sha256"} {
		data, err := os.ReadFile(filepath.Join("data", backup+suffix))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("elsewhere", "mine.json"+suffix), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A copy of jobs.json has no checksum; it is copied in without one.
	data, err := os.ReadFile(filepath.Join("data", backup))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("plain.json", data, 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, "data", server.Options{})

	before := backupNames(t, "data")
	code, out, errOut := run(t, nil, "backup", "restore", "elsewhere/mine.json")
	if code != ExitOK || !strings.Contains(out, "Copied it into the data directory as data/jobs.json.backup.") || !strings.Contains(out, "Restored 4 jobs from elsewhere/mine.json") {
		t.Fatalf("restore from elsewhere: exit %d\n%s%s", code, out, errOut)
	}
	added := newNames(before, backupNames(t, "data"))
	if len(added) != 4 { // the copy and the safety backup, each with its checksum
		t.Fatalf("backups added: %q", added)
	}
	copied := ""
	for _, n := range added {
		if strings.HasSuffix(n, ".sha256") {
			side, err := os.ReadFile(filepath.Join("data", n))
			if err != nil {
				t.Fatal(err)
			}
			if base := strings.TrimSuffix(n, ".sha256"); strings.HasSuffix(string(side), "  "+base+"\n") {
				copied = base
			}
		}
	}
	if copied == "" {
		t.Fatalf("no checksum names the copy: %q", added)
	}
	if _, err := store.VerifyBackup(filepath.Join("data", copied)); err != nil {
		t.Errorf("the copy does not verify: %v", err)
	}
	if _, err := os.Stat("elsewhere/mine.json"); err != nil {
		t.Errorf("the original is gone: %v", err)
	}

	// Without a checksum beside it, only the file is copied.
	before = backupNames(t, "data")
	code, out, errOut = run(t, nil, "backup", "restore", "-o", "json", "plain.json")
	var res store.RestoreResult
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.RestoredJobs != 4 {
		t.Fatalf("restore of a copy of jobs.json: exit %d\n%s%s", code, out, errOut)
	}
	// The copy, and the safety backup with its checksum.
	if added := newNames(before, backupNames(t, "data")); len(added) != 3 {
		t.Errorf("backups added for a file without checksum: %q", added)
	}

	// A backup of the directory is not copied.
	before = backupNames(t, "data")
	if code, out, errOut := run(t, nil, "backup", "restore", "data/"+backup); code != ExitOK || strings.Contains(out, "Copied") {
		t.Fatalf("restore of the directory's own backup: exit %d\n%s%s", code, out, errOut)
	}
	if added := newNames(before, backupNames(t, "data")); len(added) != 2 {
		t.Errorf("backups added restoring one of the directory (only the safety backup and its checksum): %q", added)
	}
	code, out, _ = run(t, nil, "jobs", "list", "-o", "json")
	if code != ExitOK || !strings.Contains(out, ids[0]) {
		t.Errorf("jobs after the restores: %s", out)
	}
}

func backupNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), store.SnapshotFile+".backup.") {
			names = append(names, e.Name())
		}
	}
	return names
}

func newNames(before, after []string) []string {
	seen := map[string]bool{}
	for _, n := range before {
		seen[n] = true
	}
	var added []string
	for _, n := range after {
		if !seen[n] {
			added = append(added, n)
		}
	}
	return added
}
