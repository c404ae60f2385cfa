package cli

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// fakeAdmin answers what it is given and records what it was asked: no
// process, no files.
type fakeAdmin struct {
	dir string
	err error // every operation's error, when set

	jobs     []*job.Job
	cleanup  func(store.CleanupOptions) (*store.CleanupResult, error)
	backup   *store.BackupResult
	backups  []store.BackupInfo
	restored *Restored
	verify   *store.VerifyResult
	recovery *Recovery
	rotated  *store.RotateResult

	modes  []lockMode // what each open asked for
	calls  []string   // operations, in order, with their arguments
	closes int
}

// open is the fake's opener, for the options' Admin field.
func (a *fakeAdmin) open(mode lockMode) (Admin, error) {
	a.modes = append(a.modes, mode)
	return a, nil
}

func (a *fakeAdmin) call(format string, args ...any) {
	a.calls = append(a.calls, fmt.Sprintf(format, args...))
}

func (a *fakeAdmin) Dir() string  { return a.dir }
func (a *fakeAdmin) Close() error { a.closes++; return nil }

func (a *fakeAdmin) ListJobs(_ context.Context, f store.Filter) ([]*job.Job, error) {
	a.call("ListJobs %v", f.Statuses)
	return a.jobs, a.err
}

func (a *fakeAdmin) GetJob(_ context.Context, id string) (*job.Job, error) {
	a.call("GetJob %s", id)
	if a.err != nil {
		return nil, a.err
	}
	for _, j := range a.jobs {
		if strings.HasPrefix(j.ID, id) {
			return j, nil
		}
	}
	return nil, fmt.Errorf("cannot read job %s: %w", id, store.ErrNotFound)
}

func (a *fakeAdmin) Cleanup(_ context.Context, o store.CleanupOptions) (*store.CleanupResult, error) {
	a.call("Cleanup dry_run=%t retention=%s", o.DryRun, o.Retention)
	if a.err != nil {
		return nil, a.err
	}
	if a.cleanup != nil {
		return a.cleanup(o)
	}
	return &store.CleanupResult{DryRun: o.DryRun, IDs: []string{}}, nil
}

func (a *fakeAdmin) Backup(_ context.Context, compress *bool, _ store.Progress) (*store.BackupResult, error) {
	c := "as configured"
	if compress != nil {
		c = fmt.Sprint(*compress)
	}
	a.call("Backup compress=%s", c)
	return a.backup, a.err
}

func (a *fakeAdmin) ListBackups(context.Context) ([]store.BackupInfo, error) {
	a.call("ListBackups")
	return a.backups, a.err
}

func (a *fakeAdmin) Restore(_ context.Context, path string, _ store.Progress) (*Restored, error) {
	a.call("Restore %s", path)
	return a.restored, a.err
}

func (a *fakeAdmin) Verify(context.Context, store.Progress) (*store.VerifyResult, error) {
	a.call("Verify")
	return a.verify, a.err
}

func (a *fakeAdmin) Recover(_ context.Context, dryRun bool) (*Recovery, error) {
	a.call("Recover dry_run=%t", dryRun)
	if a.err != nil {
		return nil, a.err
	}
	if a.recovery != nil {
		return a.recovery, nil
	}
	return &Recovery{RecoverResult: store.RecoverResult{DryRun: dryRun, Actions: []store.RecoverAction{}}}, nil
}

func (a *fakeAdmin) RotateKeys(context.Context, store.Progress) (*store.RotateResult, error) {
	a.call("RotateKeys")
	return a.rotated, a.err
}

