package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/postgres"
	"github.com/secauto/secauto/pkg/store/postgres/pgtest"
)

// The commands on the postgres driver: migrate, the admin commands against
// the database without a daemon, and the documented move of a data
// directory to PostgreSQL and back (backup create on one driver, backup
// restore on the other).
func TestPostgresCommands(t *testing.T) {
	dbURL := pgtest.URL(t)
	t.Chdir(t.TempDir())
	writeFile(t, "pg.yaml", "store:\n  driver: postgres\n  postgres_url: \""+dbURL+"\"\n")
	writeFile(t, "file.yaml", "data_directory: filedata\n")
	writeFile(t, "pb.json", quickPlaybook)
	pg := func(args ...string) (int, string, string) {
		return run(t, nil, append([]string{"--config", "pg.yaml", "--data-dir", "pgdata"}, args...)...)
	}
	file := func(args ...string) (int, string, string) {
		return run(t, nil, append([]string{"--config", "file.yaml"}, args...)...)
	}

	code, out, errOut := pg("migrate", "status", "-o", "json")
	st := decode[postgres.MigrationStatus](t, out)
	if code != ExitOK || st.Version != 0 || st.Pending == 0 || st.Latest != st.Pending {
		t.Fatalf("migrate status on an empty database: exit %d %+v %s", code, st, errOut)
	}
	code, out, errOut = pg("migrate", "up", "-o", "json")
	if st = decode[postgres.MigrationStatus](t, out); code != ExitOK || st.Pending != 0 || st.Version != st.Latest {
		t.Fatalf("migrate up: exit %d %+v %s", code, st, errOut)
	}
	if code, out, _ = pg("migrate", "up", "-o", "json"); code != ExitOK || decode[postgres.MigrationStatus](t, out) != st {
		t.Fatalf("migrate up again: exit %d %s", code, out)
	}
	if code, _, errOut = file("migrate", "status"); code != ExitUsage || !strings.Contains(errOut, "postgres driver") {
		t.Errorf("migrate on the file driver: exit %d %q", code, errOut)
	}

	// With no daemon, run queues the job in the database.
	code, out, errOut = pg("run", "pb.json", "-o", "json")
	if code != ExitOK {
		t.Fatalf("run: exit %d %s%s", code, out, errOut)
	}
	id := decode[map[string]any](t, out)["job_id"].(string)
	code, out, _ = pg("jobs", "list", "-o", "json")
	if jobs := decode[[]job.Job](t, out); code != ExitOK || len(jobs) != 1 || jobs[0].ID != id || jobs[0].Status != job.Pending {
		t.Fatalf("jobs list: exit %d %s", code, out)
	}
	if code, out, errOut = pg("verify", "-o", "json"); code != ExitOK || !decode[store.VerifyResult](t, out).OK {
		t.Fatalf("verify: exit %d %s%s", code, out, errOut)
	}

	// PostgreSQL → file.
	code, out, errOut = pg("backup", "create", "-o", "json")
	if code != ExitOK {
		t.Fatalf("backup create: exit %d %s%s", code, out, errOut)
	}
	backup := decode[store.BackupResult](t, out)
	if backup.Jobs != 1 || filepath.Dir(backup.Path) != "pgdata" && !strings.HasSuffix(filepath.Dir(backup.Path), "pgdata") {
		t.Fatalf("backup create: %+v", backup)
	}
	if err := os.Mkdir("filedata", 0o700); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = file("backup", "restore", backup.Path, "-o", "json"); code != ExitOK {
		t.Fatalf("backup restore into the file driver: exit %d %s%s", code, out, errOut)
	}
	code, out, _ = file("jobs", "show", id, "-o", "json")
	if got := decode[job.Job](t, out); code != ExitOK || got.Context["user"] != "alice" || got.Status != job.Pending {
		t.Fatalf("the moved job on the file driver: exit %d %s", code, out)
	}

	// file → PostgreSQL, into a database that holds other jobs: they are
	// replaced, and kept in the safety backup.
	if code, _, _ = pg("run", "pb.json"); code != ExitOK {
		t.Fatal("second run failed")
	}
	code, out, errOut = file("backup", "create", "-o", "json")
	if code != ExitOK {
		t.Fatalf("backup create on the file driver: exit %d %s", code, errOut)
	}
	fileBackup := decode[store.BackupResult](t, out)
	code, out, errOut = pg("backup", "restore", fileBackup.Path, "-o", "json")
	if code != ExitOK {
		t.Fatalf("backup restore into PostgreSQL: exit %d %s%s", code, out, errOut)
	}
	if r := decode[map[string]any](t, out); r["restored_jobs"] != float64(1) || r["safety_backup"] == "" {
		t.Errorf("restore answered %s", out)
	}
	code, out, _ = pg("jobs", "list", "-o", "json")
	if jobs := decode[[]job.Job](t, out); code != ExitOK || len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("jobs on PostgreSQL after the move back: exit %d %s", code, out)
	}
	if code, out, _ = pg("stats", "-o", "json"); code != ExitOK || !strings.Contains(out, `"pending": 1`) && !strings.Contains(out, `"pending":1`) {
		t.Errorf("stats: exit %d %s", code, out)
	}
	// The URL's password never reaches an error.
	writeFile(t, "bad.yaml", "store:\n  driver: postgres\n  postgres_url: \"postgres://secauto:hunter2-password@127.0.0.1:1/none?sslmode=disable&connect_timeout=2\"\n")
	code, _, errOut = run(t, nil, "--config", "bad.yaml", "--data-dir", "pgdata", "jobs", "list")
	if code == ExitOK || strings.Contains(errOut, "hunter2") || !strings.Contains(errOut, "127.0.0.1") {
		t.Errorf("unreachable database: exit %d %q", code, errOut)
	}
}
