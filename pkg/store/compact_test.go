package store

import (
	"path/filepath"
	"testing"
	"time"
)

// A small jobs.json is rewritten at every interval that saw a change; a
// large one only once the journal has grown to journalShare of it, so the
// rewrite a change costs does not grow with the history kept.
func TestCompactionIsDueByShareOfALargeSnapshot(t *testing.T) {
	c := newCompactor(10<<20, time.Now())
	if !c.due(1) {
		t.Fatal("a small snapshot is not due at the interval")
	}
	c.wrote(1<<30, time.Now())
	for _, tc := range []struct {
		journal int64
		due     bool
	}{{1, false}, {512 << 20, false}, {1<<30 - 1, false}, {1 << 30, true}, {2 << 30, true}} {
		if got := c.due(tc.journal); got != tc.due {
			t.Errorf("journal %d beside a 1 GiB snapshot: due %v, want %v", tc.journal, got, tc.due)
		}
	}
	// The limit only brings a due compaction forward.
	if c.overgrown(100<<20, 64<<20) || !c.overgrown(1100<<20, 64<<20) {
		t.Error("overgrown ignores the share of a large snapshot")
	}
	c.wrote(1<<20, time.Now())
	if c.overgrown(60<<20, 64<<20) || !c.overgrown(65<<20, 64<<20) {
		t.Error("overgrown ignores the limit for a small snapshot")
	}
}

// With a snapshot counted as large, changes stay in the journal until it
// reaches its share of jobs.json; then the background snapshot folds them
// in, and everything reads back after a reopen.
func TestLargeSnapshotIsRewrittenOnceTheJournalHasGrown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openT(t, dir)
	for i := range 40 {
		mustCreate(t, s, newJob(i))
	}
	s.Close()

	snaps := make(chan int, 16)
	s, err := Open(Options{Dir: dir, SnapshotInterval: time.Millisecond, JournalLimit: 1,
		OnSnapshot: func(_ time.Duration, jobs int) { snaps <- jobs }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.compactor.mu.Lock()
	s.compactor.small = 0
	snapBytes := s.compactor.snapBytes
	s.compactor.mu.Unlock()

	// Position counts bytes ever journaled, so a snapshot's cut does not
	// hide how far the journal had grown when it came.
	start, share := s.w.Position()-s.w.Size(), int64(journalShare*float64(snapBytes))
	grown := func() int64 { return s.w.Position() - start }
	created := 40
	for grown() < share {
		// grown only rises: a snapshot already here came before the share.
		select {
		case n := <-snaps:
			t.Fatalf("snapshot of %d jobs after %d bytes journaled beside a jobs.json of %d", n, grown(), snapBytes)
		default:
		}
		mustCreate(t, s, newJob(created))
		created++
	}
	select {
	case n := <-snaps:
		if n < 40 || grown() < share {
			t.Fatalf("snapshot of %d jobs after %d bytes journaled beside a jobs.json of %d", n, grown(), snapBytes)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no snapshot once the journal reached %d bytes beside %d", s.w.Size(), snapBytes)
	}
	if len(snaps) > 0 {
		t.Fatalf("%d more snapshots, with the journal short of its share again", len(snaps))
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	if got := len(state(t, s)); got != created {
		t.Fatalf("%d jobs after reopen, want %d", got, created)
	}
}
