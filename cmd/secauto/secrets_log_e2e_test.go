package main

import (
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/webhook"
)

// bearerTransport adds an Authorization header to every request, as the
// API's callers do when server.auth_tokens is set.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// authorize makes d's requests carry token.
func (d *daemon) authorize(token string) {
	d.client.Transport = bearerTransport{token: token, base: http.DefaultTransport}
}

// secret is a value that must never show in a log, and what it is.
type secret struct{ what, value string }

// logSource is text read line by line for secrets: a daemon's output, a
// command's stderr, the log file.
type logSource struct{ name, text string }

// checkNoSecrets fails the test for every line of every source that holds
// one of secrets, naming the source, the line number, the secret and the
// line.
func checkNoSecrets(t *testing.T, sources []logSource, secrets []secret) {
	t.Helper()
	for _, src := range sources {
		for n, line := range strings.Split(src.text, "\n") {
			for _, s := range secrets {
				if strings.Contains(line, s.value) {
					t.Errorf("%s line %d holds the %s: %s", src.name, n+1, s.what, line)
				}
			}
		}
	}
}

// readLogFiles reads the log file and any rotated copies beside it
// (gzipped ones decompressed).
func readLogFiles(t *testing.T, dir string) []logSource {
	t.Helper()
	var out []logSource
	for _, p := range globFiles(t, filepath.Join(dir, "*")) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(p, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			r = gz
		}
		b, err := io.ReadAll(r)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, logSource{name: "log file " + filepath.Base(p), text: string(b)})
	}
	return out
}

