package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
)

// Whatever the store acknowledges it can read back: what it could not is
// refused when it is made, naming the limit.
func TestLimitsAreEnforcedWhenAChangeIsMade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, MaxJobBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	big := newJob(1)
	big.Context["blob"] = strings.Repeat("x", 100_000)
	if _, err := s.Create(big); !errors.Is(err, job.ErrLimit) || !strings.Contains(err.Error(), "jobs.max_job_bytes") {
		t.Fatalf("oversized create: %v", err)
	}
	a := mustCreate(t, s, newJob(2))
	if _, err := s.Update(a.ID, func(j *job.Job) error {
		j.Context["blob"] = strings.Repeat("y", 100_000)
		return nil
	}); !errors.Is(err, job.ErrLimit) {
		t.Fatalf("update past the limit: %v", err)
	}
	var deep any = "leaf"
	for range 5000 {
		deep = []any{deep}
	}
	d := newJob(3)
	d.Context["deep"] = deep
	if _, err := s.Create(d); !errors.Is(err, job.ErrLimit) || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("deeply nested create: %v", err)
	}
	// The refusals changed nothing, and the store still takes changes.
	mustCreate(t, s, newJob(4))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	if got := state(t, s); len(got) != 2 {
		t.Fatalf("after reopen: %v", got)
	}
	if j, _ := s.Get(a.ID); j.Context["blob"] != nil {
		t.Fatal("a refused update was stored")
	}
}

// journalOf returns the journal's decoded entries.
func journalOf(t *testing.T, dir string) (*journal.Scan, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	return journal.Decode(data), data
}

// One damaged record in the middle of the journal costs that record only:
// the acknowledged records after it are kept, the damaged bytes are kept
// aside, and the report names the job whose newest record it was.
func TestJournalRotInTheMiddleKeepsWhatFollows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	var ids []string
	for i := range 20 {
		ids = append(ids, mustCreate(t, s, newJob(i)).ID)
	}
	victim := ids[7]
	abandon(s)
	scan, data := journalOf(t, dir)
	if len(scan.Entries) != 20 {
		t.Fatalf("%d entries", len(scan.Entries))
	}
	at := scan.Entries[7].Offset + (scan.Entries[8].Offset-scan.Entries[7].Offset)/2
	data[at] ^= 0x10
	os.WriteFile(filepath.Join(dir, JournalFile), data, 0o600)

	if v, _ := Verify(dir); v.OK || !strings.Contains(v.Problems[0].File, JournalFile) {
		t.Fatalf("verify did not see the rot: %+v", v)
	}
	s = openT(t, dir)
	got := state(t, s)
	for i, id := range ids {
		if _, ok := got[id]; ok == (id == victim) {
			t.Fatalf("job %d (%s): present %v; the damaged one only must be missing", i, id, ok)
		}
	}
	rep := s.Report()
	if !slices.Contains(rep.LostJobs, victim) {
		t.Fatalf("report does not name the lost job %s: %+v", victim, rep)
	}
	kept, err := os.ReadFile(rep.JournalCorruptPath)
	if err != nil || !bytes.Contains(data, kept) || len(kept) == 0 {
		t.Fatalf("damaged bytes not kept aside at %q: %v", rep.JournalCorruptPath, err)
	}
	// Later writes land after the salvaged records and survive a restart.
	late := mustCreate(t, s, newJob(99))
	abandon(s)
	s = openT(t, dir)
	defer s.Close()
	if got := state(t, s); len(got) != 20 || got[late.ID] != job.Pending {
		t.Fatalf("after a second restart: %d jobs", len(got))
	}
	if v, _ := s.Verify(VerifyOptions{}); !v.OK {
		t.Fatalf("verify after repair: %+v", v)
	}
}

