package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

const logJob = `{"playbook":[{"name":"note","action":"log","params":{"message":"hi"}}]}`

func decodeBody[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return v
}

// waitEvents waits until the receiver has got an event of each name.
func waitEvents(t *testing.T, r *receiver, names ...string) {
	t.Helper()
	waitFor(t, "events "+strings.Join(names, ", "), func() bool {
		got := r.list()
		for _, n := range names {
			if !slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, n) }) {
				return false
			}
		}
		return true
	})
}

func TestAdminEndpointsNeedToken(t *testing.T) {
	e := newEnv(t, Options{AuthTokens: []string{"t0k"}, Maintenance: Maintenance{Retention: time.Hour}})
	endpoints := []struct{ method, path, body string }{
		{"POST", "/admin/cleanup", `{"dry_run":true}`},
		{"POST", "/admin/backups", ""},
		{"GET", "/admin/backups", ""},
		{"POST", "/admin/restore", `{"name":"jobs.json.backup.20000101-000000"}`},
		{"GET", "/admin/verify", ""},
		{"GET", "/admin/recover", ""},
		{"POST", "/admin/keys/rotate", ""},
	}
	for _, ep := range endpoints {
		if code, b := e.doToken(ep.method, ep.path, ep.body, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without token: %d %s", ep.method, ep.path, code, b)
		}
		if code, b := e.doToken(ep.method, ep.path, ep.body, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d %s", ep.method, ep.path, code, b)
		}
		if code, b := e.do(ep.method, ep.path, ep.body); code == http.StatusUnauthorized || code == http.StatusNotFound {
			t.Errorf("%s %s with the token: %d %s", ep.method, ep.path, code, b)
		}
	}
	if n := len(backupFiles(t, e.dir)); n != 1 {
		t.Errorf("%d backups after one authorised POST /admin/backups", n)
	}
}

func backupFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, store.SnapshotFile+".backup.*"))
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(m, func(p string) bool { return strings.HasSuffix(p, ".sha256") })
}

func TestAdminCleanup(t *testing.T) {
	var logs syncBuffer
	events, hook := newReceiver(t, "s3cret")
	// The daemon's clock is two days ahead: jobs that end now are two
	// days old to cleanup.
	e := newEnv(t, Options{
		Now:         func() time.Time { return time.Now().Add(48 * time.Hour) },
		Logger:      slog.New(slog.NewJSONHandler(&logs, nil)),
		Webhooks:    []webhook.Endpoint{{URL: hook.URL, Secret: "s3cret", Events: []string{webhook.CleanupCompleted}}},
		Maintenance: Maintenance{Retention: 24 * time.Hour},
	})
	done := e.submit(logJob)
	e.waitStatus(done, job.Completed)
	live, err := e.st.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log"}}})
	if err != nil {
		t.Fatal(err)
	}

	// Dry run with the configured retention: reports, deletes nothing.
	code, b := e.do("POST", "/admin/cleanup", `{"dry_run":true}`)
	res := decodeBody[store.CleanupResult](t, b)
	if code != http.StatusOK || res.Deleted != 1 || !res.DryRun || !slices.Equal(res.IDs, []string{done}) {
		t.Fatalf("dry run: %d %s", code, b)
	}
	e.job(done)

	// A retention longer than the jobs' age deletes nothing.
	code, b = e.do("POST", "/admin/cleanup", `{"older_than":"30d"}`)
	if res := decodeBody[store.CleanupResult](t, b); code != http.StatusOK || res.Deleted != 0 || res.DryRun {
		t.Fatalf("older_than 30d: %d %s", code, b)
	}
	code, b = e.do("POST", "/admin/cleanup", `{"older_than":"100000d","retention_by_status":{"completed":"1d"}}`)
	if res := decodeBody[store.CleanupResult](t, b); code != http.StatusOK || res.Deleted != 1 {
		t.Fatalf("per-status retention: %d %s", code, b)
	}
	if code, _ := e.do("GET", "/job/"+done, ""); code != http.StatusNotFound {
		t.Errorf("cleaned job still there: %d", code)
	}
	if j := e.job(live.ID); j.Status != job.Pending {
		t.Errorf("pending job: %s", j.Status)
	}
	waitEvents(t, events, webhook.CleanupCompleted)
	out := logs.String()
	if !strings.Contains(out, `"msg":"cleanup finished"`) || !strings.Contains(out, `"deleted":1`) || !strings.Contains(out, `"dry_run":true`) {
		t.Errorf("cleanup not logged:\n%s", out)
	}

	for _, body := range []string{`{"older_than":"soon"}`, `{"older_than":"0s"}`, `{"retention_by_status":{"running":"1d"}}`, `{"dry":true}`} {
		if code, b := e.do("POST", "/admin/cleanup", body); code != http.StatusBadRequest || errorOf(t, b) == "" {
			t.Errorf("cleanup %s: %d %s", body, code, b)
		}
	}
	// An empty body is a cleanup with the configured retention.
	if code, b := e.do("POST", "/admin/cleanup", ""); code != http.StatusOK {
		t.Errorf("cleanup without body: %d %s", code, b)
	}
}

