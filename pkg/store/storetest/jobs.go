package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// newID is a fresh UUIDv7, for jobs created with an id of their own.
func newID(t *testing.T) string {
	t.Helper()
	u, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

func (s *suite) create(t *testing.T) {
	s.run(t, "Defaults", func(t *testing.T) {
		st := s.open(t)
		before := time.Now().UTC().Add(-time.Second)
		got := mustCreate(t, st, &job.Job{})
		after := time.Now().UTC().Add(time.Second)
		u, err := uuid.Parse(got.ID)
		if err != nil || u.Version() != 7 {
			t.Fatalf("id %q is not a UUIDv7 (%v)", got.ID, err)
		}
		if got.Status != job.Pending {
			t.Fatalf("status %q, want pending", got.Status)
		}
		if got.CreatedAt.Before(before) || got.CreatedAt.After(after) || got.CreatedAt.Location() != time.UTC {
			t.Fatalf("created_at %v is not the current time in UTC", got.CreatedAt)
		}
		if got.Playbook == nil || got.Context == nil || got.Results == nil {
			t.Fatalf("playbook, context and results must be empty, not missing: %s", jsonOf(t, got))
		}
		if got.StartedAt != nil || got.CompletedAt != nil || got.Error != "" {
			t.Fatalf("a new job has no start, end or error: %s", jsonOf(t, got))
		}
		back := mustGet(t, st, got.ID)
		sameJob(t, "Get after Create", back, got)
		if !strings.Contains(jsonOf(t, back), `"playbook":[],"context":{},"results":[]`) {
			t.Fatalf("empty playbook, context and results read back as %s", jsonOf(t, back))
		}
	})

	s.run(t, "KeepsWhatIsGiven", func(t *testing.T) {
		st := s.open(t)
		in := newJob("given")
		in.ID = newID(t)
		in.CreatedAt = at(time.Hour)
		in.OnInterrupt = job.OnInterruptRetry
		in.MaxAttempts = 5
		want := *in
		got := mustCreate(t, st, in)
		want.Results = []job.Result{}
		want.Status = job.Pending
		sameJob(t, "Create's answer", got, &want)
		sameJob(t, "Get", mustGet(t, st, in.ID), &want)
	})

	s.run(t, "IDsTimeOrdered", func(t *testing.T) {
		st := s.open(t)
		var made []string
		for i := range 20 {
			made = append(made, mustCreate(t, st, newJob(fmt.Sprint(i))).ID)
		}
		if !slices.IsSorted(made) {
			t.Fatalf("ids of jobs created one after another are not in order: %v", made)
		}
		list := mustList(t, st, store.Filter{Oldest: true})
		if got := ids(list); !slices.Equal(got, made) {
			t.Fatalf("oldest-first listing %v, want the creation order %v", got, made)
		}
	})

	s.run(t, "Duplicate", func(t *testing.T) {
		st := s.open(t)
		first := newJob("first")
		first.ID = newID(t)
		orig := mustCreate(t, st, first)
		again := newJob("second")
		again.ID = first.ID
		_, err := st.Create(again)
		isErr(t, "Create with a stored id", err, store.ErrExists)
		sameJob(t, "the first job after a duplicate", mustGet(t, st, first.ID), orig)
		if n := len(mustList(t, st, store.Filter{})); n != 1 {
			t.Fatalf("%d jobs after a refused duplicate, want 1", n)
		}
	})

	s.run(t, "Invalid", func(t *testing.T) {
		st := s.open(t)
		bad := map[string]func(j *job.Job){
			"running without started_at": func(j *job.Job) { j.Status = job.Running },
			"unknown status":             func(j *job.Job) { j.Status = "paused" },
			"error on a pending job":     func(j *job.Job) { j.Error = "boom" },
			"duplicate step names":       func(j *job.Job) { j.Playbook[1].Name = j.Playbook[0].Name },
			"step without a name":        func(j *job.Job) { j.Playbook[0].Name = "" },
			"bad on_interrupt":           func(j *job.Job) { j.OnInterrupt = "maybe" },
			"negative attempts":          func(j *job.Job) { j.Attempts = -1 },
			"completed before created": func(j *job.Job) {
				j.Status, j.CreatedAt = job.Completed, at(day)
				s, c := at(0), at(time.Hour)
				j.StartedAt, j.CompletedAt = &s, &c
			},
		}
		for what, breakIt := range bad {
			j := newJob(what)
			breakIt(j)
			if _, err := st.Create(j); !errors.Is(err, job.ErrInvalid) {
				t.Errorf("Create of a job with %s: got %v, want job.ErrInvalid", what, err)
			}
		}
		if n := len(mustList(t, st, store.Filter{})); n != 0 {
			t.Fatalf("%d jobs stored from refused creates", n)
		}
	})

	s.run(t, "Limits", func(t *testing.T) {
		st := s.open(t)
		big := newJob("big")
		big.Context["blob"] = strings.Repeat("x", MaxJobBytes)
		_, err := st.Create(big)
		isErr(t, "Create of a job over MaxJobBytes", err, job.ErrLimit)
		deep := newJob("deep")
		deep.Context["deep"] = nested(job.MaxDepth)
		_, err = st.Create(deep)
		isErr(t, "Create of a job nested deeper than job.MaxDepth", err, job.ErrLimit)
		if n := len(mustList(t, st, store.Filter{})); n != 0 {
			t.Fatalf("%d jobs stored from refused creates", n)
		}
	})
}

// nested is a value n levels deep: n-1 objects around an array.
func nested(n int) any {
	var v any = []any{"bottom"}
	for i := 1; i < n; i++ {
		v = map[string]any{"d": v}
	}
	return v
}

func (s *suite) get(t *testing.T) {
	s.run(t, "IDAndPrefix", func(t *testing.T) {
		st := s.open(t)
		base := newID(t)[:34]
		made := map[string]*job.Job{}
		for _, tail := range []string{"00", "01", "10"} {
			j := newJob(tail)
			j.ID = base + tail
			made[tail] = mustCreate(t, st, j)
		}
		for tail, j := range made {
			sameJob(t, "Get by id", mustGet(t, st, base+tail), j)
		}
		sameJob(t, "Get by a unique prefix", mustGet(t, st, base+"1"), made["10"])
		got, err := st.Get(base + "0")
		if !errors.Is(err, store.ErrAmbiguous) {
			t.Fatalf("Get of a prefix of two ids: %v, %v; want store.ErrAmbiguous", got, err)
		}
		_, err = st.Get(base)
		isErr(t, "Get of a prefix of three ids", err, store.ErrAmbiguous)
		for _, missing := range []string{base + "11", base + "2", newID(t), "ffffffff", "nope", ""} {
			if got, err := st.Get(missing); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q): %v, %v; want store.ErrNotFound", missing, got, err)
			}
		}
	})

	s.run(t, "Copies", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("copy"))
		want := jsonOf(t, j)
		got := mustGet(t, st, j.ID)
		got.Context["who"] = "changed"
		got.Playbook[0].Params["message"] = "changed"
		j.Context["who"] = "changed too"
		if again := jsonOf(t, mustGet(t, st, j.ID)); again != want {
			t.Fatalf("changing a job the store returned changed the stored job:\n got: %s\nwant: %s", again, want)
		}
	})
}

