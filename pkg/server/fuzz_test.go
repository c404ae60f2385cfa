package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
)

// fuzzToken is the bearer token of FuzzHandlers' server.
const fuzzToken = "fuzz-token-0123456789abcdef"

// fuzzBackup is a backup the data directory of FuzzHandlers starts with,
// so that restores by name have something to find.
var fuzzBackup = store.BackupName(time.Date(2025, 7, 9, 14, 30, 0, 0, time.UTC), false)

const fuzzBackupJobs = `{
"job-id-1": {"id": "job-id-1", "status": "completed", "playbook": [{"name": "a", "action": "log", "params": {"message": "hi"}}], "context": {"ip": "1.2.3.4"}, "results": [{"step": "a", "action": "log", "status": "ok", "output": "hi", "error": "", "started_at": "2025-07-09T15:30:05Z"}], "error": "", "created_at": "2025-07-09T15:30:00Z", "started_at": "2025-07-09T15:30:05Z", "completed_at": "2025-07-09T15:30:45Z"},
"job-id-2": {"id": "job-id-2", "status": "pending", "playbook": [{"name": "a", "action": "sleep", "params": {"duration": "1h"}}], "context": {}, "results": [], "error": "", "created_at": "2025-07-09T16:00:00Z"}
}
`

// noNetwork is the transport of the fuzzed playbooks' http steps: they
// reach nothing, on this host or elsewhere.
type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network while fuzzing")
}

