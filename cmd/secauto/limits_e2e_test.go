package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/secauto/secauto/pkg/job"
)

// checkSurvivors checks through d's API that every job in want is present
// and that bad is still failed with an error containing limit.
func checkSurvivors(t *testing.T, d *daemon, bad, limit string, want []string) {
	t.Helper()
	jobs := d.jobs()
	for _, id := range want {
		if _, ok := jobs[id]; !ok {
			t.Errorf("job %s is gone", id)
		}
	}
	if j, ok := jobs[bad]; !ok {
		t.Errorf("the failed job %s is gone", bad)
	} else if j.Status != job.Failed || !strings.Contains(strings.ToLower(j.Error), limit) {
		t.Errorf("job %s is %s with error %q; want failed naming %q", bad, j.Status, j.Error, limit)
	}
}

// An http step whose answer is JSON nested 100,000 deep would make a job
// that the store could not read back: the step fails naming the nesting
// limit, and the store, the API and the next start are unharmed.
func TestHTTPStepDeeplyNestedAnswer(t *testing.T) {
	const depth = 100_000
	body := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	defer api.Close()

	dir := filepath.Join(t.TempDir(), "data")
	d := startServe(t, dir)
	bad := d.submit(`{"playbook":[{"name":"lookup","action":"http","params":{"method":"GET","url":"` + api.URL + `/intel"}}]}`)
	j := d.waitStatus(bad, job.Failed)
	if !strings.Contains(strings.ToLower(j.Error), "nesting") {
		t.Errorf("job error %q does not name the nesting limit", j.Error)
	}
	var later []string
	for i := range 5 {
		id := d.submit(alertPlaybook(fmt.Sprintf("after-nesting-%d", i)))
		d.waitStatus(id, job.Completed)
		later = append(later, id)
	}
	checkSurvivors(t, d, bad, "nesting", later)
	d.stop(syscall.SIGKILL)

	d2 := startServe(t, dir)
	checkSurvivors(t, d2, bad, "nesting", later)
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
}

// A set step that would grow a job past jobs.max_job_bytes fails the job,
// naming the limit; later jobs run and a restart loses nothing.
func TestSetStepPastMaxJobBytes(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "data")
	cfg := writeConfig(t, work, "jobs:\n  max_job_bytes: 65536\n")
	d := startServe(t, dir, "--config", cfg)

	big := strings.Repeat("x", 30_000)
	bad := d.submit(`{"playbook":[{"name":"grow","action":"set","params":{"a":"{{.context.big}}","b":"{{.context.big}}"}}],"context":{"big":"` + big + `"}}`)
	j := d.waitStatus(bad, job.Failed)
	if !strings.Contains(j.Error, "max_job_bytes") {
		t.Errorf("job error %q does not name jobs.max_job_bytes", j.Error)
	}

	// A submission that is itself too large is refused at once.
	huge := strings.Repeat("y", 70_000)
	code, b, err := d.do("POST", "/playbook/async", `{"playbook":[{"name":"note","action":"log","params":{"message":"m"}}],"context":{"big":"`+huge+`"}}`)
	if err != nil || code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "max_job_bytes") {
		t.Errorf("submission larger than jobs.max_job_bytes: %d %s %v; want 413 naming the limit", code, b, err)
	}

	var later []string
	for i := range 5 {
		id := d.submit(alertPlaybook(fmt.Sprintf("after-limit-%d", i)))
		d.waitStatus(id, job.Completed)
		later = append(later, id)
	}
	checkSurvivors(t, d, bad, "max_job_bytes", later)
	d.stop(syscall.SIGKILL)

	d2 := startServe(t, dir, "--config", cfg)
	checkSurvivors(t, d2, bad, "max_job_bytes", later)
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("serve exited %d after SIGTERM", code)
	}
	snap := readSnapshot(t, dir)
	for _, id := range append(later, bad) {
		if _, ok := snap[id]; !ok {
			t.Errorf("job %s is not in jobs.json after the clean stop", id)
		}
	}
}
