package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
)

// copyDir copies a data directory's regular files.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		in, _ := os.Open(filepath.Join(src, e.Name()))
		out, _ := os.OpenFile(filepath.Join(dst, e.Name()), os.O_CREATE|os.O_WRONLY, 0o600)
		io.Copy(out, in)
		in.Close()
		out.Close()
	}
	return dst
}

func state(t *testing.T, s *Store) map[string]job.Status {
	t.Helper()
	all, err := s.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]job.Status{}
	for _, j := range all {
		m[j.ID] = j.Status
	}
	return m
}

func sameState(a, b map[string]job.Status) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// journalFixture leaves a directory whose journal holds a history of
// creates, updates and deletes, as a killed writer would. It returns the
// record boundaries and the state after each record.
func journalFixture(t *testing.T) (string, []int64, []map[string]job.Status) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	a := mustCreate(t, s, newJob(1))
	b := mustCreate(t, s, newJob(2))
	s.Update(a.ID, func(j *job.Job) error { return j.Start(time.Now()) })
	s.Delete(b.ID)
	s.Update(a.ID, func(j *job.Job) error { return j.Finish(job.Failed, "boom", time.Now()) })
	mustCreate(t, s, newJob(3))
	abandon(s)

	data, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	scan := journal.Decode(data)
	bounds := []int64{int64(journal.HeaderSize)}
	states := []map[string]job.Status{{}}
	cur := map[string]job.Status{}
	for i, e := range scan.Entries {
		for _, r := range e.Change {
			if r.Kind == journal.DeleteJob {
				delete(cur, r.Key)
				continue
			}
			_, en, err := decodeEntry(r.Value, true)
			if err != nil {
				t.Fatal(err)
			}
			cur[r.Key] = en.status
		}
		end := int64(len(data))
		if i+1 < len(scan.Entries) {
			end = scan.Entries[i+1].Offset
		}
		bounds = append(bounds, end)
		states = append(states, cloneState(cur))
	}
	if len(scan.Damage) > 0 || len(bounds) != 7 {
		t.Fatalf("fixture journal: %v, %d records", scan.Damage, len(bounds)-1)
	}
	return dir, bounds, states
}

