// Package storetest is the conformance suite of store.Store: what every
// driver (the file driver, store.FileStore; the PostgreSQL driver) must do,
// asserted through the store.Store interface only, and through
// store.Cluster for the drivers that implement it. A driver's own test
// calls Run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Driver{Open: open, Reopen: reopen})
//	}
//
// Every subtest gets a fresh, empty store and runs in parallel with the
// others, so a driver's Open must hand out stores that share nothing. The
// times the suite stores are UTC and whole microseconds, the precision of
// PostgreSQL's timestamps; jobs read back are compared by their JSON.
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// MaxJobBytes is the bound on one job's encoded size that Driver.Open must
// configure (store.Options.MaxJobBytes for the file driver), so that the
// suite can check that a larger job is refused while a large one below it
// is kept.
const MaxJobBytes = 1 << 20

// Driver is what the suite needs of a driver.
type Driver struct {
	// Open returns a new, empty store, configured with MaxJobBytes, and
	// registers its Close with t.Cleanup. Close must be harmless on a
	// store the test closed already. A Cluster driver's store has joined
	// the cluster as a node.
	Open func(t *testing.T) store.Store

	// Reopen, if set, ends old the way its process ending does — jobs it
	// holds running stay running — and returns a store over the same
	// data, as the next process opens it (registering its Close with
	// t.Cleanup). The suite then checks that every change survived and
	// recovers the jobs left running: with RescueDead when the new store
	// is a store.Cluster (so old's node must be dead to it by then, its
	// lease lapsed), else with Recover. The file driver closes old and
	// opens its directory again. When nil, those subtests are skipped.
	Reopen func(t *testing.T, old store.Store) store.Store

	// Peer, if set, returns another node over the same data as s (a
	// Cluster driver's second serve process), open at the same time as s,
	// for the subtests of what one node sees of another: a job claimed
	// once across nodes, Exclusive and ClaimRecord held by one node only.
	// When nil, those subtests are skipped.
	Peer func(t *testing.T, s store.Store) store.Store

	// Skip names subtests, by their path below Run (for example
	// "Close/Reads/Get"), that the driver is known to fail, with the
	// reason: each is skipped with its reason as the message, so that a
	// known fault is reported instead of hidden. An entry that names no
	// subtest fails the run.
	Skip map[string]string
}

// Run runs the conformance suite against d as parallel subtests of t.
func Run(t *testing.T, d Driver) {
	t.Helper()
	if d.Open == nil {
		t.Fatal("storetest.Run: Driver.Open is required")
	}
	s := &suite{d: d, root: t.Name()}
	t.Cleanup(func() {
		// A Skip entry that names no subtest hides nothing, and is most
		// likely a subtest renamed since; unless -run or -skip left
		// subtests out.
		if filtered("test.run") || filtered("test.skip") {
			return
		}
		for name := range d.Skip {
			if _, ok := s.skipped.Load(name); !ok && !t.Failed() {
				t.Errorf("Driver.Skip names %q, which is no subtest", name)
			}
		}
	})
	s.group(t, "Create", s.create)
	s.group(t, "Get", s.get)
	s.group(t, "List", s.list)
	s.group(t, "Update", s.update)
	s.group(t, "UpdateWith", s.updateWith)
	s.group(t, "Delete", s.delete)
	s.group(t, "Rerun", s.rerun)
	s.group(t, "RoundTrip", s.roundTrip)
	s.group(t, "Records", s.records)
	s.group(t, "Stats", s.stats)
	s.group(t, "Cleanup", s.cleanup)
	s.group(t, "BackupRestore", s.backupRestore)
	s.group(t, "Verify", s.verify)
	s.group(t, "Close", s.close)
	s.group(t, "Reopen", s.reopen)
	s.group(t, "Cluster", s.cluster)
}

// filtered reports whether the go test flag name is set.
func filtered(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != ""
}

type suite struct {
	d       Driver
	root    string
	skipped sync.Map // the names in d.Skip of the subtests skipped
}

// skip skips t when the driver lists it in Skip.
func (s *suite) skip(t *testing.T) {
	t.Helper()
	name := strings.TrimPrefix(t.Name(), s.root+"/")
	if why, ok := s.d.Skip[name]; ok {
		s.skipped.Store(name, true)
		t.Skip(why)
	}
}

// group runs the subtests that add adds under one name.
func (s *suite) group(t *testing.T, name string, add func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		add(t)
	})
}

