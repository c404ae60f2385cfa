package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// env is a Server over a real store in a temporary directory, served by
// httptest.
type env struct {
	t     *testing.T
	dir   string
	st    store.Store
	srv   *Server
	ts    *httptest.Server
	token string
}

func newEnv(t *testing.T, o Options) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return startEnv(t, dir, st, o)
}

func startEnv(t *testing.T, dir string, st store.Store, o Options) *env {
	t.Helper()
	srv, err := New(st, o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	e := &env{t: t, dir: dir, st: st, srv: srv, ts: httptest.NewServer(srv.Handler())}
	if len(o.AuthTokens) > 0 {
		e.token = o.AuthTokens[0]
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		srv.Shutdown(ctx)
		e.ts.Close()
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return e
}

// do sends a request with the env's token and returns the status and body.
func (e *env) do(method, path, body string) (int, []byte) {
	e.t.Helper()
	return e.doToken(method, path, body, e.token)
}

func (e *env) doToken(method, path, body, token string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNoContent && resp.Header.Get("Content-Type") != "application/json" && !strings.HasPrefix(path, "/metrics") {
		e.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b
}

// submit posts a playbook to /playbook/async and returns the job id.
func (e *env) submit(body string) string {
	e.t.Helper()
	code, b := e.do("POST", "/playbook/async", body)
	if code != http.StatusAccepted {
		e.t.Fatalf("submit: status %d: %s", code, b)
	}
	var r SubmitResponse
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatal(err)
	}
	if r.JobID == "" || r.Status != job.Pending {
		e.t.Fatalf("submit answered %s", b)
	}
	return r.JobID
}

func (e *env) job(id string) *job.Job {
	e.t.Helper()
	code, b := e.do("GET", "/job/"+id, "")
	if code != http.StatusOK {
		e.t.Fatalf("GET /job/%s: status %d: %s", id, code, b)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		e.t.Fatal(err)
	}
	return &j
}

// waitStatus polls the job until it has one of the statuses.
func (e *env) waitStatus(id string, want ...job.Status) *job.Job {
	e.t.Helper()
	var j *job.Job
	waitFor(e.t, fmt.Sprintf("job %s to become %v", id, want), func() bool {
		j = e.job(id)
		return slices.Contains(want, j.Status)
	})
	return j
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var eb map[string]any
	if err := json.Unmarshal(b, &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", b, err)
	}
	msg, _ := eb["error"].(string)
	if msg == "" {
		t.Fatalf("error body %s has no error message", b)
	}
	return msg
}

const sleepJob = `{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"1h"}}]}`

func TestSubmitAsyncRunsPlaybook(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{
		"playbook": [
			{"name": "greet", "action": "log", "params": {"message": "alert {{.context.alert}}"}},
			{"name": "mark", "action": "set", "params": {"verdict": "seen {{.steps.greet.message}}"}},
			{"name": "again", "action": "log", "params": {"message": "{{.context.verdict}}"}}
		],
		"context": {"alert": "A-17"}
	}`)
	j := e.waitStatus(id, job.Completed, job.Failed)
	if j.Status != job.Completed || j.Error != "" {
		t.Fatalf("job ended %s (%q)", j.Status, j.Error)
	}
	if len(j.Results) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(j.Results), j.Results)
	}
	for i, name := range []string{"greet", "mark", "again"} {
		if r := j.Results[i]; r.Step != name || r.Status != job.StepOK {
			t.Errorf("result %d = %s/%s, want %s/ok", i, r.Step, r.Status, name)
		}
	}
	if j.Context["alert"] != "A-17" || j.Context["verdict"] != "seen alert A-17" {
		t.Errorf("context = %v", j.Context)
	}
	out, _ := json.Marshal(j.Results[2].Output)
	if !strings.Contains(string(out), "seen alert A-17") {
		t.Errorf("last step output %s does not hold the rendered message", out)
	}
	if j.StartedAt == nil || j.CompletedAt == nil || j.Attempts != 1 {
		t.Errorf("times or attempts not set: started %v completed %v attempts %d", j.StartedAt, j.CompletedAt, j.Attempts)
	}
}

func TestSubmitRejectsBadInput(t *testing.T) {
	e := newEnv(t, Options{MaxBodyBytes: 4096})
	big := `{"playbook":[{"name":"a","action":"log","params":{"message":"` + strings.Repeat("x", 5000) + `"}}]}`
	tests := []struct {
		name, body string
		code       int
		want       string // in the error message
	}{
		{"unknown action", `{"playbook":[{"name":"a","action":"explode"}]}`, 400, `"a"`},
		{"missing name", `{"playbook":[{"action":"log","params":{"message":"x"}}]}`, 400, "name"},
		{"duplicate names", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}},{"name":"a","action":"log","params":{"message":"y"}}]}`, 400, `"a"`},
		{"no steps", `{"playbook":[]}`, 400, "no steps"},
		{"no playbook", `{"context":{}}`, 400, "no steps"},
		{"bad params", `{"playbook":[{"name":"nap","action":"sleep","params":{"duration":"soon"}}]}`, 400, `"nap"`},
		{"param of wrong type", `{"playbook":[{"name":"say","action":"log","params":{"message":7}}]}`, 400, `"say"`},
		{"unknown param", `{"playbook":[{"name":"say","action":"log","params":{"msg":"x"}}]}`, 400, `"say"`},
		{"bad template", `{"playbook":[{"name":"say","action":"log","params":{"message":"{{.context.x"}}]}`, 400, `"say"`},
		{"reference to later step", `{"playbook":[{"name":"a","action":"log","params":{"message":"{{.steps.b.message}}"}},{"name":"b","action":"log","params":{"message":"x"}}]}`, 400, `"a"`},
		{"bad step timeout", `{"playbook":[{"name":"a","action":"log","timeout":"whenever","params":{"message":"x"}}]}`, 400, `"a"`},
		{"malformed JSON", `{"playbook":[`, 400, "not valid JSON"},
		{"not JSON", `hello`, 400, "not valid JSON"},
		{"empty body", ``, 400, "empty"},
		{"unknown field", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}],"contxt":{}}`, 400, `"contxt"`},
		{"unknown step field", `{"playbook":[{"name":"a","action":"log","parms":{"message":"x"}}]}`, 400, `"parms"`},
		{"wrong type", `{"playbook":"log"}`, 400, "playbook"},
		{"array body", `[1,2]`, 400, "object"},
		{"two objects", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}{}`, 400, "single JSON object"},
		{"bad on_interrupt", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}],"on_interrupt":"maybe"}`, 400, "on_interrupt"},
		{"negative max_attempts", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}],"max_attempts":-1}`, 400, "max_attempts"},
		{"too large", big, 413, "larger than 4096 bytes"},
	}
	for _, path := range []string{"/playbook/async", "/playbook"} {
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				code, b := e.do("POST", path, tt.body)
				if code != tt.code {
					t.Fatalf("status %d, want %d: %s", code, tt.code, b)
				}
				if msg := errorOf(t, b); !strings.Contains(msg, tt.want) {
					t.Errorf("error %q does not contain %q", msg, tt.want)
				}
			})
		}
	}
	code, b := e.do("GET", "/jobs", "")
	if code != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("rejected submissions were stored: %d %s", code, b)
	}
}