func cloneState(m map[string]job.Status) map[string]job.Status {
	out := make(map[string]job.Status, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestJournalCutAtEveryByte cuts the journal at every byte of its last
// records: each open must keep exactly the records before the cut, and keep
// the cut bytes aside.
func TestJournalCutAtEveryByte(t *testing.T) {
	dir, bounds, states := journalFixture(t)
	full, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	from := bounds[len(bounds)-4]
	for cut := from; cut <= int64(len(full)); cut++ {
		d := copyDir(t, dir)
		os.Truncate(filepath.Join(d, JournalFile), cut)
		k := 0
		for k+1 < len(bounds) && bounds[k+1] <= cut {
			k++
		}
		s := openT(t, d)
		got := state(t, s)
		rep := s.Report()
		if !sameState(got, states[k]) {
			t.Fatalf("cut at %d: state %v, want %v", cut, got, states[k])
		}
		if rep.JournalTruncatedBytes != cut-bounds[k] {
			t.Fatalf("cut at %d: %d bytes truncated, want %d", cut, rep.JournalTruncatedBytes, cut-bounds[k])
		}
		if rep.JournalTruncatedBytes > 0 {
			kept, err := os.ReadFile(rep.JournalCorruptPath)
			if err != nil || !bytes.Equal(kept, full[bounds[k]:cut]) {
				t.Fatalf("cut at %d: the cut bytes were not kept aside: %v", cut, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if v, err := Verify(d); err != nil || !v.OK {
			t.Fatalf("cut at %d: verify after open: %+v %v", cut, v, err)
		}
	}
}

// TestJournalFlippedByte flips one byte inside each record in turn: that
// record is lost, every other one, those after it too, survives, and the
// damaged bytes are kept aside.
func TestJournalFlippedByte(t *testing.T) {
	dir, bounds, states := journalFixture(t)
	full, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	scan := journal.Decode(full)
	for k := 0; k+1 < len(bounds); k++ {
		// The state with record k skipped.
		want := map[string]job.Status{}
		for i, e := range scan.Entries {
			if i == k {
				continue
			}
			for _, r := range e.Change {
				if r.Kind == journal.DeleteJob {
					delete(want, r.Key)
					continue
				}
				_, en, _ := decodeEntry(r.Value, true)
				want[r.Key] = en.status
			}
		}
		if k == len(bounds)-2 {
			want = states[k] // the last record: a torn tail
		}
		for _, at := range []int64{bounds[k], bounds[k] + 3, bounds[k] + 5, (bounds[k] + bounds[k+1]) / 2, bounds[k+1] - 1} {
			d := copyDir(t, dir)
			data := slices.Clone(full)
			data[at] ^= 0x01
			os.WriteFile(filepath.Join(d, JournalFile), data, 0o600)
			v, _ := Verify(d)
			if v.OK || !strings.Contains(v.Problems[0].File, JournalFile) {
				t.Fatalf("flip at %d: verify did not see it: %+v", at, v)
			}
			s := openT(t, d)
			if got := state(t, s); !sameState(got, want) {
				t.Fatalf("flip at %d (record %d): state %v, want %v", at, k, got, want)
			}
			if n := s.Report().JournalTruncatedBytes; n <= 0 || n > int64(len(full))-bounds[k] {
				t.Fatalf("flip at %d: %d bytes cut", at, n)
			}
			s.Close()
			if v, _ := Verify(d); !v.OK {
				t.Fatalf("flip at %d: verify after repair: %+v", at, v)
			}
		}
	}
	// A damaged header costs the header only: the records after it are
	// found and kept.
	d := copyDir(t, dir)
	data := slices.Clone(full)
	data[0] = 'X'
	os.WriteFile(filepath.Join(d, JournalFile), data, 0o600)
	s := openT(t, d)
	if got := state(t, s); !sameState(got, states[len(states)-1]) || s.Report().JournalTruncatedBytes != int64(journal.HeaderSize) {
		t.Fatalf("bad header: %v, %+v", got, s.Report())
	}
	s.Close()
}

// snapshotFixture: backup1 (a), backup2 (a, b), snapshot (a, b, c), and a
// journal holding d after the snapshot.
func snapshotFixture(t *testing.T) (dir string, ids [4]string, backups [2]string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	ids[0] = mustCreate(t, s, newJob(0)).ID
	b1, err := s.Backup(BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids[1] = mustCreate(t, s, newJob(1)).ID
	b2, err := s.Backup(BackupOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	ids[2] = mustCreate(t, s, newJob(2)).ID
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	ids[3] = mustCreate(t, s, newJob(3)).ID
	abandon(s)
	return dir, ids, [2]string{b1.Path, b2.Path}
}

// flipByte changes one bit the way a failing disk does: in place, leaving
// the file's size and modification time as they were.
func flipByte(t *testing.T, path string, at float64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	data[int(float64(len(data))*at)] ^= 0x04
	os.WriteFile(path, data, 0o600)
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// A jobs.json that does not parse is replaced by the newest verified backup.
func TestCorruptSnapshotRestoresNewestVerifiedBackup(t *testing.T) {
	for _, tc := range []struct {
		name      string
		breakB2   bool
		wantFrom  int
		wantAlive []int
	}{
		{"newest backup good", false, 1, []int{0, 1, 3}},
		{"newest backup tampered", true, 0, []int{0, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ids, backups := snapshotFixture(t)
			if tc.breakB2 {
				flipByte(t, backups[1], 0.5)
			}
			// Cut short, jobs.json no longer parses: the whole file is
			// replaced by the newest verified backup.
			spath := filepath.Join(dir, SnapshotFile)
			data, _ := os.ReadFile(spath)
			os.WriteFile(spath, data[:len(data)*3/10], 0o600)
			corrupt, _ := os.ReadFile(spath)
			s := openT(t, dir)
			rep := s.Report()
			if rep.RestoredFrom != backups[tc.wantFrom] {
				t.Fatalf("restored from %q, want %q", rep.RestoredFrom, backups[tc.wantFrom])
			}
			kept, err := os.ReadFile(rep.SnapshotCorruptPath)
			if err != nil || !bytes.Equal(kept, corrupt) {
				t.Fatalf("corrupt jobs.json not kept at %q: %v", rep.SnapshotCorruptPath, err)
			}
			got := state(t, s)
			var want []string
			for _, i := range tc.wantAlive {
				want = append(want, ids[i])
			}
			for _, id := range want {
				if got[id] != job.Pending {
					t.Fatalf("job %s missing after restore; have %v", id, got)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("jobs %v, want %v", got, want)
			}
			res, _ := s.Recover(RecoverOptions{})
			if res.RestoredFrom == nil || *res.RestoredFrom != backups[tc.wantFrom] {
				t.Fatalf("recover result does not name the backup: %+v", res)
			}
			s.Close()
			v, _ := Verify(dir)
			if v.OK != !tc.breakB2 {
				t.Fatalf("verify after repair: %+v", v)
			}
		})
	}
}

// A jobs.json that does not parse, with no backup to replace it, is a
// clear error that changes nothing.
func TestCorruptSnapshotWithoutBackupIsAClearError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string)
	}{
		{"truncated", func(p string) { data, _ := os.ReadFile(p); os.WriteFile(p, data[:len(data)/2], 0o600) }},
		{"not an object", func(p string) { os.WriteFile(p, []byte(`[1,2,3]`), 0o600) }},
		{"no closing brace", func(p string) { data, _ := os.ReadFile(p); os.WriteFile(p, data[:len(data)-3], 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			s := openT(t, dir)
			mustCreate(t, s, newJob(1))
			s.Close()
			spath := filepath.Join(dir, SnapshotFile)
			tc.write(spath)
			before, _ := os.ReadFile(spath)
			_, err := Open(Options{Dir: dir})
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != spath || !strings.Contains(err.Error(), "backup restore") {
				t.Fatalf("open: %v", err)
			}
			if after, _ := os.ReadFile(spath); !bytes.Equal(before, after) {
				t.Fatal("a corrupt jobs.json with nothing to replace it was changed")
			}
			if v, _ := Verify(dir); v.OK || v.Problems[0].File != spath {
				t.Fatalf("verify: %+v", v)
			}
			s, err = Open(Options{Dir: dir, Salvage: true, SnapshotInterval: -1})
			if err != nil {
				t.Fatalf("salvage open: %v", err)
			}
			if kept, _ := os.ReadFile(s.Report().SnapshotCorruptPath); !bytes.Equal(kept, before) {
				t.Fatal("salvage did not keep the corrupt file")
			}
			s.Close()
		})
	}
}

// A jobs.json that parses but holds a broken job keeps every other job, with
// no backup too: the broken one is reported lost.
func TestBrokenJobWithoutBackupCostsThatJobOnly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string)
	}{
		{"flipped byte", func(p string) {
			data, _ := os.ReadFile(p)
			flipByte(t, p, (float64(bytes.Index(data, []byte("hello 1")))+2.5)/float64(len(data)))
		}},
		{"bad status", func(p string) {
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"pending"`), []byte(`"paused"`), 1), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			s := openT(t, dir)
			a := mustCreate(t, s, newJob(1))
			b := mustCreate(t, s, newJob(2))
			s.Close()
			tc.write(filepath.Join(dir, SnapshotFile))
			if v, _ := Verify(dir); v.OK || v.Problems[0].File != filepath.Join(dir, SnapshotFile) {
				t.Fatalf("verify: %+v", v)
			}
			s = openT(t, dir)
			defer s.Close()
			got := state(t, s)
			if _, ok := got[a.ID]; ok || got[b.ID] != job.Pending {
				t.Fatalf("state %v: want only %s", got, b.ID)
			}
			if rep := s.Report(); !slices.Equal(rep.LostJobs, []string{a.ID}) || rep.SnapshotCorruptPath == "" {
				t.Fatalf("report: %+v", rep)
			}
		})
	}
}

// A bit flipped inside a string keeps jobs.json valid JSON; the recorded
// checksums still catch it, and only the job it hit is taken from the
// backup.
func TestSnapshotRotInsideAStringIsCaught(t *testing.T) {
	dir, ids, backups := snapshotFixture(t)
	spath := filepath.Join(dir, SnapshotFile)
	data, _ := os.ReadFile(spath)
	at := bytes.Index(data, []byte("10.0.0.1"))
	flipByte(t, spath, (float64(at)+0.5)/float64(len(data)))
	if v, _ := Verify(dir); v.OK || !strings.Contains(v.Problems[0].Message, "checksum") {
		t.Fatalf("verify: %+v", v)
	}
	s := openT(t, dir)
	defer s.Close()
	if rep := s.Report(); rep.RestoredFrom != backups[1] || !slices.Equal(rep.RestoredJobs, []string{ids[0]}) {
		t.Fatalf("rot not caught: %+v", rep)
	}
	if j, err := s.Get(ids[0]); err != nil || j.Context["host"] != "10.0.0.1" {
		t.Fatalf("job after restore: %+v %v", j, err)
	}
	if got := state(t, s); len(got) != 4 {
		t.Fatalf("jobs after repair: %v", got)
	}
}

// An operator who copies a backup over jobs.json by hand (the seed's
// runbook) gets that file loaded, not "repaired".
func TestSnapshotReplacedByHandIsTakenAsIs(t *testing.T) {
	dir, ids, backups := snapshotFixture(t)
	data, _ := os.ReadFile(backups[0])
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, SnapshotFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir)
	defer s.Close()
	if s.Report().RestoredFrom != "" {
		t.Fatalf("hand-placed jobs.json was treated as corrupt: %+v", s.Report())
	}
	got := state(t, s)
	if len(got) != 2 || got[ids[0]] == "" || got[ids[3]] == "" {
		t.Fatalf("jobs %v, want the backup's job and the journal's", got)
	}
}
