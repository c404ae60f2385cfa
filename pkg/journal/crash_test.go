package journal

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys/crashfs"
)

// crashScenario appends changes one by one (one of them spanning frames)
// and cuts the journal halfway, as the store does after a snapshot. It
// returns the indexes of the changes acknowledged, and how many of them
// came before the cut's mark (those a snapshot holds, so the journal may
// drop them).
func crashScenario(fs *crashfs.FS, path string) (acked []int, covered int) {
	w, err := OpenWriter(fs, path, 0, Options{})
	if err != nil {
		return nil, 0
	}
	defer w.Close()
	for i := range 10 {
		if i == 6 {
			covered = len(acked)
			w.Cut(w.Position())
		}
		size := 50 + i*700
		if i == 3 {
			size = maxFramePayload + 3000
		}
		if w.Append(job(i, size)) == nil {
			acked = append(acked, i)
		}
	}
	return acked, covered
}

func TestCrashAtEveryOperation(t *testing.T) {
	const path = "data/jobs.journal"
	for _, opts := range []crashfs.CrashOptions{{}, {TornWrites: true}, {TornWrites: true, ZeroFill: true}} {
		for n := 1; ; n++ {
			fs := crashfs.New()
			fs.Mkdir("data", 0o700)
			fs.SyncDir(".")
			fs.SetCrashOptions(opts)
			fs.SetCrashAt(n)
			acked, covered := crashScenario(fs, path)
			img, crashed := fs.Crashed()
			if !crashed {
				break
			}
			where := fmt.Sprintf("%+v, crash at op %d (%s)", opts, n, fs.Labels()[n-1])
			s, err := Read(img, path)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if len(s.Damage) > 1 || len(s.Damage) == 1 && !s.Damage[0].Torn {
				t.Fatalf("%s: rot after a crash: %+v", where, s.Damage)
			}
			var got []int
			for _, e := range s.Entries {
				var i int
				fmt.Sscanf(e.Change[0].Key, "job-%d", &i)
				got = append(got, i)
			}
			if !slices.IsSorted(got) {
				t.Fatalf("%s: entries out of order: %v", where, got)
			}
			for _, i := range acked[covered:] {
				if !slices.Contains(got, i) {
					t.Fatalf("%s: acknowledged change %d lost; journal holds %v", where, i, got)
				}
			}
			// Recovery: repair, reopen, and carry on.
			if _, err := Repair(img, path, s, time.Unix(0, 0)); err != nil {
				t.Fatalf("%s: repair: %v", where, err)
			}
			w, err := OpenWriter(img, path, s.Good, Options{})
			if err != nil {
				t.Fatalf("%s: reopen: %v", where, err)
			}
			if err := w.Append(job(99, 10)); err != nil {
				t.Fatalf("%s: append after recovery: %v", where, err)
			}
			w.Close()
			after, _ := Read(img, path)
			if len(after.Damage) != 0 || len(after.Entries) != len(s.Entries)+1 {
				t.Fatalf("%s: after recovery %d entries, damage %+v", where, len(after.Entries), after.Damage)
			}
		}
	}
}

// On a full disk appends fail with ErrNoSpace and leave the journal
// clean; once space returns they succeed again with no restart.
func TestFullDiskResumes(t *testing.T) {
	const path = "jobs.journal"
	fs := crashfs.New()
	w, err := OpenWriter(fs, path, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(job(1, 100)); err != nil {
		t.Fatal(err)
	}
	fs.SetQuota(fs.Used() + 150)
	var failed int
	for i := 2; i < 6; i++ {
		err := w.Append(job(i, 100))
		if err != nil && !errors.Is(err, ErrNoSpace) {
			t.Fatalf("append %d: %v", i, err)
		}
		if err != nil {
			failed++
		}
	}
	if failed == 0 || w.Err() != nil {
		t.Fatalf("%d appends failed on a full disk; Err %v", failed, w.Err())
	}
	if err := w.Cut(headerLen); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("cut on a full disk: %v", err)
	}
	if s, _ := Read(fs, path); len(s.Damage) != 0 || s.Good != w.Size() {
		t.Fatalf("journal after full disk: damage %+v, good %d, size %d", s.Damage, s.Good, w.Size())
	}
	fs.SetQuota(-1)
	if err := w.Append(job(7, 100)); err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	s, _ := Read(fs, path)
	if len(s.Damage) != 0 || keysOf(s.Entries)[len(s.Entries)-1] != "job-007" {
		t.Fatalf("journal after space returned: %q, damage %+v", keysOf(s.Entries), s.Damage)
	}
}