func (s *suite) list(t *testing.T) {
	// setup stores jobs of each status at known creation times, two of them
	// created at the same moment, and returns them oldest first.
	setup := func(t *testing.T) (store.Store, []*job.Job) {
		st := s.open(t)
		specs := []struct {
			st      job.Status
			created time.Duration
		}{
			{job.Completed, 0}, {job.Pending, time.Hour}, {job.Failed, 2 * time.Hour},
			{job.Pending, 3 * time.Hour}, {job.Cancelled, 3 * time.Hour}, {job.Running, 4 * time.Hour},
			{job.Completed, 5 * time.Hour},
		}
		var out []*job.Job
		for _, sp := range specs {
			var j *job.Job
			switch sp.st {
			case job.Pending, job.Running:
				j = newJob(string(sp.st))
				j.CreatedAt = at(sp.created)
				if sp.st == job.Running {
					t0 := at(sp.created + time.Minute)
					j.Status, j.StartedAt, j.Attempts = job.Running, &t0, 1
				}
			default:
				j = ended(sp.st, at(sp.created), at(sp.created+time.Minute))
			}
			out = append(out, mustCreate(t, st, j))
		}
		// Oldest first: by creation time, then id.
		slices.SortStableFunc(out, func(a, b *job.Job) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		return st, out
	}

	s.run(t, "Order", func(t *testing.T) {
		st, oldest := setup(t)
		newest := slices.Clone(oldest)
		slices.Reverse(newest)
		sameJobs(t, "List, newest first", mustList(t, st, store.Filter{}), newest)
		sameJobs(t, "List, oldest first", mustList(t, st, store.Filter{Oldest: true}), oldest)
	})

	s.run(t, "Filter", func(t *testing.T) {
		st, oldest := setup(t)
		newest := slices.Clone(oldest)
		slices.Reverse(newest)
		where := func(js []*job.Job, keep func(*job.Job) bool) []*job.Job {
			var out []*job.Job
			for _, j := range js {
				if keep(j) {
					out = append(out, j)
				}
			}
			return out
		}
		live := []job.Status{job.Pending, job.Running}
		since := at(3 * time.Hour)
		var endedSince time.Time
		for _, j := range oldest {
			if j.CompletedAt != nil && (endedSince.IsZero() || j.CompletedAt.After(endedSince)) {
				endedSince = *j.CompletedAt
			}
		}
		if endedSince.IsZero() {
			t.Fatal("the fixture has no ended job to filter by")
		}
		cases := []struct {
			name string
			f    store.Filter
			want []*job.Job
		}{
			{"one status", store.Filter{Statuses: []job.Status{job.Completed}},
				where(newest, func(j *job.Job) bool { return j.Status == job.Completed })},
			{"two statuses", store.Filter{Statuses: live},
				where(newest, func(j *job.Job) bool { return j.Status == job.Pending || j.Status == job.Running })},
			{"since, inclusive", store.Filter{Since: since},
				where(newest, func(j *job.Job) bool { return !j.CreatedAt.Before(since) })},
			{"limit", store.Filter{Limit: 3}, newest[:3]},
			{"limit, oldest", store.Filter{Limit: 3, Oldest: true}, oldest[:3]},
			{"limit above the count", store.Filter{Limit: 100}, newest},
			{"everything at once", store.Filter{Statuses: live, Since: since, Limit: 1},
				where(newest, func(j *job.Job) bool { return j.Status == job.Running })},
			{"nothing matches", store.Filter{Statuses: []job.Status{job.Failed}, Since: at(3 * time.Hour)}, nil},
			{"ended since, inclusive", store.Filter{EndedSince: endedSince},
				where(newest, func(j *job.Job) bool { return j.CompletedAt != nil && !j.CompletedAt.Before(endedSince) })},
		}
		for _, c := range cases {
			sameJobs(t, "List with "+c.name, mustList(t, st, c.f), c.want)
		}
	})

	s.run(t, "Empty", func(t *testing.T) {
		st := s.open(t)
		if got := mustList(t, st, store.Filter{}); len(got) != 0 {
			t.Fatalf("a new store lists %v", ids(got))
		}
	})
}

func (s *suite) update(t *testing.T) {
	s.run(t, "Lifecycle", func(t *testing.T) {
		st := s.open(t)
		for _, to := range []job.Status{job.Completed, job.Failed, job.Cancelled} {
			j := mustCreate(t, st, newJob(string(to)))
			r := start(t, st, j.ID)
			if r.Status != job.Running || r.StartedAt == nil || r.Attempts != 1 {
				t.Fatalf("started job: %s", jsonOf(t, r))
			}
			sameJob(t, "Get after start", mustGet(t, st, j.ID), r)
			e := finish(t, st, j.ID, to, "it ended")
			if e.Status != to || e.CompletedAt == nil {
				t.Fatalf("ended job: %s", jsonOf(t, e))
			}
			sameJob(t, "Get after the end", mustGet(t, st, j.ID), e)
		}
		p := mustCreate(t, st, newJob("cancel"))
		c := finish(t, st, p.ID, job.Cancelled, "cancelled before it ran")
		if c.StartedAt != nil || c.Error != "cancelled before it ran" {
			t.Fatalf("pending → cancelled: %s", jsonOf(t, c))
		}
		sameJob(t, "Get after cancel", mustGet(t, st, p.ID), c)
	})

	s.run(t, "ForbiddenTransitions", func(t *testing.T) {
		st := s.open(t)
		p := mustCreate(t, st, newJob("pending"))
		_, err := st.Update(p.ID, func(j *job.Job) error {
			t0, t1 := now(), now().Add(time.Second)
			j.Status, j.StartedAt, j.CompletedAt = job.Completed, &t0, &t1
			return nil
		})
		isErr(t, "pending → completed", err, job.ErrTransition)
		sameJob(t, "the job after a refused transition", mustGet(t, st, p.ID), p)

		for _, to := range []job.Status{job.Completed, job.Failed, job.Cancelled} {
			j := mustCreate(t, st, newJob(string(to)))
			start(t, st, j.ID)
			done := finish(t, st, j.ID, to, "ended")
			edits := map[string]func(*job.Job) error{
				"context": func(j *job.Job) error { j.Context["late"] = true; return nil },
				"results": func(j *job.Job) error { j.Results = append(j.Results, result("late", "x")); return nil },
				"requeue": func(j *job.Job) error {
					j.Status, j.StartedAt, j.CompletedAt, j.Error = job.Pending, nil, nil, ""
					return nil
				},
				"restart": func(j *job.Job) error {
					t0 := now()
					j.Status, j.StartedAt, j.CompletedAt, j.Error = job.Running, &t0, nil, ""
					return nil
				},
			}
			for what, edit := range edits {
				_, err := st.Update(j.ID, edit)
				isErr(t, fmt.Sprintf("changing the %s of a %s job", what, to), err, job.ErrTransition)
			}
			sameJob(t, "a terminal job after refused changes", mustGet(t, st, j.ID), done)
		}
	})

	s.run(t, "IDCannotChange", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("id"))
		other := newID(t)
		if _, err := st.Update(j.ID, func(j *job.Job) error { j.ID = other; return nil }); err == nil {
			t.Fatal("Update changed a job's id")
		}
		sameJob(t, "the job after a refused id change", mustGet(t, st, j.ID), j)
		_, err := st.Get(other)
		isErr(t, "Get of the id an Update tried to set", err, store.ErrNotFound)
	})

	s.run(t, "Errors", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("err"))
		boom := errors.New("boom")
		_, err := st.Update(j.ID, func(j *job.Job) error { j.Context["half"] = "done"; return boom })
		isErr(t, "Update whose fn fails", err, boom)
		sameJob(t, "the job after a failed fn", mustGet(t, st, j.ID), j)

		_, err = st.Update(j.ID, func(j *job.Job) error { j.Playbook[0].Name = ""; return nil })
		isErr(t, "Update breaking the schema", err, job.ErrInvalid)
		_, err = st.Update(j.ID, func(j *job.Job) error {
			j.Context["blob"] = strings.Repeat("y", MaxJobBytes)
			return nil
		})
		isErr(t, "Update over MaxJobBytes", err, job.ErrLimit)
		sameJob(t, "the job after refused updates", mustGet(t, st, j.ID), j)

		_, err = st.Update(newID(t), func(*job.Job) error { return nil })
		isErr(t, "Update of a missing job", err, store.ErrNotFound)
	})

	s.run(t, "Concurrent", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("busy"))
		start(t, st, j.ID)
		const n = 32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		// Each fn's first call waits (a little while, for drivers that
		// lock the job meanwhile) for every other's: they all edit the
		// same state then, and every update but one must be made again
		// from the newer state.
		var entered atomic.Int32
		together := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				first := true
				_, err := st.Update(j.ID, func(j *job.Job) error {
					if first {
						first = false
						if entered.Add(1) == n {
							close(together)
						}
						select {
						case <-together:
						case <-time.After(200 * time.Millisecond):
						}
					}
					j.Results = append(j.Results, result(fmt.Sprintf("step-%02d", i), float64(i)))
					return nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Update: %v", err)
			}
		}
		got := mustGet(t, st, j.ID)
		var steps []string
		for _, r := range got.Results {
			steps = append(steps, r.Step)
		}
		slices.Sort(steps)
		if len(steps) != n || len(slices.Compact(slices.Clone(steps))) != n {
			t.Fatalf("%d concurrent updates each adding a result left %d: %v", n, len(steps), steps)
		}
	})
}