// One flipped byte inside a string of jobs.json (the file still parses)
// costs that job only: it is taken from the newest verified backup, every
// other job stays as jobs.json has it.
func TestSnapshotRotCostsOnlyTheDamagedJob(t *testing.T) {
	for _, withBackup := range []bool{true, false} {
		name := "no backup"
		if withBackup {
			name = "backup"
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			s := openT(t, dir)
			var ids []string
			for i := range 5 {
				ids = append(ids, mustCreate(t, s, newJob(i)).ID)
			}
			if withBackup {
				if _, err := s.Backup(BackupOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			// Newer than the backup: these must not be rolled back.
			for _, id := range ids {
				if _, err := s.Update(id, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			spath := filepath.Join(dir, SnapshotFile)
			data, _ := os.ReadFile(spath)
			line := bytes.Index(data, []byte(ids[2]+`": `))
			at := line + bytes.Index(data[line:], []byte("hello 2")) + 1
			flipByte(t, spath, (float64(at)+0.5)/float64(len(data)))

			v, _ := Verify(dir)
			if v.OK || !slices.ContainsFunc(v.Problems, func(p Problem) bool { return p.JobID == ids[2] }) {
				t.Fatalf("verify does not name the damaged job: %+v", v)
			}
			s = openT(t, dir)
			defer s.Close()
			got := state(t, s)
			for i, id := range ids {
				want := job.Running
				if i == 2 {
					want = job.Pending // from the backup
					if !withBackup {
						want = ""
					}
				}
				if got[id] != want {
					t.Fatalf("job %d: %q, want %q (all: %v)", i, got[id], want, got)
				}
			}
			rep := s.Report()
			if withBackup && !slices.Equal(rep.RestoredJobs, []string{ids[2]}) {
				t.Fatalf("report: %+v", rep)
			}
			if !withBackup && !slices.Equal(rep.LostJobs, []string{ids[2]}) {
				t.Fatalf("report: %+v", rep)
			}
		})
	}
}

// A damaged records file is moved aside and rebuilt, never a dead end.
func TestDamagedRecordsFileIsMovedAside(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	a := mustCreate(t, s, newJob(1))
	if err := s.PutRecords(Record{Key: "webhook/x", Value: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rpath := filepath.Join(dir, RecordsFile)
	for name, damage := range map[string]func([]byte) []byte{
		"garbage":   func([]byte) []byte { return []byte("\x00\x01 not json") },
		"flipped":   func(b []byte) []byte { b[bytes.Index(b, []byte(`"n":1`))+4] = '7'; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
	} {
		t.Run(name, func(t *testing.T) {
			d := copyDir(t, dir)
			p := filepath.Join(d, RecordsFile)
			data, _ := os.ReadFile(rpath)
			os.WriteFile(p, damage(data), 0o600)
			if v, _ := Verify(d); v.OK {
				t.Fatal("verify did not see the damaged records file")
			}
			s := openT(t, d)
			if _, err := s.Get(a.ID); err != nil {
				t.Fatal(err)
			}
			if rep := s.Report(); rep.RecordsCorruptPath == "" {
				t.Fatalf("not moved aside: %+v", rep)
			}
			if err := s.PutRecords(Record{Key: "schedule/backup", Value: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if v, _ := Verify(d); !v.OK {
				t.Fatalf("verify after rebuild: %+v", v)
			}
		})
	}
}

// Verify checks every job against the whole job schema and names each bad
// one; a bad job never breaks a listing of the others.
func TestVerifyNamesEveryJobThatBreaksTheSchema(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	var ids []string
	for i := range 4 {
		ids = append(ids, mustCreate(t, s, newJob(i)).ID)
	}
	s.Update(ids[2], func(j *job.Job) error { return j.Start(time.Now()) })
	s.Update(ids[2], func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) })
	s.Close()
	spath := filepath.Join(dir, SnapshotFile)
	data, _ := os.ReadFile(spath)
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		switch {
		case strings.Contains(l, ids[1]):
			lines[i] = strings.Replace(l, `"results":[]`, `"results":"none"`, 1)
		case strings.Contains(l, ids[2]):
			// Completed before it was created.
			k := strings.Index(l, `"completed_at":"`) + len(`"completed_at":"`)
			lines[i] = l[:k] + "2001" + l[k+4:]
		}
	}
	os.WriteFile(spath, []byte(strings.Join(lines, "\n")), 0o600)
	v, _ := Verify(dir)
	var named []string
	for _, p := range v.Problems {
		named = append(named, p.JobID)
	}
	if v.OK || !slices.Contains(named, ids[1]) || !slices.Contains(named, ids[2]) {
		t.Fatalf("verify: %+v", v)
	}
	s = openT(t, dir)
	defer s.Close()
	list, err := s.List(Filter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("listing the intact jobs: %d, %v", len(list), err)
	}
}

// The daemon's verify runs against the live store: backups written and
// pruned while it runs are not rot.
func TestLiveVerifyBesideBackupsAndWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	defer s.Close()
	for i := range 50 {
		mustCreate(t, s, newJob(i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.Backup(BackupOptions{Keep: 1, Compress: i%2 == 0})
			mustCreate(t, s, newJob(i))
			s.Snapshot()
		}
	})
	for range 30 {
		v, err := s.Verify(VerifyOptions{})
		if err != nil || !v.OK {
			close(stop)
			wg.Wait()
			t.Fatalf("live verify: %v %+v", err, v)
		}
	}
	close(stop)
	wg.Wait()
}

// Two backups in the same second get two names, and neither shares a temp
// file with the other.
func TestBackupsInTheSameSecond(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustCreate(t, s, newJob(1))
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Go(func() {
			res, err := s.Backup(BackupOptions{Compress: i%2 == 0})
			if err != nil {
				t.Error(err)
				return
			}
			paths[i] = res.Path
		})
	}
	wg.Wait()
	slices.Sort(paths)
	if len(slices.Compact(slices.Clone(paths))) != len(paths) {
		t.Fatalf("two backups share a name: %v", paths)
	}
	list, _ := ListBackups(dir)
	for _, b := range list {
		if !b.Verified {
			t.Fatalf("backup %s does not verify: %s", b.Path, b.Problem)
		}
	}
}

// A data directory that others can write is refused, with a clear error.
func TestDataDirectoryWritableByOthersIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	_, err := Open(Options{Dir: dir})
	var de *DirError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("open of a 0777 data directory: %v", err)
	}
}

// A new data directory's entry is made durable, and files are 0600.
func TestNewDataDirectoryModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	s := openT(t, dir)
	mustCreate(t, s, newJob(1))
	s.Close()
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v", st.Mode().Perm())
	}
	checkFileModes(t, dir)
}

