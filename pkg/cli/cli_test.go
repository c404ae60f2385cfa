package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/store"
)

// run runs secauto in-process with test streams and returns the exit code
// and what it printed.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ios, _, out, errOut := TestStreams()
	f := NewFactory(ios, func(k string) string { return env[k] })
	code := Run(f, args)
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailure},
		{errSilent, ExitFailure},
		{usageErrorf("bad flag"), ExitUsage},
		{fmt.Errorf("wrapped: %w", usageErrorf("bad flag")), ExitUsage},
		{&configError{errors.New("config.yaml:3: x: unknown key")}, ExitUsage},
		{config.Errors{{File: "c.yaml", Line: 1, Key: "k", Msg: "m"}}, ExitUsage},
		{&store.LockedError{Path: "data/secauto.lock"}, ExitUsage},
		{fmt.Errorf("open: %w", &store.LockedError{Path: "x"}), ExitUsage},
		{&store.CorruptError{Path: "data/jobs.json", Reason: errors.New("bad")}, ExitFailure},
		{errors.New(`unknown command "x" for "secauto"`), ExitUsage},
		{store.ErrNotFound, ExitFailure},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestRewriteLegacyArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"-port", "8080", "-workers", "5"}, []string{"serve", "--port", "8080", "--workers", "5"}},
		{[]string{"-port=8080"}, []string{"serve", "--port=8080"}},
		{[]string{"--port", "9090"}, []string{"serve", "--port", "9090"}},
		{[]string{"-config", "c.yaml", "-port", "1"}, []string{"serve", "--config", "c.yaml", "--port", "1"}},
		{[]string{"-insecure", "-address", "0.0.0.0"}, []string{"serve", "--insecure", "--address", "0.0.0.0"}},
		// Today's command lines pass through untouched.
		{[]string{"serve", "--port", "8080"}, []string{"serve", "--port", "8080"}},
		{[]string{"jobs", "list", "-o", "json"}, []string{"jobs", "list", "-o", "json"}},
		{[]string{"--config", "c.yaml", "jobs", "list"}, []string{"--config", "c.yaml", "jobs", "list"}},
		{[]string{"-config", "c.yaml", "verify"}, []string{"--config", "c.yaml", "verify"}},
		{[]string{}, []string{}},
		{[]string{"--help"}, []string{"--help"}},
		{[]string{"jobs", "show", "--", "-port"}, []string{"jobs", "show", "--", "-port"}},
	}
	for _, tt := range tests {
		if got := rewriteLegacyArgs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("rewriteLegacyArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"bogus"}, `secauto: unknown command "bogus" for "secauto"`},
		{[]string{"jobs", "bogus"}, `secauto: unknown command "bogus" for "secauto jobs"`},
		{[]string{"jobs", "show"}, "secauto: missing job ID"},
		{[]string{"jobs", "show", "a", "b"}, "secauto: too many arguments"},
		{[]string{"jobs", "list", "-o", "xml"}, `secauto: invalid argument "xml" for "-o, --output" flag: use table, json or yaml`},
		{[]string{"jobs", "list", "--nope"}, "secauto: unknown flag: --nope"},
		{[]string{"jobs", "list", "--status", "done"}, `secauto: invalid --status: unknown status "done"`},
		{[]string{"jobs", "list", "--since", "yesterday"}, `secauto: invalid --since "yesterday"`},
		{[]string{"cleanup", "--older-than", "30"}, `secauto: invalid --older-than: missing unit in duration "30"`},
		{[]string{"completion", "tcsh"}, `secauto: unsupported shell "tcsh": use bash, zsh, fish or powershell`},
		{[]string{"verify", "extra"}, `secauto: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Chdir(t.TempDir()) // no config.yaml, no data directory
			code, out, errOut := run(t, nil, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, ExitUsage, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty on a usage error:\n%s", out)
			}
			if !strings.HasPrefix(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want it to start with %q", errOut, tt.wantErr)
			}
			if !strings.Contains(errOut, "--help' for usage.") {
				t.Errorf("stderr does not point at --help: %q", errOut)
			}
		})
	}
}

func TestConfigErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("config.yaml", []byte("jobs:\n  retention_days: 30\n  cleanup_intervall: 24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "jobs", "list")
	if code != ExitUsage || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := "secauto: config.yaml:3: jobs.cleanup_intervall: unknown key (did you mean cleanup_interval?)\n"
	if errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}

	// $SECAUTO_CONFIG names the file when --config does not.
	if err := os.WriteFile("other.yaml", []byte("server:\n  port: 99999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, map[string]string{"SECAUTO_CONFIG": "other.yaml"}, "verify")
	if code != ExitUsage || !strings.Contains(errOut, "other.yaml:2: server.port: 99999 is out of range") {
		t.Errorf("env config: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, nil, "--config", "missing.yaml", "verify")
	if code != ExitUsage || !strings.Contains(errOut, "config file missing.yaml does not exist") {
		t.Errorf("missing config: exit %d, stderr %q", code, errOut)
	}
	// Help, version and completion need no configuration.
	for _, args := range [][]string{{"--help"}, {"version"}, {"completion", "bash"}} {
		if code, _, errOut := run(t, nil, args...); code != ExitOK {
			t.Errorf("%v with a broken config: exit %d, %s", args, code, errOut)
		}
	}
}

func TestMissingDataDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{{"jobs", "list"}, {"verify"}, {"cleanup"}, {"backup", "list"}} {
		code, out, errOut := run(t, nil, append(args, "--data-dir", "nowhere")...)
		if code != ExitFailure || out != "" {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
		if !strings.Contains(errOut, "data directory nowhere does not exist; check --data-dir") {
			t.Errorf("%v: stderr %q", args, errOut)
		}
		if _, err := os.Stat("nowhere"); err == nil {
			t.Fatalf("%v created the data directory", args)
		}
	}
}

// A data directory held by another command (not a daemon, which is asked
// instead: see daemon_test.go) stops writing commands with exit status 2.
func TestLockedDataDirectoryExitsTwo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	held, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Owner: store.Owner{PID: 4121, Command: "secauto backup restore", StartedAt: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	for _, args := range [][]string{{"cleanup"}, {"backup", "create"}, {"recover"}} {
		code, out, errOut := run(t, nil, append(args, "--data-dir", dir)...)
		if code != ExitUsage || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if !strings.Contains(errOut, "secauto backup restore (pid 4121)") {
			t.Errorf("%v: stderr does not name the holder: %q", args, errOut)
		}
	}
	// Reading needs no lock.
	for _, args := range [][]string{{"jobs", "list"}, {"verify"}, {"cleanup", "--dry-run"}, {"recover", "--dry-run"}, {"backup", "list"}} {
		if code, _, errOut := run(t, nil, append(args, "--data-dir", dir)...); code != ExitOK {
			t.Errorf("%v beside a writer: exit %d, %s", args, code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	ios, _, out, _ := TestStreams()
	err := versionRun(&VersionOptions{IO: ios, Build: BuildInfo{Version: "1.4.0", Commit: "0123456789abcdef0123", Date: "2025-07-09"}, Output: formatTable})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "secauto 1.4.0 (commit 0123456789ab, built 2025-07-09, go") {
		t.Errorf("got %q", out.String())
	}
	out.Reset()
	if err := versionRun(&VersionOptions{IO: ios, Build: BuildInfo{Version: "1.4.0"}, Output: formatJSON}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"version": "1.4.0"`) {
		t.Errorf("json: %s", out.String())
	}
}

func TestDynamicCompletion(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data", 0o700); err != nil {
		t.Fatal(err)
	}
	seed := `{
  "0197f0a1-0000-7000-8000-000000000001": {"id": "0197f0a1-0000-7000-8000-000000000001", "status": "completed", "playbook": [], "context": {}, "results": [], "error": "", "created_at": "2025-07-09T15:30:00Z", "started_at": "2025-07-09T15:30:05Z", "completed_at": "2025-07-09T15:30:45Z"},
  "0197f0b2-0000-7000-8000-000000000002": {"id": "0197f0b2-0000-7000-8000-000000000002", "status": "pending", "playbook": [], "context": {}, "results": [], "error": "", "created_at": "2025-07-09T16:00:00Z"}
}`
	if err := os.WriteFile(filepath.Join("data", "jobs.json"), []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run(t, nil, "__complete", "jobs", "show", "0197f0b")
	if code != 0 || !strings.Contains(out, "0197f0b2-0000-7000-8000-000000000002\tpending, created 2025-07-09T16:00:00Z\n") || strings.Contains(out, "0197f0a1") {
		t.Errorf("job id completion: exit %d\n%s", code, out)
	}

	if code, _, errOut := run(t, nil, "backup", "create"); code != 0 {
		t.Fatalf("backup create: %s", errOut)
	}
	code, out, _ = run(t, nil, "__complete", "backup", "restore", "data/")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "data/jobs.json.backup.") || strings.HasSuffix(lines[0], ".sha256") {
		t.Errorf("backup completion: exit %d\n%s", code, out)
	}
}
