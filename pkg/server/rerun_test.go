package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

func TestRerunStartsFromTheSubmittedContext(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.submit(`{"playbook":[
		{"name":"mark","action":"set","params":{"verdict":"seen {{.context.ip}}"}},
		{"name":"say","action":"log","params":{"message":"{{.context.verdict}}"}}],
		"context":{"ip":"10.0.0.1"},"on_interrupt":"retry","max_attempts":2}`)
	orig := e.waitStatus(id, job.Completed)
	if orig.Context["verdict"] == nil {
		t.Fatalf("the set step did not change the context: %v", orig.Context)
	}

	code, b := e.do("POST", "/job/"+id[:13]+"/rerun", "")
	if code != http.StatusAccepted {
		t.Fatalf("rerun: %d %s", code, b)
	}
	var res SubmitResponse
	if err := json.Unmarshal(b, &res); err != nil || res.Status != job.Pending || res.RerunOf != id || res.JobID == "" || res.JobID == id {
		t.Fatalf("rerun answered %s (%v)", b, err)
	}
	rerun := e.waitStatus(res.JobID, job.Completed)
	if rerun.RerunOf != id || rerun.OnInterrupt != job.OnInterruptRetry || rerun.MaxAttempts != 2 {
		t.Fatalf("rerun %+v", rerun)
	}
	if !reflect.DeepEqual(rerun.SubmittedContext, map[string]any{"ip": "10.0.0.1"}) {
		t.Fatalf("the rerun began from %v, not from the submitted context", rerun.SubmittedContext)
	}
	if rerun.Context["verdict"] != "seen 10.0.0.1" {
		t.Fatalf("rerun context %v", rerun.Context)
	}

	// The original lists it, and is otherwise as it ended.
	after := e.job(id)
	if !reflect.DeepEqual(after.Reruns, []string{res.JobID}) {
		t.Fatalf("original's reruns %v", after.Reruns)
	}
	after.Reruns = nil
	if !reflect.DeepEqual(after, orig) {
		t.Fatalf("the original changed beyond its reruns:\n%+v\n%+v", after, orig)
	}
	code, b = e.do("POST", "/job/"+id+"/rerun", "")
	if code != http.StatusAccepted {
		t.Fatalf("second rerun: %d %s", code, b)
	}
	json.Unmarshal(b, &res)
	if got := e.job(id).Reruns; len(got) != 2 || got[1] != res.JobID {
		t.Fatalf("after a second rerun: %v", got)
	}

	// The link is durable (the journal holds it: a second open reads it)
	// and the store verifies.
	st, err := store.Open(store.Options{Dir: e.dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if j, err := st.Get(id); err != nil || len(j.Reruns) != 2 {
		t.Fatalf("after reopening: %v %v", j, err)
	}
	if j, err := st.Get(res.JobID); err != nil || j.RerunOf != id {
		t.Fatalf("after reopening: %v %v", j, err)
	}
	vr, err := store.Verify(e.dir)
	if err != nil || !vr.OK {
		t.Fatalf("verify: %+v %v", vr, err)
	}
}

func TestRerunRefusals(t *testing.T) {
	e := newEnv(t, Options{})
	if code, b := e.do("POST", "/job/0000ffff/rerun", ""); code != http.StatusNotFound || !strings.Contains(errorOf(t, b), "not found") {
		t.Fatalf("unknown job: %d %s", code, b)
	}
	a, b := e.submit(sleepJob), e.submit(sleepJob)
	prefix := commonPrefix(a, b)
	if code, body := e.do("POST", "/job/"+prefix+"/rerun", ""); code != http.StatusBadRequest || !strings.Contains(errorOf(t, body), "more than one job") {
		t.Fatalf("ambiguous prefix %q: %d %s", prefix, code, body)
	}
	// A live job can be rerun too: the new one runs beside it.
	if code, body := e.do("POST", "/job/"+a+"/rerun", ""); code != http.StatusAccepted {
		t.Fatalf("rerun of a running job: %d %s", code, body)
	}
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}