func (s *suite) updateWith(t *testing.T) {
	s.run(t, "RecordsWithTheJob", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("with"))
		start(t, st, j.ID)
		got, err := st.UpdateWith(j.ID,
			func(j *job.Job) error { return j.Finish(job.Completed, "", now()) },
			func(j *job.Job) []store.Record {
				return []store.Record{{Key: "outbox/" + j.ID, Value: []byte(`{"status":"` + string(j.Status) + `"}`)}}
			})
		if err != nil {
			t.Fatalf("UpdateWith: %v", err)
		}
		if got.Status != job.Completed {
			t.Fatalf("UpdateWith answered %s", got.Status)
		}
		sameJob(t, "Get after UpdateWith", mustGet(t, st, j.ID), got)
		recs := st.Records("outbox/")
		if len(recs) != 1 || recs[0].Key != "outbox/"+j.ID || !sameValue(recs[0].Value, []byte(`{"status":"completed"}`)) {
			t.Fatalf("records after UpdateWith: %s; want the one also made from the updated job", showRecords(recs))
		}
	})

	s.run(t, "Neither", func(t *testing.T) {
		st := s.open(t)
		j := mustCreate(t, st, newJob("neither"))
		boom := errors.New("boom")
		rec := func(*job.Job) []store.Record {
			return []store.Record{{Key: "outbox/x", Value: []byte(`1`)}}
		}
		_, err := st.UpdateWith(j.ID, func(j *job.Job) error { j.Context["x"] = 1.0; return boom }, rec)
		isErr(t, "UpdateWith whose fn fails", err, boom)
		_, err = st.UpdateWith(j.ID, func(j *job.Job) error { j.Error = "not failed"; return nil }, rec)
		isErr(t, "UpdateWith breaking the schema", err, job.ErrInvalid)
		_, err = st.UpdateWith(j.ID, func(j *job.Job) error { j.Context["x"] = 1.0; return nil },
			func(*job.Job) []store.Record { return []store.Record{{Key: "outbox/y", Value: []byte(`{not json`)}} })
		if err == nil {
			t.Fatal("UpdateWith stored a record that is not JSON")
		}
		sameJob(t, "the job after failed UpdateWiths", mustGet(t, st, j.ID), j)
		if recs := st.Records(""); len(recs) != 0 {
			t.Fatalf("failed UpdateWiths stored records: %s", showRecords(recs))
		}
	})
}