func TestAdminBackupsAndVerify(t *testing.T) {
	events, hook := newReceiver(t, "s3cret")
	e := newEnv(t, Options{Webhooks: []webhook.Endpoint{{URL: hook.URL, Secret: "s3cret"}}, Maintenance: Maintenance{BackupKeep: 5}})
	id := e.submit(logJob)
	e.waitStatus(id, job.Completed)

	code, b := e.do("POST", "/admin/backups", "")
	res := decodeBody[store.BackupResult](t, b)
	if code != http.StatusCreated || res.Jobs != 1 || len(res.SHA256) != 64 || !filepath.IsAbs(res.Path) || strings.HasSuffix(res.Path, ".gz") {
		t.Fatalf("backup: %d %s", code, b)
	}
	if n, err := store.VerifyBackup(res.Path); err != nil || n != 1 {
		t.Errorf("the backup does not verify: %d %v", n, err)
	}
	waitEvents(t, events, webhook.BackupCreated)

	time.Sleep(1100 * time.Millisecond) // backups are named by the second
	code, b = e.do("POST", "/admin/backups", `{"compress":true}`)
	gz := decodeBody[store.BackupResult](t, b)
	if code != http.StatusCreated || !strings.HasSuffix(gz.Path, ".gz") {
		t.Fatalf("compressed backup: %d %s", code, b)
	}

	code, b = e.do("GET", "/admin/backups", "")
	list := decodeBody[[]store.BackupInfo](t, b)
	if code != http.StatusOK || len(list) != 2 || list[0].Path != gz.Path || list[1].Path != res.Path || !list[0].Verified || !list[1].Verified || list[1].Jobs != 1 {
		t.Fatalf("list: %d %s", code, b)
	}
	want, err := store.ListBackups(e.dir)
	if err != nil || len(want) != len(list) || want[0].Size != list[0].Size {
		t.Errorf("the API's list differs from the store's: %+v %v", want, err)
	}

	code, b = e.do("GET", "/admin/verify", "")
	if v := decodeBody[store.VerifyResult](t, b); code != http.StatusOK || !v.OK || v.Backups != 2 || len(v.Problems) != 0 {
		t.Fatalf("verify: %d %s", code, b)
	}
	if err := os.WriteFile(res.Path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, b = e.do("GET", "/admin/verify", "")
	v := decodeBody[store.VerifyResult](t, b)
	if code != http.StatusOK || v.OK || len(v.Problems) != 1 || v.Problems[0].File != res.Path {
		t.Fatalf("verify with a damaged backup: %d %s", code, b)
	}
	code, b = e.do("GET", "/admin/backups", "")
	if list := decodeBody[[]store.BackupInfo](t, b); code != http.StatusOK || list[1].Verified || list[1].Problem == "" {
		t.Errorf("list with a damaged backup: %d %s", code, b)
	}
}

func TestAdminRecover(t *testing.T) {
	e := newEnv(t, Options{})
	if code, b := e.do("GET", "/admin/recover", ""); code != http.StatusServiceUnavailable || !strings.Contains(errorOf(t, b), "recovery finished") {
		t.Errorf("recover with no report kept: %d %s", code, b)
	}
	from := filepath.Join(e.dir, "jobs.json.backup.20250101-000000")
	e.srv.setRecovery(&store.RecoverResult{FailedRunning: 1, Pending: 2, RestoredFrom: &from,
		Actions: []store.RecoverAction{{JobID: "j1", From: job.Running, To: job.Failed, Reason: "interrupted; marked failed by crash recovery"}}})
	code, b := e.do("GET", "/admin/recover", "")
	got := decodeBody[AdminRecoverResponse](t, b)
	if code != http.StatusOK || got.FailedRunning != 1 || got.Pending != 2 || len(got.Actions) != 1 || got.Actions[0].JobID != "j1" ||
		got.RestoredFrom == nil || *got.RestoredFrom != from || got.DryRun || got.StartedAt.IsZero() {
		t.Fatalf("recover: %d %s", code, b)
	}
	// The CLI reads the answer as a RecoverResult.
	if rr := decodeBody[store.RecoverResult](t, b); rr.FailedRunning != 1 || len(rr.Actions) != 1 {
		t.Errorf("not a RecoverResult: %s", b)
	}

	// A dry run now changes nothing and names no running job, even one
	// that really runs.
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	if _, err := e.st.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log"}}}); err != nil {
		t.Fatal(err)
	}
	code, b = e.do("GET", "/admin/recover?dry_run=true", "")
	dry := decodeBody[AdminRecoverResponse](t, b)
	if code != http.StatusOK || !dry.DryRun || len(dry.Actions) != 0 || dry.FailedRunning != 0 || dry.Pending != 1 {
		t.Fatalf("dry run: %d %s", code, b)
	}
	if j := e.job(id); j.Status != job.Running {
		t.Errorf("recover changed a running job: %s", j.Status)
	}
	if code, _ := e.do("GET", "/admin/recover?dry_run=maybe", ""); code != http.StatusBadRequest {
		t.Errorf("bad dry_run: %d", code)
	}
}

