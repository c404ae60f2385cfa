package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// A limited listing keeps only a page while it scans; it must give the
// same jobs, in the same order, as sorting them all and cutting.
func TestListWithALimitIsTheHeadOfTheFullListing(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	jobs := map[string]*entry{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	statuses := []job.Status{job.Pending, job.Running, job.Completed, job.Failed}
	for i := range 3000 {
		// Few distinct times, so ties are ordered by id.
		created := base.Add(time.Duration(r.IntN(200)) * time.Second)
		jobs[fmt.Sprintf("%08x", r.Uint32())+fmt.Sprint(i)] = newEntry(nil, statuses[r.IntN(len(statuses))], created, nil)
	}
	x := newIndex(jobs, nil)
	ids := func(items []keyed) []string {
		out := make([]string, len(items))
		for i, k := range items {
			out[i] = k.id
		}
		return out
	}
	for _, f := range []Filter{{}, {Oldest: true}, {Statuses: []job.Status{job.Failed}}, {Since: base.Add(100 * time.Second)}} {
		all := ids(x.list(f))
		for _, limit := range []int{1, 7, 50, 2999, 5000} {
			lf := f
			lf.Limit = limit
			got, want := ids(x.list(lf)), all[:min(limit, len(all))]
			if !slices.Equal(got, want) {
				t.Fatalf("filter %+v limit %d: got %d jobs, first differs at %d", f, limit, len(got), firstDiff(got, want))
			}
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
