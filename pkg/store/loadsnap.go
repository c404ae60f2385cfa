package store

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/secauto/secauto/pkg/journal"
)

// loadJobs reads jobs.json. A file that does not parse is replaced whole by
// the newest verified backup; one that parses keeps every intact job, and
// only the jobs that rotted or break the job schema are taken from that
// backup or reported lost (SPEC §5 step 2).
func (l *loader) loadJobs(scan *journal.Scan) error {
	spath := l.path(SnapshotFile)
	jobs, problems, size, sums, perr, err := l.readJobs(spath)
	if err != nil {
		return fmt.Errorf("read %s: %w", spath, err)
	}
	if jobs == nil && perr == nil {
		l.st.jobs = map[string]*entry{}
		return nil
	}
	if perr != nil {
		return l.replaceSnapshot(fmt.Errorf("does not parse: %w", perr))
	}
	l.st.snapBytes = size
	l.st.report.SnapshotJobs = len(jobs)
	missing := missingJobs(sums, jobs, problems)
	rotted := len(missing)
	for _, p := range problems {
		if errors.Is(p.err, errJobRotted) || errors.Is(p.err, errJobPhantom) {
			rotted++
		}
	}
	if rotted > 0 {
		l.problem(SnapshotFile, "", "checksum mismatch: %d jobs changed on disk since secauto wrote them (per-job CRC-32C in %s)", rotted, snapshotSumFile)
	}
	var bad []string
	for _, p := range problems {
		l.problem(SnapshotFile, p.id, "%v", p.err)
		if !errors.Is(p.err, errJobPhantom) {
			bad = append(bad, p.id)
		}
	}
	for _, id := range missing {
		l.problem(SnapshotFile, id, "recorded in %s but no longer found (its id rotted)", snapshotSumFile)
		bad = append(bad, id)
	}
	l.st.jobs = jobs
	if sums == nil && l.repair {
		// Checked job by job this once; the rewrite records checksums so
		// that the next open reads it fast.
		l.st.rewrite = true
	}
	if len(bad) == 0 && rotted == 0 {
		return nil
	}
	slices.Sort(bad)
	bad = slices.Compact(bad)
	l.restoreJobs(bad, scan)
	if l.repair {
		aside, err := moveAside(l.fs, spath, l.now)
		if err != nil {
			return fmt.Errorf("keep the damaged %s: %w", spath, err)
		}
		l.st.report.SnapshotCorruptPath = aside
		l.st.rewrite = true
		l.log.Warn("damaged jobs in snapshot", "file", spath, "jobs", len(bad), "job_ids", firstN(bad, 20),
			"restored_from", l.st.report.RestoredFrom, "lost_jobs", l.st.report.LostJobs, "copy_kept_in", aside)
	}
	return nil
}

// restoreJobs takes each damaged job from the newest verified backup that
// holds it, unless the journal has a newer record of it anyway; the rest
// are reported lost.
func (l *loader) restoreJobs(bad []string, scan *journal.Scan) {
	inJournal := map[string]bool{}
	for _, e := range scan.Entries {
		for _, r := range e.Change {
			if r.Kind == journal.PutJob || r.Kind == journal.DeleteJob {
				inJournal[r.Key] = true
			}
		}
	}
	var need []string
	for _, id := range bad {
		if !inJournal[id] {
			need = append(need, id)
		}
	}
	if len(need) == 0 {
		return
	}
	// Newest first: a backup written while a job's bytes had rotted
	// left that job out, so an older one may be the one that holds it.
	paths, _ := backupPaths(l.fs, l.dir)
	for _, p := range paths {
		if len(need) == 0 {
			break
		}
		backup, _, err := readBackup(l.fs, p, true)
		if err != nil {
			l.log.Warn("backup skipped", "file", p, "reason", err.Error())
			continue
		}
		left := need[:0]
		for _, id := range need {
			e, ok := backup[id]
			if !ok {
				left = append(left, id)
				continue
			}
			l.st.jobs[id] = e
			l.st.report.RestoredJobs = append(l.st.report.RestoredJobs, id)
			l.problem(SnapshotFile, id, "taken from %s", p)
			if l.st.report.RestoredFrom == "" {
				l.st.report.RestoredFrom = p
			}
		}
		need = left
	}
	for _, id := range need {
		l.st.report.LostJobs = append(l.st.report.LostJobs, id)
		l.problem(SnapshotFile, id, "lost: no verified backup holds it")
	}
}

// readJobs indexes jobs.json: streamed, its jobs left in the file, when it
// is in secauto's layout, else read and parsed whole (perr when it does not
// parse). No file is no jobs and no error.
func (l *loader) readJobs(path string) (jobs map[string]*entry, problems []jobProblem, size int64, sums *jobSums, perr, err error) {
	sf, err := openSnapFile(l.fs, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, 0, nil, nil, nil
	}
	if err != nil {
		return nil, nil, 0, nil, nil, err
	}
	st, err := sf.f.Stat()
	if err != nil {
		return nil, nil, 0, nil, nil, err
	}
	sums = readSnapshotSums(l.fs, l.dir, st)
	if l.lazy && sums != nil && sums.meta {
		jobs, problems, order := indexFromSums(sf, st.Size(), sums)
		l.st.unchecked = order
		return jobs, problems, st.Size(), sums, nil, nil
	}
	jobs, problems, ok, err := readSnapshotLines(sf, st.Size(), sums)
	if err != nil || ok {
		return jobs, problems, st.Size(), sums, nil, err
	}
	data, err := l.fs.ReadFile(path)
	if err != nil {
		return nil, nil, 0, nil, nil, err
	}
	jobs, problems, perr = decodeSnapshot(data, sums)
	return jobs, problems, int64(len(data)), sums, perr, nil
}

// replaceSnapshot handles a jobs.json that does not parse: it is moved
// aside and the newest verified backup takes its place; the journal is
// replayed over it afterwards.
func (l *loader) replaceSnapshot(reason error) error {
	spath := l.path(SnapshotFile)
	l.problem(SnapshotFile, "", "%v", reason)
	l.log.Error("snapshot unusable", "file", spath, "reason", reason.Error())
	path, jobs, size := newestGoodBackup(l.fs, l.dir, l.log)
	if path == "" && !(l.salvage && l.repair) {
		return &CorruptError{Path: spath, Reason: reason}
	}
	if path == "" {
		jobs = map[string]*entry{}
	}
	l.st.jobs = jobs
	l.st.snapBytes = size
	l.st.report.RestoredFrom = path
	l.st.report.SnapshotJobs = len(jobs)
	if !l.repair {
		l.st.problems[len(l.st.problems)-1].Message += fmt.Sprintf("; it would be moved aside and %s restored", filepath.Base(path))
		return nil
	}
	aside, err := moveAside(l.fs, spath, l.now)
	if err != nil {
		return fmt.Errorf("keep the corrupt %s: %w", spath, err)
	}
	l.st.report.SnapshotCorruptPath = aside
	l.st.rewrite = true
	l.log.Warn("unusable snapshot moved aside", "file", spath, "moved_to", aside, "restored_from", path, "jobs", len(jobs))
	return nil
}

// firstN keeps a log record bounded however much was damaged.
func firstN(ids []string, n int) []string {
	if len(ids) > n {
		return append(ids[:n:n], fmt.Sprintf("and %d more", len(ids)-n))
	}
	return ids
}
