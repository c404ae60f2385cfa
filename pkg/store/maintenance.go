package store

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// Cleanup deletes terminal jobs that completed longer ago than their
// retention. Pending and running jobs are never touched. With DryRun it
// only reports what it would delete.
func (s *Store) Cleanup(o CleanupOptions) (*CleanupResult, error) {
	now := o.Now
	if now.IsZero() {
		now = s.opts.Now()
	}
	cutoff := func(st job.Status) int64 {
		r, ok := o.ByStatus[st]
		if !ok {
			r = o.Retention
		}
		return now.Add(-r).UnixNano()
	}
	cut := map[job.Status]int64{}
	for _, st := range job.Statuses {
		if st.Terminal() {
			cut[st] = cutoff(st)
		}
	}
	s.mu.Lock()
	var ids []string
	for id, e := range s.jobs {
		limit, ok := cut[e.status]
		if !ok {
			continue
		}
		when := e.completed
		if when == 0 {
			when = e.created
		}
		if when < limit {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	slices.Sort(ids)
	res := &CleanupResult{Deleted: len(ids), DryRun: o.DryRun, IDs: ids}
	if ids == nil {
		res.IDs = []string{}
	}
	if o.DryRun || len(ids) == 0 {
		return res, nil
	}
	changes := make([]*change, len(ids))
	for i, id := range ids {
		changes[i] = &change{id: id}
	}
	// A terminal job never becomes live again, so the selection stays
	// right; one deleted meanwhile is deleted twice, harmlessly.
	if err := s.commit(changes, nil); err != nil {
		return nil, err
	}
	s.log.Debug("cleanup completed", "deleted", len(ids))
	return res, nil
}

// Recover settles jobs that were running when their process died (SPEC §5
// step 3): each becomes failed with an error saying it was recovered, or,
// when submitted with on_interrupt "retry" and attempts are left, pending
// again. With DryRun it reports what it would do. The result also carries
// what Open repaired.
func (s *Store) Recover(o RecoverOptions) (*RecoverResult, error) {
	now := o.Now
	if now.IsZero() {
		now = s.opts.Now()
	}
	now = now.UTC()
	if s.readOnly && !o.DryRun {
		return nil, ErrReadOnly
	}
	res := &RecoverResult{
		JournalTruncatedBytes: s.report.JournalTruncatedBytes,
		DryRun:                o.DryRun,
		Actions:               []RecoverAction{},
	}
	if s.report.RestoredFrom != "" {
		p := s.report.RestoredFrom
		res.RestoredFrom = &p
	}
	running, err := s.List(Filter{Statuses: []job.Status{job.Running}, Oldest: true})
	if err != nil {
		return nil, err
	}
	for _, j := range running {
		a := RecoverAction{JobID: j.ID, From: job.Running}
		if j.OnInterrupt == job.OnInterruptRetry && j.AttemptsLeft() {
			a.To = job.Pending
			a.Reason = fmt.Sprintf("interrupted on attempt %d; recovered and queued again", j.Attempts)
			res.Requeued++
		} else {
			a.To = job.Failed
			a.Reason = fmt.Sprintf("interrupted: secauto stopped while the job was running; marked failed by crash recovery at %s", now.Format(time.RFC3339))
			if j.OnInterrupt == job.OnInterruptRetry {
				a.Reason = fmt.Sprintf("interrupted on attempt %d with no attempts left; marked failed by crash recovery at %s", j.Attempts, now.Format(time.RFC3339))
			}
			res.FailedRunning++
		}
		res.Actions = append(res.Actions, a)
		if o.DryRun {
			continue
		}
		nj, err := s.UpdateWith(j.ID, func(cur *job.Job) error {
			if cur.Status != job.Running {
				return errSettled
			}
			if a.To == job.Pending {
				return cur.Requeue()
			}
			return cur.Finish(job.Failed, a.Reason, now)
		}, o.Also)
		if errors.Is(err, errSettled) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recover job %s: %w", j.ID, err)
		}
		res.Recovered = append(res.Recovered, nj)
		s.log.Debug("job recovered", "job_id", nj.ID, "status", string(nj.Status), "attempts", nj.Attempts)
	}
	s.mu.Lock()
	res.Pending = s.counts[job.Pending]
	s.mu.Unlock()
	if o.DryRun {
		res.Pending += res.Requeued
	}
	return res, nil
}

var errSettled = errors.New("job is no longer running")

// Verify checks a data directory without changing it: jobs.json parses and
// every job keeps its invariants, every journal record is intact and holds
// a valid job, and every backup matches its checksum and holds valid jobs.
// Every problem is named with its file and, where it has one, its job.
func Verify(dir string) (*VerifyResult, error) {
	return VerifyWith(dir, VerifyOptions{})
}

// VerifyOptions extends Verify.
type VerifyOptions struct {
	// Progress hears how many bytes of the files Verify checks it has
	// been through.
	Progress Progress
	// CheckRecords, if set, checks the auxiliary records (whose meaning
	// the store does not know) and describes each problem it finds.
	CheckRecords func([]Record) []string
}

// VerifyWith is Verify with options.
func VerifyWith(dir string, o VerifyOptions) (*VerifyResult, error) {
	progress := o.Progress
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	res := &VerifyResult{Problems: []Problem{}}
	add := func(p Problem) { res.Problems = append(res.Problems, p) }
	paths, err := backupPaths(dir)
	if err != nil {
		add(Problem{File: dir, Message: err.Error()})
	}
	var total, done atomic.Int64
	for _, p := range append([]string{filepath.Join(dir, SnapshotFile), filepath.Join(dir, JournalFile)}, paths...) {
		if st, err := os.Stat(p); err == nil {
			total.Add(st.Size())
		}
	}
	advance := func(path string) {
		if progress == nil {
			return
		}
		if st, err := os.Stat(path); err == nil {
			progress(done.Add(st.Size()), total.Load())
		}
	}

	spath := filepath.Join(dir, SnapshotFile)
	data, rot, err := readSnapshotFile(dir)
	if err != nil {
		add(Problem{File: spath, Message: err.Error()})
	}
	if rot != nil {
		add(Problem{File: spath, Message: rot.Error()})
	}
	jobs := map[string]*entry{}
	if data != nil {
		var problems []jobProblem
		jobs, problems, err = decodeSnapshot(data)
		if err != nil {
			add(Problem{File: spath, Message: "does not parse: " + err.Error()})
			jobs = map[string]*entry{}
		}
		for _, p := range problems {
			add(Problem{File: spath, JobID: p.id, Message: p.err.Error()})
		}
	}
	advance(spath)

	jpath := filepath.Join(dir, JournalFile)
	jdata, err := readFileIfExists(jpath)
	if err != nil {
		add(Problem{File: jpath, Message: err.Error()})
	}
	recs, _, jerr := parseJournal(jdata)
	if jerr != nil {
		add(Problem{File: jpath, Message: fmt.Sprintf("%v; %d bytes after it are unreadable", jerr, int64(len(jdata))-jerr.Offset)})
	}
	advance(jpath)
	res.Journal = len(recs)
	records, err := readRecordsFile(dir)
	if err != nil {
		add(Problem{File: filepath.Join(dir, RecordsFile), Message: err.Error()})
		records = map[string][]byte{}
	}
	for _, c := range recs {
		applyTo(jobs, records, c)
	}
	res.Jobs = len(jobs)
	res.Records = len(records)
	if o.CheckRecords != nil {
		recs := make([]Record, 0, len(records))
		for _, k := range slices.Sorted(maps.Keys(records)) {
			recs = append(recs, Record{Key: k, Value: records[k]})
		}
		for _, msg := range o.CheckRecords(recs) {
			add(Problem{File: filepath.Join(dir, RecordsFile), Message: msg})
		}
	}

	res.Backups = len(paths)
	errs := make([]error, len(paths))
	forEachParallel(len(paths), func(i int) {
		_, errs[i] = VerifyBackup(paths[i])
		advance(paths[i])
	})
	for i, err := range errs {
		if err != nil {
			add(Problem{File: paths[i], Message: err.Error()})
		}
	}
	res.OK = len(res.Problems) == 0
	return res, nil
}

// forEachParallel runs fn(0..n-1) on every core.
func forEachParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
