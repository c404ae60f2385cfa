package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/journal"
)

// loadJobs reads jobs.json. A file that does not parse is replaced whole by
// the newest verified backup; one that parses keeps every intact job, and
// only the jobs that rotted or break the job schema are taken from that
// backup or reported lost (SPEC §5 step 2).
func (l *loader) loadJobs(scan *journal.Scan) error {
	spath := l.path(SnapshotFile)
	st, _ := l.fs.Stat(spath)
	data, err := fsys.ReadFileIfExists(l.fs, spath)
	if err != nil {
		return fmt.Errorf("read %s: %w", spath, err)
	}
	if data == nil {
		l.st.jobs = map[string]*entry{}
		return nil
	}
	sums := readSnapshotSums(l.fs, l.dir, st)
	jobs, problems, perr := decodeSnapshot(data, sums)
	if perr != nil {
		return l.replaceSnapshot(fmt.Errorf("does not parse: %w", perr))
	}
	l.st.snapBytes = int64(len(data))
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
	path, backup, _ := newestGoodBackup(l.fs, l.dir, l.log)
	for _, id := range need {
		if e, ok := backup[id]; ok {
			l.st.jobs[id] = e
			l.st.report.RestoredJobs = append(l.st.report.RestoredJobs, id)
			l.problem(SnapshotFile, id, "taken from %s", path)
			continue
		}
		l.st.report.LostJobs = append(l.st.report.LostJobs, id)
		l.problem(SnapshotFile, id, "lost: no verified backup holds it")
	}
	if len(l.st.report.RestoredJobs) > 0 {
		l.st.report.RestoredFrom = path
	}
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
