package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

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

func TestSortByIDMatchesASort(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1 << 14, 1<<14 + 7, 50_001} {
		items := make([]keyed, n)
		for i := range items {
			items[i].id = fmt.Sprintf("%08x", uint32(i)*2654435761)
		}
		want := slices.Clone(items)
		slices.SortFunc(want, func(a, b keyed) int { return strings.Compare(a.id, b.id) })
		sortByID(items)
		if !slices.Equal(items, want) {
			t.Fatalf("n=%d: sortByID differs from a sort", n)
		}
	}
}
