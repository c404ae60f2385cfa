package server

import (
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// A daemon's live heap grows with the jobs it indexes (a settled job's
// bytes stay in jobs.json) and with those changed since the last snapshot
// (whose bytes it keeps until they are there). Go's default pacing
// (GOGC=100) lets the heap grow to twice the live heap before collecting.
// For a store of a few hundred megabytes that doubling is what the heap is
// made of, and the daemon collects sooner: the heap may exceed the live
// heap by gcHeadroom, or by half the store's size on disk where that is
// more, never by less than gcMinPercent of it (below that, collections
// would come so often that they cost more than they save). With ten
// million jobs the index alone is gigabytes of pointers, and collecting
// it every few hundred megabytes allocated would leave the daemon little
// else to do. An operator's GOGC or GOMEMLIMIT is left alone.
const (
	gcHeadroom   = 384 << 20
	gcMinPercent = 10
	gcEvery      = 5 * time.Second
)

// gcPercentFor is the GOGC for a live heap of about live bytes and a store
// of store bytes on disk: the default while the headroom it gives is
// small, lower as the heap grows.
func gcPercentFor(live, store int64) int {
	if live <= 0 {
		return 100
	}
	p := int(max(gcHeadroom, store/2) * 100 / live)
	return max(gcMinPercent, min(100, p))
}

// paceGC sets the collector's pace from the live heap now and every
// gcEvery until stop is closed, unless the environment sets it.
func (s *Server) paceGC(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	last := 0
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		rtmetrics.Read(sample)
		live := int64(0)
		if sample[0].Value.Kind() == rtmetrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		var size int64
		if s.cluster == nil {
			// A shared store keeps its jobs in the database: its size
			// is no part of this heap, and reading it costs a count.
			st := s.st.Stats()
			size = st.SnapshotBytes + st.JournalBytes
		}
		if p := gcPercentFor(live, size); p != last {
			debug.SetGCPercent(p)
			if last != 0 || p != 100 {
				s.log.Debug("garbage collector paced to the live heap", "gogc", p, "live_bytes", live, "store_bytes", size)
			}
			last = p
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