// A body without Content-Length that grows past the limit is cut off too.
func TestSubmitTooLargeStreamed(t *testing.T) {
	e := newEnv(t, Options{MaxBodyBytes: 1024})
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"playbook":[{"name":"a","action":"log","params":{"message":"`))
		pw.Write(bytes.Repeat([]byte("x"), 4096))
		pw.Write([]byte(`"}}]}`))
		pw.Close()
	}()
	resp, err := http.Post(e.ts.URL+"/playbook/async", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", resp.StatusCode, b)
	}
	errorOf(t, b)
}

func TestSubmitWaitReturnsFinishedJob(t *testing.T) {
	e := newEnv(t, Options{})
	code, b := e.do("POST", "/playbook", `{"playbook":[
		{"name":"note","action":"log","params":{"message":"hi {{.context.who}}"}},
		{"name":"nap","action":"sleep","params":{"duration":"10ms"}}
	],"context":{"who":"soc"}}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Status != job.Completed || len(j.Results) != 2 || j.CompletedAt == nil {
		t.Fatalf("POST /playbook answered a job that has not ended well: %s", b)
	}
	if stored := e.job(j.ID); stored.Status != job.Completed || len(stored.Results) != 2 {
		t.Errorf("stored job differs: %+v", stored)
	}

	code, b = e.do("POST", "/playbook", `{"playbook":[
		{"name":"ok","action":"log","params":{"message":"x"}},
		{"name":"boom","action":"fail","params":{"message":"bad indicator"}},
		{"name":"after","action":"log","params":{"message":"y"}}
	]}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	var f job.Job
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Status != job.Failed || !strings.Contains(f.Error, `"boom"`) || !strings.Contains(f.Error, "bad indicator") {
		t.Errorf("failed job: status %s error %q", f.Status, f.Error)
	}
	if len(f.Results) != 3 || f.Results[1].Status != job.StepFailed || f.Results[2].Status != job.StepSkipped {
		t.Errorf("results of the failed job: %+v", f.Results)
	}
}

// A client that gives up on POST /playbook does not stop its job.
func TestSubmitWaitClientGoesAway(t *testing.T) {
	e := newEnv(t, Options{Workers: 1})
	blocker := e.submit(sleepJob) // holds the only worker
	e.waitStatus(blocker, job.Running)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.ts.URL+"/playbook",
		strings.NewReader(`{"playbook":[{"name":"late","action":"log","params":{"message":"still ran"}}]}`))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	var id string
	waitFor(t, "the waited-on job to be stored", func() bool {
		_, b := e.do("GET", "/jobs?status=pending", "")
		var js []job.Job
		json.Unmarshal(b, &js)
		if len(js) == 1 {
			id = js[0].ID
		}
		return id != ""
	})
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled request succeeded")
	}
	if code, b := e.do("POST", "/job/"+blocker+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel blocker: %d %s", code, b)
	}
	j := e.waitStatus(id, job.Completed, job.Failed, job.Cancelled)
	if j.Status != job.Completed {
		t.Errorf("job of the departed client ended %s (%q)", j.Status, j.Error)
	}
	e.srv.mu.Lock()
	n := len(e.srv.waiters)
	e.srv.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiters left behind", n)
	}
}