// Each run function opens its Admin with the lock mode its work needs,
// asks it for exactly that work, and closes it.
func TestRunFunctionsUseTheirAdmin(t *testing.T) {
	compress := true
	bad := &store.VerifyResult{Problems: []store.Problem{{File: "data/jobs.json", Message: "rot"}}}
	tests := []struct {
		name  string
		fake  *fakeAdmin
		run   func(*IOStreams, *fakeAdmin) error
		mode  lockMode
		calls []string
	}{
		{"jobs list", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return jobsListRun(&JobsListOptions{IO: ios, Now: time.Now, Admin: a.open, Statuses: []string{"failed"}})
			}, readOnly, []string{"ListJobs [failed]"}},
		{"jobs show", &fakeAdmin{jobs: sampleJobs()},
			func(ios *IOStreams, a *fakeAdmin) error {
				return jobsShowRun(&JobsShowOptions{IO: ios, Now: time.Now, Admin: a.open, ID: "0197f0a2"})
			}, readOnly, []string{"GetJob 0197f0a2"}},
		{"cleanup --dry-run", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return cleanupRun(&CleanupOptions{IO: ios, Admin: a.open, DryRun: true, OlderThan: "2d"})
			}, readOnly, []string{"Cleanup dry_run=true retention=48h0m0s"}},
		{"cleanup", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return cleanupRun(&CleanupOptions{IO: ios, Admin: a.open, OlderThan: "1h"})
			}, exclusive, []string{"Cleanup dry_run=false retention=1h0m0s"}},
		{"backup create", &fakeAdmin{backup: &store.BackupResult{Path: "data/b"}},
			func(ios *IOStreams, a *fakeAdmin) error {
				return backupCreateRun(&BackupCreateOptions{IO: ios, Admin: a.open})
			}, exclusive, []string{"Backup compress=as configured"}},
		{"backup create --compress", &fakeAdmin{backup: &store.BackupResult{Path: "data/b"}},
			func(ios *IOStreams, a *fakeAdmin) error {
				return backupCreateRun(&BackupCreateOptions{IO: ios, Admin: a.open, Compress: &compress})
			}, exclusive, []string{"Backup compress=true"}},
		{"backup list", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return backupListRun(&BackupListOptions{IO: ios, Now: time.Now, Admin: a.open})
			}, readOnly, []string{"ListBackups"}},
		{"backup restore", &fakeAdmin{dir: "data", restored: &Restored{}},
			func(ios *IOStreams, a *fakeAdmin) error {
				return backupRestoreRun(&BackupRestoreOptions{IO: ios, Admin: a.open, File: "b",
					Resolve: func(dir, file string) (string, error) { return dir + "/" + file, nil },
					Check:   func(string) (int, bool, error) { return 1, true, nil }})
			}, salvage, []string{"Restore data/b"}},
		{"verify", &fakeAdmin{verify: &store.VerifyResult{OK: true}},
			func(ios *IOStreams, a *fakeAdmin) error {
				return verifyRun(&VerifyOptions{IO: ios, Admin: a.open})
			}, readOnly, []string{"Verify"}},
		{"verify finding problems", &fakeAdmin{verify: bad},
			func(ios *IOStreams, a *fakeAdmin) error {
				if err := verifyRun(&VerifyOptions{IO: ios, Admin: a.open}); !errors.Is(err, errSilent) {
					return fmt.Errorf("verify: %v", err)
				}
				return nil
			}, readOnly, []string{"Verify", "ListBackups"}},
		{"recover", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return recoverRun(&RecoverOptions{IO: ios, Admin: a.open})
			}, exclusive, []string{"Recover dry_run=false"}},
		{"keys rotate", &fakeAdmin{rotated: &store.RotateResult{Jobs: 3, KeyID: "3f2a9c01"}},
			func(ios *IOStreams, a *fakeAdmin) error {
				return keysRotateRun(&KeysRotateOptions{IO: ios, Admin: a.open})
			}, exclusive, []string{"RotateKeys"}},
		{"recover --dry-run", &fakeAdmin{},
			func(ios *IOStreams, a *fakeAdmin) error {
				return recoverRun(&RecoverOptions{IO: ios, Admin: a.open, DryRun: true})
			}, readOnly, []string{"Recover dry_run=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := TestStreams()
			if err := tt.run(ios, tt.fake); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tt.fake.modes, []lockMode{tt.mode}) {
				t.Errorf("opened with %v, want [%v]", tt.fake.modes, tt.mode)
			}
			if !reflect.DeepEqual(tt.fake.calls, tt.calls) {
				t.Errorf("asked %q, want %q", tt.fake.calls, tt.calls)
			}
			if tt.fake.closes != 1 {
				t.Errorf("closed %d times", tt.fake.closes)
			}
		})
	}
}

