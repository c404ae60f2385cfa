package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

func TestCleanupInBatches(t *testing.T) {
	s, _ := openTest(t)
	old := time.Now().Add(-48 * time.Hour)
	const n = 2*cleanupBatch + 17
	jobs := make([]store.StoredJob, 0, n)
	for i := range n {
		j := store.CompleteNew(newJob(i), fmt.Sprintf("old-%05d", i), time.Now)
		j.CreatedAt = old
		st := old.Add(time.Second)
		j.StartedAt, j.CompletedAt, j.Status = &st, &st, job.Completed
		doc, err := s.codec.EncodeJob(j)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, store.StoredJob{ID: j.ID, Doc: doc})
	}
	ids := make([]string, n)
	docs := make([][]byte, n)
	for i, sj := range jobs {
		ids[i], docs[i] = sj.ID, sj.Doc
	}
	exec(t, s, `INSERT INTO secauto_jobs (id, status, created_at, completed_at, doc)
		SELECT id, 'completed', $3, $3, doc FROM unnest($1::text[], $2::bytea[]) AS u(id, doc)`, ids, docs, old.Add(time.Second))
	fresh, _ := s.Create(newJob(-1))
	dry, err := s.Cleanup(store.CleanupOptions{Retention: 24 * time.Hour, DryRun: true})
	if err != nil || dry.Deleted != n || !dry.DryRun || len(dry.IDs) != n {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if st := s.Stats(); st.Jobs != n+1 {
		t.Fatalf("dry run deleted: %+v", st)
	}
	res, err := s.Cleanup(store.CleanupOptions{Retention: 24 * time.Hour})
	if err != nil || res.Deleted != n || res.IDs[0] != "old-00000" {
		t.Fatalf("cleanup: %d %v", res.Deleted, err)
	}
	if st := s.Stats(); st.Jobs != 1 {
		t.Fatalf("after cleanup: %+v", st)
	}
	if _, err := s.Get(fresh.ID); err != nil {
		t.Fatal(err)
	}
	// ByStatus overrides the retention.
	res, err = s.Cleanup(store.CleanupOptions{Retention: time.Nanosecond, ByStatus: map[job.Status]time.Duration{job.Completed: time.Hour}})
	if err != nil || res.Deleted != 0 {
		t.Fatalf("pending job cleaned: %+v %v", res, err)
	}
}

func sameJobs(t *testing.T, a, b []*job.Job) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d jobs and %d jobs", len(a), len(b))
	}
	for i := range a {
		ja, _ := json.Marshal(a[i])
		jb, _ := json.Marshal(b[i])
		if string(ja) != string(jb) {
			t.Fatalf("job %d differs:\n%s\n%s", i, ja, jb)
		}
	}
}