func (s *suite) delete(t *testing.T) {
	s.run(t, "Gone", func(t *testing.T) {
		st := s.open(t)
		keep := mustCreate(t, st, newJob("keep"))
		gone := mustCreate(t, st, newJob("gone"))
		running := mustCreate(t, st, newJob("running"))
		start(t, st, running.ID)
		for _, id := range []string{gone.ID, running.ID} {
			if err := st.Delete(id); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			_, err := st.Get(id)
			isErr(t, "Get after Delete", err, store.ErrNotFound)
			isErr(t, "Delete again", st.Delete(id), store.ErrNotFound)
			_, err = st.Update(id, func(*job.Job) error { return nil })
			isErr(t, "Update after Delete", err, store.ErrNotFound)
		}
		sameJobs(t, "List after Delete", mustList(t, st, store.Filter{}), []*job.Job{keep})
		isErr(t, "Delete of a job never stored", st.Delete(newID(t)), store.ErrNotFound)
	})

	s.run(t, "IDReusable", func(t *testing.T) {
		st := s.open(t)
		j := newJob("again")
		j.ID = newID(t)
		mustCreate(t, st, j)
		if err := st.Delete(j.ID); err != nil {
			t.Fatal(err)
		}
		again := newJob("second life")
		again.ID = j.ID
		got := mustCreate(t, st, again)
		sameJob(t, "a job created again under a deleted id", mustGet(t, st, j.ID), got)
	})
}

