package server

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// fakeClock is a manual clock: Now is what Set last made it, and the timers
// handed out by After fire when Set moves the time past them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, timers: map[*fakeTimer]bool{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		ft.ch <- c.now
		return ft.ch, func() bool { return false }
	}
	c.timers[ft] = true
	return ft.ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		armed := c.timers[ft]
		delete(c.timers, ft)
		return armed
	}
}

// Set moves the clock (forward) and fires the timers now due.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for ft := range c.timers {
		if !ft.at.After(t) {
			ft.ch <- t
			delete(c.timers, ft)
		}
	}
}

func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// refuseFS refuses to create files whose names begin with prefix, as a
// permission would.
type refuseFS struct {
	fsys.FS
	prefix string
}

func (f refuseFS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	if flag&os.O_CREATE != 0 && strings.HasPrefix(filepath.Base(name), f.prefix) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f.FS.OpenFile(name, flag, perm)
}

// daemonSim starts and stops Servers over one data directory on a fake
// clock, as restarts of the daemon would.
type daemonSim struct {
	t    *testing.T
	dir  string
	fc   *fakeClock
	fs   fsys.FS // nil: the real one
	o    Options
	st   store.Store
	srv  *Server
	http *httptest.Server
}

func (d *daemonSim) start() {
	d.t.Helper()
	st, err := store.Open(store.Options{Dir: d.dir, SnapshotInterval: -1, Now: d.fc.Now, FS: d.fs})
	if err != nil {
		d.t.Fatal(err)
	}
	o := d.o
	o.Now = d.fc.Now
	srv, err := New(st, o)
	if err != nil {
		d.t.Fatal(err)
	}
	srv.keeper.after = d.fc.After
	srv.Start()
	d.st, d.srv, d.http = st, srv, httptest.NewServer(srv.Handler())
	d.settle()
}

// settle waits until the maintainer has done what was due and sleeps
// again, and the events it queued have been delivered.
func (d *daemonSim) settle() {
	d.t.Helper()
	waitFor(d.t, "the maintainer to wait for its next run", func() bool { return d.fc.armed() == 1 })
	waitFor(d.t, "webhook deliveries", func() bool { return webhook.Pending(d.st) == 0 })
}

// set moves the clock while the daemon runs.
func (d *daemonSim) set(t time.Time) {
	d.t.Helper()
	d.fc.Set(t)
	d.settle()
}

func (d *daemonSim) stop() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.t.Fatal(err)
	}
	d.http.Close()
	if err := d.st.Close(); err != nil {
		d.t.Fatal(err)
	}
	if n := d.fc.armed(); n != 0 {
		d.t.Fatalf("%d timers still armed after shutdown", n)
	}
}

func (d *daemonSim) stats() StatsResponse {
	d.t.Helper()
	resp, err := http.Get(d.http.URL + "/stats")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		d.t.Fatal(err)
	}
	return st
}

func (d *daemonSim) metrics() string {
	d.t.Helper()
	resp, err := http.Get(d.http.URL + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// backups lists the backup files in dir, oldest first, by name.
func backups(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "jobs.json.backup.") && !strings.HasSuffix(e.Name(), ".sha256") && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

func schedule(t *testing.T, st store.Store, task string) scheduleRecord {
	t.Helper()
	var rec scheduleRecord
	for _, r := range st.Records(scheduleKeyPrefix + task) {
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			t.Fatalf("record %s: %v: %s", r.Key, err, r.Value)
		}
	}
	return rec
}

// seedJob stores one finished job in dir, so its first backup is not put
// off as a backup of nothing.
func seedJob(t *testing.T, dir string, fc *fakeClock) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Now: fc.Now})
	if err != nil {
		t.Fatal(err)
	}
	finishedJob(t, st, fc.Now())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// A new data directory with no jobs is not backed up at first start (a
// backup of nothing would start the week); the first backup comes within a
// retry delay of the first job.
func TestMaintenanceFirstBackupWaitsForJobs(t *testing.T) {
	T := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	fc := newFakeClock(T)
	dir := t.TempDir()
	d := &daemonSim{t: t, dir: dir, fc: fc, o: Options{Maintenance: Maintenance{BackupEnabled: true, BackupInterval: 168 * time.Hour}}}
	d.start()
	if b := backups(t, dir); len(b) != 0 {
		t.Fatalf("an empty store was backed up: %v", b)
	}
	finishedJob(t, d.st, T.Add(time.Minute))
	d.set(T.Add(59 * time.Minute))
	if b := backups(t, dir); len(b) != 0 {
		t.Fatalf("backed up before the retry delay: %v", b)
	}
	d.set(T.Add(time.Hour))
	if b := backups(t, dir); len(b) != 1 {
		t.Fatalf("no first backup an hour after the first job: %v", b)
	}
	if s := d.stats(); s.NextBackup == nil || !s.NextBackup.Equal(T.Add(time.Hour+168*time.Hour)) {
		t.Errorf("next backup %v, want a week after the first", s.NextBackup)
	}
	d.stop()
}

