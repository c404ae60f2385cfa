package store

import (
	"fmt"

	"github.com/secauto/secauto/pkg/journal"
)

// Restore replaces every job with those of the backup at path. It verifies
// the file first (its checksum when a .sha256 sidecar is beside it, and every
// job against the job schema), writes a safety backup of the current state,
// and swaps the store in place with an emptied journal so no older record
// can replay over the restored jobs. No change is admitted meanwhile; a
// crash at any point leaves either the old jobs or the restored ones.
func (s *FileStore) Restore(path string, o BackupOptions) (*RestoreResult, error) {
	if s.w == nil {
		return nil, ErrReadOnly
	}
	jobs, size, err := readBackup(s.files.fs, path, false)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be restored: %w", path, err)
	}
	s.gate.Lock()
	defer s.gate.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.files.snapMu.Lock()
	defer s.files.snapMu.Unlock()
	current := s.idx.view()
	safety, err := s.files.writeBackup(current.items, BackupOptions{Compress: o.Compress, Progress: o.Progress}, s.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("safety backup failed, nothing was restored: %w", err)
	}
	// Fold the journal into jobs.json first, so that from here on the
	// journal is empty and a crash leaves either the old or the restored
	// jobs, never a mix.
	if err := s.snapshotLocked(true); err != nil {
		return nil, fmt.Errorf("nothing was restored: %w", err)
	}
	if s.w.Size() != journal.HeaderSize {
		return nil, fmt.Errorf("the journal could not be emptied before the restore; nothing was restored")
	}
	items := make([]keyed, 0, len(jobs))
	for id, e := range jobs {
		items = append(items, keyed{id, e})
	}
	_, placed, err := writeJobsFile(s.files.fs, s.files.dir, items, o.Progress)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	s.idx.replace(jobs)
	s.idx.relocate(items, placed)
	s.compactor.restored(size)
	res := &RestoreResult{RestoredJobs: len(jobs), SafetyBackup: safety.Path}
	if o.Keep > 0 {
		if _, err := s.files.pruneBackups(o.Keep); err != nil {
			s.opts.Logger.Warn("removing old backups failed", "err", err.Error())
		}
	}
	s.opts.Logger.Debug("store restored", "from", path, "jobs", res.RestoredJobs, "safety_backup", res.SafetyBackup)
	return res, nil
}
