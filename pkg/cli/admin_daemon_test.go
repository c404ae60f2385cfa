package cli

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// backupTimes matches the time of a backup written during a test.
var backupTimes = regexp.MustCompile(`"time": "[^"]*"`)

// The two Admins answer each operation alike: the daemon's on a data
// directory it holds, the offline one on a copy of it.
func TestAdminsAnswerAlike(t *testing.T) {
	t.Chdir(t.TempDir()) // no config.yaml: defaults
	ids, backup := seedJobs(t, "data")
	copyDir(t, "data", "twin")
	startDaemon(t, "data", server.Options{})

	ios, _, _, errOut := TestStreams()
	f := NewFactory(ios, nil)
	open := func(dir string) Admin {
		t.Helper()
		f.DataDir = dir
		a, err := f.OpenAdmin("test", salvage)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	daemon, offline := open("data"), open("twin")
	if _, ok := daemon.(*daemonClient); !ok {
		t.Fatalf("beside a daemon the Admin is a %T", daemon)
	}
	if _, ok := offline.(*offlineAdmin); !ok {
		t.Fatalf("with no daemon the Admin is a %T", offline)
	}

	ctx := context.Background()
	retention := 30 * 24 * time.Hour
	ops := []struct {
		name string
		do   func(Admin) (any, error)
	}{
		{"list every job", func(a Admin) (any, error) { return a.ListJobs(ctx, store.Filter{}) }},
		{"list by status and limit", func(a Admin) (any, error) {
			return a.ListJobs(ctx, store.Filter{Statuses: []job.Status{job.Failed, job.Completed}, Limit: 2})
		}},
		{"list since", func(a Admin) (any, error) {
			return a.ListJobs(ctx, store.Filter{Since: time.Now().Add(-150 * time.Minute)})
		}},
		{"get by id", func(a Admin) (any, error) { return a.GetJob(ctx, ids[0]) }},
		{"get by prefix", func(a Admin) (any, error) { return a.GetJob(ctx, "0197f0a3") }},
		{"get unknown", func(a Admin) (any, error) { return a.GetJob(ctx, "ffff") }},
		{"get ambiguous", func(a Admin) (any, error) { return a.GetJob(ctx, "0197f0a") }},
		{"cleanup dry run", func(a Admin) (any, error) {
			return a.Cleanup(ctx, store.CleanupOptions{Retention: retention, DryRun: true})
		}},
		{"cleanup dry run by status", func(a Admin) (any, error) {
			return a.Cleanup(ctx, store.CleanupOptions{Retention: retention, DryRun: true, ByStatus: map[job.Status]time.Duration{job.Cancelled: time.Minute}})
		}},
		{"list backups", func(a Admin) (any, error) { return a.ListBackups(ctx) }},
		{"verify", func(a Admin) (any, error) {
			res, err := a.Verify(ctx, nil)
			if res != nil {
				res.Records = 0 // the daemon keeps its maintenance schedule among them
			}
			return res, err
		}},
		{"recover dry run", func(a Admin) (any, error) {
			rec, err := a.Recover(ctx, true)
			if err != nil {
				return nil, err
			}
			return rec.RecoverResult, nil
		}},
		{"cleanup", func(a Admin) (any, error) { return a.Cleanup(ctx, store.CleanupOptions{Retention: retention}) }},
		{"list after cleanup", func(a Admin) (any, error) { return a.ListJobs(ctx, store.Filter{}) }},
		{"backup", func(a Admin) (any, error) { return a.Backup(ctx, nil, nil) }},
		{"compressed backup", func(a Admin) (any, error) { c := true; return a.Backup(ctx, &c, nil) }},
		{"restore", func(a Admin) (any, error) {
			res, err := a.Restore(ctx, filepath.Join(a.Dir(), backup), nil)
			if err != nil {
				return nil, err
			}
			return res.RestoreResult, nil // a daemon repaired what it found when it started
		}},
		{"list after restore", func(a Admin) (any, error) { return a.ListJobs(ctx, store.Filter{}) }},
		{"recover", func(a Admin) (any, error) {
			rec, err := a.Recover(ctx, false)
			if err != nil {
				return nil, err
			}
			return []any{rec.RecoverResult, rec.Repaired}, nil
		}},
	}
	// Backups written now are stamped now, each at its own moment.
	normal := func(dir string, v any, err error) string {
		t.Helper()
		for _, e := range []error{store.ErrNotFound, store.ErrAmbiguous} {
			if errors.Is(err, e) {
				return e.Error() // the command says it in its own words
			}
		}
		if err != nil {
			return "error: " + strings.ReplaceAll(err.Error(), dir, "DIR")
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), dir, "DIR")
		s = stamp.ReplaceAllString(s, "STAMP")
		return backupTimes.ReplaceAllString(s, `"time": "TIME"`)
	}
	for _, op := range ops {
		dv, derr := op.do(daemon)
		ov, oerr := op.do(offline)
		if d, o := normal("data", dv, derr), normal("twin", ov, oerr); d != o {
			t.Errorf("%s: through the daemon:\n%s\noffline:\n%s", op.name, d, o)
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %s", errOut)
	}
}
