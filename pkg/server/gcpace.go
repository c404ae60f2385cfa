package server

import (
	"os"
	"runtime/debug"
	"time"
)

// The file driver keeps every job's encoded bytes in memory, so the live
// heap of a daemon with a long history is about the size of jobs.json.
// Go's default pacing (GOGC=100) lets the heap grow to twice the live
// heap before collecting, which for a 1.4 GB history is 1.4 GB of memory
// that holds nothing. The daemon therefore collects sooner as the history
// grows: the heap may exceed the live data by about gcHeadroom, never by
// less than gcMinPercent of it (below that, collections would come so
// often that they cost more than they save). An operator's GOGC or
// GOMEMLIMIT is left alone.
const (
	gcHeadroom   = 384 << 20
	gcMinPercent = 10
	gcEvery      = 30 * time.Second
)

// gcPercentFor is the GOGC for a live heap of about live bytes: the
// default while the headroom it gives is small, lower as the heap grows.
func gcPercentFor(live int64) int {
	if live <= 0 {
		return 100
	}
	p := int(gcHeadroom * 100 / live)
	return max(gcMinPercent, min(100, p))
}

// paceGC sets the collector's pace from the store's size now and every
// gcEvery until stop is closed, unless the environment sets it.
func (s *Server) paceGC(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if s.cluster != nil {
		// A shared store keeps its jobs in the database, not in this
		// process; reading its size would only cost a count.
		return
	}
	last := 0
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		st := s.st.Stats()
		if p := gcPercentFor(st.SnapshotBytes + st.JournalBytes); p != last {
			debug.SetGCPercent(p)
			if last != 0 || p != 100 {
				s.log.Debug("garbage collector paced to the store's size", "gogc", p, "store_bytes", st.SnapshotBytes+st.JournalBytes)
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
