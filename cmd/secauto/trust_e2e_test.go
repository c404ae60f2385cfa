package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
	"github.com/secauto/secauto/pkg/store"
)

// The end-to-end tests in this file damage the data directory the way disks
// and operators do (a flipped byte, a hand edit, a kill -9 at a bad moment)
// and check that the real binary keeps every job it can and names the rest.

// cmdResult is what one run of the command printed and how it exited.
type cmdResult struct {
	stdout, stderr string
	code           int
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, firstLines(r.stdout, 12), firstLines(r.stderr, 12))
}

// firstLines keeps the first n lines of s and counts the rest.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n+1 {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("[%d more lines]\n", len(lines)-n)
}

// runSecauto runs the real command to its end (a minute at most).
func runSecauto(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return runSecautoWithin(t, time.Minute, args...)
}

// runSecautoWithin runs the real command, killing it after limit (its exit
// code is then -1).
func runSecautoWithin(t *testing.T, limit time.Duration, args ...string) cmdResult {
	t.Helper()
	cmd := secautoCmd(t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	r := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("secauto %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// writeConfig writes a config file into dir and returns its path.
func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// offlineJobs lists every job with "secauto jobs list -o json", which must
// succeed.
func offlineJobs(t *testing.T, args ...string) map[string]job.Job {
	t.Helper()
	r := runSecauto(t, append([]string{"jobs", "list", "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("jobs list: %v", r)
	}
	return parseJobList(t, r.stdout)
}

func parseJobList(t *testing.T, s string) map[string]job.Job {
	t.Helper()
	var jobs []job.Job
	if err := json.Unmarshal([]byte(s), &jobs); err != nil {
		t.Fatalf("jobs list -o json does not parse: %v\n%s", err, s)
	}
	byID := make(map[string]job.Job, len(jobs))
	for _, j := range jobs {
		byID[j.ID] = j
	}
	return byID
}

// jobs lists every job through GET /jobs, which must answer 200.
func (d *daemon) jobs() map[string]job.Job {
	d.t.Helper()
	code, b, err := d.do("GET", "/jobs", "")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("GET /jobs: %d %s %v", code, b, err)
	}
	return parseJobList(d.t, string(b))
}

// waitAllTerminal waits until no listed job is pending or running.
func (d *daemon) waitAllTerminal() map[string]job.Job {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		jobs := d.jobs()
		live := 0
		for _, j := range jobs {
			if !j.Status.Terminal() {
				live++
			}
		}
		if live == 0 {
			return jobs
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%d jobs still pending or running after 30s", live)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alertPlaybook is logPlaybook with its own alert value, so each job's
// context is told apart in the files.
func alertPlaybook(alert string) string {
	return `{"playbook":[{"name":"note","action":"log","params":{"message":"alert {{.context.alert}}"}}],"context":{"alert":"` + alert + `"}}`
}

// snapshotLine returns jobs.json's lines and the index of the one holding
// job id (jobs.json keeps one job per line).
func snapshotLine(t *testing.T, dir, id string) ([]string, int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, store.SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), `"`+id+`"`) {
			return lines, i
		}
	}
	t.Fatalf("jobs.json has no line for job %s:\n%s", id, data)
	return nil, 0
}

// flipBit changes the byte at off in path by xor-ing it with mask, in
// place, keeping the file's modification time: what rot on a disk does.
func flipBit(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	_, err = f.WriteAt(b, off)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func writeLines(t *testing.T, dir string, lines []string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, store.SnapshotFile), []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// journalJobs decodes jobs.journal and maps each job id to the indexes of
// the entries holding a record of it.
func journalJobs(t *testing.T, dir string) (*journal.Scan, map[string][]int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, store.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	scan := journal.Decode(data)
	where := map[string][]int{}
	for i, e := range scan.Entries {
		for j, r := range e.Change {
			if r.Kind == journal.PutJob && r.Key == "" {
				// A version 1 record: the id is inside the job.
				var k struct {
					ID string `json:"id"`
				}
				json.Unmarshal(r.Value, &k)
				e.Change[j].Key, r.Key = k.ID, k.ID
			}
			if r.Kind == journal.PutJob || r.Kind == journal.DeleteJob {
				where[r.Key] = append(where[r.Key], i)
			}
		}
	}
	return scan, where
}

func globFiles(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A damaged record in the middle of jobs.journal, with good records after
// it, is rot, not a torn tail: the records after it are kept, the damaged
// bytes are kept aside, and the job whose newest record it was is named.
func TestJournalRotInTheMiddle(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := writeConfig(t, work, "jobs:\n  snapshot_interval: 1h\n")

	// One worker held by a long job: every other submission stays pending,
	// so each is one record of its own in the journal.
	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	blocker := d.submit(sleepPlaybook)
	d.waitStatus(blocker, job.Running)
	var pending []string
	for i := range 9 {
		pending = append(pending, d.submit(alertPlaybook(fmt.Sprintf("rot-%d", i))))
	}
	d.stop(syscall.SIGKILL)

	scan, where := journalJobs(t, dir)
	if len(scan.Damage) != 0 {
		t.Fatalf("jobs.journal is damaged before the test touched it: %+v", scan.Damage)
	}
	for _, id := range append([]string{blocker}, pending...) {
		if len(where[id]) == 0 {
			t.Fatalf("after kill -9, jobs.journal holds no record of acknowledged job %s (%d entries)", id, len(scan.Entries))
		}
	}
	lost := pending[len(pending)/2]
	if len(where[lost]) != 1 {
		t.Fatalf("job %s is in journal entries %v; want exactly one", lost, where[lost])
	}
	victim := where[lost][0]
	if victim == len(scan.Entries)-1 {
		t.Fatalf("job %s is in the last journal entry; the test needs good entries after it", lost)
	}
	e := scan.Entries[victim]
	flipBit(t, filepath.Join(dir, store.JournalFile), e.Offset+e.Size/2, 0x01)
	// Every job whose newest record sat in the damaged entry is lost.
	lostSet := map[string]bool{}
	for _, r := range e.Change {
		if ws := where[r.Key]; r.Kind == journal.PutJob && ws[len(ws)-1] == victim {
			lostSet[r.Key] = true
		}
	}

	v := runSecauto(t, "verify", "--data-dir", dir)
	if v.code != 1 || !strings.Contains(v.stdout+v.stderr, store.JournalFile) {
		t.Errorf("verify before the repair: want exit 1 naming %s, got %v", store.JournalFile, v)
	}
	dry := runSecauto(t, "recover", "--dry-run", "-o", "json", "--data-dir", dir)

	d2 := startServe(t, dir, "--workers", "1", "--config", cfg)
	for _, id := range append([]string{blocker}, pending...) {
		if lostSet[id] {
			continue
		}
		code, b, err := d2.do("GET", "/job/"+id, "")
		if err != nil || code != http.StatusOK {
			t.Errorf("acknowledged job %s after the restart: %d %s %v", id, code, b, err)
		}
	}
	if m := globFiles(t, filepath.Join(dir, store.JournalFile+".corrupt-*")); len(m) != 1 {
		t.Errorf("want one %s.corrupt-* file keeping the damaged bytes, found %v", store.JournalFile, m)
	}
	for id := range lostSet {
		if !strings.Contains(d2.out.String(), id) && !strings.Contains(dry.stdout, id) {
			t.Errorf("neither the serve log nor 'recover --dry-run -o json' names lost job %s\nrecover: %v", id, dry)
		}
	}
	if v := runSecauto(t, "verify", "--data-dir", dir); v.code != 0 {
		t.Errorf("verify after the repair: %v", v)
	}
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

// One flipped byte inside a string of jobs.json still parses; the per-job
// checksums catch it. Only that job is taken from the backup; every other
// job keeps its newest state.
func TestSnapshotBitFlipTakesOneJobFromBackup(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := writeConfig(t, work, "server:\n  shutdown_timeout: 200ms\n")

	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	blocker := d.submit(sleepPlaybook)
	d.waitStatus(blocker, job.Running)
	var ids []string
	for i := range 5 {
		ids = append(ids, d.submit(alertPlaybook(fmt.Sprintf("flip-%d", i))))
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	b := runSecauto(t, "backup", "create", "-o", "json", "--data-dir", dir)
	if b.code != 0 {
		t.Fatalf("backup create: %v", b)
	}

	// The jobs pending in the backup complete now, and one more is added.
	d = startServe(t, dir, "--config", cfg)
	for _, id := range ids {
		d.waitStatus(id, job.Completed)
	}
	later := d.submit(alertPlaybook("flip-later"))
	d.waitStatus(later, job.Completed)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}

	victim := ids[2]
	if _, where := journalJobs(t, dir); len(where[victim]) > 0 {
		t.Fatalf("after a clean stop jobs.journal still holds job %s; jobs.json should be complete", victim)
	}
	// Rot, not an edit: one bit of the file changes, its size and
	// modification time stay.
	lines, i := snapshotLine(t, dir, victim)
	k := strings.Index(lines[i], `"flip-2"`)
	if k < 0 {
		t.Fatalf("jobs.json line of %s has no \"flip-2\": %s", victim, lines[i])
	}
	off := k + 1 // "flip-2" -> "glip-2"
	for _, l := range lines[:i] {
		off += len(l) + 1
	}
	flipBit(t, filepath.Join(dir, store.SnapshotFile), int64(off), 0x01)

	v := runSecauto(t, "verify", "--data-dir", dir)
	if v.code != 1 || !strings.Contains(v.stdout, victim) {
		t.Errorf("verify: want exit 1 naming job %s, got %v", victim, v)
	}
	r := runSecauto(t, "recover", "--data-dir", dir)
	if r.code != 0 {
		t.Fatalf("recover: %v", r)
	}
	if !strings.Contains(r.stdout+r.stderr, victim) {
		t.Errorf("recover does not name job %s, taken from the backup: %v", victim, r)
	}

	jobs := offlineJobs(t, "--data-dir", dir)
	if len(jobs) != len(ids)+2 {
		t.Errorf("%d jobs after recover, want %d", len(jobs), len(ids)+2)
	}
	for n, id := range append(slices.Clone(ids), later) {
		j, ok := jobs[id]
		alert := fmt.Sprintf("flip-%d", n)
		if id == later {
			alert = "flip-later"
		}
		switch {
		case !ok:
			t.Errorf("job %s is gone", id)
		case j.Context["alert"] != alert:
			t.Errorf("job %s has context %v, want alert %q", id, j.Context, alert)
		case id == victim && j.Status != job.Pending:
			t.Errorf("job %s is %s; want pending, as in the backup", id, j.Status)
		case id != victim && j.Status != job.Completed:
			t.Errorf("job %s is %s; want its newest state, completed, not the backup's", id, j.Status)
		}
	}
	if j := jobs[blocker]; j.Status != job.Failed {
		t.Errorf("job %s is %s, want failed (interrupted by shutdown)", blocker, j.Status)
	}
	if v := runSecauto(t, "verify", "--data-dir", dir); v.code != 0 {
		t.Errorf("verify after recover: %v", v)
	}
}

// A secauto.state.json holding garbage does not keep serve from starting
// (the webhook outbox and the schedule are rebuilt), recover copes with it
// too, and the damaged file is kept aside both times.
func TestDamagedStateFileIsKeptAside(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	state := filepath.Join(dir, "secauto.state.json")
	d := startServe(t, dir)
	id := d.submit(logPlaybook)
	d.waitStatus(id, job.Completed)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	garbage := []byte("\x00\x17garbage {\"outbox\": [\xff\xfe not json")
	if err := os.WriteFile(state, garbage, 0o600); err != nil {
		t.Fatal(err)
	}

	d = startServe(t, dir)
	if j := d.job(id); j.Status != job.Completed {
		t.Errorf("job %s after the restart: %s", id, j.Status)
	}
	id2 := d.submit(logPlaybook)
	d.waitStatus(id2, job.Completed)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	aside := globFiles(t, state+".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("after serve: want one secauto.state.json.corrupt-* file, found %v", aside)
	}
	if b, err := os.ReadFile(aside[0]); err != nil || !bytes.Equal(b, garbage) {
		t.Errorf("%s does not hold the damaged bytes: %q %v", aside[0], b, err)
	}

	if err := os.WriteFile(state, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runSecauto(t, "recover", "--data-dir", dir); r.code != 0 {
		t.Fatalf("recover on a damaged secauto.state.json: %v", r)
	}
	if aside := globFiles(t, state+".corrupt-*"); len(aside) != 2 {
		t.Errorf("after recover: want two secauto.state.json.corrupt-* files, found %v", aside)
	}
	jobs := offlineJobs(t, "--data-dir", dir)
	for _, want := range []string{id, id2} {
		if j, ok := jobs[want]; !ok || j.Status != job.Completed {
			t.Errorf("job %s after recover: %+v (present %v)", want, j.Status, ok)
		}
	}
	if v := runSecauto(t, "verify", "--data-dir", dir); v.code != 0 {
		t.Errorf("verify after recover: %v", v)
	}
}

// A job edited into a wrong field type and one completed before it was
// created: verify names both and exits 1, and listing still shows the rest.
func TestBrokenJobsInSnapshotAreNamed(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := writeConfig(t, work, "server:\n  shutdown_timeout: 200ms\n")

	d := startServe(t, dir, "--workers", "1", "--config", cfg)
	done := d.submit(alertPlaybook("types-done"))
	d.waitStatus(done, job.Completed)
	doneOK := d.submit(alertPlaybook("types-done-ok"))
	d.waitStatus(doneOK, job.Completed)
	blocker := d.submit(sleepPlaybook)
	d.waitStatus(blocker, job.Running)
	wrongType := d.submit(alertPlaybook("types-pending"))
	pendingOK := d.submit(alertPlaybook("types-pending-ok"))
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}

	lines, i := snapshotLine(t, dir, wrongType)
	if !strings.Contains(lines[i], `"results":[]`) {
		t.Fatalf("jobs.json line of pending job %s has no \"results\":[]: %s", wrongType, lines[i])
	}
	lines[i] = strings.Replace(lines[i], `"results":[]`, `"results":"x"`, 1)
	writeLines(t, dir, lines)

	lines, i = snapshotLine(t, dir, done)
	k := strings.LastIndex(lines[i], `"completed_at":"`)
	if k < 0 {
		t.Fatalf("jobs.json line of completed job %s has no completed_at: %s", done, lines[i])
	}
	k += len(`"completed_at":"`)
	end := strings.IndexByte(lines[i][k:], '"')
	lines[i] = lines[i][:k] + "2000-01-01T00:00:00Z" + lines[i][k+end:]
	writeLines(t, dir, lines)

	v := runSecauto(t, "verify", "--data-dir", dir)
	if v.code != 1 {
		t.Errorf("verify: want exit 1, got %v", v)
	}
	for _, id := range []string{wrongType, done} {
		if !strings.Contains(v.stdout, id) {
			t.Errorf("verify does not name broken job %s:\n%s", id, v.stdout)
		}
	}
	for _, id := range []string{doneOK, blocker, pendingOK} {
		if strings.Contains(v.stdout, id) {
			t.Errorf("verify names intact job %s:\n%s", id, v.stdout)
		}
	}

	l := runSecauto(t, "jobs", "list", "-o", "json", "--data-dir", dir)
	if l.code != 0 {
		t.Fatalf("jobs list beside two broken jobs: %v", l)
	}
	jobs := parseJobList(t, l.stdout)
	for id, want := range map[string]job.Status{doneOK: job.Completed, blocker: job.Failed, pendingOK: job.Pending} {
		if j, ok := jobs[id]; !ok || j.Status != want {
			t.Errorf("jobs list: job %s is %q (listed %v), want %s", id, j.Status, ok, want)
		}
	}
}

// verify, run again and again beside a daemon whose background backups
// come several times a second and prune all but one, never mistakes a
// backup being written or removed, or jobs.json being replaced, for a
// problem.
func TestVerifyBesideBackupsAndPruning(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := writeConfig(t, work, "jobs:\n  backup_interval: 200ms\n  backup_keep: 1\n  snapshot_interval: 500ms\n")
	d := startServe(t, dir, "--config", cfg)
	// Some MiB of jobs, so that each verify and each backup takes a while
	// (less with the race detector, which slows both down by itself).
	jobs, pad := 400, 16<<10
	if raceBuild {
		jobs, pad = 100, 4<<10
	}
	submitMany(t, d, jobs, func(i int) string { return paddedPlaybook(i, pad) })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var submitted, refused int
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, _, err := d.do("POST", "/playbook/async", logPlaybook)
			if err == nil && code == http.StatusAccepted {
				submitted++
			} else {
				refused++
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	backups := map[string]bool{}
	seen := func() {
		for _, p := range globFiles(t, filepath.Join(dir, "jobs.json.backup.*")) {
			if !strings.HasSuffix(p, ".sha256") {
				backups[filepath.Base(p)] = true
			}
		}
	}
	start := time.Now()
	for i := range 20 {
		seen()
		if v := runSecauto(t, "verify", "--data-dir", dir); v.code != 0 {
			t.Errorf("verify run %d after %v: %v", i+1, time.Since(start).Round(time.Millisecond), v)
		}
	}
	seen()
	close(stop)
	wg.Wait()
	if refused > 0 {
		t.Errorf("%d submissions refused beside verify and backups", refused)
	}
	if len(backups) < 2 {
		t.Errorf("only %d background backups were seen in %v; the runs did not overlap with backups", len(backups), time.Since(start).Round(time.Millisecond))
	}
	t.Logf("%d submissions, %d backups seen in %v", submitted, len(backups), time.Since(start).Round(time.Millisecond))
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

// submitMany submits n playbooks from 8 clients and waits until every job
// has ended.
func submitMany(t *testing.T, d *daemon, n int, playbook func(i int) string) {
	t.Helper()
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := c; i < n; i += 8 {
				code, b, err := d.do("POST", "/playbook/async", playbook(i))
				if err != nil || code != http.StatusAccepted {
					t.Errorf("submit: %d %s %v", code, b, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	d.waitAllTerminal()
}

// paddedPlaybook is a log playbook with about size bytes of context.
func paddedPlaybook(n, size int) string {
	return `{"playbook":[{"name":"note","action":"log","params":{"message":"m"}}],"context":{"n":"` +
		fmt.Sprint(n) + `","pad":"` + strings.Repeat("p", size) + `"}}`
}

// copyDir copies the regular files of a data directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.OpenFile(filepath.Join(to, e.Name()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if err := errors.Join(err, dst.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// kill -9 of an offline cleanup at any moment deletes all of its selection
// or none of it, and leaves a data directory that verifies. A third of the
// kills fall at random moments, a third as soon as the journal grows (the
// deletes being written), a third as soon as jobs.json is replaced (before
// what follows the rename, such as its checksums, is written).
func TestCleanupKilledIsAtomic(t *testing.T) {
	work := t.TempDir()
	pristine := filepath.Join(work, "pristine")
	cfg := writeConfig(t, work, "server:\n  shutdown_timeout: 200ms\n")

	d := startServe(t, pristine, "--workers", "4", "--config", cfg)
	n, tries := 400, 30
	if raceBuild {
		n, tries = 150, 15
	}
	submitMany(t, d, n, func(i int) string { return paddedPlaybook(i, 512) })
	selected := map[string]bool{}
	for id := range d.jobs() {
		selected[id] = true
	}
	// Jobs that are not terminal are never cleaned up.
	var blockers []string
	for range 4 {
		id := d.submit(sleepPlaybook)
		d.waitStatus(id, job.Running)
		blockers = append(blockers, id)
	}
	kept := []string{d.submit(logPlaybook), d.submit(logPlaybook)}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM", code)
	}
	for _, id := range blockers {
		selected[id] = true // failed by the shutdown: terminal too
	}
	time.Sleep(5 * time.Millisecond) // every selected job is older than 1ms
	journalSize := func(dir string) int64 {
		st, err := os.Stat(filepath.Join(dir, store.JournalFile))
		if err != nil {
			return -1
		}
		return st.Size()
	}
	pristineJournal := journalSize(pristine)

	// How long a whole cleanup takes, so the random kills fall across it.
	full := filepath.Join(work, "full")
	copyDir(t, pristine, full)
	start := time.Now()
	r := runSecauto(t, "cleanup", "--older-than", "1ms", "-o", "json", "--data-dir", full)
	took := time.Since(start)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf(`"deleted": %d`, len(selected))) {
		t.Fatalf("cleanup of %d jobs: %v", len(selected), r)
	}
	if jobs := offlineJobs(t, "--data-dir", full); len(jobs) != len(kept) {
		t.Fatalf("after a whole cleanup %d jobs are left, want the %d pending ones", len(jobs), len(kept))
	}

	var all, none, missed, torn int
	for try := range tries {
		dir := filepath.Join(work, fmt.Sprintf("try-%02d", try))
		copyDir(t, pristine, dir)
		snap, err := os.Stat(filepath.Join(dir, store.SnapshotFile))
		if err != nil {
			t.Fatal(err)
		}
		var when string
		var ready func() bool
		switch try % 3 {
		case 0:
			delay := rand.N(took + time.Millisecond)
			when = fmt.Sprintf("after %v", delay)
			deadline := time.Now().Add(delay)
			ready = func() bool { return !time.Now().Before(deadline) }
		case 1:
			when = "once the journal grew"
			ready = func() bool { return journalSize(dir) > pristineJournal }
		case 2:
			when = "once jobs.json was replaced"
			ready = func() bool {
				st, err := os.Stat(filepath.Join(dir, store.SnapshotFile))
				return err == nil && !os.SameFile(st, snap)
			}
		}
		cmd := secautoCmd(t, "cleanup", "--older-than", "1ms", "--data-dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
	poll:
		for !ready() {
			select {
			case <-exited:
				missed++
				when += " (the cleanup ended first)"
				break poll
			default:
			}
		}
		cmd.Process.Kill()
		<-exited

		// The kill may cut the cleanup's own journal write short (the
		// kernel stops a write between pages): a torn tail, which verify
		// reports and recover cuts, losing nothing acknowledged. Anything
		// else verify finds is a failure.
		v := runSecauto(t, "verify", "-o", "json", "--data-dir", dir)
		isTorn := v.code == 1 && tornCleanupOnly(v.stdout, selected)
		if v.code != 0 && !isTorn {
			t.Errorf("try %d, killed %s: verify: %v", try, when, v)
		}
		jobs := offlineJobs(t, "--data-dir", dir)
		left := 0
		for id := range selected {
			if _, ok := jobs[id]; ok {
				left++
			}
		}
		for _, id := range kept {
			if _, ok := jobs[id]; !ok {
				t.Errorf("try %d, killed %s: pending job %s was deleted", try, when, id)
			}
		}
		switch left {
		case 0:
			all++
		case len(selected):
			none++
		default:
			t.Errorf("try %d, killed %s: %d of the %d selected jobs are left; a cleanup deletes all or none", try, when, left, len(selected))
		}
		if isTorn {
			torn++
			if r := runSecauto(t, "recover", "--data-dir", dir); r.code != 0 {
				t.Errorf("try %d: recover after a torn cleanup: %v", try, r)
			}
			if v := runSecauto(t, "verify", "--data-dir", dir); v.code != 0 {
				t.Errorf("try %d: verify after recover cut the torn tail: %v", try, v)
			}
		}
	}
	t.Logf("a whole cleanup took %v; killed runs: %d deleted all, %d deleted none, %d ended before the kill; %d kills tore the cleanup's journal write",
		took.Round(time.Millisecond), all, none, missed, torn)
}

// tornCleanupOnly reports whether verify's JSON output lists only a torn
// tail of jobs.journal and, with it, jobs of the cleanup's selection.
func tornCleanupOnly(out string, selected map[string]bool) bool {
	var res struct {
		Problems []struct {
			File    string `json:"file"`
			JobID   string `json:"job_id"`
			Message string `json:"message"`
		} `json:"problems"`
	}
	if json.Unmarshal([]byte(out), &res) != nil || len(res.Problems) == 0 {
		return false
	}
	torn := false
	for _, p := range res.Problems {
		if filepath.Base(p.File) != store.JournalFile || p.JobID != "" && !selected[p.JobID] {
			return false
		}
		torn = torn || strings.Contains(p.Message, "torn")
	}
	return torn
}
