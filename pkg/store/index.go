package store

import (
	"container/heap"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/journal"
)

// index is the store's in-memory view: every durable job and record, the
// counts by status, and the changes queued but not yet durable. It knows
// nothing of files; the commit path feeds it once changes are durable, the
// loader fills it at open, and queries read it.
type index struct {
	mu      sync.Mutex
	jobs    map[string]*entry
	records map[string][]byte
	counts  map[job.Status]int
	// live holds the ids of the pending and running jobs, by status: the
	// few that recovery and the workers list, found without a pass over
	// the whole history.
	live map[job.Status]map[string]struct{}
	// pending holds the newest queued change per job id, so a writer
	// checks against what will be durable, not only what already is.
	pending map[string]*change
	// applied is the journal offset up to which changes are in jobs and
	// records; a snapshot taken under mu covers the journal up to it.
	applied int64
	// journaled counts the changes in the journal, as verify reports it.
	journaled int
	dirty     bool // changed since the last snapshot
}

// change is one queued job put (e != nil) or delete (e == nil), or, when
// rec is set, a put or delete of the auxiliary record keyed id.
type change struct {
	id  string
	e   *entry
	rec *Record
}

func newIndex(jobs map[string]*entry, records map[string][]byte) *index {
	x := &index{jobs: jobs, records: records, pending: map[string]*change{}}
	x.recount()
	return x
}

// recount rebuilds the counts and the live sets from jobs.
func (x *index) recount() {
	x.counts = map[job.Status]int{}
	x.live = map[job.Status]map[string]struct{}{job.Pending: {}, job.Running: {}}
	for id, e := range x.jobs {
		x.counted(id, e, 1)
	}
}

// counted adds (n = 1) or removes (n = -1) the job from the counts and
// the live sets.
func (x *index) counted(id string, e *entry, n int) {
	x.counts[e.status] += n
	if set, ok := x.live[e.status]; ok {
		if n > 0 {
			set[id] = struct{}{}
		} else {
			delete(set, id)
		}
	}
}

// journalChange is the journal's form of a group of changes.
func journalChange(changes []*change) journal.Change {
	out := make(journal.Change, len(changes))
	for i, c := range changes {
		switch {
		case c.rec != nil && c.rec.Value == nil:
			out[i] = journal.Record{Kind: journal.DeleteRecord, Key: c.id}
		case c.rec != nil:
			out[i] = journal.Record{Kind: journal.PutRecord, Key: c.id, Value: c.rec.Value}
		case c.e != nil:
			out[i] = journal.Record{Kind: journal.PutJob, Key: c.id, Value: c.e.raw}
		default:
			out[i] = journal.Record{Kind: journal.DeleteJob, Key: c.id}
		}
	}
	return out
}

// lookupLocked returns the newest state of id, durable or queued.
func (x *index) lookupLocked(id string) (*entry, bool) {
	if c, ok := x.pending[id]; ok {
		return c.e, c.e != nil
	}
	e, ok := x.jobs[id]
	return e, ok
}

// queueLocked records changes as queued.
func (x *index) queueLocked(changes []*change) {
	for _, c := range changes {
		if c.rec == nil {
			x.pending[c.id] = c
		}
	}
}

// settleLocked makes queued changes visible once durable (ok), or forgets
// them when their write failed.
func (x *index) settleLocked(changes []*change, ok bool) {
	for _, c := range changes {
		if ok {
			x.applyLocked(c)
		}
		if c.rec == nil && x.pending[c.id] == c {
			delete(x.pending, c.id)
		}
	}
	if ok {
		x.dirty = true
		x.journaled++
	}
}

func (x *index) applyLocked(c *change) {
	switch {
	case c.rec != nil && c.rec.Value == nil:
		delete(x.records, c.id)
	case c.rec != nil:
		x.records[c.id] = c.rec.Value
	default:
		if old, ok := x.jobs[c.id]; ok {
			x.counted(c.id, old, -1)
		}
		if c.e == nil {
			delete(x.jobs, c.id)
			return
		}
		x.jobs[c.id] = c.e
		x.counted(c.id, c.e, 1)
	}
}

// replace swaps in a whole new state (a restore).
func (x *index) replace(jobs map[string]*entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.jobs = jobs
	x.recount()
	x.dirty = true
}

// relocate points the entries a snapshot wrote at their bytes in the new
// jobs.json, so that memory no longer holds them: those still current (a
// job changed since keeps its newer bytes) and not running (a running job
// is updated again soon). It works in batches, so writers wait for one
// batch at most.
func (x *index) relocate(items []keyed, p *placement) {
	if p.file == nil {
		return
	}
	const batch = 4096
	moved := make([]*entry, batch)
	for lo := 0; lo < len(items); lo += batch {
		hi := min(lo+batch, len(items))
		for i := lo; i < hi; i++ {
			moved[i-lo] = nil
			e := items[i].e
			if p.offs[i] >= 0 && e.liveJob() == nil {
				moved[i-lo] = e.inFile(p.file, p.offs[i], e.bodySize(), p.crcs[i])
			}
		}
		x.mu.Lock()
		for i := lo; i < hi; i++ {
			if m := moved[i-lo]; m != nil && x.jobs[items[i].id] == items[i].e {
				x.jobs[items[i].id] = m
			}
		}
		x.mu.Unlock()
	}
}

