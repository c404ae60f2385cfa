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
	bounds := []int64{int64(len(journalMagic))}
	states := []map[string]job.Status{{}}
	cur := map[string]job.Status{}
	off := int64(len(journalMagic))
	_, jerr := scanJournal(data, func(kind byte, body []byte) error {
		if kind == recDelete {
			delete(cur, string(body))
			off += int64(recHeaderSize + 1 + len(body))
		} else {
			id, e, err := decodeEntry(body)
			if err != nil {
				return err
			}
			cur[id] = e.status
			off += int64(recHeaderSize + 1 + len(body))
		}
		bounds = append(bounds, off)
		states = append(states, cloneState(cur))
		return nil
	})
	if jerr != nil || off != int64(len(data)) || len(bounds) != 7 {
		t.Fatalf("fixture journal: %v, %d of %d bytes, %d records", jerr, off, len(data), len(bounds)-1)
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

// TestJournalFlippedByte flips one byte inside each record in turn: the
// records before it survive, the rest is cut and kept.
func TestJournalFlippedByte(t *testing.T) {
	dir, bounds, states := journalFixture(t)
	full, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	for k := 0; k+1 < len(bounds); k++ {
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
			if got := state(t, s); !sameState(got, states[k]) {
				t.Fatalf("flip at %d (record %d): state %v, want %v", at, k, got, states[k])
			}
			if s.Report().JournalTruncatedBytes != int64(len(full))-bounds[k] {
				t.Fatalf("flip at %d: truncated %d", at, s.Report().JournalTruncatedBytes)
			}
			s.Close()
		}
	}
	// A header that is not ours: the whole file is kept aside.
	d := copyDir(t, dir)
	data := slices.Clone(full)
	data[0] = 'X'
	os.WriteFile(filepath.Join(d, JournalFile), data, 0o600)
	s := openT(t, d)
	if len(state(t, s)) != 0 || s.Report().JournalTruncatedBytes != int64(len(full)) {
		t.Fatalf("bad header: %+v", s.Report())
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
			spath := filepath.Join(dir, SnapshotFile)
			flipByte(t, spath, 0.3)
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

func TestCorruptSnapshotWithoutBackupIsAClearError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string)
	}{
		{"flipped byte", func(p string) { flipByte(t, p, 0.4) }},
		{"truncated", func(p string) { data, _ := os.ReadFile(p); os.WriteFile(p, data[:len(data)/2], 0o600) }},
		{"bad status", func(p string) {
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"pending"`), []byte(`"paused"`), 1), 0o600)
		}},
		{"not an object", func(p string) { os.WriteFile(p, []byte(`[1,2,3]`), 0o600) }},
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

// A bit flipped inside a string keeps jobs.json valid JSON; the recorded
// checksum still catches it.
func TestSnapshotRotInsideAStringIsCaught(t *testing.T) {
	dir, ids, backups := snapshotFixture(t)
	spath := filepath.Join(dir, SnapshotFile)
	data, _ := os.ReadFile(spath)
	at := bytes.Index(data, []byte("10.0.0.1"))
	flipByte(t, spath, float64(at)/float64(len(data)))
	if v, _ := Verify(dir); v.OK || !strings.Contains(v.Problems[0].Message, "checksum") {
		t.Fatalf("verify: %+v", v)
	}
	s := openT(t, dir)
	defer s.Close()
	if s.Report().RestoredFrom != backups[1] {
		t.Fatalf("rot not caught: %+v", s.Report())
	}
	if j, err := s.Get(ids[0]); err != nil || j.Context["host"] != "10.0.0.1" {
		t.Fatalf("job after restore: %+v %v", j, err)
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
