package postgres

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
	"github.com/secauto/secauto/pkg/store/postgres/pgtest"
)

// testURL returns the URL of a schema of the test's own (pgtest).
func testURL(t testing.TB) string { return pgtest.URL(t) }

// openAt opens a store on u for the test, closed at its end.
func openAt(t testing.TB, u string, edit ...func(*Options)) *Store {
	t.Helper()
	o := Options{URL: u, Dir: t.TempDir()}
	for _, e := range edit {
		e(&o)
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTest(t testing.TB, edit ...func(*Options)) (*Store, string) {
	u := testURL(t)
	return openAt(t, u, edit...), u
}

func newJob(i int) *job.Job {
	return &job.Job{
		Playbook: []job.Step{{Name: "a", Action: "log", Params: map[string]any{"message": "hi"}}},
		Context:  map[string]any{"n": float64(i), "secret": "s3cr3t"},
	}
}

func testKeyring(t testing.TB, fill ...byte) *seal.Keyring {
	t.Helper()
	var keys [][]byte
	for _, b := range fill {
		keys = append(keys, bytes.Repeat([]byte{b}, seal.KeySize))
	}
	kr, err := seal.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// exec runs sql on the store's database directly.
func exec(t testing.TB, s *Store, sql string, args ...any) int64 {
	t.Helper()
	tag, err := s.pool.Exec(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	return tag.RowsAffected()
}

// waitFor fails the test unless ch delivers within d.
func waitFor[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %s", what, d)
	}
	var zero T
	return zero
}

// syncBuffer is a bytes.Buffer for a logger that goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