// What an Admin cannot open or do is the command's error as it is, with
// nothing on stdout: a daemon that cannot be asked keeps its exit status 2.
func TestRunFunctionsPassAdminErrorsOn(t *testing.T) {
	unreachable := &daemonError{msg: "secauto serve (pid 7) holds data directory data but its API at 127.0.0.1:1 cannot be reached: connection refused",
		locked: &store.LockedError{Path: "data/secauto.lock"}}
	runs := map[string]func(*IOStreams, func(lockMode) (Admin, error)) error{
		"jobs list": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return jobsListRun(&JobsListOptions{IO: ios, Now: time.Now, Admin: open})
		},
		"jobs show": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return jobsShowRun(&JobsShowOptions{IO: ios, Now: time.Now, Admin: open, ID: "x"})
		},
		"cleanup": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return cleanupRun(&CleanupOptions{IO: ios, Admin: open, OlderThan: "1d"})
		},
		"backup create": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return backupCreateRun(&BackupCreateOptions{IO: ios, Admin: open})
		},
		"backup list": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return backupListRun(&BackupListOptions{IO: ios, Now: time.Now, Admin: open})
		},
		"backup restore": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return backupRestoreRun(&BackupRestoreOptions{IO: ios, Admin: open, File: "b",
				Resolve: func(dir, file string) (string, error) { return file, nil },
				Check:   func(string) (int, bool, error) { return 1, true, nil }})
		},
		"verify": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return verifyRun(&VerifyOptions{IO: ios, Admin: open})
		},
		"recover": func(ios *IOStreams, open func(lockMode) (Admin, error)) error {
			return recoverRun(&RecoverOptions{IO: ios, Admin: open})
		},
	}
	for name, run := range runs {
		for _, at := range []string{"open", "operation"} {
			ios, _, out, errOut := TestStreams()
			open := func(lockMode) (Admin, error) { return nil, unreachable }
			if at == "operation" {
				open = (&fakeAdmin{err: unreachable}).open
			}
			err := run(ios, open)
			if err != unreachable || exitCode(err) != ExitUsage || out.Len() != 0 || errOut.Len() != 0 {
				t.Errorf("%s, failing at %s: err %v (exit %d), stdout %q, stderr %q", name, at, err, exitCode(err), out, errOut)
			}
		}
	}
}

// A backup that does not verify is refused before the Admin is asked to
// restore it.
func TestRestoreRunRefusesBeforeAsking(t *testing.T) {
	ios, _, out, errOut := TestStreams()
	fake := &fakeAdmin{dir: "data"}
	err := backupRestoreRun(&BackupRestoreOptions{IO: ios, Admin: fake.open, File: "garbage.json",
		Resolve: func(dir, file string) (string, error) { return file, nil },
		Check:   func(string) (int, bool, error) { return 0, false, errors.New("not a jobs.json snapshot") }})
	want := "garbage.json is not a usable backup (not a jobs.json snapshot); nothing was changed: pick one that verifies with 'secauto backup list'"
	if err == nil || err.Error() != want || exitCode(err) != ExitFailure {
		t.Errorf("err %v, want %q", err, want)
	}
	if len(fake.calls) != 0 || out.Len() != 0 || errOut.Len() != 0 {
		t.Errorf("calls %q, stdout %q, stderr %q", fake.calls, out, errOut)
	}

	// A file without a checksum is restored, and the operator told.
	fake = &fakeAdmin{dir: "data", restored: &Restored{RestoreResult: store.RestoreResult{RestoredJobs: 2, SafetyBackup: "data/safety"}}}
	err = backupRestoreRun(&BackupRestoreOptions{IO: ios, Admin: fake.open, File: "copy.json", Output: formatJSON,
		Resolve: func(dir, file string) (string, error) { return file, nil },
		Check:   func(string) (int, bool, error) { return 2, false, nil }})
	if err != nil || !reflect.DeepEqual(fake.calls, []string{"Restore copy.json"}) {
		t.Fatalf("err %v, calls %q", err, fake.calls)
	}
	if !strings.HasPrefix(errOut.String(), "copy.json has no .sha256 file; its content verified") {
		t.Errorf("stderr %q", errOut)
	}
	if out.String() != "{\n  \"restored_jobs\": 2,\n  \"safety_backup\": \"data/safety\"\n}\n" {
		t.Errorf("stdout %q", out)
	}
}

