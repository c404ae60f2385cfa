package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/seal"
)

// VerifyOptions extends Verify.
type VerifyOptions struct {
	// Progress hears how far Verify is: jobs checked, then backups.
	Progress Progress
	// CheckRecords, if set, checks the auxiliary records (whose meaning
	// the store does not know) and describes each problem it finds.
	CheckRecords func([]Record) []string
	// Keyring opens encrypted jobs and records, so that their ciphertexts
	// are checked too; the jobs sealed with a key it does not hold (all of
	// them without one) are reported once per key id. FileStore.Verify uses
	// the store's own when this is nil.
	Keyring *seal.Keyring
}

// Verify checks a data directory without changing it: jobs.json parses and
// matches its checksums, every journal record is intact, the records file
// matches its checksum, every job keeps the whole job schema, and every
// backup matches its checksum and holds valid jobs. Every problem is named
// with its file and, where it has one, its job.
func Verify(dir string) (*VerifyResult, error) {
	return VerifyWith(dir, VerifyOptions{})
}

// VerifyWith is Verify with options, for a directory no process is writing
// (a running daemon answers with FileStore.Verify instead).
func VerifyWith(dir string, o VerifyOptions) (*VerifyResult, error) {
	st, err := fsys.OS.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	l := &loader{fs: fsys.OS, dir: dir, now: time.Now(), log: slog.New(slog.DiscardHandler)}
	ds, err := l.load()
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		// Nothing loads, but the journal and the backups still get checked.
		ds, err = &l.st, nil
		if ds.jobs == nil {
			ds.jobs = map[string]*entry{}
		}
		if ds.records == nil {
			ds.records = map[string][]byte{}
		}
		l.replay(ds.scan)
	}
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Problems: slices.Clone(ds.problems), Journal: len(ds.scan.Entries)}
	if res.Problems == nil {
		res.Problems = []Problem{}
	}
	items := make([]keyed, 0, len(ds.jobs))
	for id, e := range ds.jobs {
		items = append(items, keyed{id, e})
	}
	checkAll(res, fsys.OS, dir, items, ds.records, o)
	return res, nil
}

// Verify checks a store that is open and perhaps being written: the jobs
// and records as they are in memory, what Open found on disk, jobs.json as
// last written (read while no snapshot replaces it), and every backup. It
// takes the store's own locks instead of re-reading files being written.
func (s *FileStore) Verify(o VerifyOptions) (*VerifyResult, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// What Open found it also repaired (and logged); the files are checked
	// as they are now.
	res := &VerifyResult{Problems: []Problem{}}
	s.files.snapMu.Lock()
	if data, err := fsys.ReadFileIfExists(s.files.fs, s.files.path(SnapshotFile)); err != nil {
		res.Problems = append(res.Problems, Problem{File: s.files.path(SnapshotFile), Message: err.Error()})
	} else if data != nil {
		st, _ := s.files.fs.Stat(s.files.path(SnapshotFile))
		sums := readSnapshotSums(s.files.fs, s.opts.Dir, st)
		jobs, problems, err := decodeSnapshot(data, sums)
		if err != nil {
			res.Problems = append(res.Problems, Problem{File: s.files.path(SnapshotFile), Message: "does not parse: " + err.Error()})
		}
		for _, p := range problems {
			res.Problems = append(res.Problems, Problem{File: s.files.path(SnapshotFile), JobID: p.id, Message: p.err.Error()})
		}
		for _, id := range missingJobs(sums, jobs, problems) {
			res.Problems = append(res.Problems, Problem{File: s.files.path(SnapshotFile), JobID: id, Message: "recorded in " + snapshotSumFile + " but no longer found (its id rotted)"})
		}
	}
	s.files.snapMu.Unlock()
	v := s.idx.view()
	res.Journal = v.journaled
	if o.Keyring == nil {
		o.Keyring = s.opts.Keyring
	}
	checkAll(res, s.files.fs, s.opts.Dir, v.items, v.records, o)
	return res, nil
}