func TestHTTPAction(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Case")+" "+string(b))
		mu.Unlock()
		if r.URL.Path == "/missing" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ip":"203.0.113.9","score":87}`)
	}))
	defer target.Close()

	e := newEnv(t, Options{})
	body := fmt.Sprintf(`{"playbook":[
		{"name":"lookup","action":"http","params":{"method":"POST","url":"%s/ip/{{.context.host}}",
			"headers":{"X-Case":"{{.context.case}}"},"body":{"host":"{{.context.host}}"}}},
		{"name":"verdict","action":"set","params":{"ip":"{{.steps.lookup.body.ip}}","score":"{{.steps.lookup.body.score}}"}},
		{"name":"missing","action":"http","params":{"url":"%s/missing"},"continue_on_error":true},
		{"name":"tolerated","action":"http","params":{"url":"%s/missing","allow_status":[404]}}
	],"context":{"host":"mail.example","case":"C-9"}}`, target.URL, target.URL, target.URL)
	code, b := e.do("POST", "/playbook", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Status != job.Completed {
		t.Fatalf("job %s: %s; results %+v", j.Status, j.Error, j.Results)
	}
	if j.Context["ip"] != "203.0.113.9" || j.Context["score"] != "87" {
		t.Errorf("context = %v", j.Context)
	}
	out, _ := j.Results[0].Output.(map[string]any)
	if out["status"] != float64(200) {
		t.Errorf("lookup output = %v", j.Results[0].Output)
	}
	if j.Results[2].Status != job.StepFailed || !strings.Contains(j.Results[2].Error, "404") {
		t.Errorf("a 404 did not fail the step: %+v", j.Results[2])
	}
	if j.Results[3].Status != job.StepOK {
		t.Errorf("allow_status did not accept 404: %+v", j.Results[3])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0] != `POST /ip/mail.example C-9 {"host":"mail.example"}` {
		t.Errorf("target saw %q", got)
	}
}

