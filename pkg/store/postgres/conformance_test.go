package postgres

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/storetest"
)

// The store's conformance suite, on PostgreSQL: what the file driver does,
// this one does too, and the Cluster part between two nodes.
func TestConformance(t *testing.T) {
	var (
		mu   sync.Mutex
		urls = map[store.Store]string{}
		n    atomic.Int64
	)
	open := func(t *testing.T, u string) store.Store {
		s := openAt(t, u, func(o *Options) { o.MaxJobBytes = storetest.MaxJobBytes })
		node := store.Node{ID: fmt.Sprintf("conformance-%d", n.Add(1)), StartedAt: time.Now()}
		if err := s.Join(node, time.Minute); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		urls[s] = u
		mu.Unlock()
		return s
	}
	urlOf := func(s store.Store) string {
		mu.Lock()
		defer mu.Unlock()
		return urls[s]
	}
	storetest.Run(t, storetest.Driver{
		Open: func(t *testing.T) store.Store { return open(t, testURL(t)) },
		// A node's Close leaves its running jobs to the others at once;
		// the next node's RescueDead recovers them.
		Reopen: func(t *testing.T, old store.Store) store.Store {
			u := urlOf(old)
			if err := old.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return open(t, u)
		},
		Peer: func(t *testing.T, s store.Store) store.Store { return open(t, urlOf(s)) },
	})
}