func rerunOf(o *job.Job) (*job.Job, error) { return o.Rerun(), nil }

func (s *suite) rerun(t *testing.T) {
	s.run(t, "Linked", func(t *testing.T) {
		st := s.open(t)
		orig := mustCreate(t, st, newJob("orig"))
		start(t, st, orig.ID)
		if _, err := st.Update(orig.ID, func(j *job.Job) error {
			j.Context["set_by_a_step"] = "x"
			j.Results = append(j.Results, result("greet", "hello"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		done := finish(t, st, orig.ID, job.Failed, "step wait failed")

		next, err := st.Rerun(orig.ID[:30], rerunOf)
		if err != nil {
			t.Fatalf("Rerun: %v", err)
		}
		if next.ID == orig.ID || next.RerunOf != orig.ID || next.Status != job.Pending || len(next.Results) != 0 {
			t.Fatalf("the rerun: %s", jsonOf(t, next))
		}
		if next.Context["set_by_a_step"] != nil || next.Context["who"] != "orig" {
			t.Fatalf("the rerun's context is not the submitted one: %v", next.Context)
		}
		sameJob(t, "Get of the rerun", mustGet(t, st, next.ID), next)
		second, err := st.Rerun(orig.ID, rerunOf)
		if err != nil {
			t.Fatal(err)
		}
		linked := mustGet(t, st, orig.ID)
		if !slices.Equal(linked.Reruns, []string{next.ID, second.ID}) {
			t.Fatalf("the original's reruns are %v, want %v", linked.Reruns, []string{next.ID, second.ID})
		}
		linked.Reruns = nil
		sameJob(t, "the original besides its reruns", linked, done)
		if n := len(mustList(t, st, store.Filter{})); n != 3 {
			t.Fatalf("%d jobs after two reruns, want 3", n)
		}
	})

	s.run(t, "Refused", func(t *testing.T) {
		st := s.open(t)
		orig := mustCreate(t, st, newJob("orig"))
		boom := errors.New("boom")
		_, err := st.Rerun(orig.ID, func(*job.Job) (*job.Job, error) { return nil, boom })
		isErr(t, "Rerun whose next fails", err, boom)
		_, err = st.Rerun(orig.ID, func(o *job.Job) (*job.Job, error) {
			n := o.Rerun()
			n.Playbook = append(n.Playbook, n.Playbook[0])
			return n, nil
		})
		isErr(t, "Rerun of an invalid job", err, job.ErrInvalid)
		_, err = st.Rerun(newID(t), rerunOf)
		isErr(t, "Rerun of a missing job", err, store.ErrNotFound)
		sameJobs(t, "List after refused reruns", mustList(t, st, store.Filter{}), []*job.Job{orig})
	})

	s.run(t, "OneChange", func(t *testing.T) {
		st := s.open(t)
		orig := mustCreate(t, st, newJob("orig"))
		start(t, st, orig.ID)
		const n = 16
		stop := make(chan struct{})
		problems := make(chan string, 1)
		report := func(p string) {
			select {
			case problems <- p:
			default:
			}
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Every link the original holds names a stored job.
				o, err := st.Get(orig.ID)
				if err != nil {
					report(err.Error())
					return
				}
				for _, id := range o.Reruns {
					if _, err := st.Get(id); err != nil {
						report(fmt.Sprintf("the original links %s, which is not stored yet: %v", id, err))
					}
				}
				// Every rerun stored is linked from the original.
				js, err := st.List(store.Filter{})
				if err != nil {
					report(err.Error())
					return
				}
				o, _ = st.Get(orig.ID)
				for _, j := range js {
					if j.RerunOf == orig.ID && !slices.Contains(o.Reruns, j.ID) {
						report(fmt.Sprintf("rerun %s is stored but the original does not link it", j.ID))
					}
				}
			}
		})
		var made []string
		for range n {
			next, err := st.Rerun(orig.ID, rerunOf)
			if err != nil {
				t.Fatalf("Rerun: %v", err)
			}
			made = append(made, next.ID)
		}
		close(stop)
		wg.Wait()
		select {
		case p := <-problems:
			t.Fatal(p)
		default:
		}
		if got := mustGet(t, st, orig.ID).Reruns; !slices.Equal(got, made) {
			t.Fatalf("the original's reruns %v, want %v", got, made)
		}
	})
}

func (s *suite) roundTrip(t *testing.T) {
	s.run(t, "Exact", func(t *testing.T) {
		st := s.open(t)
		in := newJob("ünïcødé ✓ 日本語 🔥")
		in.ID = newID(t)
		in.CreatedAt = now()
		in.Context = map[string]any{
			"emoji":        "🛡️ threat 🚨 \U0001F9EA",
			"rtl":          "مرحبا שלום",
			"combining":    "e\u0301 a\u030a",
			"separators":   "line\u2028para\u2029end",
			"controls":     "nul\x00 bell\x07 esc\x1b tab\t nl\n cr\r quote\" backslash\\ </script>",
			"html":         "<a href=\"x\">&amp;</a>",
			"numbers":      []any{0.0, -1.0, 1.5, 1e300, -2.5e-300, 9007199254740991.0},
			"bools":        []any{true, false, nil},
			"empty":        map[string]any{"o": map[string]any{}, "a": []any{}, "s": ""},
			"deep":         nested(job.MaxValueDepth),
			"large":        strings.Repeat("ä→𝄞", 60_000),
			"clé spéciale": map[string]any{"ключ": "значение", "": "empty key"},
		}
		t0 := in.CreatedAt.Add(time.Second)
		in.Status, in.StartedAt, in.Attempts = job.Running, &t0, 1
		in.SubmittedContext = map[string]any{"emoji": "🛡️"}
		in.Results = []job.Result{result("greet", map[string]any{"body": map[string]any{"ok": true, "list": []any{1.0, "二"}}, "status": 200.0})}
		want := jsonOf(t, in)
		got := mustCreate(t, st, in)
		if g := jsonOf(t, got); g != want {
			t.Fatalf("Create answered a different job\n got: %s\nwant: %s", clip(g), clip(want))
		}
		if g := jsonOf(t, mustGet(t, st, in.ID)); g != want {
			t.Fatalf("the job read back differs\n got: %s\nwant: %s", clip(g), clip(want))
		}
		// Through an update too.
		upd, err := st.Update(in.ID, func(j *job.Job) error {
			j.Context["added"] = "ok ✓"
			return nil
		})
		if err != nil {
			t.Fatalf("Update of a large job: %v", err)
		}
		sameJob(t, "Get after Update of a large job", mustGet(t, st, in.ID), upd)
		listed := mustList(t, st, store.Filter{})
		if len(listed) != 1 {
			t.Fatalf("List: %d jobs", len(listed))
		}
		sameJob(t, "List of a large job", listed[0], upd)
	})
}