func TestBackupRestoreWithTheFileDriver(t *testing.T) {
	kr := testKeyring(t, 0x11)
	dir := t.TempDir()
	s, _ := openTest(t, func(o *Options) { o.Keyring = kr; o.Dir = dir })
	for i := range 30 {
		j, err := s.Create(newJob(i))
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			s.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) })
		}
	}
	s.PutRecords(store.Record{Key: "schedule/backup", Value: json.RawMessage(`{"at":1}`)})
	res, err := s.Backup(store.BackupOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs != 30 || len(res.KeyIDs) != 1 || filepath.Dir(res.Path) != dir {
		t.Fatalf("backup: %+v", res)
	}
	if n, err := store.VerifyBackup(res.Path); err != nil || n != 30 {
		t.Fatalf("verify backup: %d %v", n, err)
	}
	want, _ := s.List(store.Filter{})

	// The file driver restores the postgres backup, and reads the same jobs.
	fs, err := store.Open(store.Options{Dir: t.TempDir(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := fs.Restore(res.Path, store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := fs.List(store.Filter{})
	sameJobs(t, want, got)

	// And back: a file driver backup restores into postgres.
	fs.Create(newJob(99))
	fres, err := fs.Backup(store.BackupOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ = fs.List(store.Filter{})
	rr, err := s.Restore(fres.Path, store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rr.RestoredJobs != 31 || rr.SafetyBackup == "" {
		t.Fatalf("restore: %+v", rr)
	}
	got, _ = s.List(store.Filter{})
	sameJobs(t, want, got)
	if _, err := store.VerifyBackup(rr.SafetyBackup); err != nil {
		t.Fatalf("safety backup: %v", err)
	}
	v, err := s.Verify(store.VerifyOptions{})
	if err != nil || !v.OK {
		t.Fatalf("verify after restore: %+v %v", v, err)
	}
	if v.Backups < 2 {
		t.Fatalf("verify checked %d backups", v.Backups)
	}
}

func TestRestoreSettlesRunningJobs(t *testing.T) {
	a, u := openTest(t)
	join(t, a, "a", time.Hour)
	b := openAt(t, u)
	join(t, b, "b", time.Hour)
	a.Create(newJob(1))
	b.Create(newJob(2))
	bk, err := b.Backup(store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.Claim(1, start)
	jb, _ := b.Claim(1, start)
	if len(ja) != 1 || len(jb) != 1 {
		t.Fatal("claims failed")
	}
	if _, err := b.Restore(bk.Path, store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if id := waitFor(t, a.Settled(), 5*time.Second, "settled on the other node"); id != ja[0].ID {
		t.Fatalf("a settled %s", id)
	}
	if id := waitFor(t, b.Settled(), 5*time.Second, "settled on the restoring node"); id != jb[0].ID {
		t.Fatalf("b settled %s", id)
	}
	if st := b.Stats(); st.ByStatus[job.Pending] != 2 {
		t.Fatalf("after restore: %+v", st)
	}
}

func TestVerifyFindsACorruptDoc(t *testing.T) {
	s, _ := openTest(t)
	a, _ := s.Create(newJob(1))
	b, _ := s.Create(newJob(2))
	s.Backup(store.BackupOptions{})
	if v, err := s.Verify(store.VerifyOptions{}); err != nil || !v.OK || v.Jobs != 2 || v.Backups != 1 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	exec(t, s, "UPDATE secauto_jobs SET doc = convert_to('{\"id\": \"'||id||'\", \"status\": \"bogus\"', 'UTF8') WHERE id = $1", a.ID)
	exec(t, s, "UPDATE secauto_jobs SET status = 'completed' WHERE id = $1", b.ID)
	v, err := s.Verify(store.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || len(v.Problems) != 2 || v.Problems[0].JobID != a.ID || v.Problems[1].JobID != b.ID {
		t.Fatalf("verify: %+v", v)
	}
	if _, err := s.Get(a.ID); err == nil {
		t.Fatal("a corrupt job read back")
	}
	// A listing leaves the bad job out and names it.
	var named []string
	s.o.OnUnreadable = func(id string, err error) { named = append(named, id) }
	js, err := s.List(store.Filter{})
	if err != nil || len(js) != 1 || len(named) != 1 || named[0] != a.ID {
		t.Fatalf("list: %v %v %v", js, named, err)
	}
}

func TestRotateKeys(t *testing.T) {
	u := testURL(t)
	old := openAt(t, u, func(o *Options) { o.Keyring = testKeyring(t, 0x01) })
	for i := range 7 {
		old.Create(newJob(i))
	}
	old.PutRecords(store.Record{Key: "webhook/x", Value: json.RawMessage(`{"a":1}`)})
	old.Close()
	kr := testKeyring(t, 0x02, 0x01)
	s := openAt(t, u, func(o *Options) { o.Keyring = kr })
	res, err := s.RotateKeys(store.RotateOptions{Batch: 3})
	if err != nil || res.Jobs != 7 || res.Records != 1 || res.KeyID != kr.Primary() {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if res, err := s.RotateKeys(store.RotateOptions{}); err != nil || res.Jobs != 0 || res.Records != 0 {
		t.Fatalf("second rotate: %+v %v", res, err)
	}
	onlyNew := openAt(t, u, func(o *Options) { o.Keyring = testKeyring(t, 0x02) })
	js, err := onlyNew.List(store.Filter{})
	if err != nil || len(js) != 7 || js[0].Context["secret"] != "s3cr3t" {
		t.Fatalf("read with the new key only: %v %v", js, err)
	}
	if recs := onlyNew.Records("webhook/"); len(recs) != 1 || string(recs[0].Value) != `{"a":1}` {
		t.Fatalf("records: %v", recs)
	}
	var plain int
	s.pool.QueryRow(context.Background(), "SELECT count(*) FROM secauto_jobs WHERE position('s3cr3t' in convert_from(doc, 'UTF8')) > 0").Scan(&plain)
	if plain != 0 {
		t.Fatal("a secret is stored in plain")
	}
}

// A restore prunes old backups only once it committed: one that fails
// keeps them all, and its safety backup beside them.
func TestRestoreThatFailsKeepsOldBackups(t *testing.T) {
	dir := t.TempDir()
	s, _ := openTest(t, func(o *Options) { o.Dir = dir })
	s.Create(newJob(1))
	backups := func() []string {
		t.Helper()
		bs, err := store.ListBackups(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range bs {
			out = append(out, filepath.Base(b.Path))
		}
		return out
	}
	first, err := s.Backup(store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(store.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	// The database refuses the restored rows, so the swap rolls back.
	exec(t, s, `CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$`)
	exec(t, s, `CREATE TRIGGER refuse_rows BEFORE INSERT ON secauto_jobs FOR EACH ROW EXECUTE FUNCTION refuse_rows()`)
	if _, err := s.Restore(first.Path, store.BackupOptions{Keep: 1}); err == nil || !strings.Contains(err.Error(), "nothing was restored") {
		t.Fatalf("restore into a database that refuses it: %v", err)
	}
	if got := backups(); len(got) != 3 {
		t.Fatalf("after a failed restore with keep 1: backups %v, want the two old ones and the safety backup", got)
	}
	if st := s.Stats(); st.Jobs != 1 {
		t.Fatalf("the failed restore changed the jobs: %+v", st)
	}
	exec(t, s, `DROP TRIGGER refuse_rows ON secauto_jobs`)
	res, err := s.Restore(first.Path, store.BackupOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := backups(); len(got) != 2 || got[0] != filepath.Base(res.SafetyBackup) {
		t.Fatalf("after a restore with keep 2: backups %v, want the newest two, first %s", got, filepath.Base(res.SafetyBackup))
	}
}