// recover prints a daemon's report of its start as it prints its own, and
// says on stderr whose report it is.
func TestRecoverRunReportsTheDaemonsStart(t *testing.T) {
	started := time.Date(2025, 7, 9, 17, 0, 0, 0, time.UTC)
	rec := &Recovery{
		RecoverResult: store.RecoverResult{FailedRunning: 1, Actions: []store.RecoverAction{{JobID: "j1", From: job.Running, To: job.Failed, Reason: "interrupted; recovered"}}},
		Daemon:        "secauto serve (pid 7)", StartedAt: started,
	}
	ios, _, out, errOut := TestStreams()
	if err := recoverRun(&RecoverOptions{IO: ios, Admin: (&fakeAdmin{dir: "data", recovery: rec}).open, Output: formatTable}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "Marked job j1 failed: interrupted; recovered\n" {
		t.Errorf("stdout %q", out)
	}
	want := "secauto serve (pid 7) holds data directory data and already recovered it when it started at 2025-07-09T17:00:00Z; this is its report of that recovery, and nothing was changed now\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}

	ios, _, out, errOut = TestStreams()
	rec = &Recovery{RecoverResult: store.RecoverResult{DryRun: true, Actions: []store.RecoverAction{}}, Daemon: "secauto serve (pid 7)", StartedAt: started}
	if err := recoverRun(&RecoverOptions{IO: ios, Admin: (&fakeAdmin{dir: "data", recovery: rec}).open, DryRun: true, Output: formatTable}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Nothing to recover") || !strings.Contains(errOut.String(), "there is nothing to recover while it runs") {
		t.Errorf("dry run: stdout %q, stderr %q", out, errOut)
	}
}

// The command tree reaches each command's run function with the Admin the
// factory opens, named after the command, and with its flags.
func TestCommandsOpenTheFactorysAdmin(t *testing.T) {
	tests := []struct {
		args    []string
		command string
		mode    lockMode
		call    string
	}{
		{[]string{"jobs", "list", "-s", "running"}, "jobs", readOnly, "ListJobs [running]"},
		{[]string{"jobs", "show", "0197f0a1"}, "jobs", readOnly, "GetJob 0197f0a1"},
		{[]string{"cleanup", "--dry-run", "--older-than", "3d"}, "cleanup", readOnly, "Cleanup dry_run=true retention=72h0m0s"},
		{[]string{"backup", "create", "--compress=false"}, "backup create", exclusive, "Backup compress=false"},
		{[]string{"backup", "list"}, "backup list", readOnly, "ListBackups"},
		{[]string{"verify"}, "verify", readOnly, "Verify"},
		{[]string{"recover", "--dry-run"}, "recover", readOnly, "Recover dry_run=true"},
	}
	for _, tt := range tests {
		ios, _, _, errOut := TestStreams()
		f := NewFactory(ios, nil)
		fake := &fakeAdmin{dir: "data", jobs: sampleJobs(), backup: &store.BackupResult{}, verify: &store.VerifyResult{OK: true}}
		var commands []string
		f.OpenAdmin = func(command string, mode lockMode) (Admin, error) {
			commands = append(commands, command)
			return fake.open(mode)
		}
		if code := Run(f, tt.args); code != ExitOK {
			t.Errorf("%v: exit %d: %s", tt.args, code, errOut)
			continue
		}
		if !reflect.DeepEqual(commands, []string{tt.command}) || !reflect.DeepEqual(fake.modes, []lockMode{tt.mode}) ||
			!reflect.DeepEqual(fake.calls, []string{tt.call}) {
			t.Errorf("%v: opened %q with %v, asked %q; want %q with %v, asked %q", tt.args, commands, fake.modes, fake.calls, tt.command, tt.mode, tt.call)
		}
	}
}