// A journal written by the release before the current format (SAJRNL01)
// is read, and rewritten in the current format on the first writable open.
func TestOldJournalFormatIsUpgraded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(dir, 0o700)
	a, b := newJob(1), newJob(2)
	a.ID, b.ID = "0190a000-0000-7000-8000-000000000001", "0190a000-0000-7000-8000-000000000002"
	a.Status, b.Status = job.Pending, job.Pending
	a.CreatedAt, b.CreatedAt = time.Now().UTC(), time.Now().UTC()
	v1 := []byte("SAJRNL01")
	record := func(kind byte, body []byte) {
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[:4], uint32(len(body)+1))
		crc := crc32.Update(0, crcTable, hdr[:4])
		crc = crc32.Update(crc, crcTable, []byte{kind})
		crc = crc32.Update(crc, crcTable, body)
		binary.LittleEndian.PutUint32(hdr[4:], crc)
		v1 = append(append(append(v1, hdr[:]...), kind), body...)
	}
	for _, j := range []*job.Job{a, b} {
		raw, _ := job.AppendJSON(nil, j)
		record('P', raw)
	}
	record('D', []byte(b.ID))
	os.WriteFile(filepath.Join(dir, JournalFile), v1, 0o600)

	if v, err := Verify(dir); err != nil || !v.OK || v.Journal != 3 {
		t.Fatalf("verify of an old journal: %v %+v", err, v)
	}
	s := openT(t, dir)
	if got := state(t, s); len(got) != 1 || got[a.ID] != job.Pending {
		t.Fatalf("state %v", got)
	}
	mustCreate(t, s, newJob(3))
	abandon(s)
	data, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	if !bytes.HasPrefix(data, []byte("SAJRNL02")) {
		t.Fatalf("journal not upgraded: %q", data[:8])
	}
	s = openT(t, dir)
	defer s.Close()
	if got := state(t, s); len(got) != 2 {
		t.Fatalf("after upgrade and restart: %v", got)
	}
}