func TestCancelRunningJobStopsIt(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{"playbook":[
		{"name":"first","action":"log","params":{"message":"x"}},
		{"name":"wait","action":"sleep","params":{"duration":"1h"}},
		{"name":"never","action":"log","params":{"message":"y"}}
	]}`)
	e.waitStatus(id, job.Running)
	// The sleep has begun once the first result is stored.
	waitFor(t, "the first step's result", func() bool { return len(e.job(id).Results) == 1 })

	code, b := e.do("POST", "/job/"+id+"/cancel", "")
	if code != http.StatusOK {
		t.Fatalf("cancel: status %d: %s", code, b)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Status != job.Cancelled || j.CompletedAt == nil || j.Error == "" {
		t.Fatalf("cancel answered %s", b)
	}
	if len(j.Results) != 2 || j.Results[1].Step != "wait" || j.Results[1].Status != job.StepFailed {
		t.Errorf("results after cancel: %+v", j.Results)
	}
	if stored := e.job(id); stored.Status != job.Cancelled {
		t.Errorf("stored status %s", stored.Status)
	}
	if busy := e.srv.busy.Load(); busy != 0 {
		t.Errorf("%d workers still busy", busy)
	}

	code, b = e.do("POST", "/job/"+id+"/cancel", "")
	if code != http.StatusConflict || !strings.Contains(errorOf(t, b), "cancelled") {
		t.Errorf("second cancel: %d %s", code, b)
	}
}

func TestCancelPendingJob(t *testing.T) {
	e := newEnv(t, Options{Workers: 1})
	running := e.submit(sleepJob)
	e.waitStatus(running, job.Running)
	pending := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)

	code, b := e.do("POST", "/job/"+pending+"/cancel", "")
	if code != http.StatusOK {
		t.Fatalf("cancel pending: %d %s", code, b)
	}
	j := e.job(pending)
	if j.Status != job.Cancelled || j.StartedAt != nil || len(j.Results) != 0 {
		t.Errorf("cancelled pending job: %+v", j)
	}
	if code, b := e.do("POST", "/job/"+running+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel running: %d %s", code, b)
	}
	// The worker takes the cancelled job from the queue and leaves it alone.
	next := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	e.waitStatus(next, job.Completed)
	if j := e.job(pending); j.Status != job.Cancelled || j.Attempts != 0 {
		t.Errorf("cancelled job was started: %+v", j)
	}
}

func TestDeleteJob(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(sleepJob)
	e.waitStatus(id, job.Running)
	code, b := e.do("DELETE", "/job/"+id, "")
	if code != http.StatusNoContent || len(b) != 0 {
		t.Fatalf("DELETE running job: %d %s", code, b)
	}
	if code, _ := e.do("GET", "/job/"+id, ""); code != http.StatusNotFound {
		t.Errorf("deleted job still answers %d", code)
	}
	if busy := e.srv.busy.Load(); busy != 0 {
		t.Errorf("%d workers still busy after deleting the running job", busy)
	}

	done := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	e.waitStatus(done, job.Completed)
	if code, b := e.do("DELETE", "/job/"+done, ""); code != http.StatusNoContent {
		t.Fatalf("DELETE completed job: %d %s", code, b)
	}
	if code, b := e.do("DELETE", "/job/"+done, ""); code != http.StatusNotFound {
		t.Errorf("DELETE twice: %d %s", code, b)
	}

	// The deletion is durable: a reopened store does not have the jobs.
	e.srv.Shutdown(context.Background())
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: e.dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if jobs, _ := st.List(store.Filter{}); len(jobs) != 0 {
		t.Errorf("reopened store holds %d jobs", len(jobs))
	}
}

func TestUnknownJob(t *testing.T) {
	e := newEnv(t, Options{})
	for _, r := range []struct{ method, path string }{
		{"GET", "/job/0190e0d4-0000-7000-8000-000000000000"},
		{"DELETE", "/job/0190e0d4-0000-7000-8000-000000000000"},
		{"POST", "/job/0190e0d4-0000-7000-8000-000000000000/cancel"},
	} {
		code, b := e.do(r.method, r.path, "")
		if code != http.StatusNotFound || !strings.Contains(errorOf(t, b), "not found") {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, b)
		}
	}
	code, b := e.do("GET", "/nowhere", "")
	if code != http.StatusNotFound || !strings.Contains(errorOf(t, b), "/nowhere") {
		t.Errorf("GET /nowhere: %d %s", code, b)
	}
	code, b = e.do("PUT", "/jobs", "")
	if code != http.StatusMethodNotAllowed || !strings.Contains(errorOf(t, b), "GET") {
		t.Errorf("PUT /jobs: %d %s", code, b)
	}
}

func TestGetJobByPrefix(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	if j := e.job(id[:20]); j.ID != id {
		t.Errorf("prefix found %s, want %s", j.ID, id)
	}
	e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	if code, b := e.do("GET", "/job/"+id[:1], ""); code != http.StatusBadRequest || !strings.Contains(errorOf(t, b), "more than one") {
		t.Errorf("ambiguous prefix: %d %s", code, b)
	}
}

func TestListJobs(t *testing.T) {
	e := newEnv(t, Options{})
	var ids []string
	for i := range 4 {
		ids = append(ids, e.submit(fmt.Sprintf(`{"playbook":[{"name":"a","action":"log","params":{"message":"%d"}}]}`, i)))
	}
	failed := e.submit(`{"playbook":[{"name":"a","action":"fail","params":{"message":"no"}}]}`)
	for _, id := range ids {
		e.waitStatus(id, job.Completed)
	}
	e.waitStatus(failed, job.Failed)

	list := func(query string) []string {
		t.Helper()
		code, b := e.do("GET", "/jobs"+query, "")
		if code != http.StatusOK {
			t.Fatalf("GET /jobs%s: %d %s", query, code, b)
		}
		var js []job.Job
		if err := json.Unmarshal(b, &js); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	all := list("")
	want := append(slices.Clone(ids), failed)
	slices.Reverse(want)
	if !slices.Equal(all, want) {
		t.Errorf("GET /jobs = %v, want newest first %v", all, want)
	}
	if got := list("?status=failed"); !slices.Equal(got, []string{failed}) {
		t.Errorf("status=failed: %v", got)
	}
	if got := list("?status=failed,completed&limit=2"); !slices.Equal(got, want[:2]) {
		t.Errorf("status=failed,completed&limit=2: %v", got)
	}
	if got := list("?status=pending&status=running"); len(got) != 0 {
		t.Errorf("status=pending&status=running: %v", got)
	}
	if got := list("?since=1h"); len(got) != 5 {
		t.Errorf("since=1h: %d jobs", len(got))
	}
	if got := list("?since=30d&limit=0"); len(got) != 5 {
		t.Errorf("since=30d: %d jobs", len(got))
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if got := list("?since=" + future); len(got) != 0 {
		t.Errorf("since=%s: %v", future, got)
	}

	for _, q := range []string{"?status=done", "?since=yesterday", "?since=-1h", "?limit=x", "?limit=-3"} {
		code, b := e.do("GET", "/jobs"+q, "")
		if code != http.StatusBadRequest {
			t.Errorf("GET /jobs%s: %d %s", q, code, b)
			continue
		}
		errorOf(t, b)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Options{AuthTokens: []string{"first-token", "second-token"}})
	body := `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`
	for _, tok := range []string{"", "wrong", "first-token-but-longer", "first"} {
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/playbook/async", body},
			{"POST", "/playbook", body},
			{"GET", "/jobs", ""},
			{"GET", "/job/x", ""},
			{"DELETE", "/job/x", ""},
			{"POST", "/job/x/cancel", ""},
			{"GET", "/stats", ""},
			{"GET", "/metrics", ""},
		} {
			code, b := e.doToken(r.method, r.path, r.body, tok)
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s", r.method, r.path, tok, code, b)
				continue
			}
			if msg := errorOf(t, b); strings.Contains(msg, "first-token") {
				t.Errorf("401 message leaks a token: %s", msg)
			}
		}
	}
	for _, tok := range []string{"first-token", "second-token"} {
		if code, b := e.doToken("POST", "/playbook/async", body, tok); code != http.StatusAccepted {
			t.Errorf("token %q: %d %s", tok, code, b)
		}
	}
	if code, b := e.doToken("GET", "/stats", "", "second-token"); code != http.StatusOK {
		t.Errorf("GET /stats with token: %d %s", code, b)
	}
	if code, b := e.doToken("GET", "/health", "", ""); code != http.StatusOK {
		t.Errorf("GET /health without token: %d %s", code, b)
	}
	// The scheme is case-insensitive, as RFC 7235 says.
	req, _ := http.NewRequest("GET", e.ts.URL+"/jobs", nil)
	req.Header.Set("Authorization", "bearer first-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer scheme: %d", resp.StatusCode)
	}
}

func TestNewRefusesEmptyToken(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(st, Options{AuthTokens: []string{"ok", ""}}); err == nil {
		t.Error("New accepted an empty token")
	}
}

func TestHealthStatsMetrics(t *testing.T) {
	e := newEnv(t, Options{Workers: 3})
	code, b := e.do("GET", "/health", "")
	if code != http.StatusOK || !strings.Contains(string(b), `"status":"ok"`) {
		t.Fatalf("health: %d %s", code, b)
	}
	id := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	e.waitStatus(id, job.Completed)
	bad := e.submit(`{"playbook":[{"name":"a","action":"fail","params":{"message":"x"}}]}`)
	e.waitStatus(bad, job.Failed)

	code, b = e.do("GET", "/stats", "")
	if code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, b)
	}
	var st StatsResponse
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Jobs[job.Completed] != 1 || st.Jobs[job.Failed] != 1 || st.Total != 2 || st.Workers != 3 {
		t.Errorf("stats: %s", b)
	}
	for _, status := range job.Statuses {
		if _, ok := st.Jobs[status]; !ok {
			t.Errorf("stats lack status %s: %s", status, b)
		}
	}
	if st.StoreBytes <= 0 || !strings.Contains(string(b), `"last_backup":null`) {
		t.Errorf("stats: %s", b)
	}

	code, b = e.do("GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, b)
	}
	for _, want := range []string{
		`secauto_jobs{status="completed"} 1`,
		`secauto_jobs{status="failed"} 1`,
		`secauto_jobs{status="pending"} 0`,
		`secauto_job_duration_seconds_count{status="completed"} 1`,
		`secauto_http_requests_total{code="202",route="POST /playbook/async"} 2`,
		`secauto_http_requests_total{code="200",route="GET /health"} 1`,
		`secauto_jobs_submitted_total 2`,
		`secauto_queue_length 0`,
		`secauto_workers 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Shutdown: running jobs finish if they can, else fail "interrupted by
// shutdown"; pending jobs stay pending; submissions and health get 503.
func TestShutdownInterruptsRunningJobs(t *testing.T) {
	e := newEnv(t, Options{Workers: 1})
	running := e.submit(sleepJob)
	e.waitStatus(running, job.Running)
	pending := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)

	// A client waiting on a job that will not start before the stop.
	type answer struct {
		code int
		body []byte
	}
	waited := make(chan answer, 1)
	go func() {
		resp, err := http.Post(e.ts.URL+"/playbook", "application/json",
			strings.NewReader(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`))
		if err != nil {
			waited <- answer{0, []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		waited <- answer{resp.StatusCode, b}
	}()
	waitFor(t, "the waiting client's job", func() bool {
		_, b := e.do("GET", "/jobs?status=pending", "")
		return strings.Count(string(b), `"id"`) == 2
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported that every job finished in time")
	}
	j := e.job(running)
	if j.Status != job.Failed || j.Error != "interrupted by shutdown" || j.CompletedAt == nil {
		t.Errorf("running job after shutdown: %s %q", j.Status, j.Error)
	}
	if j := e.job(pending); j.Status != job.Pending {
		t.Errorf("pending job became %s", j.Status)
	}
	a := <-waited
	if a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "pending") {
		t.Errorf("waiting client got %d %s", a.code, a.body)
	}
	if code, b := e.do("POST", "/playbook/async", `{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`); code != http.StatusServiceUnavailable {
		t.Errorf("submission during shutdown: %d %s", code, b)
	}
	if code, _ := e.do("GET", "/health", ""); code != http.StatusServiceUnavailable {
		t.Errorf("health during shutdown: %d", code)
	}
}

// A job that ends within the shutdown timeout completes normally.
func TestShutdownLetsJobsFinish(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{"playbook":[{"name":"nap","action":"sleep","params":{"duration":"200ms"}}]}`)
	e.waitStatus(id, job.Running)
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if j := e.job(id); j.Status != job.Completed {
		t.Errorf("job ended %s (%q)", j.Status, j.Error)
	}
}

// Pending jobs found at start run in creation order.
func TestPendingJobsQueuedOldestFirst(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	base := time.Now().Add(-time.Hour)
	for i := range 5 {
		j, err := st.Create(&job.Job{
			CreatedAt: base.Add(time.Duration(5-i) * time.Second), // ids and times disagree on purpose
			Playbook:  []job.Step{{Name: "a", Action: "log", Params: map[string]any{"message": "x"}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append([]string{j.ID}, ids...)
	}
	e := startEnv(t, dir, st, Options{Workers: 1})
	var started []time.Time
	for _, id := range ids {
		j := e.waitStatus(id, job.Completed)
		started = append(started, *j.StartedAt)
	}
	if !slices.IsSortedFunc(started, func(a, b time.Time) int { return a.Compare(b) }) {
		t.Errorf("jobs did not start in creation order: %v", started)
	}
}

// receiver is a webhook endpoint that records the events it gets, after
// checking their signature when it has a secret.
type receiver struct {
	mu     sync.Mutex
	events []event
}

// event is one delivery a receiver got.
type event struct {
	Event string         `json:"event"`
	Time  time.Time      `json:"time"`
	Job   *job.Job       `json:"job"`
	Data  map[string]any `json:"data"`
}

func newReceiver(t *testing.T, secret string) (*receiver, *httptest.Server) {
	r := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if got, want := req.Header.Get("X-Secauto-Signature"), webhook.Sign(secret, body); secret != "" && got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
		var ev event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("event body %q: %v", body, err)
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

// list describes the events got as "EVENT [JOB_ID STATUS]".
func (r *receiver) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.events))
	for _, ev := range r.events {
		line := ev.Event
		if ev.Job != nil {
			line += " " + ev.Job.ID + " " + string(ev.Job.Status)
		}
		out = append(out, line)
	}
	return out
}

// named returns the events called name, in the order they came.
func (r *receiver) named(name string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, ev := range r.events {
		if ev.Event == name {
			out = append(out, ev)
		}
	}
	return out
}

// Run: recovery at start (interrupted job failed, retry job requeued and
// run again, pending job run), events, the lock file's address, a second
// Run refused, and a clean stop leaving a complete jobs.json.
func TestRunRecoversAndStops(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	steps := []job.Step{{Name: "a", Action: "log", Params: map[string]any{"message": "x"}}}
	mk := func(status job.Status, onInterrupt string) string {
		j, err := st.Create(&job.Job{Playbook: steps, OnInterrupt: onInterrupt})
		if err != nil {
			t.Fatal(err)
		}
		if status == job.Running {
			if _, err := st.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
				t.Fatal(err)
			}
		}
		return j.ID
	}
	interrupted := mk(job.Running, "")
	retried := mk(job.Running, job.OnInterruptRetry)
	pending := mk(job.Pending, "")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	events, hook := newReceiver(t, "s3cret")
	ready := make(chan string, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(ctx, Options{
			Store:    store.Options{Dir: dir, SnapshotInterval: 20 * time.Millisecond},
			Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
			Ready:    func(addr string) { ready <- addr },
			Webhooks: []webhook.Endpoint{{URL: hook.URL, Secret: "s3cret"}},
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	}
	owner, err := store.ReadOwner(dir)
	if err != nil || owner.Address != addr || owner.PID != os.Getpid() || owner.Command != "secauto serve" {
		t.Errorf("lock file owner %+v (%v), want address %s", owner, err, addr)
	}

	get := func(id string) *job.Job {
		resp, err := http.Get("http://" + addr + "/job/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var j job.Job
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
			t.Fatal(err)
		}
		return &j
	}
	j := get(interrupted)
	if j.Status != job.Failed || !strings.Contains(j.Error, "recover") || j.CompletedAt == nil {
		t.Errorf("interrupted job: %s %q", j.Status, j.Error)
	}
	waitFor(t, "requeued and pending jobs to complete", func() bool {
		return get(retried).Status == job.Completed && get(pending).Status == job.Completed
	})
	waitFor(t, "four webhook deliveries", func() bool { return len(events.list()) >= 4 })
	if j := get(retried); j.Attempts != 2 {
		t.Errorf("retried job attempts = %d, want 2", j.Attempts)
	}

	metrics := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		mb, _ := io.ReadAll(resp.Body)
		return string(mb)
	}
	if mb := metrics(); strings.Contains(mb, "secauto_store_journal_sync_seconds_count 0") ||
		!strings.Contains(mb, "secauto_store_journal_sync_seconds_count") {
		t.Errorf("journal syncs are not observed:\n%s", mb)
	}
	waitFor(t, "a snapshot to be observed", func() bool {
		mb := metrics()
		return strings.Contains(mb, "secauto_store_snapshot_seconds_count") && !strings.Contains(mb, "secauto_store_snapshot_seconds_count 0")
	})

	// A second daemon on the same directory is refused with the holder named.
	err = Run(context.Background(), Options{Store: store.Options{Dir: dir}})
	var locked *store.LockedError
	if !errors.As(err, &locked) || locked.Owner.PID != os.Getpid() {
		t.Errorf("second Run: %v", err)
	}

	stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, store.SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	var snap map[string]job.Job
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatalf("jobs.json after stop: %v", err)
	}
	if len(snap) != 3 || snap[pending].Status != job.Completed || snap[interrupted].Status != job.Failed {
		t.Errorf("jobs.json after stop: %s", data)
	}

	ev := events.list()
	slices.Sort(ev)
	if len(ev) != 4 || !slices.Contains(ev, "job.recovered "+interrupted+" failed") || !slices.Contains(ev, "job.recovered "+retried+" pending") ||
		!slices.Contains(ev, "job.completed "+retried+" completed") || !slices.Contains(ev, "job.completed "+pending+" completed") {
		t.Errorf("events = %q", ev)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"recovered job"`, `"job_id":"` + interrupted + `"`, `"msg":"recovery finished"`, `"failed_running":1`, `"requeued":1`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestRunRefusesOpenAddressWithoutTokens(t *testing.T) {
	dir := t.TempDir()
	err := Run(context.Background(), Options{Store: store.Options{Dir: dir}, Address: "0.0.0.0"})
	if err == nil || !strings.Contains(err.Error(), "--insecure") || !strings.Contains(err.Error(), "server.auth_tokens") {
		t.Fatalf("Run on 0.0.0.0 without tokens: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.LockFile)); err == nil {
		t.Error("the refused Run touched the data directory")
	}
}

// Secrets in contexts and tokens never reach the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), AuthTokens: []string{"tok-s3cret"}})
	id := e.submit(`{"playbook":[{"name":"a","action":"fail","params":{"message":"key {{.context.api_key}}"}}],"context":{"api_key":"ctx-s3cret"}}`)
	if j := e.waitStatus(id, job.Failed); !strings.Contains(j.Error, "ctx-s3cret") {
		t.Fatalf("the job's error %q does not quote its context; the check below would prove nothing", j.Error)
	}
	e.doToken("GET", "/jobs", "", "wrong-s3cret")
	e.do("DELETE", "/job/"+id, "")
	out := logs.String()
	if !strings.Contains(out, id) {
		t.Fatalf("the job was not logged:\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("log holds a secret:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
