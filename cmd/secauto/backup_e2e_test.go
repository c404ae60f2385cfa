package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/store"
)

// A backup killed at any moment leaves either no backup or one that
// verifies with its checksum: never a backup without its .sha256, which
// used to fail verify until someone deleted it by hand.
func TestBackupKilledLeavesNoHalfBackup(t *testing.T) {
	work := t.TempDir()
	pristine := filepath.Join(work, "pristine")
	// No background backup: every backup found is one this test made.
	cfg := writeConfig(t, work, "jobs:\n  backup_enabled: false\n")
	d := startServe(t, pristine, "--config", cfg)
	n, tries := 600, 30
	if raceBuild {
		n, tries = 200, 12
	}
	submitMany(t, d, n, func(i int) string { return paddedPlaybook(i, 1024) })
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	full := filepath.Join(work, "full")
	copyDir(t, pristine, full)
	start := time.Now()
	if r := runSecauto(t, "backup", "create", "--data-dir", full); r.code != 0 {
		t.Fatalf("backup create: %v", r)
	}
	took := time.Since(start)

	var none, whole int
	for try := range tries {
		dir := filepath.Join(work, fmt.Sprintf("try-%02d", try))
		copyDir(t, pristine, dir)
		cmd := secautoCmd(t, "backup", "create", "--compress="+fmt.Sprint(try%2 == 0), "--data-dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(rand.N(took + time.Millisecond))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		if r := runSecauto(t, "verify", "--data-dir", dir); r.code != 0 {
			t.Fatalf("try %d: verify after a killed backup: %v", try, r)
		}
		r := runSecauto(t, "backup", "list", "-o", "json", "--data-dir", dir)
		var list []store.BackupInfo
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
			t.Fatalf("try %d: backup list: %v", try, r)
		}
		for _, b := range list {
			if !b.Verified || b.Jobs != n {
				t.Fatalf("try %d: backup %s: verified %v, %d jobs (%s)", try, b.Path, b.Verified, b.Jobs, b.Problem)
			}
		}
		if len(list) == 0 {
			none++
		} else {
			whole++
		}
		// The next backup (or the next open) clears what the kill left.
		if r := runSecauto(t, "backup", "create", "--data-dir", dir); r.code != 0 {
			t.Fatalf("try %d: backup after a killed one: %v", try, r)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fsys.IsTemp(e.Name()) {
				t.Fatalf("try %d: temp file %s left after the next backup", try, e.Name())
			}
		}
	}
	t.Logf("%d kills: %d left no backup, %d a whole one (a whole backup takes %v)", tries, none, whole, took)
}
