package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/console"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

const testToken = "console-test-token-0123456789"

// env is a daemon with the console over an httptest server, and a browser
// of sorts: a client with a cookie jar that does not follow redirects.
type env struct {
	t   *testing.T
	dir string
	st  store.Store
	srv *server.Server
	ts  *httptest.Server
	c   *http.Client
}

type envOptions struct {
	tokens  []string
	console console.Options
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(store.Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st, server.Options{AuthTokens: o.tokens, Workers: 2, Console: console.Mount(o.console)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	e := &env{t: t, dir: dir, st: st, srv: srv, ts: httptest.NewServer(srv.Handler())}
	e.c = e.newClient()
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

func (e *env) newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	code int
	h    http.Header
	body string
}

func (e *env) send(c *http.Client, req *http.Request) answer {
	e.t.Helper()
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

func (e *env) get(path string) answer {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
	return e.send(e.c, req)
}

func (e *env) post(path string, form url.Values) answer {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.send(e.c, req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the forms on the page at path.
func (e *env) csrf(path string) string {
	e.t.Helper()
	a := e.get(path)
	m := csrfRE.FindStringSubmatch(a.body)
	if m == nil {
		e.t.Fatalf("no CSRF token on %s (%d):\n%s", path, a.code, a.body)
	}
	return m[1]
}

func (e *env) signIn(token string) answer {
	e.t.Helper()
	return e.post("/ui/signin", url.Values{"token": {token}, "next": {"/ui/jobs"}})
}

// submit posts a playbook through the API and returns the job id.
func (e *env) submit(body string) string {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.ts.URL+"/playbook/async", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	a := e.send(http.DefaultClient, req)
	if a.code != http.StatusAccepted {
		e.t.Fatalf("submit: %d %s", a.code, a.body)
	}
	m := regexp.MustCompile(`"job_id":"([^"]+)"`).FindStringSubmatch(a.body)
	return m[1]
}

func (e *env) wait(id string, want ...job.Status) *job.Job {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := e.st.Get(id)
		if err == nil {
			for _, w := range want {
				if j.Status == w {
					return j
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s did not reach %v: %+v, %v", id, want, j, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const (
	okPlaybook    = `{"playbook":[{"name":"hello","action":"log","params":{"message":"hi"}}]}`
	failPlaybook  = `{"playbook":[{"name":"boom","action":"fail","params":{"message":"it broke"}}]}`
	sleepPlaybook = `{"playbook":[{"name":"nap","action":"sleep","params":{"duration":"30s"}}]}`
)

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})
	for _, path := range []string{"/ui/signin", "/ui/", "/ui/static/console.js", "/ui/nowhere"} {
		a := e.get(path)
		for k, want := range map[string]string{
			"Content-Security-Policy": console.ContentSecurityPolicy,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := a.h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
	if csp := console.ContentSecurityPolicy; !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("policy %q is not strict", csp)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})

	a := e.get("/ui/jobs?status=failed")
	if a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/signin?next=%2Fui%2Fjobs%3Fstatus%3Dfailed" {
		t.Fatalf("unsigned GET: %d to %q", a.code, a.h.Get("Location"))
	}
	if a := e.get("/ui/signin"); a.code != 200 || !strings.Contains(a.body, `<label for="token">`) {
		t.Fatalf("sign-in form: %d\n%s", a.code, a.body)
	}
	a = e.signIn("wrong-token-wrong-token")
	if a.code != http.StatusUnauthorized || a.h.Get("Set-Cookie") != "" {
		t.Fatalf("wrong token: %d, cookie %q", a.code, a.h.Get("Set-Cookie"))
	}
	if a := e.get("/ui/"); a.code != http.StatusSeeOther {
		t.Fatalf("after a wrong token: %d", a.code)
	}

	a = e.signIn(testToken)
	if a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/jobs" {
		t.Fatalf("sign in: %d to %q", a.code, a.h.Get("Location"))
	}
	res := &http.Response{Header: a.h}
	cks := res.Cookies()
	if len(cks) != 1 {
		t.Fatalf("cookies: %v", cks)
	}
	ck := cks[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/ui/" {
		t.Errorf("cookie attributes: %+v", ck)
	}
	if strings.Contains(ck.Value, testToken) || ck.Value == "" {
		t.Errorf("cookie holds %q", ck.Value)
	}
	for _, p := range []string{"/ui/", "/ui/jobs", "/ui/backups"} {
		if a := e.get(p); a.code != 200 {
			t.Errorf("%s signed in: %d", p, a.code)
		}
	}
	// The API still wants its bearer token: the cookie is the console's.
	if a := e.get("/jobs"); a.code != http.StatusUnauthorized {
		t.Errorf("GET /jobs with the cookie only: %d", a.code)
	}

	// A redirect after sign-in stays in the console.
	other := e.newClient()
	req, _ := http.NewRequest("POST", e.ts.URL+"/ui/signin", strings.NewReader(url.Values{"token": {testToken}, "next": {"//evil.example/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := e.send(other, req); a.h.Get("Location") != "/ui/" {
		t.Errorf("next //evil.example/: to %q", a.h.Get("Location"))
	}

	// Signing out ends the session on the server, not just in the browser.
	stolen := e.c.Jar.Cookies(mustURL(e.ts.URL + "/ui/"))
	tok := e.csrf("/ui/")
	if a := e.post("/ui/signout", url.Values{"csrf": {tok}}); a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/signin" {
		t.Fatalf("sign out: %d to %q", a.code, a.h.Get("Location"))
	}
	replay := e.newClient()
	replay.Jar.SetCookies(mustURL(e.ts.URL+"/ui/"), stolen)
	req, _ = http.NewRequest("GET", e.ts.URL+"/ui/", nil)
	if a := e.send(replay, req); a.code != http.StatusSeeOther {
		t.Errorf("the signed-out cookie still works: %d", a.code)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestNoTokensNoSignIn(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.get("/ui/")
	if a.code != 200 || !strings.Contains(a.body, "<h1>Overview</h1>") {
		t.Fatalf("overview without tokens: %d\n%s", a.code, a.body)
	}
	if strings.Contains(a.body, "Sign out") {
		t.Error("sign-out offered with no sign-in")
	}
	if a := e.get("/ui/signin"); a.code != http.StatusSeeOther {
		t.Errorf("sign-in form without tokens: %d", a.code)
	}
	// Forms still carry a CSRF token, tied to the session started here.
	tok := e.csrf("/ui/backups")
	if a := e.post("/ui/backups", url.Values{"csrf": {tok}}); a.code != http.StatusSeeOther {
		t.Errorf("create backup: %d %s", a.code, a.body)
	}
	if a := e.post("/ui/backups", nil); a.code != http.StatusForbidden {
		t.Errorf("POST without CSRF token: %d", a.code)
	}
}

func TestCSRFRejected(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})
	e.signIn(testToken)
	id := e.submit(failPlaybook)
	e.wait(id, job.Failed)
	tok := e.csrf("/ui/backups")

	// Another session's token is no good here.
	other := &env{t: t, ts: e.ts}
	other.c = e.newClient()
	other.signIn(testToken)
	otherTok := other.csrf("/ui/backups")

	backups := func() int {
		list, err := store.ListBackups(e.dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	for name, form := range map[string]url.Values{
		"none":          nil,
		"empty":         {"csrf": {""}},
		"wrong":         {"csrf": {"x" + tok}},
		"other session": {"csrf": {otherTok}},
	} {
		for _, path := range []string{"/ui/backups", "/ui/jobs/" + id + "/rerun", "/ui/jobs/" + id + "/delete", "/ui/signout"} {
			if a := e.post(path, form); a.code != http.StatusForbidden {
				t.Errorf("%s with %s CSRF token: %d", path, name, a.code)
			}
		}
	}
	// The right token from another origin is refused too.
	req, _ := http.NewRequest("POST", e.ts.URL+"/ui/backups", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if a := e.send(e.c, req); a.code != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d", a.code)
	}
	// Nothing happened.
	if n := backups(); n != 0 {
		t.Errorf("%d backups written by refused requests", n)
	}
	if j, err := e.st.Get(id); err != nil || len(j.Reruns) != 0 {
		t.Errorf("job after refused requests: %+v, %v", j, err)
	}
	// A POST without any session is refused before anything else.
	anon := e.newClient()
	req, _ = http.NewRequest("POST", e.ts.URL+"/ui/backups", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := e.send(anon, req); a.code != http.StatusUnauthorized {
		t.Errorf("POST with no session: %d", a.code)
	}

	if a := e.post("/ui/backups", url.Values{"csrf": {tok}}); a.code != http.StatusSeeOther {
		t.Fatalf("create backup: %d %s", a.code, a.body)
	}
	if n := backups(); n != 1 {
		t.Errorf("%d backups after the create button, want 1", n)
	}
	a := e.get("/ui/backups")
	if !strings.Contains(a.body, "verified") || !strings.Contains(a.body, "jobs.json.backup.") || !strings.Contains(a.body, `role="status"`) {
		t.Errorf("backups page after create:\n%s", a.body)
	}
}

// hostile is a job whose context and step output carry markup: job data
// comes from remote servers and must never be rendered as HTML.
const hostile = `{"playbook":[
 {"name":"echo","action":"log","params":{"message":"<script>document.title='pwned'</script><img src=x onerror=alert(1)>"}},
 {"name":"boom","action":"fail","params":{"message":"</pre><script>alert(2)</script>"}}],
 "context":{"note":"<b onmouseover=alert(3)>bold</b>","api_key":"SUPERSECRET-1","nested":{"Password":"hunter2-SECRET"},"user":"alice"}}`

func TestJobPageEscapesAndMasks(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})
	e.signIn(testToken)
	id := e.submit(hostile)
	e.wait(id, job.Failed)

	for _, path := range []string{"/ui/jobs/" + id, "/ui/jobs/" + id + "?reveal=1", "/ui/jobs", "/ui/jobs/" + id + "/rerun"} {
		a := e.get(path)
		if a.code != 200 {
			t.Fatalf("%s: %d", path, a.code)
		}
		for _, raw := range []string{"<script>document", "<script>alert", "<img src=x", "<b onmouseover", "</pre><script>"} {
			if strings.Contains(a.body, raw) {
				t.Errorf("%s renders %q unescaped", path, raw)
			}
		}
		// The only script is the console's own.
		if n := strings.Count(a.body, "<script"); n != 1 {
			t.Errorf("%s has %d script elements", path, n)
		}
	}
	a := e.get("/ui/jobs/" + id)
	for _, want := range []string{"&lt;script&gt;document.title=", "&lt;b onmouseover=alert(3)&gt;bold&lt;/b&gt;", "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;", "alice"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("job page lacks %q", want)
		}
	}
	for _, secret := range []string{"SUPERSECRET-1", "hunter2-SECRET"} {
		if strings.Contains(a.body, secret) {
			t.Errorf("job page shows %q before it is revealed", secret)
		}
	}
	if !strings.Contains(a.body, "2 secret-looking value(s) masked") || !strings.Contains(a.body, `href="/ui/jobs/`+id+`?reveal=1"`) {
		t.Errorf("no reveal link:\n%s", a.body)
	}
	a = e.get("/ui/jobs/" + id + "?reveal=1")
	for _, secret := range []string{"SUPERSECRET-1", "hunter2-SECRET"} {
		if !strings.Contains(a.body, secret) {
			t.Errorf("revealed page lacks %q", secret)
		}
	}
}

func TestSecretKey(t *testing.T) {
	for k, want := range map[string]bool{
		"token": true, "API_KEY": true, "apiKey": true, "client_secret": true, "Password": true,
		"authorization": true, "x-auth": true, "session_id": true, "user": false, "ip": false, "host": false,
	} {
		if got := console.SecretKey(k); got != want {
			t.Errorf("SecretKey(%q) = %v, want %v", k, got, want)
		}
	}
}

var rowRE = regexp.MustCompile(`<a href="/ui/jobs/([0-9a-f-]{36})" class="mono">`)

func rows(body string) []string {
	var ids []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestJobsPagingAndFilters(t *testing.T) {
	e := newEnv(t, envOptions{console: console.Options{PageSize: 2}})
	var ids []string
	for i, pb := range []string{okPlaybook, failPlaybook, okPlaybook, failPlaybook, okPlaybook} {
		id := e.submit(pb)
		ids = append(ids, id)
		if i%2 == 0 {
			e.wait(id, job.Completed)
		} else {
			e.wait(id, job.Failed)
		}
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	// Newest first, two a page.
	a := e.get("/ui/jobs")
	if got := rows(a.body); len(got) != 2 || got[0] != ids[4] || got[1] != ids[3] {
		t.Fatalf("page 1: %v, want %v", got, []string{ids[4], ids[3]})
	}
	if !strings.Contains(a.body, `href="/ui/jobs?page=2"`) || strings.Contains(a.body, "Newer") {
		t.Errorf("page 1 links:\n%s", a.body)
	}
	a = e.get("/ui/jobs?page=3")
	if got := rows(a.body); len(got) != 1 || got[0] != ids[0] {
		t.Errorf("page 3: %v", got)
	}
	if strings.Contains(a.body, "Older") || !strings.Contains(a.body, `href="/ui/jobs?page=2"`) {
		t.Errorf("page 3 links:\n%s", a.body)
	}
	if got := rows(e.get("/ui/jobs?page=9").body); len(got) != 0 {
		t.Errorf("page 9: %v", got)
	}

	a = e.get("/ui/jobs?status=failed")
	if got := rows(a.body); len(got) != 2 || got[0] != ids[3] || got[1] != ids[1] {
		t.Errorf("failed: %v", got)
	}
	if !strings.Contains(a.body, `value="failed" checked`) {
		t.Error("the failed box is not checked")
	}
	a = e.get("/ui/jobs?status=failed&status=completed&page=2")
	if got := rows(a.body); len(got) != 2 || got[0] != ids[2] {
		t.Errorf("failed+completed page 2: %v", got)
	}
	if !strings.Contains(a.body, `href="/ui/jobs?page=3&amp;status=completed&amp;status=failed"`) {
		t.Errorf("the filter is not kept in the paging links:\n%s", a.body)
	}
	if got := rows(e.get("/ui/jobs?status=running").body); len(got) != 0 {
		t.Errorf("running: %v", got)
	}
	if got := rows(e.get("/ui/jobs?since=1h&status=completed&page=2").body); len(got) != 1 || got[0] != ids[0] {
		t.Errorf("completed in the last hour: %v", got)
	}
	if a := e.get("/ui/jobs?since=bogus"); a.code != http.StatusBadRequest {
		t.Errorf("since=bogus: %d", a.code)
	}
}

func TestTimeWindowExcludesOlderJobs(t *testing.T) {
	// The console's clock runs two hours ahead: every job is older than
	// the last hour.
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	e := newEnv(t, envOptions{console: console.Options{Now: later}})
	e.wait(e.submit(okPlaybook), job.Completed)
	if got := rows(e.get("/ui/jobs?since=1h").body); len(got) != 0 {
		t.Errorf("last hour: %v", got)
	}
	if got := rows(e.get("/ui/jobs?since=24h").body); len(got) != 1 {
		t.Errorf("last day: %v", got)
	}
}

func TestButtons(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})
	e.signIn(testToken)

	// Cancel: confirmed on a page of its own, then done.
	running := e.submit(sleepPlaybook)
	e.wait(running, job.Running)
	a := e.get("/ui/jobs/" + running)
	if !strings.Contains(a.body, `href="/ui/jobs/`+running+`/cancel"`) || !strings.Contains(a.body, `data-events="/ui/jobs/`+running+`/events"`) {
		t.Fatalf("running job page:\n%s", a.body)
	}
	a = e.get("/ui/jobs/" + running + "/cancel")
	if !strings.Contains(a.body, `<form method="post" action="/ui/jobs/`+running+`/cancel"`) {
		t.Fatalf("cancel confirmation:\n%s", a.body)
	}
	if j, _ := e.st.Get(running); j.Status != job.Running {
		t.Fatalf("the confirmation page changed the job: %s", j.Status)
	}
	tok := csrfRE.FindStringSubmatch(a.body)[1]
	a = e.post("/ui/jobs/"+running+"/cancel", url.Values{"csrf": {tok}})
	if a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/jobs/"+running {
		t.Fatalf("cancel: %d %q %s", a.code, a.h.Get("Location"), a.body)
	}
	if j := e.wait(running, job.Cancelled); j.Error != server.CancelledByRequest {
		t.Errorf("cancelled job's error: %q", j.Error)
	}
	if a := e.get("/ui/jobs/" + running); !strings.Contains(a.body, "was cancelled") {
		t.Error("no message after cancel")
	}
	// Cancelling it again is refused with the reason.
	if a := e.get("/ui/jobs/" + running + "/cancel"); !strings.Contains(a.body, "already ended") || strings.Contains(a.body, `method="post" action="/ui/jobs/`+running) {
		t.Errorf("cancel confirmation of an ended job:\n%s", a.body)
	}
	if a := e.post("/ui/jobs/"+running+"/cancel", url.Values{"csrf": {tok}}); a.code != http.StatusConflict {
		t.Errorf("cancel an ended job: %d", a.code)
	}

	// Rerun: a new job, linked both ways, shown next.
	failed := e.submit(failPlaybook)
	e.wait(failed, job.Failed)
	a = e.post("/ui/jobs/"+failed+"/rerun", url.Values{"csrf": {tok}})
	loc := a.h.Get("Location")
	if a.code != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/jobs/") || loc == "/ui/jobs/"+failed {
		t.Fatalf("rerun: %d %q", a.code, loc)
	}
	rerun := strings.TrimPrefix(loc, "/ui/jobs/")
	if j := e.wait(rerun, job.Failed); j.RerunOf != failed {
		t.Errorf("rerun_of = %q", j.RerunOf)
	}
	if a := e.get(loc); !strings.Contains(a.body, `Rerun of <a class="mono" href="/ui/jobs/`+failed+`">`) {
		t.Errorf("rerun page lacks its origin:\n%s", a.body)
	}
	if a := e.get("/ui/jobs/" + failed); !strings.Contains(a.body, `href="/ui/jobs/`+rerun+`"`) {
		t.Errorf("original page lacks its rerun:\n%s", a.body)
	}

	// Delete: gone, and the list says so.
	a = e.post("/ui/jobs/"+failed+"/delete", url.Values{"csrf": {tok}})
	if a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/jobs" {
		t.Fatalf("delete: %d %q", a.code, a.h.Get("Location"))
	}
	if _, err := e.st.Get(failed); err == nil {
		t.Error("deleted job still in the store")
	}
	if a := e.get("/ui/jobs"); !strings.Contains(a.body, "Job "+failed+" was deleted.") || strings.Contains(a.body, `href="/ui/jobs/`+failed+`"`) {
		t.Errorf("list after delete:\n%s", a.body)
	}
	if a := e.get("/ui/jobs/" + failed); a.code != http.StatusNotFound {
		t.Errorf("deleted job's page: %d", a.code)
	}
	if a := e.post("/ui/jobs/"+rerun+"/explode", url.Values{"csrf": {tok}}); a.code != http.StatusNotFound {
		t.Errorf("unknown action: %d", a.code)
	}
}

func TestJobEventsThroughTheSession(t *testing.T) {
	e := newEnv(t, envOptions{tokens: []string{testToken}})
	id := e.submit(okPlaybook)
	e.wait(id, job.Completed)
	if a := e.get("/ui/jobs/" + id + "/events"); a.code != http.StatusSeeOther {
		t.Errorf("events without a session: %d", a.code)
	}
	e.signIn(testToken)
	a := e.get("/ui/jobs/" + id + "/events")
	if a.code != 200 || a.h.Get("Content-Type") != "text/event-stream" || !strings.Contains(a.body, "event: end\n") {
		t.Errorf("events: %d %q\n%s", a.code, a.h.Get("Content-Type"), a.body)
	}
}

func TestOverview(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.wait(e.submit(okPlaybook), job.Completed)
	e.wait(e.submit(failPlaybook), job.Failed)
	a := e.get("/ui/")
	for _, want := range []string{
		`<svg viewBox="0 0 600 180"`, "2 jobs ended", "1 failed: failure rate 50.0%",
		"Queue depth", "Workers busy", "Store size", "Last backup", "Next cleanup",
		"Webhook backlog", "Webhook dead letters", `href="/ui/jobs?status=failed"`,
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(a.body, "style=") {
		t.Error("overview has an inline style")
	}
}

// TestTemplatesHaveNoInlineScriptOrStyle keeps the pages within the
// Content-Security-Policy.
func TestTemplatesHaveNoInlineScriptOrStyle(t *testing.T) {
	files, _ := filepath.Glob("templates/*.html")
	if len(files) == 0 {
		t.Fatal("no templates")
	}
	inline := regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := inline.Find(b); m != nil {
			t.Errorf("%s: %q", f, m)
		}
	}
}

func TestLongOutputIsClipped(t *testing.T) {
	e := newEnv(t, envOptions{})
	long := strings.Repeat("é", 50_000) // 100,000 bytes
	id := e.submit(`{"playbook":[{"name":"big","action":"log","params":{"message":"` + long + `"}}]}`)
	e.wait(id, job.Completed)
	a := e.get("/ui/jobs/" + id)
	if !strings.Contains(a.body, "The output is longer than shown") || strings.Contains(a.body, long) {
		t.Errorf("a 100 KB output is not clipped (page of %d bytes)", len(a.body))
	}
	if len(a.body) > 80<<10 {
		t.Errorf("page of %d bytes", len(a.body))
	}
}

func TestCookieSecureAndSessionExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, envOptions{tokens: []string{testToken}, console: console.Options{Secure: true, SessionTTL: time.Hour, Now: clock}})
	a := e.signIn(testToken)
	if !strings.Contains(a.h.Get("Set-Cookie"), "; Secure") {
		t.Errorf("with TLS the cookie is not Secure: %q", a.h.Get("Set-Cookie"))
	}
	// The jar keeps Secure cookies from plain http; send it by hand.
	res := &http.Response{Header: a.h}
	ck := res.Cookies()[0]
	page := func() int {
		req, _ := http.NewRequest("GET", e.ts.URL+"/ui/", nil)
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		return e.send(e.newClient(), req).code
	}
	if code := page(); code != 200 {
		t.Fatalf("signed in: %d", code)
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if code := page(); code != http.StatusSeeOther {
		t.Errorf("after the session's hour: %d", code)
	}

	// Behind a proxy that terminates TLS, the cookie is Secure too.
	plain := newEnv(t, envOptions{tokens: []string{testToken}})
	req, _ := http.NewRequest("POST", plain.ts.URL+"/ui/signin", strings.NewReader(url.Values{"token": {testToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	if a := plain.send(plain.newClient(), req); !strings.Contains(a.h.Get("Set-Cookie"), "; Secure") {
		t.Errorf("behind a TLS proxy the cookie is not Secure: %q", a.h.Get("Set-Cookie"))
	}
}
