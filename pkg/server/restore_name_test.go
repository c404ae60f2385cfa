package server

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/store"
)

// copyBackupIn copies the backup at path and its checksum into dir under
// the same name, as "secauto backup restore FILE" does before it names it,
// and returns the name.
func copyBackupIn(t *testing.T, path, dir string) string {
	t.Helper()
	name := filepath.Base(path)
	for _, suffix := range []string{"", ".sha256"} {
		data, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+suffix), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// POST /admin/restore takes a backup of the data directory by its file
// name, and nothing else: a path, "..", a name that is not a backup's, or a
// link out of the directory is refused with 400 and the same answer
// whether or not a file exists outside, and the store is unchanged.
func TestAdminRestoreTakesOnlyBackupNames(t *testing.T) {
	e := newEnv(t, Options{})
	keep := e.submit(logJob)
	path, _, _ := backupOf(t) // a backup outside the data directory
	outside := filepath.Dir(path)
	if err := os.Symlink(path, filepath.Join(e.dir, "jobs.json.backup.20000101-000000")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "jobs.json.backup.20000101-000001"), 0o700); err != nil {
		t.Fatal(err)
	}

	refused := func(body string) string {
		t.Helper()
		code, b := e.do("POST", "/admin/restore", body)
		if code != http.StatusBadRequest {
			t.Errorf("restore %s: %d %s, want 400", body, code, b)
		}
		msg := errorOf(t, b)
		if strings.Contains(msg, outside) || strings.Contains(msg, "exist") {
			t.Errorf("restore %s: answer tells of files outside: %s", body, msg)
		}
		return msg
	}
	// The same answer for a path to a real backup and to nothing.
	real := refused(`{"name":"` + path + `"}`)
	none := refused(`{"name":"` + filepath.Join(outside, "jobs.json.backup.19990101-000000") + `"}`)
	if real != none {
		t.Errorf("an existing and a missing file outside get different answers:\n%s\n%s", real, none)
	}
	if p := refused(`{"path":"` + path + `"}`); p != real {
		t.Errorf(`"path" with a path answers otherwise than "name": %s`, p)
	}
	for _, body := range []string{
		`{"name":"../` + filepath.Base(outside) + `/` + filepath.Base(path) + `"}`,
		`{"name":".."}`,
		`{"name":"jobs.json"}`,
		`{"name":"secauto.lock"}`,
		`{"name":"jobs.json.backup.20000101-000000"}`, // a link out
		`{"name":"jobs.json.backup.20000101-000001"}`, // a directory
		`{"name":"jobs.json.backup.20000101-000002"}`, // missing
		`{"name":"` + filepath.Base(path) + `"}`,      // only outside
		`{"name":"a","path":"b"}`,
		`{}`,
	} {
		refused(body)
	}
	if j := e.job(keep); j.ID != keep {
		t.Fatalf("a refused restore changed the store")
	}

	// The earlier field "path" still works with a name.
	name := copyBackupIn(t, path, e.dir)
	code, b := e.do("POST", "/admin/restore", `{"path":"`+name+`"}`)
	var res store.RestoreResult
	if code != http.StatusOK || json.Unmarshal(b, &res) != nil || res.RestoredJobs != 2 {
		t.Errorf(`restore by "path" with a name: %d %s`, code, b)
	}
}
