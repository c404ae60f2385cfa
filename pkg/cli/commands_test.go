package cli

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/spf13/cobra"
)

var now = time.Date(2025, 7, 9, 18, 0, 0, 0, time.UTC)

func tp(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// sampleJobs are the seed's three kinds of job, newest first.
func sampleJobs() []*job.Job {
	return []*job.Job{
		{
			ID: "0197f0a3-0000-7000-8000-000000000003", Status: job.Running,
			Playbook:  []job.Step{{Name: "wait", Action: "sleep", Params: map[string]any{"duration": "10m"}}},
			Context:   map[string]any{"ticket": "INC-7"},
			CreatedAt: *tp("2025-07-09T17:00:00Z"), StartedAt: tp("2025-07-09T17:00:01Z"),
		},
		{
			ID: "0197f0a2-0000-7000-8000-000000000002", Status: job.Failed,
			Playbook: []job.Step{{Name: "block", Action: "fail"}, {Name: "notify", Action: "log"}},
			Results: []job.Result{{Step: "block", Action: "fail", Status: "failed", Error: "firewall refused the rule",
				StartedAt: *tp("2025-07-09T16:00:01Z"), CompletedAt: tp("2025-07-09T16:00:02Z")}},
			Error:     `step "block" failed: firewall refused the rule and this message is long enough to be cut on a narrow terminal`,
			CreatedAt: *tp("2025-07-09T16:00:00Z"), StartedAt: tp("2025-07-09T16:00:01Z"), CompletedAt: tp("2025-07-09T16:00:02Z"),
		},
		{
			ID: "0197f0a1-0000-7000-8000-000000000001", Status: job.Completed,
			Playbook: []job.Step{{Name: "greet", Action: "log"}, {Name: "lookup", Action: "http"}},
			Context:  map[string]any{"user": "alice"},
			Results: []job.Result{
				{Step: "greet", Action: "log", Status: "ok", Output: "hello alice", StartedAt: *tp("2025-07-09T15:30:05Z"), CompletedAt: tp("2025-07-09T15:30:05Z")},
				{Step: "lookup", Action: "http", Status: "ok", Output: map[string]any{"status": 200, "body": map[string]any{"ip": "10.0.0.1"}},
					StartedAt: *tp("2025-07-09T15:30:05Z"), CompletedAt: tp("2025-07-09T15:30:45Z")},
			},
			CreatedAt: *tp("2025-07-09T15:30:00Z"), StartedAt: tp("2025-07-09T15:30:05Z"), CompletedAt: tp("2025-07-09T15:30:45Z"),
		},
	}
}

// fakeJobs is an Admin over a fixed list of jobs; it records the filter.
type fakeJobs struct {
	fakeAdmin
	jobs   []*job.Job
	filter store.Filter
	closed bool
}

func (f *fakeJobs) ListJobs(_ context.Context, fl store.Filter) ([]*job.Job, error) {
	f.filter = fl
	return f.jobs, nil
}

func (f *fakeJobs) GetJob(_ context.Context, id string) (*job.Job, error) {
	var found []*job.Job
	for _, j := range f.jobs {
		if strings.HasPrefix(j.ID, id) {
			found = append(found, j)
		}
	}
	switch len(found) {
	case 0:
		return nil, store.ErrNotFound
	case 1:
		return found[0], nil
	}
	return nil, store.ErrAmbiguous
}

func (f *fakeJobs) Close() error { f.closed = true; return nil }

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestJobsListPiped(t *testing.T) {
	ios, _, out, errOut := TestStreams()
	fake := &fakeJobs{jobs: sampleJobs()}
	opts := &JobsListOptions{IO: ios, Now: func() time.Time { return now }, Admin: func(lockMode) (Admin, error) { return fake, nil },
		Statuses: []string{"failed,completed", "running"}, Since: "2d", Limit: 5, Output: formatTable}
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	want := []store.Filter{{Statuses: []job.Status{job.Failed, job.Completed, job.Running}, Since: now.Add(-48 * time.Hour), Limit: 5}}
	if !reflect.DeepEqual(fake.filter, want[0]) {
		t.Errorf("filter = %+v, want %+v", fake.filter, want[0])
	}
	if !fake.closed {
		t.Error("store not closed")
	}
	got := out.String()
	wantOut := `ID                                    STATUS     STEPS  CREATED               DURATION  ERROR
0197f0a3-0000-7000-8000-000000000003  running    0/1    2025-07-09T17:00:00Z  59m59s
0197f0a2-0000-7000-8000-000000000002  failed     1/2    2025-07-09T16:00:00Z  1s        step "block" failed: firewall refused the rule and this message is long enough to be cut on a narrow terminal
0197f0a1-0000-7000-8000-000000000001  completed  2/2    2025-07-09T15:30:00Z  40s
`
	if got != wantOut {
		t.Errorf("piped table:\n%s\nwant:\n%s", got, wantOut)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestJobsListTerminal(t *testing.T) {
	ios, _, out, _ := TestStreams()
	ios.SetStdoutTTY(true)
	ios.SetColorEnabled(true)
	ios.SetTerminalWidth(120)
	fake := &fakeJobs{jobs: sampleJobs()}
	opts := &JobsListOptions{IO: ios, Now: func() time.Time { return now }, Admin: func(lockMode) (Admin, error) { return fake, nil }, Output: formatTable}
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "\x1b[31mfailed") || !strings.Contains(got, "\x1b[32mcompleted") {
		t.Errorf("statuses not coloured on a terminal:\n%q", got)
	}
	plain := ansi.ReplaceAllString(got, "")
	for _, want := range []string{"1 hour ago", "2 hours ago", "…"} {
		if !strings.Contains(plain, want) {
			t.Errorf("terminal table lacks %q:\n%s", want, plain)
		}
	}
	if strings.Contains(plain, "2025-07-09T") {
		t.Errorf("terminal table shows absolute times:\n%s", plain)
	}
	for _, line := range strings.Split(strings.TrimRight(plain, "\n"), "\n") {
		if n := len([]rune(line)); n > 120 {
			t.Errorf("line wider than the terminal (%d): %s", n, line)
		}
	}
}

func TestJobsListEmptyAndJSON(t *testing.T) {
	ios, _, out, errOut := TestStreams()
	fake := &fakeJobs{}
	opts := &JobsListOptions{IO: ios, Now: func() time.Time { return now }, Admin: func(lockMode) (Admin, error) { return fake, nil }, Output: formatTable}
	if err := jobsListRun(opts); err != nil {
		t.Fatalf("no jobs is not a failure: %v", err)
	}
	if out.Len() != 0 || errOut.String() != "no jobs found\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	opts.Output = formatJSON
	out.Reset()
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	if out.String() != "[]\n" {
		t.Errorf("empty json = %q, want []", out)
	}

	fake.jobs = sampleJobs()
	out.Reset()
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	var back []job.Job
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(back) != 3 || back[1].Status != job.Failed || back[2].Context["user"] != "alice" {
		t.Errorf("round trip lost data: %+v", back)
	}

	opts.Output = formatYAML
	out.Reset()
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "- id: 0197f0a3-0000-7000-8000-000000000003\n  status: running\n  playbook:\n") {
		t.Errorf("yaml does not keep the JSON field names and order:\n%s", out)
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Time{
		"":                     {},
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2025-07-01":           time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC),
		"2025-07-01T10:00:00Z": time.Date(2025, 7, 1, 10, 0, 0, 0, time.UTC),
		"2025-07-01T10:00":     time.Date(2025, 7, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "soon", "2025-13-01"} {
		if _, err := parseSince(in, now); exitCode(err) != ExitUsage {
			t.Errorf("parseSince(%q) error %v is not a usage error", in, err)
		}
	}
}

func TestJobsShow(t *testing.T) {
	ios, _, out, _ := TestStreams()
	fake := &fakeJobs{jobs: sampleJobs()}
	opts := &JobsShowOptions{IO: ios, Now: func() time.Time { return now }, Admin: func(lockMode) (Admin, error) { return fake, nil }, Output: formatTable}

	opts.ID = "0197f0a2"
	if err := jobsShowRun(opts); err != nil {
		t.Fatal(err)
	}
	want := `ID:        0197f0a2-0000-7000-8000-000000000002
Status:    failed
Created:   2025-07-09T16:00:00Z
Started:   2025-07-09T16:00:01Z
Completed: 2025-07-09T16:00:02Z
Duration:  1s
Error:     step "block" failed: firewall refused the rule and this message is long enough to be cut on a narrow terminal

Context:
  (empty)

Steps (2):
  1. block (fail)  failed  1s
     error:  firewall refused the rule
  2. notify (log)  not run
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}

	out.Reset()
	opts.ID = "0197f0a1"
	if err := jobsShowRun(opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  user: alice\n", "  1. greet (log)  ok  0ms\n     output: hello alice\n", "  2. lookup (http)  ok  40s\n     output:\n       body:\n         ip: 10.0.0.1\n       status: 200\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}

	out.Reset()
	opts.ID, opts.Output = "0197f0a3", formatJSON
	if err := jobsShowRun(opts); err != nil {
		t.Fatal(err)
	}
	var j job.Job
	if err := json.Unmarshal(out.Bytes(), &j); err != nil || j.Status != job.Running || j.Context["ticket"] != "INC-7" {
		t.Errorf("json: %v %+v", err, j)
	}

	for id, wantErr := range map[string]string{
		"zzz":     `no job has id or id prefix "zzz"; list jobs with 'secauto jobs list'`,
		"0197f0a": `id prefix "0197f0a" matches more than one job; give more of the id`,
	} {
		opts.ID = id
		err := jobsShowRun(opts)
		if err == nil || err.Error() != wantErr || exitCode(err) != ExitFailure {
			t.Errorf("show %s: %v (exit %d)", id, err, exitCode(err))
		}
	}
}

func TestJobsShowTerminal(t *testing.T) {
	ios, _, out, _ := TestStreams()
	ios.SetStdoutTTY(true)
	fake := &fakeJobs{jobs: sampleJobs()}
	opts := &JobsShowOptions{IO: ios, Now: func() time.Time { return now }, Admin: func(lockMode) (Admin, error) { return fake, nil }, ID: "0197f0a3", Output: formatTable}
	if err := jobsShowRun(opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Created:   2025-07-09T17:00:00Z (1 hour ago)\n") || !strings.Contains(out.String(), "Duration:  59m59s\n") {
		t.Errorf("terminal layout:\n%s", out)
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("coloured although colour is off:\n%q", out)
	}
}

// TestFlagParsing checks that flags reach the options, without running
// anything.
func TestFlagParsing(t *testing.T) {
	ios, _, _, _ := TestStreams()
	f := NewFactory(ios, nil)

	parse := func(cmd *cobra.Command, line string) error {
		cmd.SetArgs(strings.Fields(line))
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		return cmd.Execute()
	}

	var list *JobsListOptions
	if err := parse(NewCmdJobsList(f, func(o *JobsListOptions) error { list = o; return nil }), "--status failed,running -s completed --since 7d -n 20 -o yaml"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list.Statuses, []string{"failed", "running", "completed"}) || list.Since != "7d" || list.Limit != 20 || list.Output != formatYAML {
		t.Errorf("jobs list: %+v", list)
	}

	var show *JobsShowOptions
	if err := parse(NewCmdJobsShow(f, func(o *JobsShowOptions) error { show = o; return nil }), "0198 -o json"); err != nil {
		t.Fatal(err)
	}
	if show.ID != "0198" || show.Output != formatJSON {
		t.Errorf("jobs show: %+v", show)
	}

	var cl *CleanupOptions
	if err := parse(NewCmdCleanup(f, func(o *CleanupOptions) error { cl = o; return nil }), "--dry-run --older-than 30d"); err != nil {
		t.Fatal(err)
	}
	if !cl.DryRun || cl.OlderThan != "30d" || cl.Output != formatTable {
		t.Errorf("cleanup: %+v", cl)
	}

	var rc *RecoverOptions
	if err := parse(NewCmdRecover(f, func(o *RecoverOptions) error { rc = o; return nil }), "--dry-run -o json"); err != nil {
		t.Fatal(err)
	}
	if !rc.DryRun || rc.Output != formatJSON {
		t.Errorf("recover: %+v", rc)
	}

	var bc *BackupCreateOptions
	if err := parse(NewCmdBackupCreate(f, func(o *BackupCreateOptions) error { bc = o; return nil }), ""); err != nil {
		t.Fatal(err)
	}
	if bc.Compress != nil {
		t.Errorf("backup create without --compress must follow the config, got %v", *bc.Compress)
	}
	if err := parse(NewCmdBackupCreate(f, func(o *BackupCreateOptions) error { bc = o; return nil }), "--compress=false"); err != nil {
		t.Fatal(err)
	}
	if bc.Compress == nil || *bc.Compress {
		t.Errorf("backup create --compress=false: %v", bc.Compress)
	}

	var br *BackupRestoreOptions
	if err := parse(NewCmdBackupRestore(f, func(o *BackupRestoreOptions) error { br = o; return nil }), "data/jobs.json.backup.20250709-120000"); err != nil {
		t.Fatal(err)
	}
	if br.File != "data/jobs.json.backup.20250709-120000" {
		t.Errorf("backup restore: %+v", br)
	}

	var sv *ServeOptions
	if err := parse(NewCmdServe(f, func(o *ServeOptions) error { sv = o; return nil }), "--port 0 -w 3 --insecure"); err != nil {
		t.Fatal(err)
	}
	if sv.Port == nil || *sv.Port != 0 || sv.Workers == nil || *sv.Workers != 3 || sv.Address != nil || !sv.Insecure {
		t.Errorf("serve: %+v", sv)
	}
}
