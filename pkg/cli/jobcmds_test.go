package cli

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// storedJobs reads every job of dir, as a command that only reads does.
func storedJobs(t *testing.T, dir string) map[string]*job.Job {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := st.List(store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*job.Job{}
	for _, j := range list {
		out[j.ID] = j
	}
	return out
}

// addLiveJobs stores a pending job and a running one (as a crash leaves
// it) in dir, and returns their ids.
func addLiveJobs(t *testing.T, dir string) (pending, running string) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	steps := []job.Step{{Name: "nap", Action: "sleep", Params: map[string]any{"duration": "1h"}}}
	p, err := st.Create(&job.Job{Playbook: steps})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Create(&job.Job{Playbook: steps, CreatedAt: time.Now().Add(-48 * time.Hour)})
	if err == nil {
		_, err = st.Update(r.ID, func(j *job.Job) error { return j.Start(time.Now()) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return p.ID, r.ID
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output %q is not what was expected: %v", s, err)
	}
	return v
}

const quickPlaybook = `{"playbook": [
	{"name": "greet", "action": "log", "params": {"message": "hello {{.context.user}}"}},
	{"name": "mark", "action": "set", "params": {"seen": "yes"}}],
	"context": {"user": "alice", "keep": "file"}}`

// A job queued before the first serve creates the data directory, as serve
// would; reading commands still refuse a directory that is not there.
func TestRunCreatesTheDataDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, "pb.json", quickPlaybook)
	if code, _, errOut := run(t, nil, "--data-dir", "data", "jobs", "list"); code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("jobs list on no directory: exit %d: %s", code, errOut)
	}
	code, out, errOut := run(t, nil, "--data-dir", "data", "run", "pb.json", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	res := decode[server.SubmitResponse](t, out)
	if j := storedJobs(t, "data")[res.JobID]; j == nil || j.Status != job.Pending {
		t.Fatalf("stored %+v", j)
	}
	if st, err := os.Stat("data"); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v %v", st, err)
	}
}

