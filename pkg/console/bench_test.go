package console_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/console"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// The page benchmark renders each console page over a store of
// -console.jobs jobs (terminal, created over the last 30 days, one in ten
// failed). The store is filled once through a restore of a generated
// backup; with -console.dir it is kept there and reused by later runs of
// the same size:
//
//	go test ./pkg/console -run '^$' -bench Pages -console.jobs 1000000 -console.dir /var/tmp/console-1m -benchtime 20x
var (
	benchJobs = flag.Int("console.jobs", 2000, "jobs in the store the page benchmark renders")
	benchDir  = flag.String("console.dir", "", "data directory to keep the page benchmark's store in (reused when it holds -console.jobs jobs)")
)

// writeBenchBackup writes n jobs in the jobs.json format to path.
func writeBenchBackup(path string, n int, now time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("{")
	span := 30 * 24 * time.Hour
	for i := range n {
		created := now.Add(-span + time.Duration(int64(span)*int64(i)/int64(max(n, 1))))
		started := created.Add(10 * time.Millisecond)
		ended := started.Add(time.Duration(200+i%800) * time.Millisecond)
		st, msg := job.Completed, ""
		res := job.Result{Step: "lookup", Action: "http", Status: job.StepOK, StartedAt: started, CompletedAt: &ended,
			Output: map[string]any{"status": 200, "body": map[string]any{"verdict": "benign", "score": i % 100}}}
		if i%10 == 3 {
			st, msg = job.Failed, `step "lookup" failed: GET https://intel.example/v1/ip answered 502 Bad Gateway`
			res.Status, res.Error, res.Output = job.StepFailed, msg, map[string]any{"status": 502}
		}
		j := job.Job{
			ID: uuid.Must(uuid.NewV7()).String(), Status: st, CreatedAt: created, StartedAt: &started, CompletedAt: &ended, Error: msg, Attempts: 1,
			Playbook: []job.Step{{Name: "lookup", Action: "http", Params: map[string]any{"method": "GET", "url": "https://intel.example/v1/ip/{{.context.ip}}"}}},
			Context:  map[string]any{"ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "alert_id": fmt.Sprintf("ALRT-%08d", i), "api_key": "k-123"},
			Results:  []job.Result{res},
		}
		b, err := json.Marshal(&j)
		if err != nil {
			return err
		}
		if i > 0 {
			w.WriteString(",")
		}
		fmt.Fprintf(w, "%q:", j.ID)
		w.Write(b)
	}
	w.WriteString("}\n")
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func benchStore(b *testing.B) (store.Store, string) {
	b.Helper()
	dir := *benchDir
	if dir == "" {
		dir = b.TempDir()
	}
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	if got := st.Stats().Jobs; got != *benchJobs {
		start := time.Now()
		path := filepath.Join(b.TempDir(), "bench.json")
		if err := writeBenchBackup(path, *benchJobs, time.Now()); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Restore(path, store.BackupOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Logf("store of %d jobs filled in %v", *benchJobs, time.Since(start).Round(time.Millisecond))
	}
	var some string
	if js, err := st.List(store.Filter{Limit: 1}); err == nil && len(js) == 1 {
		some = js[0].ID
	}
	return st, some
}

func BenchmarkPages(b *testing.B) {
	st, id := benchStore(b)
	b.Cleanup(func() { st.Close() })
	start := time.Now()
	srv, err := server.New(st, server.Options{Console: console.Mount(console.Options{})})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("server built over %d jobs in %v", st.Stats().Jobs, time.Since(start).Round(time.Millisecond))
	h := srv.Handler()

	// One session for every request, as one browser.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/", nil))
	cookies := rec.Result().Cookies()

	for _, page := range []struct{ name, path string }{
		{"overview", "/ui/"},
		{"jobs", "/ui/jobs"},
		{"jobs-page-20", "/ui/jobs?page=20"},
		{"jobs-failed", "/ui/jobs?status=failed"},
		{"jobs-last-hour", "/ui/jobs?since=1h"},
		{"job", "/ui/jobs/" + id},
		{"backups", "/ui/backups"},
	} {
		b.Run(page.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", page.path, nil)
				for _, c := range cookies {
					req.AddCookie(c)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%s", page.path, rec.Code, rec.Body)
				}
			}
		})
	}
}
