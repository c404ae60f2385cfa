package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// testURL returns the URL of a schema of its own for the test, created
// now and dropped at its end, in the database $SECAUTO_TEST_POSTGRES_URL
// names.
func testURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("SECAUTO_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("the postgres driver's tests need a PostgreSQL server: set SECAUTO_TEST_POSTGRES_URL, e.g. SECAUTO_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "secauto_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", Redact(base), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