func finishedJob(t *testing.T, st store.Store, at time.Time) string {
	t.Helper()
	// Created at the time it ran too: a job's times never run backwards.
	j, err := st.Create(&job.Job{Playbook: []job.Step{{Name: "a", Action: "log", Params: map[string]any{"message": "x"}}}, CreatedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(j.ID, func(j *job.Job) error { return j.Start(at) }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(j.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", at) }); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func exists(st store.Store, id string) bool {
	_, err := st.Get(id)
	return err == nil
}

// The "Done when" of the schedule: started at T the daemon backs up at T;
// restarted every day it backs up again at T+7d (backup_interval 168h),
// not at any restart before, and exactly once; cleanup (every 72h) runs at
// T+3d and T+6d, not at the first start. The schedule is durable.
func TestMaintenanceScheduleSurvivesRestarts(t *testing.T) {
	const day = 24 * time.Hour
	T := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	fc := newFakeClock(T)
	dir := t.TempDir()
	hooks, hookSrv := newReceiver(t, "")

	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Now: fc.Now})
	if err != nil {
		t.Fatal(err)
	}
	old := finishedJob(t, st, T.Add(-40*day))   // past the 30-day retention
	recent := finishedJob(t, st, T.Add(-1*day)) // within it
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	d := &daemonSim{t: t, dir: dir, fc: fc, o: Options{
		Maintenance: Maintenance{
			Retention:       30 * day,
			CleanupInterval: 3 * day,
			BackupEnabled:   true,
			BackupInterval:  7 * day,
			BackupKeep:      10,
		},
		Webhooks: []webhook.Endpoint{{URL: hookSrv.URL}},
	}}

	// Day 0: a new data directory is backed up at once; cleanup waits.
	d.start()
	if got := backups(t, dir); !slices.Equal(got, []string{"jobs.json.backup.20250701-000000"}) {
		t.Fatalf("backups at T = %v, want the one taken at start", got)
	}
	if rec := schedule(t, d.st, taskCleanup); rec.LastRun != nil || rec.Since == nil || !rec.Since.Equal(T) {
		t.Errorf("cleanup schedule at T = %+v, want since T and no run", rec)
	}
	st0 := d.stats()
	if st0.LastBackup == nil || !st0.LastBackup.Equal(T) || st0.NextBackup == nil || !st0.NextBackup.Equal(T.Add(7*day)) ||
		st0.LastCleanup != nil || st0.NextCleanup == nil || !st0.NextCleanup.Equal(T.Add(3*day)) {
		t.Errorf("stats at T: last_backup %v next_backup %v last_cleanup %v next_cleanup %v", st0.LastBackup, st0.NextBackup, st0.LastCleanup, st0.NextCleanup)
	}

	// Days 1 to 6: stopped and restarted once a day.
	for k := 1; k <= 6; k++ {
		d.stop()
		now := T.Add(time.Duration(k) * day)
		fc.Set(now)
		d.start()
		if got := backups(t, dir); len(got) != 1 {
			t.Fatalf("day %d: backups %v, want only the one of day 0", k, got)
		}
		rec := schedule(t, d.st, taskCleanup)
		switch {
		case k < 3:
			if rec.LastRun != nil || !exists(d.st, old) {
				t.Errorf("day %d: cleanup ran before its interval: %+v", k, rec)
			}
		case k < 6:
			if rec.LastRun == nil || !rec.LastRun.Equal(T.Add(3*day)) || exists(d.st, old) || !exists(d.st, recent) {
				t.Errorf("day %d: cleanup should have run once, at T+3d: %+v (old job there: %v)", k, rec, exists(d.st, old))
			}
		default:
			if rec.LastRun == nil || !rec.LastRun.Equal(T.Add(6*day)) || rec.LastResult != resultOK {
				t.Errorf("day %d: cleanup should have run at T+6d: %+v", k, rec)
			}
		}
	}

	// The day-6 daemon keeps running: no backup a second before T+7d,
	// exactly one at T+7d, none more after it.
	d.set(T.Add(7*day - time.Second))
	if got := backups(t, dir); len(got) != 1 {
		t.Fatalf("backups just before T+7d: %v", got)
	}
	d.set(T.Add(7 * day))
	want := []string{"jobs.json.backup.20250701-000000", "jobs.json.backup.20250708-000000"}
	if got := backups(t, dir); !slices.Equal(got, want) {
		t.Fatalf("backups at T+7d = %v, want %v", got, want)
	}
	d.set(T.Add(7*day + 12*time.Hour))
	if got := backups(t, dir); !slices.Equal(got, want) {
		t.Fatalf("backups at T+7.5d = %v, want %v", got, want)
	}

	st7 := d.stats()
	if st7.LastBackup == nil || !st7.LastBackup.Equal(T.Add(7*day)) || st7.NextBackup == nil || !st7.NextBackup.Equal(T.Add(14*day)) ||
		st7.LastCleanup == nil || !st7.LastCleanup.Equal(T.Add(6*day)) || st7.NextCleanup == nil || !st7.NextCleanup.Equal(T.Add(9*day)) ||
		st7.BackupError != "" {
		t.Errorf("stats at T+7.5d: last_backup %v next_backup %v last_cleanup %v next_cleanup %v error %q",
			st7.LastBackup, st7.NextBackup, st7.LastCleanup, st7.NextCleanup, st7.BackupError)
	}
	m := d.metrics()
	for _, want := range []string{
		"secauto_backup_last_success_timestamp_seconds 1.7519328e+09",
		"secauto_backup_age_seconds 43200",
		"secauto_backup_next_timestamp_seconds 1.7525376e+09",
		"secauto_cleanup_next_timestamp_seconds 1.7521056e+09",
		"secauto_cleanup_deleted_jobs_total 0", // this process's cleanup (T+6d) had nothing left to delete
		`secauto_cleanup_runs_total{result="completed"} 1`,
		`secauto_backups_total{result="created"} 1`,
		`secauto_backups_total{result="failed"} 0`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The schedule is durable: a copy of the directory taken now, as a
	// kill -9 would leave it, holds both records.
	crash := t.TempDir()
	for _, name := range []string{store.SnapshotFile, store.JournalFile, store.RecordsFile} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			if err := os.WriteFile(filepath.Join(crash, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cst, err := store.Open(store.Options{Dir: crash, SnapshotInterval: -1, Now: fc.Now})
	if err != nil {
		t.Fatal(err)
	}
	b := schedule(t, cst, taskBackup)
	c := schedule(t, cst, taskCleanup)
	cst.Close()
	if b.LastRun == nil || !b.LastRun.Equal(T.Add(7*day)) || b.LastResult != resultOK || b.Backup == nil ||
		filepath.Base(b.Backup.Path) != want[1] || b.Backup.Jobs != 1 || len(b.Backup.SHA256) != 64 || b.Trigger != "schedule" {
		t.Errorf("backup record after a crash: %+v %+v", b, b.Backup)
	}
	if c.LastRun == nil || !c.LastRun.Equal(T.Add(6*day)) || c.Deleted == nil || *c.Deleted != 0 {
		t.Errorf("cleanup record after a crash: %+v", c)
	}

	d.stop()
	// And after a clean stop, a restart at T+8d backs up nothing new.
	fc.Set(T.Add(8 * day))
	d.start()
	if got := backups(t, dir); !slices.Equal(got, want) {
		t.Errorf("backups after restart at T+8d = %v, want %v", got, want)
	}
	d.stop()

	// Each run was announced once, with its figures.
	created := hooks.named(webhook.BackupCreated)
	if len(created) != 2 {
		t.Fatalf("backup.created events: %+v", created)
	}
	for i, ev := range created {
		if p, _ := ev.Data["path"].(string); filepath.Base(p) != want[i] || ev.Data["sha256"] == "" || ev.Data["size"].(float64) <= 0 {
			t.Errorf("backup.created %d: %+v", i, ev.Data)
		}
	}
	if created[0].Data["jobs"].(float64) != 2 || created[1].Data["jobs"].(float64) != 1 {
		t.Errorf("backup.created jobs: %v then %v, want 2 then 1", created[0].Data["jobs"], created[1].Data["jobs"])
	}
	cleaned := hooks.named(webhook.CleanupCompleted)
	if len(cleaned) != 2 || cleaned[0].Data["deleted"].(float64) != 1 || cleaned[1].Data["deleted"].(float64) != 0 ||
		cleaned[0].Data["dry_run"] != false || !cleaned[0].Time.Equal(T.Add(3*day)) || !cleaned[1].Time.Equal(T.Add(6*day)) {
		t.Errorf("cleanup.completed events: %+v", cleaned)
	}
	if f := hooks.named(webhook.BackupFailed); len(f) != 0 {
		t.Errorf("backup.failed events: %+v", f)
	}
}

// A failed backup is recorded and announced, is retried an hour later (not
// at once on a restart), and does not stop the daemon.
func TestMaintenanceBackupFailureRetries(t *testing.T) {
	T := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	fc := newFakeClock(T)
	dir := t.TempDir()
	hooks, hookSrv := newReceiver(t, "")
	seedJob(t, dir, fc)
	// The backup of T cannot be written; the one of T+1h can.
	d := &daemonSim{t: t, dir: dir, fc: fc, fs: refuseFS{fsys.OS, "jobs.json.backup.20250701-000000"}, o: Options{
		Maintenance: Maintenance{BackupEnabled: true, BackupInterval: 168 * time.Hour},
		Webhooks:    []webhook.Endpoint{{URL: hookSrv.URL}},
	}}
	d.start()
	rec := schedule(t, d.st, taskBackup)
	if rec.LastResult != resultFailed || rec.Error == "" || rec.Failures != 1 || rec.LastSuccess != nil {
		t.Fatalf("failed backup record: %+v", rec)
	}
	st := d.stats()
	if st.BackupError == "" || st.LastBackup != nil || st.NextBackup == nil || !st.NextBackup.Equal(T.Add(time.Hour)) {
		t.Errorf("stats after a failed backup: error %q last %v next %v", st.BackupError, st.LastBackup, st.NextBackup)
	}
	if m := d.metrics(); !strings.Contains(m, `secauto_backups_total{result="failed"} 1`) || strings.Contains(m, "secauto_backup_age_seconds") {
		t.Errorf("metrics after a failed backup:\n%s", m)
	}
	failed := hooks.named(webhook.BackupFailed)
	if len(failed) != 1 || !strings.Contains(failed[0].Data["error"].(string), "jobs.json.backup.20250701-000000") {
		t.Fatalf("backup.failed events: %+v", failed)
	}
	if code, _ := get(t, d.http.URL+"/health"); code != http.StatusOK {
		t.Errorf("health after a failed backup: %d", code)
	}

	// A restart within the hour does not retry at once.
	d.stop()
	fc.Set(T.Add(10 * time.Minute))
	d.start()
	if n := len(hooks.named(webhook.BackupFailed)); n != 1 || len(backups(t, dir)) != 0 {
		t.Errorf("restart 10 minutes after the failure retried: %d failures, backups %v", n, backups(t, dir))
	}
	d.set(T.Add(59 * time.Minute))
	if len(backups(t, dir)) != 0 {
		t.Errorf("retried before the hour: %v", backups(t, dir))
	}
	d.set(T.Add(time.Hour))
	if got := backups(t, dir); !slices.Equal(got, []string{"jobs.json.backup.20250701-010000"}) {
		t.Fatalf("backups after the retry: %v", got)
	}
	rec = schedule(t, d.st, taskBackup)
	if rec.LastResult != resultOK || rec.Error != "" || rec.Failures != 0 {
		t.Errorf("record after the retry: %+v", rec)
	}
	if st := d.stats(); st.BackupError != "" || st.NextBackup == nil || !st.NextBackup.Equal(T.Add(169*time.Hour)) {
		t.Errorf("stats after the retry: error %q next %v", st.BackupError, st.NextBackup)
	}
	d.stop()
	if n := len(hooks.named(webhook.BackupCreated)); n != 1 {
		t.Errorf("backup.created events: %d", n)
	}
}

// A backup written while the daemon was down counts: a daemon started two
// days after it backs up five days later, not at once. Intervals of zero,
// or backup_enabled false, turn the background runs off.
func TestMaintenanceOfflineBackupAndDisabled(t *testing.T) {
	const day = 24 * time.Hour
	T := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	fc := newFakeClock(T.Add(-2 * day))
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1, Now: fc.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Backup(store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	fc.Set(T)

	d := &daemonSim{t: t, dir: dir, fc: fc, o: Options{Maintenance: Maintenance{BackupEnabled: true, BackupInterval: 7 * day}}}
	d.start()
	s := d.stats()
	if len(backups(t, dir)) != 1 || s.LastBackup == nil || !s.LastBackup.Equal(T.Add(-2*day)) || s.NextBackup == nil || !s.NextBackup.Equal(T.Add(5*day)) {
		t.Errorf("with a 2-day-old backup: backups %v, last %v, next %v", backups(t, dir), s.LastBackup, s.NextBackup)
	}
	d.set(T.Add(5 * day))
	if len(backups(t, dir)) != 2 {
		t.Errorf("no backup at T+5d: %v", backups(t, dir))
	}
	d.stop()

	for _, m := range []Maintenance{
		{BackupEnabled: false, BackupInterval: time.Hour},
		{BackupEnabled: true, BackupInterval: 0, CleanupInterval: 0},
	} {
		d.o.Maintenance = m
		d.start()
		s := d.stats()
		if s.NextBackup != nil || s.NextCleanup != nil || s.LastBackup == nil {
			t.Errorf("%+v: next_backup %v next_cleanup %v last_backup %v", m, s.NextBackup, s.NextCleanup, s.LastBackup)
		}
		fc.Set(fc.Now().Add(30 * day))
		d.settle()
		if len(backups(t, dir)) != 2 {
			t.Errorf("%+v: a background backup ran: %v", m, backups(t, dir))
		}
		d.stop()
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