// view is a point-in-time copy of the durable state. Entries are immutable,
// so it stays consistent after mu is released.
type view struct {
	items     []keyed
	records   map[string][]byte
	applied   int64
	journaled int
}

func (x *index) view() view {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.viewLocked()
}

func (x *index) viewLocked() view {
	items := make([]keyed, 0, len(x.jobs))
	for id, e := range x.jobs {
		items = append(items, keyed{id, e})
	}
	return view{items: items, records: maps.Clone(x.records), applied: x.applied, journaled: x.journaled}
}

// get finds a job by id or unique id prefix.
func (x *index) get(idOrPrefix string) (string, *entry, error) {
	if idOrPrefix == "" {
		return "", nil, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if e, ok := x.jobs[idOrPrefix]; ok {
		return idOrPrefix, e, nil
	}
	var matches []string
	var found *entry
	for id, e := range x.jobs {
		if strings.HasPrefix(id, idOrPrefix) {
			matches = append(matches, id)
			found = e
		}
	}
	switch len(matches) {
	case 0:
		return "", nil, fmt.Errorf("%w: %s", ErrNotFound, idOrPrefix)
	case 1:
		return matches[0], found, nil
	}
	slices.Sort(matches)
	if len(matches) > 5 {
		matches = append(matches[:5], "…")
	}
	return "", nil, fmt.Errorf("%w: %q matches %s", ErrAmbiguous, idOrPrefix, strings.Join(matches, ", "))
}

// list selects and orders jobs for List.
func (x *index) list(f Filter) []keyed {
	since, ended := int64(0), int64(0)
	if !f.Since.IsZero() {
		since = f.Since.UnixNano()
	}
	if !f.EndedSince.IsZero() {
		ended = f.EndedSince.UnixNano()
	}
	// before reports whether a is listed before b.
	before := func(a, b keyed) bool {
		c := cmpInt(a.e.created, b.e.created)
		if c == 0 {
			c = strings.Compare(a.id, b.id)
		}
		if f.Oldest {
			return c < 0
		}
		return c > 0
	}
	// With a limit only the first Limit jobs are kept while scanning, in a
	// heap whose root is the last of them: a page of a large store costs
	// one pass over it, not a sort of all of it.
	worst := &pageHeap{before: before}
	var items []keyed
	x.mu.Lock()
	for id, e := range x.candidatesLocked(f.Statuses) {
		if (len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.status)) || (since != 0 && e.created < since) || (ended != 0 && (e.completed == 0 || e.completed < ended)) {
			continue
		}
		k := keyed{id, e}
		switch {
		case f.Limit <= 0:
			items = append(items, k)
		case len(worst.items) < f.Limit:
			heap.Push(worst, k)
		case before(k, worst.items[0]):
			worst.items[0] = k
			heap.Fix(worst, 0)
		}
	}
	x.mu.Unlock()
	if f.Limit > 0 {
		items = worst.items
	}
	slices.SortFunc(items, func(a, b keyed) int {
		switch {
		case a.id == b.id:
			return 0
		case before(a, b):
			return -1
		}
		return 1
	})
	return items
}

// candidatesLocked yields the jobs a listing of these statuses must look
// at: the live sets when only live statuses are asked for, else all.
func (x *index) candidatesLocked(statuses []job.Status) iter.Seq2[string, *entry] {
	for _, st := range statuses {
		if _, ok := x.live[st]; !ok {
			return maps.All(x.jobs)
		}
	}
	if len(statuses) == 0 {
		return maps.All(x.jobs)
	}
	return func(yield func(string, *entry) bool) {
		for i, st := range statuses {
			if slices.Contains(statuses[:i], st) {
				continue
			}
			for id := range x.live[st] {
				if !yield(id, x.jobs[id]) {
					return
				}
			}
		}
	}
}

// pageHeap keeps the jobs of a page with the one listed last at the root.
type pageHeap struct {
	items  []keyed
	before func(a, b keyed) bool
}

func (h *pageHeap) Len() int           { return len(h.items) }
func (h *pageHeap) Less(i, j int) bool { return h.before(h.items[j], h.items[i]) }
func (h *pageHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *pageHeap) Push(v any)         { h.items = append(h.items, v.(keyed)) }
func (h *pageHeap) Pop() any {
	v := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return v
}

// recordsWithPrefix returns the durable records whose keys start with
// prefix, sorted by key.
func (x *index) recordsWithPrefix(prefix string) []Record {
	x.mu.Lock()
	var out []Record
	for k, v := range x.records {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Record{Key: k, Value: v})
		}
	}
	x.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
