package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// startCounter counts, per job, the writes that started it.
type startCounter struct {
	jobWriter
	mu     sync.Mutex
	starts map[string]int
}

func (c *startCounter) Update(id string, fn func(*job.Job) error) (*job.Job, error) {
	started := false
	j, err := c.jobWriter.Update(id, func(j *job.Job) error {
		was := j.Status
		if err := fn(j); err != nil {
			return err
		}
		started = was == job.Pending && j.Status == job.Running
		return nil
	})
	if err == nil && started {
		c.mu.Lock()
		c.starts[id]++
		c.mu.Unlock()
	}
	return j, err
}

func (c *startCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts[id]
}

const shortSleepJob = `{"playbook":[{"name":"wait","action":"sleep","params":{"duration":"100ms"}}]}`

// post sends a request from any goroutine (no t.Fatal in it).
func (e *env) post(path, body string) (int, []byte, error) {
	c := *e.ts.Client()
	c.Timeout = 15 * time.Second
	resp, err := c.Post(e.ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Many submissions race several restores, backups and cleanups. No job is
// ever queued twice or started twice, every acknowledged submission is in
// the store or in a restore's safety backup, and every job left pending or
// running can be cancelled.
func TestRestoreRacesSubmissions(t *testing.T) {
	counter := &startCounter{starts: map[string]int{}}
	e := newEnv(t, Options{Workers: 3, wrapJobs: func(w jobWriter) jobWriter { counter.jobWriter = w; return counter },
		Maintenance: Maintenance{Retention: 30 * 24 * time.Hour}})
	path, _, _ := backupOf(t)
	name := copyBackupIn(t, path, e.dir)

	var (
		mu       sync.Mutex
		acked    []string
		safeties []string
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}

	// The queue never holds an id twice, nor one both waiting and running.
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			waiting, running := e.srv.queue.contents()
			seen := map[string]bool{}
			for _, id := range append(waiting, running...) {
				if seen[id] {
					fail("job %s is in the queue twice: waiting %v running %v", id, waiting, running)
				}
				seen[id] = true
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				body := logJob
				if (g+i)%3 == 0 {
					body = shortSleepJob
				}
				code, b, err := e.post("/playbook/async", body)
				if err != nil || code != http.StatusAccepted {
					fail("submission: %d %s %v", code, b, err)
					continue
				}
				var r SubmitResponse
				if err := json.Unmarshal(b, &r); err != nil || r.JobID == "" {
					fail("submission answered %s", b)
					continue
				}
				mu.Lock()
				acked = append(acked, r.JobID)
				mu.Unlock()
			}
		})
	}
	// Clients waiting on POST /playbook are answered: with the job (ended,
	// or stopped by a restore), or with 409 when a restore removed it
	// before it ended.
	for range 4 {
		wg.Go(func() {
			for range 10 {
				code, b, err := e.post("/playbook", logJob)
				switch {
				case err != nil:
					fail("POST /playbook: %v", err)
				case code == http.StatusOK:
					var j job.Job
					if json.Unmarshal(b, &j) != nil || (j.Status != job.Completed && j.Error != errRestoring.Error()) {
						fail("POST /playbook answered %s", b)
					}
				case code != http.StatusConflict:
					fail("POST /playbook: %d %s", code, b)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 2 {
				code, b, err := e.post("/admin/restore", `{"name":"`+name+`"}`)
				var res store.RestoreResult
				if err != nil || code != http.StatusOK || json.Unmarshal(b, &res) != nil {
					fail("restore: %d %s %v", code, b, err)
					continue
				}
				mu.Lock()
				safeties = append(safeties, res.SafetyBackup)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for range 3 {
			if code, b, err := e.post("/admin/backups", ""); err != nil || code != http.StatusCreated {
				fail("backup: %d %s %v", code, b, err)
			}
			if code, b, err := e.post("/admin/cleanup", ""); err != nil || code != http.StatusOK {
				fail("cleanup: %d %s %v", code, b, err)
			}
		}
	})
	wg.Wait()
	close(stopWatch)
	<-watched
	for _, f := range failures {
		t.Error(f)
	}
	if len(safeties) != 8 || len(acked) != 200 {
		t.Fatalf("%d restores and %d submissions succeeded", len(safeties), len(acked))
	}

	// Every acknowledged job is in the store or in a safety backup.
	kept := map[string]bool{}
	for _, p := range safeties {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var jobs map[string]json.RawMessage
		if err := json.Unmarshal(b, &jobs); err != nil {
			t.Fatalf("safety backup %s: %v", p, err)
		}
		for id := range jobs {
			kept[id] = true
		}
	}
	for _, id := range acked {
		if _, err := e.st.Get(id); err != nil && !kept[id] {
			t.Errorf("acknowledged job %s is neither in the store nor in a safety backup", id)
		}
		// A submitted job's id is new: no restore brings it back.
		if n := counter.count(id); n > 1 {
			t.Errorf("job %s was started %d times", id, n)
		}
	}

	// Every live job is waiting in the queue or claimed by a worker, and
	// can be cancelled; these keep some of either.
	for range 5 {
		e.submit(sleepJob)
	}
	live, err := e.st.List(store.Filter{Statuses: []job.Status{job.Pending, job.Running}})
	if err != nil {
		t.Fatal(err)
	}
	waiting, _ := e.srv.queue.contents()
	inQueue := map[string]bool{}
	for _, id := range waiting {
		inQueue[id] = true
	}
	for _, j := range live {
		if !inQueue[j.ID] && e.srv.queue.claimed(j.ID) == nil {
			cur, _ := e.st.Get(j.ID)
			if cur != nil && !cur.Status.Terminal() {
				t.Errorf("%s job %s is neither queued nor claimed", cur.Status, j.ID)
			}
		}
	}
	for _, j := range live {
		code, b := e.do("POST", "/job/"+j.ID+"/cancel", "")
		switch {
		case code == http.StatusOK:
			if got := decodeBody[job.Job](t, b); got.Status != job.Cancelled {
				t.Errorf("cancel of %s answered %s", j.ID, got.Status)
			}
		case code == http.StatusConflict && e.job(j.ID).Status == job.Completed:
			// A log job that ended between the listing and the cancel.
		default:
			t.Errorf("cancel of %s job %s: %d %s", j.Status, j.ID, code, b)
		}
	}
	waitFor(t, "the workers to let go of every job", func() bool { return e.srv.queue.busy() == 0 })
	if left, _ := e.st.List(store.Filter{Statuses: []job.Status{job.Pending, job.Running}}); len(left) != 0 {
		t.Errorf("%d jobs still live after cancelling them all", len(left))
	}
	if n := e.srv.queue.len(); n != 0 {
		t.Errorf("%d jobs still queued after cancelling them all", n)
	}
}