func TestRunOffline(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data", 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, "pb.json", quickPlaybook)
	writeFile(t, "ctx.yaml", "user: bob\nlevel: 3\n")
	code, out, errOut := run(t, nil, "--data-dir", "data", "run", "pb.json", "--context-file", "ctx.yaml", "--context", "user=carol", "-c", "tag=a=b", "-o", "json")
	if code != 0 || !strings.Contains(errOut, "no daemon is running") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	res := decode[server.SubmitResponse](t, out)
	j := storedJobs(t, "data")[res.JobID]
	if res.Status != job.Pending || j == nil || j.Status != job.Pending {
		t.Fatalf("answered %s; stored %+v", out, j)
	}
	want := map[string]any{"user": "carol", "keep": "file", "level": 3.0, "tag": "a=b"}
	if b, _ := json.Marshal(j.Context); string(b) != mustJSON(t, want) {
		t.Fatalf("context %s, want %s", b, mustJSON(t, want))
	}

	// YAML with the same fields, from standard input.
	ios, in, stdout, _ := TestStreams()
	in.WriteString("playbook:\n  - name: say\n    action: log\n    params: {message: hi}\non_interrupt: retry\nmax_attempts: 2\n")
	f := NewFactory(ios, nil)
	if code := Run(f, []string{"--data-dir", "data", "run", "-", "-o", "json"}); code != 0 {
		t.Fatalf("run - exit %d", code)
	}
	y := storedJobs(t, "data")[decode[server.SubmitResponse](t, stdout.String()).JobID]
	if y == nil || y.OnInterrupt != job.OnInterruptRetry || y.MaxAttempts != 2 || y.Playbook[0].Name != "say" {
		t.Fatalf("stored %+v", y)
	}

	// Every refusal exits 2, stores nothing and never repeats a value.
	writeFile(t, "arr.json", `["hunter2"]`)
	writeFile(t, "bad.json", `{"playbook": [{"name": "a", "action": "nope"}], "context": {"token": "hunter2"}}`)
	writeFile(t, "unknown.json", `{"playbook": [{"name": "a", "action": "log"}], "secret": "hunter2"}`)
	writeFile(t, "torn.json", `{"playbook": "hunter2`)
	writeFile(t, "big.json", `{"playbook": [], "context": {"x": "`+strings.Repeat("a", 2<<20)+`"}}`)
	writeFile(t, "twice.yaml", "playbook: []\n---\nplaybook: []\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pb.json", "--context", "hunter2"}, "invalid --context (the first): give KEY=VALUE"},
		{[]string{"pb.json", "--context", "=hunter2"}, "give KEY=VALUE"},
		{[]string{"pb.json", "--context-file", "arr.json"}, "must hold an object of KEY: VALUE, not an array"},
		{[]string{"pb.json", "--context-file", "nope.json"}, "cannot read nope.json"},
		{[]string{"bad.json"}, `bad.json: invalid playbook: step "a" (1): unknown action "nope"`},
		{[]string{"unknown.json"}, `unknown field "secret"`},
		{[]string{"torn.json"}, "not valid JSON"},
		{[]string{"big.json"}, "larger than 1048576 bytes"},
		{[]string{"twice.yaml"}, "more than one YAML document"},
		{[]string{"pb.json", "--wait"}, "--wait needs a running daemon"},
	} {
		before := len(storedJobs(t, "data"))
		code, out, errOut := run(t, nil, append([]string{"--data-dir", "data", "run"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "hunter2") {
			t.Errorf("run %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
		if after := len(storedJobs(t, "data")); after != before {
			t.Errorf("run %v stored a job", tc.args)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJobCommandsOffline(t *testing.T) {
	t.Chdir(t.TempDir())
	ids, _ := seedJobs(t, "data")
	cancelled, failed, completed, old := ids[0], ids[1], ids[2], ids[3]
	pending, running := addLiveJobs(t, "data")
	jobs := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, nil, append([]string{"--data-dir", "data"}, args...)...)
	}

	// cancel: the live ones; an ended job or an unknown id is exit 1, and
	// the others are still cancelled.
	code, out, errOut := jobs("jobs", "cancel", pending, completed, "../x", "-o", "json")
	if code != 1 || !strings.Contains(errOut, "job "+completed+" is already completed; only pending and running jobs can be cancelled") ||
		!strings.Contains(errOut, `no job has id or id prefix "../x"`) {
		t.Fatalf("cancel: exit %d: %s", code, errOut)
	}
	if got := decode[[]*job.Job](t, out); len(got) != 1 || got[0].ID != pending || got[0].Status != job.Cancelled || got[0].Error != server.CancelledByRequest {
		t.Fatalf("cancel printed %s", out)
	}
	if code, out, _ := jobs("jobs", "cancel", running); code != 0 || out != "Cancelled job "+running+" (cancelled)\n" {
		t.Fatalf("cancel of a job a crash left running: exit %d %q", code, out)
	}

	// rerun: a new pending job from the submitted context, linked both ways.
	code, out, errOut = jobs("jobs", "rerun", completed[:12], "-o", "json")
	if code != 0 || !strings.Contains(errOut, "no daemon is running") {
		t.Fatalf("rerun: exit %d: %s", code, errOut)
	}
	res := decode[server.SubmitResponse](t, out)
	all := storedJobs(t, "data")
	if res.RerunOf != completed || all[res.JobID].RerunOf != completed || all[res.JobID].Status != job.Pending ||
		len(all[completed].Reruns) != 1 || all[completed].Reruns[0] != res.JobID {
		t.Fatalf("rerun answered %s; stored %+v and %+v", out, all[res.JobID], all[completed])
	}
	if code, _, errOut := jobs("jobs", "rerun", "0197f0a"); code != 1 || !strings.Contains(errOut, "matches more than one job") {
		t.Fatalf("rerun of an ambiguous prefix: exit %d %s", code, errOut)
	}
	if code, _, _ := jobs("jobs", "rerun", completed, "--wait"); code != 2 {
		t.Fatalf("rerun --wait offline: exit %d", code)
	}
	if code, out, _ := jobs("jobs", "show", completed); code != 0 || !strings.Contains(out, "Reruns:    "+res.JobID) {
		t.Fatalf("show: %s", out)
	}

	// watch: an ended job's history at once; a live one needs the daemon.
	code, out, _ = jobs("jobs", "watch", completed)
	if code != 0 || out != "step 1 greet (log)  ok  2s\njob "+completed+" completed\njob "+completed+" ended completed in 41s, 1 of 2 steps recorded\n" {
		t.Fatalf("watch of a completed job: exit %d %q", code, out)
	}
	if code, out, errOut := jobs("jobs", "watch", failed, "-o", "json"); code != 1 || decode[*job.Job](t, out).Status != job.Failed || !strings.Contains(errOut, "step 2 block (fail)  failed") {
		t.Fatalf("watch of a failed job: exit %d %s %s", code, out, errOut)
	}
	if code, _, errOut := jobs("jobs", "watch", res.JobID); code != 2 || !strings.Contains(errOut, "is pending and no daemon runs data directory data") {
		t.Fatalf("watch of a pending job offline: exit %d %s", code, errOut)
	}

	// stats from the store.
	code, out, _ = jobs("stats", "-o", "json")
	st := decode[server.StatsResponse](t, out)
	if code != 0 || !st.Offline || st.StartedAt != nil || st.Total != 7 || st.Jobs[job.Pending] != 1 || st.Jobs[job.Cancelled] != 3 || st.QueueLength != 1 {
		t.Fatalf("stats: exit %d %s", code, out)
	}
	if code, out, _ := jobs("stats"); code != 0 || !strings.Contains(out, "not running; figures from the store") {
		t.Fatalf("stats table: %s", out)
	}

	// delete: a selection leaves live jobs alone unless named.
	code, out, _ = jobs("jobs", "delete", "--older-than", "1d", "--dry-run", "-o", "json")
	if got := decode[[]*job.Job](t, out); code != 0 || len(got) != 2 || got[0].ID != running || got[1].ID != old {
		t.Fatalf("dry run: exit %d %s", code, out)
	}
	if len(storedJobs(t, "data")) != 7 {
		t.Fatal("a dry run deleted")
	}
	if code, _, errOut := jobs("jobs", "delete", "--status", "pending", completed); code != 2 || !strings.Contains(errOut, "not both") {
		t.Fatalf("ids and a selection: exit %d %s", code, errOut)
	}
	if code, _, _ := jobs("jobs", "delete"); code != 2 {
		t.Fatalf("delete of nothing named: exit %d", code)
	}
	code, out, _ = jobs("jobs", "delete", "--status", "completed", "--older-than", "30d")
	if code != 0 || out != "Deleted job "+old+" (completed)\n" {
		t.Fatalf("delete old completed: exit %d %q", code, out)
	}
	code, out, _ = jobs("jobs", "delete", "--status", "pending", "-o", "json")
	if got := decode[[]*job.Job](t, out); code != 0 || len(got) != 1 || got[0].ID != res.JobID || got[0].Status != job.Cancelled {
		t.Fatalf("delete of the pending rerun: exit %d %s", code, out)
	}
	left := storedJobs(t, "data")
	if len(left) != 5 || left[old] != nil || left[res.JobID] != nil || left[completed] == nil || left[cancelled] == nil {
		t.Fatalf("left %d jobs", len(left))
	}
	if code, _, errOut := jobs("jobs", "delete", "nope"); code != 1 || !strings.Contains(errOut, `no job has id or id prefix "nope"`) {
		t.Fatalf("delete nope: exit %d %s", code, errOut)
	}
	if code, _, _ := run(t, nil, "--data-dir", "data", "verify"); code != 0 {
		t.Fatal("the store does not verify")
	}
}

func TestJobCommandsBesideDaemon(t *testing.T) {
	t.Chdir(t.TempDir())
	ids, _ := seedJobs(t, "data")
	startDaemon(t, "data", server.Options{Workers: 2})
	jobs := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, nil, append([]string{"--data-dir", "data"}, args...)...)
	}
	writeFile(t, "pb.json", quickPlaybook)
	writeFile(t, "fail.json", `{"playbook": [{"name": "no", "action": "fail", "params": {"message": "refused"}}]}`)
	writeFile(t, "long.json", `{"playbook": [{"name": "first", "action": "log", "params": {"message": "x"}}, {"name": "nap", "action": "sleep", "params": {"duration": "1h"}}]}`)
	writeFile(t, "short.json", `{"playbook": [{"name": "nap", "action": "sleep", "params": {"duration": "300ms"}}, {"name": "after", "action": "log", "params": {"message": "x"}}]}`)

	// run --wait: the job as it ended; exit 1 unless it completed.
	code, out, errOut := jobs("run", "pb.json", "--wait", "--context", "user=dave", "-o", "json")
	done := decode[*job.Job](t, out)
	if code != 0 || done.Status != job.Completed || done.Context["user"] != "dave" || done.Context["seen"] != "yes" ||
		!strings.Contains(errOut, "step 2 mark (set)  ok") || strings.Contains(errOut, "no daemon") {
		t.Fatalf("run --wait: exit %d %s %s", code, out, errOut)
	}
	if code, out, errOut := jobs("run", "fail.json", "--wait"); code != 1 || !strings.Contains(out, "Status:    failed") || !strings.Contains(errOut, " failed\n") {
		t.Fatalf("run --wait of a failing playbook: exit %d %s %s", code, out, errOut)
	}
	if code, _, errOut := jobs("run", "pb.json", "--context", "nokey"); code != 2 || !strings.Contains(errOut, "give KEY=VALUE") {
		t.Fatalf("bad --context beside the daemon: exit %d %s", code, errOut)
	}

	// watch a job that ends while watched.
	code, out, _ = jobs("run", "short.json", "-o", "json")
	short := decode[server.SubmitResponse](t, out).JobID
	code, out, _ = jobs("jobs", "watch", short)
	if code != 0 || !strings.HasSuffix(out, "job "+short+" completed\njob "+short+" ended completed in "+strings.Fields(out[strings.LastIndex(out, " in ")+4:])[0]+" 2 of 2 steps recorded\n") ||
		!strings.Contains(out, "step 1 nap (sleep)  ok") || !strings.Contains(out, "step 2 after (log)  ok") {
		t.Fatalf("watch: exit %d %q", code, out)
	}

	// cancel and delete running jobs; a cancelled job cannot be again.
	_, out, _ = jobs("run", "long.json", "-o", "json")
	long := decode[server.SubmitResponse](t, out).JobID
	waitJob(t, long, job.Running)
	if code, out, _ := jobs("jobs", "cancel", long); code != 0 || out != "Cancelled job "+long+" (cancelled)\n" {
		t.Fatalf("cancel: exit %d %q", code, out)
	}
	if code, _, errOut := jobs("jobs", "cancel", long); code != 1 || !strings.Contains(errOut, "is already cancelled") {
		t.Fatalf("cancel again: exit %d %s", code, errOut)
	}
	_, out, _ = jobs("run", "long.json", "-o", "json")
	long2 := decode[server.SubmitResponse](t, out).JobID
	waitJob(t, long2, job.Running)
	code, out, _ = jobs("jobs", "delete", long2, "-o", "json")
	if got := decode[[]*job.Job](t, out); code != 0 || len(got) != 1 || got[0].Status != job.Cancelled {
		t.Fatalf("delete of a running job: exit %d %s", code, out)
	}
	if code, _, _ := jobs("jobs", "show", long2); code != 1 {
		t.Fatal("the deleted job is still there")
	}

	// rerun through the daemon runs the new job now.
	code, out, errOut = jobs("jobs", "rerun", done.ID, "--wait", "-o", "json")
	re := decode[*job.Job](t, out)
	if code != 0 || re.RerunOf != done.ID || re.Status != job.Completed || re.Context["user"] != "dave" {
		t.Fatalf("rerun --wait: exit %d %s %s", code, out, errOut)
	}
	if code, out, _ := jobs("jobs", "show", done.ID, "-o", "json"); code != 0 || decode[*job.Job](t, out).Reruns[0] != re.ID {
		t.Fatalf("the original does not list its rerun: %s", out)
	}

	// Errors read as offline.
	for _, args := range [][]string{{"jobs", "rerun", "nope"}, {"jobs", "watch", "ffff"}, {"jobs", "cancel", ids[1]}, {"jobs", "delete", "a/../b"}} {
		if code, _, errOut := jobs(args...); code != 1 || !strings.Contains(errOut, "secauto: ") {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}

	code, out, _ = jobs("stats", "-o", "json")
	st := decode[server.StatsResponse](t, out)
	if code != 0 || st.Offline || st.StartedAt == nil || st.Workers != 2 || st.Jobs[job.Completed] < 3 {
		t.Fatalf("stats: exit %d %s", code, out)
	}
}

// waitJob waits until the job in ./data has the status, asking the daemon.
func waitJob(t *testing.T, id string, want job.Status) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, _ := run(t, nil, "--data-dir", "data", "jobs", "show", id, "-o", "json")
		if code == 0 && decode[*job.Job](t, out).Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not become %s", id, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// list --watch lists until interrupted, and then exits 0.
func TestJobsListWatch(t *testing.T) {
	t.Chdir(t.TempDir())
	seedJobs(t, "data")
	ios, _, out, _ := TestStreams()
	f := NewFactory(ios, nil)
	f.DataDir = "data"
	ctx, cancel := context.WithCancel(context.Background())
	opts := &JobsListOptions{IO: ios, Now: time.Now, Admin: adminFor(f, "jobs"), Watch: true, Interval: 100 * time.Millisecond,
		Limit: 1, Output: formatJSON, Context: func() (context.Context, context.CancelFunc) { return ctx, cancel }}
	go func() {
		time.Sleep(350 * time.Millisecond)
		cancel()
	}()
	if err := jobsListRun(opts); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("%d listings, want several: %q", len(lines), out.String())
	}
	for _, l := range lines {
		if got := decode[[]*job.Job](t, l); len(got) != 1 {
			t.Fatalf("listing %s", l)
		}
	}
	opts.Interval = time.Millisecond
	if err := jobsListRun(opts); exitCode(err) != 2 {
		t.Fatalf("a 1ms interval: %v", err)
	}
}