// A daemon with a bearer token, a signed webhook whose URL holds a
// password, and playbooks whose contexts and http headers carry secrets,
// logging at debug level to stderr and a file, through failing steps,
// kill -9, offline recover, restarts, background and commanded backups and
// cleanups, and commands beside it: no line any daemon or command logged
// holds the token, the webhook secret or password, the header value or a
// context value.
func TestSecretsStayOutOfLogs(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	logDir := filepath.Join(work, "logs")

	token := "tok-" + rand.Text() + rand.Text()
	wrongToken := "wrong-tok-" + rand.Text()
	hookSecret := "whsec-" + rand.Text()
	hookPassword := "hookpw-" + rand.Text()
	header := "hdr-secret-" + rand.Text()
	apiKey := "ctx-secret-" + rand.Text()
	password := "ctx-secret-" + rand.Text()
	queryKey := "ctx-secret-" + rand.Text()
	pendingKey := "ctx-secret-" + rand.Text()
	sleeperKey := "ctx-secret-" + rand.Text()
	secrets := []secret{
		{"auth token", token}, {"rejected token", wrongToken},
		{"webhook secret", hookSecret}, {"webhook URL password", hookPassword},
		{"http step Authorization header value", header},
		{"context value api_key", apiKey}, {"context value password", password},
		{"context value sent in a query", queryKey}, {"context value of a pending job", pendingKey},
		{"context value of an interrupted job", sleeperKey},
	}

	// The tool the playbooks call.
	var (
		mu   sync.Mutex
		seen []string // Authorization headers the tool received
	)
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/deny" {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"error":"denied"}`)
			return
		}
		fmt.Fprint(w, `{"verdict":"malicious"}`)
	}))
	defer tool.Close()
	// A port nothing listens on: the http step's request fails with the
	// URL, query and all, in Go's error.
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	recv := newHookReceiver(t, hookSecret) // down at first: deliveries fail and are retried
	hookURL := "http://hookuser:" + hookPassword + "@" + recv.addr + "/hook"
	cfg := writeConfig(t, work, fmt.Sprintf(`server:
  auth_tokens: [%q]
  shutdown_timeout: 500ms
  workers: 2
webhooks:
  - url: %q
    secret: %q
jobs:
  backup_interval: 1s
  cleanup_interval: 1s
  backup_keep: 3
  snapshot_interval: 1s
logging:
  level: debug
  format: json
  file: %q
`, token, hookURL, hookSecret, filepath.Join(logDir, "secauto.log")))

	var sources []logSource
	command := func(args ...string) cmdResult {
		t.Helper()
		r := runSecauto(t, append([]string{"--config", cfg, "--data-dir", dir}, args...)...)
		name := "secauto " + strings.Join(args, " ")
		sources = append(sources, logSource{name: name + " (stderr)", text: r.stderr})
		if r.code != 0 {
			t.Errorf("%s: %v", name, r)
		}
		return r
	}
	// Outputs that are no job's data must not show a secret either.
	commandNoJobData := func(args ...string) cmdResult {
		t.Helper()
		r := command(args...)
		sources = append(sources, logSource{name: "secauto " + strings.Join(args, " ") + " (stdout)", text: r.stdout})
		return r
	}

	ctx := fmt.Sprintf(`{"alert":"A-7","api_key":%q,"password":%q}`, apiKey, password)
	full := `{"playbook":[
		{"name":"note","action":"log","params":{"message":"triage {{.context.alert}} key {{.context.api_key}}"}},
		{"name":"enrich","action":"set","params":{"derived":"k={{.context.api_key}}","copy":"{{.context.password}}"}},
		{"name":"call","action":"http","params":{"method":"POST","url":"` + tool.URL + `/intel?alert={{.context.alert}}",
			"headers":{"Authorization":"Bearer ` + header + `","X-Api-Key":"{{.context.api_key}}"},
			"body":"{\"key\":\"{{.context.derived}}\",\"pw\":\"{{.context.copy}}\"}","timeout":"5s"}},
		{"name":"report","action":"log","params":{"message":"verdict {{.steps.call.body.verdict}}"}}
	],"context":` + ctx + `}`
	denied := `{"playbook":[
		{"name":"enrich","action":"set","params":{"derived":"{{.context.password}}"}},
		{"name":"block","action":"http","params":{"method":"POST","url":"` + tool.URL + `/deny",
			"headers":{"Authorization":"Bearer ` + header + `"},"body":"{{.context.derived}}"}}
	],"context":` + ctx + `}`
	failing := `{"playbook":[
		{"name":"enrich","action":"set","params":{"derived":"{{.context.api_key}}"}},
		{"name":"stop","action":"fail","params":{"message":"policy refused alert {{.context.alert}}"}}
	],"context":` + ctx + `}`
	unreachable := `{"playbook":[
		{"name":"lookup","action":"http","params":{"method":"GET","url":"` + closedURL + `/v1/ip?apikey={{.context.qk}}",
			"headers":{"Authorization":"Bearer ` + header + `"},"timeout":"2s"}}
	],"context":{"qk":"` + queryKey + `"}}`
	sleeper := func(interrupt string) string {
		return `{"playbook":[{"name":"hold","action":"sleep","params":{"duration":"1h"}}],
			"context":{"api_key":"` + sleeperKey + `"},"on_interrupt":"` + interrupt + `"}`
	}

	d := startServe(t, dir, "--config", cfg)
	if code, _, err := d.do("GET", "/jobs", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("GET /jobs without a token: %d %v; want 401", code, err)
	}
	d.authorize(wrongToken)
	if code, _, err := d.do("GET", "/jobs", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("GET /jobs with a wrong token: %d %v; want 401", code, err)
	}
	d.authorize(token)

	fullID := d.submit(full)
	j := d.waitStatus(fullID, job.Completed)
	if j.Context["derived"] != "k="+apiKey || j.Context["copy"] != password {
		t.Errorf("the set step did not add the context values: %v", j.Context)
	}
	deniedID, failingID, unreachableID := d.submit(denied), d.submit(failing), d.submit(unreachable)
	for _, id := range []string{deniedID, failingID, unreachableID} {
		d.waitStatus(id, job.Failed)
	}
	mu.Lock()
	for _, h := range seen {
		if h != "Bearer "+header {
			t.Errorf("the tool received Authorization %q; want the step's header", h)
		}
	}
	if len(seen) != 2 {
		t.Errorf("the tool was called %d times; want 2 (intel, deny)", len(seen))
	}
	mu.Unlock()

	interrupted := d.submit(sleeper("fail"))
	retried := d.submit(sleeper("retry"))
	d.waitStatus(interrupted, job.Running)
	d.waitStatus(retried, job.Running)
	pending := d.submit(`{"playbook":[{"name":"note","action":"log","params":{"message":"late {{.context.k}}"}}],"context":{"k":"` + pendingKey + `"}}`)

	command("jobs", "list")
	command("jobs", "list", "-o", "json", "--status", "failed")
	// The job keeps its secrets; only the logs leave them out.
	if r := command("jobs", "show", fullID, "-o", "json"); !strings.Contains(r.stdout, apiKey) {
		t.Errorf("jobs show through the daemon does not print the job's context: %v", r)
	}
	commandNoJobData("backup", "create")
	commandNoJobData("backup", "list")
	commandNoJobData("cleanup", "--dry-run")
	commandNoJobData("verify")
	command("webhooks", "list")
	time.Sleep(1500 * time.Millisecond) // a background backup and cleanup, failed deliveries retried
	d.stop(syscall.SIGKILL)
	sources = append(sources, logSource{name: "first serve", text: d.out.String()})

	commandNoJobData("recover")
	commandNoJobData("verify")

	recv.up()
	d2 := startServe(t, dir, "--config", cfg)
	d2.authorize(token)
	if j := d2.job(interrupted); j.Status != job.Failed || !strings.Contains(j.Error, "recover") {
		t.Errorf("interrupted job after recover: %s %q", j.Status, j.Error)
	}
	d2.waitStatus(pending, job.Completed)
	d2.waitStatus(retried, job.Running)
	d2.waitStatus(d2.submit(full), job.Completed)
	command("jobs", "list", "--status", "running")
	commandNoJobData("backup", "create", "--compress")
	commandNoJobData("cleanup", "--older-than", "1h")
	commandNoJobData("verify")
	time.Sleep(1200 * time.Millisecond)
	d2.stop(syscall.SIGKILL)
	sources = append(sources, logSource{name: "second serve", text: d2.out.String()})

	d3 := startServe(t, dir, "--config", cfg)
	d3.authorize(token)
	j = d3.waitStatus(retried, job.Running)
	if j.Attempts != 3 {
		t.Errorf("retried job runs attempt %d after two crashes; want 3", j.Attempts)
	}
	// Every job event arrives, signed (the receiver checks each signature).
	want := map[string]string{fullID: webhook.JobCompleted, deniedID: webhook.JobFailed,
		failingID: webhook.JobFailed, unreachableID: webhook.JobFailed, pending: webhook.JobCompleted,
		interrupted: webhook.JobRecovered}
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, bad := recv.received()
		if len(bad) > 0 {
			t.Fatalf("the receiver rejected deliveries: %q", bad)
		}
		missing := 0
		for id, name := range want {
			found := false
			for _, ev := range evs {
				found = found || ev.Event == name && ev.Job != nil && ev.Job.ID == id
			}
			if !found {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d job events never arrived (%d deliveries)", missing, len(want), len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	commandNoJobData("cleanup", "--older-than", "1ms")
	commandNoJobData("backup", "create")
	command("webhooks", "list", "-o", "json")
	if code := d3.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
	sources = append(sources, logSource{name: "third serve", text: d3.out.String()})
	commandNoJobData("verify")

	files := readLogFiles(t, logDir)
	var logText string
	for _, f := range files {
		logText += f.text
	}
	// The check means something only if the log holds the debug records
	// and the story of these jobs.
	for _, w := range []string{`"level":"DEBUG"`, `"msg":"recovered job"`, failingID, retried, "webhook delivery failed"} {
		if !strings.Contains(logText, w) {
			t.Errorf("the log file does not hold %s; the check below would prove little", w)
		}
	}
	for _, d := range []*daemon{d, d2, d3} {
		if !strings.Contains(d.out.String(), `"level":"DEBUG"`) {
			t.Errorf("serve (pid %d) logged no debug record to stderr", d.cmd.Process.Pid)
		}
	}
	checkNoSecrets(t, append(sources, files...), secrets)
}