// fuzzServer is a Server over a store in a temporary directory, called
// in-process.
type fuzzServer struct {
	dir  string
	st   store.Store
	srv  *Server
	h    http.Handler
	uses int
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	dir, err := os.MkdirTemp("", "secauto-fuzz-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256([]byte(fuzzBackupJobs))
	if err := os.WriteFile(filepath.Join(dir, fuzzBackup), []byte(fuzzBackupJobs), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fuzzBackup+".sha256"), []byte(hex.EncodeToString(sum[:])+"  "+fuzzBackup+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(st, Options{
		Workers:      2,
		AuthTokens:   []string{fuzzToken},
		MaxBodyBytes: 64 << 10,
		Runner: &playbook.Runner{
			Client:        &http.Client{Transport: noNetwork{}},
			RenderTimeout: 100 * time.Millisecond,
		},
		Maintenance: Maintenance{Retention: 24 * time.Hour, BackupKeep: 3},
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start()
	return &fuzzServer{dir: dir, st: st, srv: srv, h: srv.Handler()}
}

func (fsrv *fuzzServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	fsrv.srv.Shutdown(ctx)
	err := fsrv.st.Close()
	os.RemoveAll(fsrv.dir)
	return err
}

// FuzzHandlers sends fuzzed requests to the API routes of a server over a
// real store. Bad input is never a 500 or a panic, every answer but a 204,
// /metrics and the mux's redirects to clean paths is JSON, every error answer is {"error": "..."} with a
// message (GET /job/{id}/events streams text/event-stream), nothing but
// /health answers 2xx without the token, and the
// store verifies clean after each request.
//
// The server is replaced every few hundred requests, so that the jobs
// fuzzed submissions leave behind do not make every check slower.
func FuzzHandlers(f *testing.F) {
	sleep := `{"playbook":[{"name":"w","action":"sleep","params":{"duration":"1h"}}]}`
	submit := `{"playbook":[{"name":"greet","action":"log","params":{"message":"alert {{.context.alert}}"}},` +
		`{"name":"mark","action":"set","params":{"verdict":"{{default \"none\" .context.v}}"}},` +
		`{"name":"call","action":"http","params":{"url":"http://127.0.0.1:1/x","method":"POST","body":{"a":"{{optional .context.x}}"}}}],` +
		`"context":{"alert":"A-17"}}`
	for _, s := range []struct {
		method, path, body string
		auth               uint8
	}{
		{"POST", "/admin/restore", `{"name":"` + fuzzBackup + `"}`, 1},
		{"POST", "/playbook/async", submit, 1},
		{"POST", "/playbook/async", sleep, 1},
		{"POST", "/playbook", `{"playbook":[{"name":"a","action":"log","params":{"message":"hi"}}]}`, 1},
		{"POST", "/playbook", `{"playbook":[{"name":"a","action":"fail","params":{"message":"no"}}]}`, 1},
		{"POST", "/playbook/async", `{"playbook":[{"name":"a","action":"nope"}],"context":[]}`, 1},
		{"POST", "/playbook/async", `{"playbook":[],"extra":1}`, 1},
		{"POST", "/playbook/async", `{"playbook":[{"name":"a","action":"log","params":{"message":"{{.context.x.y}}"}}]} {}`, 1},
		{"POST", "/playbook/async", submit, 0},
		{"GET", "/jobs", "", 1},
		{"GET", "/jobs?status=pending&since=2025-01-01T00:00:00Z&limit=2", "", 1},
		{"GET", "/jobs?status=nope&since=yesterday&limit=-1", "", 1},
		{"GET", "/job/job-id-1", "", 1},
		{"GET", "/job/job-id", "", 1},
		{"GET", "/job/%zz", "", 1},
		{"DELETE", "/job/job-id-2", "", 1},
		{"POST", "/job/job-id-2/cancel", "", 1},
		{"POST", "/job/job-id-1/cancel", "{}", 1},
		{"POST", "/job/job-id-1/rerun", "", 1},
		{"POST", "/job/job-id/rerun", "{}", 1},
		{"POST", "/job/nope/rerun", "", 0},
		{"GET", "/job/job-id-1/events", "", 1},
		{"GET", "/job/job-id-2/events", "", 1},
		{"GET", "/job/nope/events", "", 1},
		{"GET", "/health", "", 0},
		{"GET", "/stats", "", 1},
		{"GET", "/metrics", "", 1},
		{"GET", "/metrics", "", 2},
		{"POST", "/admin/cleanup", `{"dry_run":true,"older_than":"7d","retention_by_status":{"failed":"90d"}}`, 1},
		{"POST", "/admin/cleanup", `{"older_than":"-1h","retention_by_status":{"running":"1d"}}`, 1},
		{"POST", "/admin/backups", `{"compress":true}`, 1},
		{"POST", "/admin/backups", "", 1},
		{"GET", "/admin/backups", "", 1},
		{"POST", "/admin/restore", `{"path":"../../etc/passwd"}`, 1},
		{"POST", "/admin/restore", `{"name":"jobs.json"}`, 1},
		{"GET", "/admin/verify", "", 1},
		{"GET", "/admin/recover?dry_run=true", "", 1},
		{"GET", "/admin/recover?dry_run=maybe", "", 1},
		{"GET", "/admin/webhooks", "", 1},
		{"POST", "/admin/webhooks/retry", `{}`, 1},
		{"POST", "/admin/webhooks/clear", `{}`, 1},
		{"PUT", "/jobs", "", 1},
		{"GET", "/nowhere", "", 1},
		{"POST", "/playbook/async", strings.Repeat("[", 70000), 1},
	} {
		f.Add(s.method, s.path, []byte(s.body), s.auth)
	}

	var fsrv *fuzzServer
	f.Cleanup(func() {
		if fsrv != nil {
			if err := fsrv.close(); err != nil {
				f.Errorf("close store: %v", err)
			}
		}
	})
	f.Fuzz(func(t *testing.T, method, path string, body []byte, auth uint8) {
		if method == "" || path == "" || strings.ContainsAny(method+path, " \r\n") {
			return
		}
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: secauto.test\r\nContent-Length: %d\r\nContent-Type: application/json\r\n", method, path, len(body))
		switch auth % 3 {
		case 1:
			head += "Authorization: Bearer " + fuzzToken + "\r\n"
		case 2:
			head += "Authorization: Bearer " + fuzzToken + "x\r\n"
		}
		// As the server reads it off the wire: what does not parse as a
		// request never reaches a handler.
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\n" + string(body))))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		req = req.WithContext(ctx)

		if fsrv == nil || fsrv.uses >= 300 {
			if fsrv != nil {
				if err := fsrv.close(); err != nil {
					t.Fatalf("close store: %v", err)
				}
			}
			fsrv = newFuzzServer(t)
		}
		fsrv.uses++

		rec := httptest.NewRecorder()
		fsrv.h.ServeHTTP(rec, req)
		code := rec.Code
		waited := req.Method == "POST" && req.URL.Path == "/playbook" && ctx.Err() != nil
		if waited {
			// POST /playbook gave up waiting for a job that runs on: the
			// client is gone and nothing is answered.
			code = 0
		}

		what := fmt.Sprintf("%s %s (%d bytes, auth %d) answered %d: %.500s", method, path, len(body), auth%3, code, rec.Body.Bytes())
		// The one 503 expected: a server started without Run keeps no
		// report of a start-time recovery.
		if code >= 500 && !(code == http.StatusServiceUnavailable && req.URL.Path == "/admin/recover") {
			t.Fatalf("%s", what)
		}
		if code >= 200 && code < 300 && auth%3 != 1 && req.URL.Path != "/health" {
			t.Fatalf("without the token, %s", what)
		}
		if code >= 300 && code < 400 {
			// The mux sends unclean paths (/a/../b, /jobs/) to their
			// clean form.
			if rec.Header().Get("Location") == "" {
				t.Fatalf("redirect without a Location: %s", what)
			}
		} else if code != 0 && code != http.StatusNoContent && req.URL.Path != "/metrics" {
			events := code == http.StatusOK && req.Method == "GET" && strings.HasSuffix(req.URL.Path, "/events")
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" && !(events && ct == "text/event-stream") {
				t.Fatalf("Content-Type %q: %s", ct, what)
			}
		}
		if code >= 400 {
			var eb struct {
				Error *string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || *eb.Error == "" {
				t.Fatalf("error answer is not {\"error\": MESSAGE}: %s", what)
			}
		}

		res, err := fsrv.st.Verify(store.VerifyOptions{})
		if err != nil {
			t.Fatalf("verify after %s: %v", what, err)
		}
		if len(res.Problems) > 0 {
			t.Fatalf("store does not verify after %s: %+v", what, res.Problems)
		}
	})
}
