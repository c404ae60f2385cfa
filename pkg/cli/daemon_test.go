package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// seedJobs fills a new data directory with terminal jobs (one past the
// default 30-day retention) and one backup of them, and returns the jobs'
// ids, newest first, and the backup's name.
func seedJobs(t *testing.T, dir string) ([]string, string) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(time.Second)
	steps := []job.Step{
		{Name: "greet", Action: "log", Params: map[string]any{"message": "hello {{.context.user}}"}},
		{Name: "block", Action: "fail", Params: map[string]any{"message": "refused"}},
	}
	mk := func(id string, created time.Time, status job.Status, msg string, results []job.Result) string {
		t.Helper()
		j, err := st.Create(&job.Job{ID: id, Playbook: steps, Context: map[string]any{"user": "alice", "n": 3}, CreatedAt: created})
		if err != nil {
			t.Fatal(err)
		}
		if status == job.Cancelled {
			_, err = st.Update(j.ID, func(j *job.Job) error { return j.Finish(status, msg, created.Add(time.Second)) })
		} else {
			_, err = st.Update(j.ID, func(j *job.Job) error { return j.Start(created.Add(time.Second)) })
			if err == nil {
				_, err = st.Update(j.ID, func(j *job.Job) error {
					j.Results = results
					return j.Finish(status, msg, created.Add(42*time.Second))
				})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	ok := func(at time.Time) []job.Result {
		end := at.Add(2 * time.Second)
		return []job.Result{{Step: "greet", Action: "log", Status: job.StepOK, Output: "hello alice", StartedAt: at, CompletedAt: &end}}
	}
	failed := func(at time.Time) []job.Result {
		end := at.Add(3 * time.Second)
		return append(ok(at), job.Result{Step: "block", Action: "fail", Status: job.StepFailed, Error: "refused", StartedAt: end, CompletedAt: &end})
	}
	ids := []string{
		mk("0197f0a4-0000-7000-8000-000000000004", base.Add(-1*time.Hour), job.Cancelled, "cancelled by request", nil),
		mk("0197f0a3-0000-7000-8000-000000000003", base.Add(-2*time.Hour), job.Failed, `step "block" failed: refused`, failed(base.Add(-2*time.Hour))),
		mk("0197f0a2-0000-7000-8000-000000000002", base.Add(-3*time.Hour), job.Completed, "", ok(base.Add(-3*time.Hour))),
		mk("0197f0a1-0000-7000-8000-000000000001", base.Add(-60*24*time.Hour), job.Completed, "", ok(base.Add(-60*24*time.Hour))),
	}
	b, err := st.Backup(store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return ids, filepath.Base(b.Path)
}

// copyDir copies a data directory's files, the lock file aside.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == store.LockFile {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startDaemon runs the daemon on dir in this process, as "secauto serve
// --port 0" would, and returns its address and a function that stops it
// (also called at the end of the test).
func startDaemon(t *testing.T, dir string, o server.Options) (string, func()) {
	t.Helper()
	o.Store = store.Options{Dir: dir}
	o.Port = 0
	o.ShutdownTimeout = time.Second
	if o.Maintenance.Retention == 0 {
		o.Maintenance = server.Maintenance{Retention: 30 * 24 * time.Hour, BackupKeep: 10}
	}
	ready := make(chan string, 1)
	o.Ready = func(addr string) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, o) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	return addr, stop
}

var stamp = regexp.MustCompile(`\d{8}-\d{6}(-\d+)?`)

// Every command beside a running daemon asks it, and prints what the same
// command prints offline on a copy of the same data.
func TestDaemonAnswersLikeOffline(t *testing.T) {
	t.Chdir(t.TempDir()) // no config.yaml: defaults, 30-day retention
	ids, backup := seedJobs(t, "data")
	copyDir(t, "data", "twin")
	addr, _ := startDaemon(t, "data", server.Options{})

	type step struct {
		args   []string
		stamps bool // backup names in the output are stamped now
	}
	steps := []step{
		// Reading.
		{args: []string{"jobs", "list"}},
		{args: []string{"jobs", "list", "-o", "json"}},
		{args: []string{"jobs", "list", "--status", "failed,completed", "--limit", "2", "-o", "yaml"}},
		{args: []string{"jobs", "list", "--status", "running"}},
		{args: []string{"jobs", "list", "--since", time.Now().Add(-150 * time.Minute).UTC().Format(time.RFC3339)}},
		{args: []string{"jobs", "show", ids[1][:8] + "-0000-7000-8000-000000000003"}},
		{args: []string{"jobs", "show", "0197f0a2", "-o", "json"}},
		{args: []string{"jobs", "show", "0197f0a"}},
		{args: []string{"jobs", "show", "ffff"}},
		{args: []string{"cleanup", "--dry-run"}},
		{args: []string{"cleanup", "--dry-run", "-o", "json"}},
		{args: []string{"cleanup", "--dry-run", "--older-than", "90m"}},
		{args: []string{"backup", "list"}},
		{args: []string{"backup", "list", "-o", "json"}},
		{args: []string{"verify"}},
		{args: []string{"verify", "-o", "yaml"}},
		{args: []string{"verify", "-o", "json"}},
		{args: []string{"recover", "--dry-run"}},
		// Writing.
		{args: []string{"cleanup", "-o", "json"}},
		{args: []string{"cleanup"}},
		{args: []string{"jobs", "list"}},
		{args: []string{"backup", "create", "-o", "json"}, stamps: true},
		{args: []string{"backup", "create", "--compress"}, stamps: true},
		{args: []string{"backup", "restore", "DIR/" + backup}, stamps: true},
		{args: []string{"backup", "restore", backup, "-o", "json"}, stamps: true},
		{args: []string{"jobs", "list", "-o", "json"}},
		{args: []string{"recover"}},
		{args: []string{"recover", "-o", "json"}},
		// The daemon's verify counts its own records (the maintenance
		// schedule), so the JSON differs there; the table does not show it.
		{args: []string{"verify"}},
	}
	for _, s := range steps {
		name := strings.Join(s.args, " ")
		with := func(dir string) []string {
			args := []string{"--data-dir", dir}
			for _, a := range s.args {
				args = append(args, strings.ReplaceAll(a, "DIR", dir))
			}
			return args
		}
		dCode, dOut, dErr := run(t, nil, with("data")...)
		oCode, oOut, oErr := run(t, nil, with("twin")...)
		oOut = strings.ReplaceAll(oOut, "twin", "data")
		oErr = strings.ReplaceAll(oErr, "twin", "data")
		if s.stamps {
			dOut, oOut = stamp.ReplaceAllString(dOut, "STAMP"), stamp.ReplaceAllString(oOut, "STAMP")
		}
		if dCode != oCode || dOut != oOut {
			t.Errorf("%s: through the daemon (exit %d):\n%s%s\noffline (exit %d):\n%s%s", name, dCode, dOut, dErr, oCode, oOut, oErr)
			continue
		}
		if s.args[0] == "recover" {
			if want := "secauto serve (pid "; !strings.HasPrefix(dErr, want) || !strings.Contains(dErr, "recovered it when it started") {
				t.Errorf("%s: stderr does not say the daemon recovered at start: %q", name, dErr)
			}
			if s.args[len(s.args)-1] != "--dry-run" && !strings.Contains(dErr, "nothing was changed now") {
				t.Errorf("%s: stderr does not say nothing changed: %q", name, dErr)
			}
			continue
		}
		if dErr != oErr {
			t.Errorf("%s: stderr through the daemon %q, offline %q", name, dErr, oErr)
		}
	}

	// The answers came from the daemon, not from the files.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, route := range []string{"GET /jobs", "GET /job/{id}", "POST /admin/cleanup", "POST /admin/backups", "GET /admin/backups",
		"POST /admin/restore", "GET /admin/verify", "GET /admin/recover"} {
		if !strings.Contains(string(metrics), `route="`+route+`"`) {
			t.Errorf("the daemon answered no %s", route)
		}
	}
}

func TestDaemonWithTokens(t *testing.T) {
	t.Chdir(t.TempDir())
	seedJobs(t, "data")
	startDaemon(t, "data", server.Options{AuthTokens: []string{"s3cret-0123456789-1", "s3cret-0123456789-2"}})
	write := func(name, content string) {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config.yaml", "server:\n  auth_tokens: [s3cret-0123456789-1]\n")
	write("none.yaml", "server:\n  port: 8080\n")
	write("wrong.yaml", "server:\n  auth_tokens: [nope-0123456789abcdef]\n")

	if code, out, errOut := run(t, nil, "jobs", "list", "-o", "json"); code != ExitOK || !strings.Contains(out, "0197f0a1") {
		t.Errorf("with the token: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, "backup", "create"); code != ExitOK || !strings.Contains(out, "Wrote backup data/jobs.json.backup.") {
		t.Errorf("backup create with the token: exit %d\n%s%s", code, out, errOut)
	}
	for cfg, want := range map[string]string{"none.yaml": "this command sent no bearer token", "wrong.yaml": "is not one of its server.auth_tokens"} {
		for _, args := range [][]string{{"jobs", "list"}, {"cleanup", "--dry-run"}, {"verify"}} {
			code, out, errOut := run(t, nil, append([]string{"--config", cfg}, args...)...)
			if code != ExitUsage || out != "" || !strings.Contains(errOut, want) || strings.Contains(errOut, "--help") {
				t.Errorf("%s %v: exit %d, stdout %q, stderr %q", cfg, args, code, out, errOut)
			}
			if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "nope") {
				t.Errorf("stderr shows a token: %q", errOut)
			}
		}
	}
}

// A lock held by a daemon that does not answer: every command, reading or
// writing, exits 2 with one sentence that says what to do.
func TestUnreachableDaemonExitsTwo(t *testing.T) {
	t.Chdir(t.TempDir())
	seedJobs(t, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	host, _ := os.Hostname()
	tests := []struct {
		owner store.Owner
		want  string
	}{
		{store.Owner{PID: 4121, Host: host, Command: "secauto serve", Address: dead},
			"secauto: secauto serve (pid 4121) holds data directory data but its API at " + dead + " cannot be reached: connection refused; check that it is running, or stop it and run this command again\n"},
		{store.Owner{PID: 4121, Host: host, Command: "secauto serve"},
			"secauto: secauto serve (pid 4121) holds data directory data but has not recorded where its API listens yet; if it is starting, run this command again in a moment, else stop it and run this command again\n"},
		{store.Owner{PID: 4121, Host: "elsewhere.example", Command: "secauto serve", Address: dead},
			"secauto: secauto serve (pid 4121) on host elsewhere.example holds data directory data; run this command on elsewhere.example, where its API listens\n"},
	}
	commands := [][]string{
		{"jobs", "list"}, {"jobs", "show", "0197f0a1"}, {"cleanup"}, {"cleanup", "--dry-run"}, {"backup", "create"},
		{"backup", "list"}, {"backup", "restore", "data/jobs.json"}, {"verify"}, {"recover"}, {"recover", "--dry-run"},
	}
	for _, tt := range tests {
		held, err := store.Open(store.Options{Dir: "data", SnapshotInterval: -1, Owner: tt.owner})
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range commands {
			code, out, errOut := run(t, nil, append(args, "-o", "json")...)
			if code != ExitUsage || out != "" || errOut != tt.want {
				t.Errorf("%v beside %+v: exit %d, stdout %q, stderr:\n%s", args, tt.owner, code, out, errOut)
			}
		}
		if err := held.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Paths the daemon answers are printed through the data directory as the
// command names it.
func TestDaemonClientLocalPaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("data", 0o700); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("data")
	if err != nil {
		t.Fatal(err)
	}
	c := newDaemonClient("data", store.Owner{}, "", "test")
	for in, want := range map[string]string{
		filepath.Join(abs, "jobs.json.backup.20250709-143000"): filepath.Join("data", "jobs.json.backup.20250709-143000"),
		filepath.Join(abs, "jobs.json"):                        filepath.Join("data", "jobs.json"),
		"/somewhere/else/jobs.json.backup.x":                   "/somewhere/else/jobs.json.backup.x",
		"relative/path":                                        "relative/path",
		"":                                                     "",
	} {
		if got := c.local(in); got != want {
			t.Errorf("local(%q) = %q, want %q", in, got, want)
		}
	}
}

// "recover" beside a daemon prints the recovery the daemon ran at start,
// as "recover" prints the same recovery run offline, and changes nothing.
func TestDaemonRecoverReportsItsStart(t *testing.T) {
	t.Chdir(t.TempDir())
	seedJobs(t, "data")
	st, err := store.Open(store.Options{Dir: "data", SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	crashed, err := st.Create(&job.Job{Playbook: []job.Step{{Name: "wait", Action: "sleep", Params: map[string]any{"duration": "1h"}}}})
	if err == nil {
		_, err = st.Update(crashed.ID, func(j *job.Job) error { return j.Start(time.Now()) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	copyDir(t, "data", "twin0") // one copy for each offline recovery below
	copyDir(t, "data", "twin1")
	startDaemon(t, "data", server.Options{})

	times := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	for i, args := range [][]string{{"recover"}, {"recover", "-o", "json"}} {
		dCode, dOut, dErr := run(t, nil, append(args, "--data-dir", "data")...)
		oCode, oOut, oErr := run(t, nil, append(args, "--data-dir", fmt.Sprintf("twin%d", i))...)
		dOut, oOut = times.ReplaceAllString(dOut, "TIME"), times.ReplaceAllString(oOut, "TIME")
		if dCode != ExitOK || dCode != oCode || dOut != oOut || !strings.Contains(dOut, crashed.ID) {
			t.Errorf("%v: through the daemon (exit %d):\n%s%s\noffline (exit %d):\n%s%s", args, dCode, dOut, dErr, oCode, oOut, oErr)
		}
		if !strings.Contains(dErr, "already recovered it when it started") {
			t.Errorf("%v: stderr %q", args, dErr)
		}
	}
	// A dry run beside the daemon has nothing to do.
	code, out, errOut := run(t, nil, "recover", "--dry-run", "--data-dir", "data")
	if code != ExitOK || !strings.HasPrefix(out, "Nothing to recover") || !strings.Contains(errOut, "nothing to recover while it runs") {
		t.Errorf("recover --dry-run: exit %d\n%s%s", code, out, errOut)
	}
}
