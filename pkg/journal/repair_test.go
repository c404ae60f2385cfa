package journal

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

var repairTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestRepairTornTail(t *testing.T) {
	path := journalPath(t)
	data := encode(job(1, 10), job(2, 10), job(3, 10))
	cut := len(data) - 7
	os.WriteFile(path, data[:cut], 0o600)
	s, err := Read(fsys.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	tornAt := s.Damage[0].Offset
	aside, err := Repair(fsys.OS, path, s, repairTime)
	if err != nil {
		t.Fatal(err)
	}
	if aside != path+".corrupt-20260304-050607" {
		t.Fatalf("aside %q", aside)
	}
	kept, _ := os.ReadFile(aside)
	if !bytes.Equal(kept, data[tornAt:cut]) {
		t.Fatalf("aside holds %d bytes, want the %d cut", len(kept), cut-int(tornAt))
	}
	after := readClean(t, path)
	if len(after.Entries) != 2 || after.Size != tornAt || s.Good != tornAt || len(s.Damage) != 0 {
		t.Fatalf("after repair: %d entries, size %d; scan good %d damage %+v", len(after.Entries), after.Size, s.Good, s.Damage)
	}
	w, err := OpenWriter(fsys.OS, path, s.Good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(job(4, 1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := keysOf(readClean(t, path).Entries); !slices.Equal(got, []string{"job-001", "job-002", "job-004"}) {
		t.Fatalf("entries %q", got)
	}
}

func TestRepairRot(t *testing.T) {
	path := journalPath(t)
	var cs []Change
	for i := range 100 {
		cs = append(cs, job(i, 30))
	}
	data := encode(cs...)
	clean := Decode(data)
	mid := clean.Entries[50]
	data[mid.Offset+mid.Size-3] ^= 0xff
	torn := appendChange(nil, job(100, 30))[:20]
	data = append(data, torn...)
	os.WriteFile(path, data, 0o600)
	// The first choice of name is taken: the next second is used.
	os.WriteFile(path+".corrupt-20260304-050607", []byte("older"), 0o600)

	s, err := Read(fsys.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != 99 || len(s.Damage) != 2 || s.Damage[0].Torn || !s.Damage[1].Torn {
		t.Fatalf("%d entries, damage %+v", len(s.Entries), s.Damage)
	}
	if !slices.Equal(s.Damage[0].Keys, []string{"job-050"}) {
		t.Fatalf("rot names %q", s.Damage[0].Keys)
	}
	aside, err := Repair(fsys.OS, path, s, repairTime)
	if err != nil {
		t.Fatal(err)
	}
	if aside != path+".corrupt-20260304-050608" {
		t.Fatalf("aside %q", aside)
	}
	kept, _ := os.ReadFile(aside)
	want := append(bytes.Clone(data[mid.Offset:mid.Offset+mid.Size]), torn...)
	if !bytes.Equal(kept, want) {
		t.Fatalf("aside holds %d bytes, want %d", len(kept), len(want))
	}
	after := readClean(t, path)
	if len(after.Entries) != 99 || after.Good != s.Good || after.Size != s.Size {
		t.Fatalf("after repair: %d entries, good %d size %d; scan says %d", len(after.Entries), after.Good, after.Size, s.Good)
	}
	for i, e := range after.Entries {
		if e.Offset != s.Entries[i].Offset || !sameChange(e.Change, s.Entries[i].Change) {
			t.Fatalf("entry %d: scan not updated to the repaired file", i)
		}
	}
	if slices.Contains(keysOf(after.Entries), "job-050") || !slices.Contains(keysOf(after.Entries), "job-099") {
		t.Fatal("wrong entries kept")
	}
	// Nothing damaged: nothing to do.
	if aside, err := Repair(fsys.OS, path, after, repairTime); aside != "" || err != nil {
		t.Fatalf("repair of a clean journal: %q, %v", aside, err)
	}
}

func TestRepairV1(t *testing.T) {
	path := journalPath(t)
	os.WriteFile(path, v1Journal(), 0o600)
	s, err := Read(fsys.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(fsys.OS, path, s, repairTime); err == nil {
		t.Fatal("a v1 job record without key was rewritten")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, v1Journal()) {
		t.Fatal("refused repair touched the file")
	}
	s.Entries[0].Change[0].Key = "a" // the store reads it from the JSON
	aside, err := Repair(fsys.OS, path, s, repairTime)
	if err != nil || aside != "" {
		t.Fatalf("repair: %q, %v", aside, err)
	}
	after := readClean(t, path)
	if after.Version != 2 || len(after.Entries) != 4 || after.Good != s.Good {
		t.Fatalf("version %d, %d entries, good %d / %d", after.Version, len(after.Entries), after.Good, s.Good)
	}
	for i := range after.Entries {
		if !sameChange(after.Entries[i].Change, s.Entries[i].Change) {
			t.Fatalf("entry %d differs", i)
		}
	}
	if _, err := OpenWriter(fsys.OS, path, s.Good, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestRepairShortHeader(t *testing.T) {
	path := journalPath(t)
	os.WriteFile(path, []byte("SAJR"), 0o600)
	s, _ := Read(fsys.OS, path)
	if !s.Torn() {
		t.Fatalf("damage %+v", s.Damage)
	}
	if _, err := Repair(fsys.OS, path, s, repairTime); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(fsys.OS, path, s.Good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(job(1, 1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if s := readClean(t, path); len(s.Entries) != 1 {
		t.Fatalf("%d entries", len(s.Entries))
	}
}