// run runs one parallel subtest, unless the driver lists it in Skip.
func (s *suite) run(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		s.skip(t)
		t.Parallel()
		fn(t)
	})
}

// check runs one subtest of a parallel subtest, in turn with its
// siblings, unless the driver lists it in Skip.
func (s *suite) check(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		s.skip(t)
		fn(t)
	})
}

// open returns a fresh store from the driver.
func (s *suite) open(t *testing.T) store.Store {
	t.Helper()
	st := s.d.Open(t)
	if st == nil {
		t.Fatal("Driver.Open returned no store")
	}
	return st
}

// now is the current time as every driver keeps it: UTC, to the
// microsecond (PostgreSQL's timestamp precision).
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// at is a moment in a fixed past, d after 2025-01-01.
func at(d time.Duration) time.Time {
	return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(d)
}

const day = 24 * time.Hour

// newJob is a pending job as a submission makes it.
func newJob(name string) *job.Job {
	return &job.Job{
		Playbook: []job.Step{
			{Name: "greet", Action: "log", Params: map[string]any{"message": "hello {{.context.who}}"}},
			{Name: "wait", Action: "sleep", Params: map[string]any{"duration": "1s"}, Timeout: "5s", ContinueOnError: true},
		},
		Context: map[string]any{"who": name, "n": 3.0, "tags": []any{"a", "b"}},
	}
}

// ended is a job that already ended with status st, created at created and
// ended at completed, as a restore or an import stores it.
func ended(st job.Status, created, completed time.Time) *job.Job {
	j := newJob(string(st))
	j.Status = st
	j.CreatedAt = created
	started := created.Add(time.Second)
	if st != job.Cancelled {
		j.StartedAt = &started
	}
	j.CompletedAt = &completed
	switch st {
	case job.Failed:
		j.Error = "step greet failed"
	case job.Cancelled:
		j.Error = "cancelled by the operator"
	}
	j.Results = []job.Result{}
	return j
}

func mustCreate(t *testing.T, st store.Store, j *job.Job) *job.Job {
	t.Helper()
	got, err := st.Create(j)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return got
}

func mustGet(t *testing.T, st store.Store, id string) *job.Job {
	t.Helper()
	got, err := st.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

func mustList(t *testing.T, st store.Store, f store.Filter) []*job.Job {
	t.Helper()
	got, err := st.List(f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return got
}

// start moves a pending job to running, as a worker does.
func start(t *testing.T, st store.Store, id string) *job.Job {
	t.Helper()
	j, err := st.Update(id, func(j *job.Job) error { return j.Start(now()) })
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return j
}

// finish ends a job with status to.
func finish(t *testing.T, st store.Store, id string, to job.Status, msg string) *job.Job {
	t.Helper()
	j, err := st.Update(id, func(j *job.Job) error { return j.Finish(to, msg, now()) })
	if err != nil {
		t.Fatalf("finish %s as %s: %v", id, to, err)
	}
	return j
}

// result is an ok step result named step.
func result(step string, output any) job.Result {
	t0 := now()
	t1 := t0.Add(time.Millisecond)
	return job.Result{Step: step, Action: "log", Status: job.StepOK, Output: output, StartedAt: t0, CompletedAt: &t1}
}

// jsonOf is v's JSON, the form in which jobs are compared: a job read back
// must be the job stored, to the byte of its JSON.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

// sameJob fails unless got's JSON is want's.
func sameJob(t *testing.T, what string, got, want *job.Job) {
	t.Helper()
	if g, w := jsonOf(t, got), jsonOf(t, want); g != w {
		t.Fatalf("%s: the job differs\n got: %s\nwant: %s", what, clip(g), clip(w))
	}
}

// sameJobs fails unless got and want hold the same jobs in the same order.
func sameJobs(t *testing.T, what string, got, want []*job.Job) {
	t.Helper()
	if g, w := ids(got), ids(want); strings.Join(g, ",") != strings.Join(w, ",") {
		t.Fatalf("%s: got jobs\n%v\nwant\n%v", what, g, w)
	}
	for i := range got {
		sameJob(t, what, got[i], want[i])
	}
}

func ids(js []*job.Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + " … " + s[len(s)-1000:]
	}
	return s
}

// sameValue reports whether two JSON documents hold the same value, whatever
// their spacing and key order.
func sameValue(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// isErr fails unless err matches target.
func isErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}
