package store

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/journal"
)

// The loader reads a data directory into memory: jobs.json, the records
// file and the journal replayed over them (SPEC §5 steps 1 and 2). It is the
// one reader of those files: a writable open repairs what it finds, a
// read-only open and verify only report it, from the same findings.

// dirState is what the loader found.
type dirState struct {
	jobs      map[string]*entry
	records   map[string][]byte
	scan      *journal.Scan
	snapBytes int64
	report    OpenReport
	problems  []Problem // every problem found, repaired or not
	// rewrite: a writable open repaired something, so the repaired state
	// must be written before anything else runs.
	rewrite bool
	// unchecked are the settled jobs indexed from the sum file without
	// their bytes being checked, in file order (scrub.go).
	unchecked []keyed
}

type loader struct {
	fs      fsys.FS
	dir     string
	repair  bool // move damaged files aside and fix them; else only report
	salvage bool
	lazy    bool // Options.CheckInBackground
	now     time.Time
	log     *slog.Logger
	st      dirState
}

func (l *loader) path(name string) string { return filepath.Join(l.dir, name) }

func (l *loader) problem(file, id, format string, args ...any) {
	l.st.problems = append(l.st.problems, Problem{File: l.path(file), JobID: id, Message: fmt.Sprintf(format, args...)})
}

// load reads the directory. It fails only when nothing usable is left (a
// *CorruptError) or a file cannot be read at all.
func (l *loader) load() (*dirState, error) {
	scan, err := journal.Read(l.fs, l.path(JournalFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", l.path(JournalFile), err)
	}
	fillV1Keys(scan)
	l.st.scan = scan
	if err := l.loadJobs(scan); err != nil {
		return nil, err
	}
	l.loadRecords()
	if err := l.journal(scan); err != nil {
		return nil, err
	}
	l.replay(scan)
	return &l.st, nil
}

// fillV1Keys names the job of each put record of a journal written before
// records carried their key.
func fillV1Keys(scan *journal.Scan) {
	for i := range scan.Entries {
		for j, r := range scan.Entries[i].Change {
			if r.Kind == journal.PutJob && r.Key == "" {
				if m, err := scanJobMeta(r.Value); err == nil {
					scan.Entries[i].Change[j].Key = m.ID
				}
			}
		}
	}
}

// journal deals with damaged journal bytes: a torn tail is cut, rot in the
// middle is removed while the good records after it are kept, and either
// way the damaged bytes are kept aside. The report names the jobs whose
// newest record was lost.
func (l *loader) journal(scan *journal.Scan) error {
	if len(scan.Damage) == 0 {
		if scan.Version == 1 && l.repair {
			// Written by an earlier release: rewritten in the current
			// format, records and all, before anything is appended.
			if _, err := journal.Repair(l.fs, l.path(JournalFile), scan, l.now); err != nil {
				return fmt.Errorf("upgrade %s: %w", l.path(JournalFile), err)
			}
		}
		return nil
	}
	var cut int64
	for _, d := range scan.Damage {
		cut += d.Length
		kind := "damaged record (rot; the records after it are kept)"
		if d.Torn {
			kind = "torn tail (an interrupted write)"
		}
		l.problem(JournalFile, "", "%s at offset %d, %d bytes: %s", kind, d.Offset, d.Length, d.Reason)
	}
	lost := lostKeys(scan)
	for _, id := range lost {
		l.problem(JournalFile, id, "its newest record was in the damaged bytes; the job is as of its previous record")
	}
	l.st.report.JournalTruncatedBytes = cut
	l.st.report.LostJobs = lost
	if !l.repair {
		return nil
	}
	aside, err := journal.Repair(l.fs, l.path(JournalFile), scan, l.now)
	if err != nil {
		return fmt.Errorf("repair %s: %w", l.path(JournalFile), err)
	}
	l.st.report.JournalCorruptPath = aside
	l.log.Warn("journal repaired", "file", l.path(JournalFile), "bytes_cut", cut, "kept_in", aside, "lost_jobs", lost)
	return nil
}

// lostKeys names the keys a damaged region held whose newest record it was
// (no intact record after it touches them).
func lostKeys(scan *journal.Scan) []string {
	var lost []string
	for _, d := range scan.Damage {
	keys:
		for _, k := range d.Keys {
			for _, e := range scan.Entries {
				if e.Offset < d.Offset {
					continue
				}
				for _, r := range e.Change {
					if r.Key == k {
						continue keys
					}
				}
			}
			if !slices.Contains(lost, k) {
				lost = append(lost, k)
			}
		}
	}
	return lost
}

// replay applies the journal's intact changes. A change whose job does not
// decode (written by something other than this store) is skipped whole.
func (l *loader) replay(scan *journal.Scan) {
	for _, e := range scan.Entries {
		changes, err := decodeChange(e.Change)
		if err != nil {
			l.problem(JournalFile, "", "record at offset %d: %v; skipped", e.Offset, err)
			continue
		}
		for _, c := range changes {
			switch {
			case c.rec != nil && c.rec.Value == nil:
				delete(l.st.records, c.id)
			case c.rec != nil:
				l.st.records[c.id] = c.rec.Value
			case c.e == nil:
				delete(l.st.jobs, c.id)
			default:
				l.st.jobs[c.id] = c.e
			}
		}
		l.st.report.JournalRecords++
	}
}

func decodeChange(jc journal.Change) ([]*change, error) {
	out := make([]*change, 0, len(jc))
	for _, r := range jc {
		switch r.Kind {
		case journal.PutJob:
			id, e, err := decodeEntry(r.Value, false)
			if err != nil {
				return nil, fmt.Errorf("job %s: %w", r.Key, err)
			}
			if id != r.Key {
				return nil, fmt.Errorf("record for job %q holds job %q", r.Key, id)
			}
			out = append(out, &change{id: id, e: e})
		case journal.DeleteJob:
			out = append(out, &change{id: r.Key})
		case journal.PutRecord:
			out = append(out, &change{id: r.Key, rec: &Record{Key: r.Key, Value: r.Value}})
		case journal.DeleteRecord:
			out = append(out, &change{id: r.Key, rec: &Record{Key: r.Key}})
		default:
			return nil, fmt.Errorf("unknown record kind %q", r.Kind)
		}
	}
	return out, nil
}

// loadRecords reads the records file. A damaged one is moved aside and the
// records start empty (the journal still replays the newest ones); the
// webhook events and schedule it held are reported lost, never a reason to
// refuse to start.
func (l *loader) loadRecords() {
	recs, err := readRecordsFile(l.fs, l.dir)
	if err == nil {
		l.st.records = recs
		return
	}
	l.st.records = map[string][]byte{}
	l.problem(RecordsFile, "", "%v; its records (webhook deliveries, maintenance schedule) are lost", err)
	if !l.repair {
		return
	}
	aside, aerr := moveAside(l.fs, l.path(RecordsFile), l.now)
	if aerr != nil {
		l.log.Error("could not keep the damaged records file aside", "file", l.path(RecordsFile), "err", aerr.Error())
		return
	}
	l.st.report.RecordsCorruptPath = aside
	l.st.rewrite = true
	l.log.Warn("records file damaged; moved aside and rebuilt", "file", l.path(RecordsFile), "moved_to", aside, "reason", err.Error())
}
