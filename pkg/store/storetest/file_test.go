package storetest_test

import (
	"path/filepath"
	"testing"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/storetest"
)

// openFile opens the file driver on dir, as the suite asks.
func openFile(t *testing.T, dir string) store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Dir: dir, MaxJobBytes: storetest.MaxJobBytes})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", dir, err)
		}
	})
	return s
}

func TestFileDriver(t *testing.T) {
	storetest.Run(t, storetest.Driver{
		Open: func(t *testing.T) store.Store {
			return openFile(t, filepath.Join(t.TempDir(), "data"))
		},
		Reopen: func(t *testing.T, old store.Store) store.Store {
			if err := old.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return openFile(t, old.Dir())
		},
	})
}
