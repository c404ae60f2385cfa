package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// The tests in this file need what only root can set up: a small tmpfs to
// fill, a read-only bind mount. They skip, saying why, where mounting is not
// permitted.

// mount runs mount(8) with args and unmounts target when the test ends.
func mount(t *testing.T, target string, args ...string) {
	t.Helper()
	out, err := exec.Command("mount", args...).CombinedOutput()
	if err != nil {
		t.Skipf("this test needs to mount file systems (run as root): mount %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", target).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", target, err, out)
			exec.Command("umount", "-l", target).Run()
		}
	})
}

// fillDisk writes dir/ballast until the file system holding dir is full,
// and returns the ballast's path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for size := len(buf); size >= 1; size /= 8 {
		for {
			_, err := f.Write(buf[:size])
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("filling the disk: %v", err)
			}
		}
	}
	if _, err := f.Write([]byte{0}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the disk is not full after writing the ballast: %v", err)
	}
	return p
}

// A full disk refuses submissions with 507, keeps every acknowledged job
// readable, and serves again by itself once space returns; a daemon killed
// on a full disk starts again on it and serves reads.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	mount(t, mnt, "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mnt)
	dir := filepath.Join(mnt, "data")

	d := startServe(t, dir)
	var acked []string
	for i := range 10 {
		id := d.submit(paddedPlaybook(i, 16<<10))
		d.waitStatus(id, job.Completed)
		acked = append(acked, id)
	}

	// Submit until the disk, reserve and all, refuses: that answer is 507.
	ballast := fillDisk(t, mnt)
	refusal := func(phase string) {
		t.Helper()
		for i := 0; ; i++ {
			code, b, err := d.do("POST", "/playbook/async", paddedPlaybook(1000+i, 16<<10))
			if err != nil {
				t.Fatalf("%s: submission %d: %v", phase, i, err)
			}
			if code == http.StatusAccepted {
				acked = append(acked, parseJobID(t, b))
				if i >= 2000 {
					t.Fatalf("%s: 2000 submissions of 16 KiB accepted on a full 24 MiB disk", phase)
				}
				continue
			}
			if code != http.StatusInsufficientStorage {
				t.Fatalf("%s: submission on a full disk answered %d %s; want 507", phase, code, b)
			}
			t.Logf("%s: 507 after %d accepted submissions: %s", phase, i, b)
			return
		}
	}
	refusal("disk full")
	if code, b, err := d.do("GET", "/health", ""); err != nil || (code != http.StatusOK && code != http.StatusServiceUnavailable) {
		t.Errorf("GET /health on a full disk: %d %s %v", code, b, err)
	}
	for _, id := range acked {
		if code, b, err := d.do("GET", "/job/"+id, ""); err != nil || code != http.StatusOK {
			t.Errorf("acknowledged job %s on a full disk: %d %s %v", id, code, b, err)
		}
	}

	// Space returns: submissions are accepted again, with no restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, b, err := d.do("POST", "/playbook/async", logPlaybook)
		if err == nil && code == http.StatusAccepted {
			acked = append(acked, parseJobID(t, b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15s after space returned, a submission still answers %d %s %v", code, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.waitStatus(acked[len(acked)-1], job.Completed)
	for i := range 5 {
		acked = append(acked, d.submit(paddedPlaybook(2000+i, 16<<10)))
	}

	// Full again, then kill -9: the restart on the full disk recovers and
	// serves reads.
	fillDisk(t, mnt)
	d.stop(syscall.SIGKILL)
	d2 := startServeUntil(t, dir, "/jobs")
	jobs := d2.jobs()
	for _, id := range acked {
		if _, ok := jobs[id]; !ok {
			t.Errorf("acknowledged job %s is gone after a restart on a full disk", id)
		}
	}
	for _, j := range jobs {
		if j.Status == job.Running {
			t.Errorf("job %s still running after recovery on a full disk", j.ID)
		}
	}
	if code, _, err := d2.do("GET", "/health", ""); err != nil {
		t.Errorf("GET /health after a restart on a full disk: %d %v", code, err)
	}
	d2.stop(syscall.SIGKILL)
}

func parseJobID(t *testing.T, b []byte) string {
	t.Helper()
	s := string(b)
	const key = `"job_id":"`
	i := strings.Index(s, key)
	if i < 0 {
		t.Fatalf("202 without a job id: %s", b)
	}
	s = s[i+len(key):]
	return s[:strings.IndexByte(s, '"')]
}

// errorLines are the lines of stderr that are not JSON log records.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

// checkRefused checks a command exited 2 with one error line containing
// each of want.
func checkRefused(t *testing.T, r cmdResult, what string, want ...string) {
	t.Helper()
	lines := errorLines(r.stderr)
	if r.code != 2 || len(lines) != 1 {
		t.Errorf("%s: want exit 2 with a one-line error, got %v", what, r)
		return
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("%s: the error %q does not contain %q", what, lines[0], w)
		}
	}
}

// A read-only data directory is a configuration mistake: serve and cleanup
// exit 2 naming the directory.
func TestReadOnlyDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir)
	d.waitStatus(d.submit(logPlaybook), job.Completed)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	mount(t, dir, "--bind", dir, dir)
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot remount %s read-only: %v: %s", dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); err == nil {
		t.Fatalf("%s is still writable after the read-only remount", dir)
	}

	checkRefused(t, runSecautoWithin(t, 15*time.Second, "serve", "--port", "0", "--data-dir", dir), "serve on a read-only data directory", dir)
	checkRefused(t, runSecautoWithin(t, 15*time.Second, "cleanup", "--data-dir", dir), "cleanup on a read-only data directory", dir)
}

// A data directory that others may write could have its jobs forged or
// read: serve refuses it and says how to fix it.
func TestWorldWritableDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir)
	d.waitStatus(d.submit(logPlaybook), job.Completed)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	checkRefused(t, runSecautoWithin(t, 15*time.Second, "serve", "--port", "0", "--data-dir", dir), "serve on a data directory with mode 0777", dir, "chmod 700")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("serve changed the refused directory's mode: %v %v", fi.Mode(), err)
	}
}
