// Package pgtest gives tests a PostgreSQL database of their own: a schema
// created for the test in the database $SECAUTO_TEST_POSTGRES_URL names,
// and dropped when it ends. Without the variable the test is skipped,
// saying how to set it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the database the tests use.
const EnvURL = "SECAUTO_TEST_POSTGRES_URL"

// URL returns a URL whose tables live in a schema of the test's own.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		t.Skip("this test needs PostgreSQL: set " + EnvURL + ", e.g. " + EnvURL + "='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' (.ci/run sets it)")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "secauto_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to $%s: %v", EnvURL, err)
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