// backupOf writes a store in a directory of its own holding a pending job
// and a job left running by a crash, backs it up and returns the backup's
// path and the two ids.
func backupOf(t *testing.T) (path, pending, running string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	steps := []job.Step{{Name: "note", Action: "log", Params: map[string]any{"message": "restored"}}}
	p, err := st.Create(&job.Job{Playbook: steps})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Create(&job.Job{Playbook: steps})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(r.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	res, err := st.Backup(store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Path, p.ID, r.ID
}

func TestAdminRestoreWhileJobRuns(t *testing.T) {
	var logs syncBuffer
	events, hook := newReceiver(t, "s3cret")
	e := newEnv(t, Options{Workers: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Webhooks: []webhook.Endpoint{{URL: hook.URL, Secret: "s3cret"}}})
	path, pending, crashed := backupOf(t)

	long := e.submit(sleepJob)
	e.waitStatus(long, job.Running)
	queued := e.submit(logJob) // waits for the only worker
	// A client waiting on POST /playbook for a job the restore removes is
	// answered, not left hanging.
	waited := make(chan string, 1)
	go func() {
		code, b := e.do("POST", "/playbook", logJob)
		waited <- fmt.Sprintf("%d %s", code, b)
	}()
	waitFor(t, "the waiting submission to be queued", func() bool { return e.srv.queue.len() == 2 })

	for _, tt := range []struct{ body, want string }{
		{`{"name":"relative/backup"}`, "not a path"},
		{`{"name":""}`, `"name"`},
		{`{"name":"jobs.json.backup.20000101-000000"}`, "holds no backup"},
	} {
		if code, b := e.do("POST", "/admin/restore", tt.body); code != http.StatusBadRequest || !strings.Contains(errorOf(t, b), tt.want) {
			t.Errorf("restore %s: %d %s", tt.body, code, b)
		}
	}
	const badName = "jobs.json.backup.20000101-000001"
	if err := os.WriteFile(filepath.Join(e.dir, badName), []byte(`{"x": {"id": "y"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, b := e.do("POST", "/admin/restore", `{"name":"`+badName+`"}`); code != http.StatusBadRequest || !strings.Contains(errorOf(t, b), "not a usable backup") {
		t.Errorf("restore of a bad file: %d %s", code, b)
	}
	if j := e.job(long); j.Status != job.Running {
		t.Fatalf("a refused restore touched the running job: %s", j.Status)
	}

	code, b := e.do("POST", "/admin/restore", `{"name":"`+copyBackupIn(t, path, e.dir)+`"}`)
	res := decodeBody[store.RestoreResult](t, b)
	if code != http.StatusOK || res.RestoredJobs != 2 || !filepath.IsAbs(res.SafetyBackup) {
		t.Fatalf("restore: %d %s", code, b)
	}

	select {
	case got := <-waited:
		if !strings.HasPrefix(got, "409 ") || !strings.Contains(got, "removed by a backup restore") {
			t.Errorf("POST /playbook waiting across the restore: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Error("POST /playbook waiting across the restore was not answered")
	}

	// The jobs of before are gone, kept in the safety backup; the running
	// one was stopped and recorded failed first.
	for _, id := range []string{long, queued} {
		if code, _ := e.do("GET", "/job/"+id, ""); code != http.StatusNotFound {
			t.Errorf("job %s after the restore: %d", id, code)
		}
	}
	safety, err := os.ReadFile(res.SafetyBackup)
	if err != nil {
		t.Fatal(err)
	}
	var before map[string]job.Job
	if err := json.Unmarshal(safety, &before); err != nil {
		t.Fatal(err)
	}
	if j := before[long]; j.Status != job.Failed || j.CompletedAt == nil || j.Error != errRestoring.Error() {
		t.Errorf("running job in the safety backup: %s %q", j.Status, j.Error)
	}
	if j := before[queued]; j.Status != job.Pending {
		t.Errorf("queued job in the safety backup: %s", j.Status)
	}

	// The backup's pending job runs; its running job, which nothing runs,
	// is recovered.
	e.waitStatus(pending, job.Completed)
	if j := e.job(crashed); j.Status != job.Failed || !strings.Contains(j.Error, "recover") {
		t.Errorf("job running in the backup: %s %q", j.Status, j.Error)
	}
	// The worker goes on taking jobs.
	e.waitStatus(e.submit(logJob), job.Completed)

	waitEvents(t, events, webhook.StoreRestored, webhook.JobRecovered+" "+crashed, webhook.JobFailed+" "+long)
	if out := logs.String(); !strings.Contains(out, `"msg":"restore finished"`) || !strings.Contains(out, `"interrupted":1`) || !strings.Contains(out, `"restored_jobs":2`) {
		t.Errorf("restore not logged:\n%s", out)
	}
}

func TestAdminRestoreWhileShuttingDown(t *testing.T) {
	e := newEnv(t, Options{})
	path, _, _ := backupOf(t)
	e.srv.draining.Store(true)
	if code, b := e.do("POST", "/admin/restore", `{"name":"`+copyBackupIn(t, path, e.dir)+`"}`); code != http.StatusConflict || !strings.Contains(errorOf(t, b), "shutting down") {
		t.Errorf("restore while shutting down: %d %s", code, b)
	}
}

// POST /admin/keys/rotate re-encrypts the daemon's store under the first
// key of its keyring; without a keyring it is a 409 that says why. A job
// whose key is missing is a clear error naming it and its key.
func TestAdminRotateKeys(t *testing.T) {
	e := newEnv(t, Options{})
	if code, b := e.do("POST", "/admin/keys/rotate", ""); code != http.StatusConflict || !strings.Contains(errorOf(t, b), "jobs.encryption_key_file") {
		t.Fatalf("without a keyring: %d %s", code, b)
	}

	dir := t.TempDir()
	oldKey, newKey := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	old, _ := seal.New(oldKey)
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Keyring: old})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		// Terminal: a pending job would run at start, and be written
		// under the new key by its own updates.
		j, err := st.Create(&job.Job{Context: map[string]any{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(j.ID, func(j *job.Job) error { return j.Finish(job.Cancelled, "test", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	both, _ := seal.New(newKey, oldKey)
	st, err = store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Keyring: both})
	if err != nil {
		t.Fatal(err)
	}
	e = startEnv(t, dir, st, Options{})
	code, b := e.do("POST", "/admin/keys/rotate", "")
	res := decodeBody[store.RotateResult](t, b)
	if code != http.StatusOK || res.Jobs != 3 || res.KeyID != both.Primary() {
		t.Fatalf("rotate: %d %s", code, b)
	}
	code, b = e.do("GET", "/jobs", "")
	jobs := decodeBody[[]job.Job](t, b)
	if code != http.StatusOK || len(jobs) != 3 {
		t.Fatalf("list after rotation: %d %s", code, b)
	}
	for _, j := range jobs {
		if j.Context["k"] != "v" {
			t.Fatalf("job %s after rotation: %v", j.ID, j.Context)
		}
	}
}

// A daemon without the key its jobs need names the job and the key id on
// a read, and lists the other jobs.
func TestReadWithoutTheKey(t *testing.T) {
	dir := t.TempDir()
	kr, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := st.Create(&job.Job{Context: map[string]any{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, dir, st, Options{})
	plain := e.submit(logJob)
	code, b := e.do("GET", "/job/"+sealed.ID, "")
	if code != http.StatusInternalServerError || !strings.Contains(errorOf(t, b), "key id "+kr.Primary()) || !strings.Contains(errorOf(t, b), sealed.ID) {
		t.Fatalf("GET a sealed job without its key: %d %s", code, b)
	}
	code, b = e.do("GET", "/jobs", "")
	jobs := decodeBody[[]job.Job](t, b)
	if code != http.StatusOK || len(jobs) != 1 || jobs[0].ID != plain {
		t.Fatalf("list: %d %s", code, b)
	}
	// A job whose key is lost can still be deleted.
	if code, b := e.do("DELETE", "/job/"+sealed.ID[:13], ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, b)
	}
	if code, _ := e.do("GET", "/job/"+sealed.ID, ""); code != http.StatusNotFound {
		t.Fatalf("after delete: %d", code)
	}
}
