package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/postgres"
	"github.com/secauto/secauto/pkg/store/postgres/pgtest"
)

// Two nodes on one database share the backup schedule and take turns: when
// both find the backup due, one makes it and the other, reading the
// schedule again under the cluster-wide lock, finds it done.
func TestClusterMaintenanceRunsOnOneNode(t *testing.T) {
	url := pgtest.URL(t)
	T := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	fc := newFakeClock(T)
	node := func(id string) (*Server, string) {
		dir := t.TempDir()
		st, err := postgres.Open(context.Background(), postgres.Options{URL: url, Dir: dir, Now: fc.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Join(store.Node{ID: id, StartedAt: T}, time.Minute); err != nil {
			t.Fatal(err)
		}
		srv, err := New(st, Options{Now: fc.Now, Maintenance: Maintenance{BackupEnabled: true, BackupInterval: time.Hour, BackupKeep: 10}})
		if err != nil {
			t.Fatal(err)
		}
		return srv, dir
	}
	a, dirA := node("a")
	b, dirB := node("b")
	finishedJob(t, a.st, T.Add(-time.Minute))
	total := func() int { return len(backups(t, dirA)) + len(backups(t, dirB)) }

	fc.Set(T.Add(2 * time.Hour))
	a.keeper.runIfDue(a.backups)
	b.keeper.runIfDue(b.backups)
	if n, na := total(), len(backups(t, dirA)); n != 1 || na != 1 {
		t.Fatalf("after both nodes looked: %d backups (%d on a), want the one a made", n, na)
	}

	// Due again, and both look at the same moment.
	fc.Set(T.Add(4 * time.Hour))
	var wg sync.WaitGroup
	for _, s := range []*Server{a, b} {
		wg.Go(func() { s.keeper.runIfDue(s.backups) })
	}
	wg.Wait()
	if n := total(); n != 2 {
		t.Fatalf("after both nodes looked at once: %d backups in all, want 2", n)
	}
}
