package store

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// A daemon opening a large store need not read every job's bytes before it
// serves. With Options.CheckInBackground and a jobs.json.sum that records
// where each job is, the index is built from the sum file alone (as
// Bitcask builds its key directory from hint files); the bytes of the jobs
// recovery acts on — pending and running ones, few — are checked at once,
// and those of settled jobs by a scrub that reads jobs.json through once
// the store serves. A settled job found rotted is taken from the newest
// verified backup that holds it, through the journal as any change, or
// reported lost, as opening does (SPEC §5 step 2); until then reading it is
// an error, never a wrong job.

// indexFromSums builds the index of jobs.json (sf, of size bytes) from
// sums. Jobs whose bytes recovery may read now are checked against their
// sums; the others are left to the scrub, and returned in file order for
// it.
func indexFromSums(sf *snapFile, size int64, sums *jobSums) (map[string]*entry, []jobProblem, []keyed) {
	pieces := max(1, min(len(sums.list)/4096, 64))
	out := make([][]parsedJob, pieces)
	chunk := (len(sums.list) + pieces - 1) / pieces
	forEachParallel(pieces, func(p int) {
		lo, hi := p*chunk, min((p+1)*chunk, len(sums.list))
		for i := lo; i < hi; i++ {
			out[p] = append(out[p], indexSum(sf, size, &sums.list[i]))
		}
	})
	order := make([]keyed, 0, len(sums.list))
	jobs, problems := collectParsed(out, len(sums.list), func(k keyed) {
		if k.e.status.Terminal() {
			order = append(order, k)
		}
	})
	return jobs, problems, order
}

func indexSum(sf *snapFile, size int64, js *jobSum) parsedJob {
	id := string(js.id)
	switch {
	case js.off < 0:
		return parsedJob{id: id, err: fmt.Errorf("left out of %s when it was written: %w", SnapshotFile, errJobRotted)}
	case js.off+int64(js.size) > size:
		return parsedJob{id: id, err: fmt.Errorf("recorded past the end of %s", SnapshotFile)}
	}
	e := &entry{status: js.status, created: js.created, completed: js.completed, snap: sf, off: js.off, size: js.size, crc: js.crc}
	if js.keyID != "" {
		e.extra().keyID = js.keyID
	}
	if !js.status.Terminal() {
		if _, err := e.bytes(); err != nil {
			return parsedJob{id: id, err: errJobRotted}
		}
	}
	return parsedJob{id: id, e: e}
}

// scrubRate bounds how fast the scrub reads jobs.json, in bytes a second.
const scrubRate = 128 << 20

// scrub checks the bytes of the settled jobs Open indexed without reading
// them, given in file order, and mends the rotted ones. It stops early
// when the store closes.
func (s *FileStore) scrub(items []keyed) {
	defer s.wg.Done()
	start := time.Now()
	var cur snapCursor
	var rotted []keyed
	var read int64
	for i, it := range items {
		if i%1024 == 0 {
			// Paced, so that serving keeps the disk it needs.
			ahead := time.Duration(float64(read)/scrubRate*float64(time.Second)) - time.Since(start)
			select {
			case <-s.stop:
				return
			case <-time.After(max(ahead, 0)):
			}
		}
		if _, err := cur.bytes(it.e); err != nil {
			rotted = append(rotted, it)
		}
		read += int64(it.e.size)
	}
	s.opts.Logger.Debug("jobs checked against their sums", "jobs", len(items), "rotted", len(rotted), "took", time.Since(start).String())
	if len(rotted) > 0 {
		s.mend(rotted)
	}
}

// mend replaces each rotted job by its copy in the newest verified backup
// that holds it, unless the job changed since it was found rotted; the rest
// are reported lost.
func (s *FileStore) mend(rotted []keyed) {
	need := map[string]*entry{}
	for _, it := range rotted {
		need[it.id] = it.e
	}
	var restored, later []string
	from := ""
	paths, _ := backupPaths(s.files.fs, s.opts.Dir)
	for _, p := range paths {
		if len(need) == 0 {
			break
		}
		backup, _, err := readBackup(s.files.fs, p, true)
		if err != nil {
			s.opts.Logger.Warn("backup skipped", "file", p, "reason", err.Error())
			continue
		}
		for id, bad := range need {
			be, ok := backup[id]
			if !ok {
				continue
			}
			if !be.status.Terminal() {
				// Put back online, an unsettled job would wait for no
				// worker: the next start takes it, before recovery.
				later = append(later, id)
				delete(need, id)
				continue
			}
			raw, err := be.bytes()
			if err != nil {
				continue
			}
			ne := *be
			ne.raw, ne.snap = raw, nil
			err = s.commit([]*change{{id: id, e: &ne}}, func() error {
				if cur, _ := s.idx.lookupLocked(id); cur != bad {
					return errRetry
				}
				return nil
			})
			if err != nil && !errors.Is(err, errRetry) {
				s.opts.Logger.Error("a damaged job could not be replaced by its backup", "job_id", id, "err", err.Error())
				continue
			}
			delete(need, id)
			if err == nil {
				restored = append(restored, id)
				if from == "" {
					from = p
				}
			}
		}
	}
	lost := make([]string, 0, len(need))
	for id := range need {
		lost = append(lost, id)
	}
	slices.Sort(lost)
	slices.Sort(restored)
	slices.Sort(later)
	s.opts.Logger.Warn("damaged jobs in snapshot", "file", s.files.path(SnapshotFile), "jobs", len(rotted),
		"job_ids", firstN(slices.Concat(restored, later, lost), 20), "restored_from", from, "restored_jobs", len(restored),
		"at_next_start", firstN(later, 20), "lost_jobs", firstN(lost, 20))
}
