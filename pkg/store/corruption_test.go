package store

import (
	"bytes"
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

func state(t *testing.T, s *FileStore) map[string]job.Status {
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