// checkAll checks every job against the whole job schema, the records, and
// every backup, adding to res.
func checkAll(res *VerifyResult, fsy fsys.FS, dir string, items []keyed, records map[string][]byte, o VerifyOptions) {
	add := func(p Problem) { res.Problems = append(res.Problems, p) }
	paths, err := backupPaths(fsy, dir)
	if err != nil {
		add(Problem{File: dir, Message: err.Error()})
	}
	// Progress counts the bytes of the files the checks stand for.
	size := func(p string) int64 {
		if st, err := fsy.Stat(p); err == nil {
			return st.Size()
		}
		return 0
	}
	sizes := []int64{size(filepath.Join(dir, SnapshotFile)), size(filepath.Join(dir, JournalFile))}
	for _, p := range paths {
		sizes = append(sizes, size(p))
	}
	var total, done int64
	for _, n := range sizes {
		total += n
	}
	progress := func(i int) {
		done += sizes[i]
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	for _, p := range checkJobs(filepath.Join(dir, SnapshotFile), items, o.Keyring) {
		add(p)
	}
	progress(0)
	progress(1)
	res.Jobs = len(items)
	res.Records = len(records)
	res.Problems = append(res.Problems, checkRecords(filepath.Join(dir, RecordsFile), records, o)...)
	n, problems := checkBackups(fsy, paths, o.Keyring, func(i int) { progress(2 + i) })
	res.Backups += n
	res.Problems = append(res.Problems, problems...)
	res.OK = len(res.Problems) == 0
}

// checkJobs checks every job of file against the whole job schema and,
// for an encrypted one whose key kr holds, that every sealed field
// authenticates and decodes. The jobs sealed with keys kr lacks are
// reported once per key id: their encrypted fields cannot be checked.
func checkJobs(file string, items []keyed, kr *seal.Keyring) []Problem {
	errs := make([]error, len(items))
	forEachParallel(len(items), func(i int) {
		e := items[i].e
		raw, err := e.bytes()
		if err != nil {
			errs[i] = err
			return
		}
		j, err := decodeJob(raw)
		if err == nil && e.sealKey() != "" && kr != nil && kr.Has(e.sealKey()) {
			err = unsealJob(j, raw, e.sealKey(), kr)
		}
		errs[i] = err
	})
	var out []Problem
	for i, err := range errs {
		if err != nil {
			out = append(out, Problem{File: file, JobID: items[i].id, Message: err.Error()})
		}
	}
	missing := map[string]int{}
	for _, it := range items {
		if k := it.e.sealKey(); k != "" && (kr == nil || !kr.Has(k)) {
			missing[k]++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(missing)) {
		msg := fmt.Sprintf("%d jobs are encrypted with key id %s, which jobs.encryption_key_file does not hold; add that key to check and read them", missing[k], k)
		if kr == nil {
			msg = fmt.Sprintf("%d jobs are encrypted with key id %s and no jobs.encryption_key_file is configured; configure the key file that holds it to check and read them", missing[k], k)
		}
		out = append(out, Problem{File: file, Message: msg, MissingKeyID: k})
	}
	return out
}

// checkRecords opens the records (of file) that o.Keyring can open and
// has o.CheckRecords check them; the records sealed with keys it lacks are
// reported once per key id.
func checkRecords(file string, records map[string][]byte, o VerifyOptions) []Problem {
	if o.CheckRecords == nil {
		return nil
	}
	var out []Problem
	add := func(p Problem) { out = append(out, p) }
	recs := make([]Record, 0, len(records))
	missing := map[string]int{}
	for _, k := range slices.Sorted(maps.Keys(records)) {
		if id := recordKeyID(records[k]); id != "" && (o.Keyring == nil || !o.Keyring.Has(id)) {
			missing[id]++
			continue
		}
		v, err := openRecord(o.Keyring, k, records[k])
		if err != nil {
			add(Problem{File: file, Message: err.Error()})
			continue
		}
		recs = append(recs, Record{Key: k, Value: v})
	}
	for _, id := range slices.Sorted(maps.Keys(missing)) {
		add(Problem{File: file, MissingKeyID: id,
			Message: fmt.Sprintf("%d records (webhook deliveries, maintenance schedule) are encrypted with key id %s, which is not configured; add that key to jobs.encryption_key_file to check and read them", missing[id], id)})
	}
	for _, msg := range o.CheckRecords(recs) {
		add(Problem{File: file, Message: msg})
	}
	return out
}

// checkBackups checks every backup of paths (their checksums and jobs, and
// with kr their sealed fields), telling progress the index of each one done,
// and returns how many it checked with the problems found.
func checkBackups(fsy fsys.FS, paths []string, kr *seal.Keyring, progress func(i int)) (n int, out []Problem) {
	berrs := make([]error, len(paths))
	bprobs := make([][]Problem, len(paths))
	forEachParallel(len(paths), func(i int) {
		var jobs map[string]*entry
		jobs, _, berrs[i] = readBackup(fsy, paths[i], true)
		if berrs[i] == nil && len(keyIDsOf(maps.Values(jobs))) > 0 {
			items := make([]keyed, 0, len(jobs))
			for id, e := range jobs {
				items = append(items, keyed{id, e})
			}
			bprobs[i] = checkJobs(paths[i], items, kr)
		}
	})
	for i, err := range berrs {
		progress(i)
		// A backup removed since it was listed (a daemon pruning old
		// ones) is not a problem.
		if err != nil && errors.Is(err, fs.ErrNotExist) && !fsys.Exists(fsy, paths[i]) {
			continue
		}
		n++
		if err != nil {
			out = append(out, Problem{File: paths[i], Message: err.Error()})
		}
		out = append(out, bprobs[i]...)
	}
	return n, out
}
