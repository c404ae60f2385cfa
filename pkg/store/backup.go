package store

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const checksumSuffix = ".sha256"

// Backup writes a complete snapshot of the durable jobs, as of one moment,
// to jobs.json.backup.YYYYMMDD-HHMMSS (gzipped with .gz when asked) with a
// .sha256 sidecar that `sha256sum -c` reads, then removes the oldest
// backups beyond o.Keep.
func (s *Store) Backup(o BackupOptions) (*BackupResult, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	items := s.itemsLocked()
	s.mu.Unlock()
	if s.readOnly {
		return nil, ErrReadOnly
	}
	res, err := writeBackup(s.dir, items, o, s.opts.Now())
	if err != nil {
		return nil, err
	}
	if o.Keep > 0 {
		res.Removed, err = pruneBackups(s.dir, o.Keep)
		if err != nil {
			return res, fmt.Errorf("backup %s written, but removing old backups failed: %w", res.Path, err)
		}
	}
	s.log.Debug("backup created", "file", res.Path, "jobs", res.Jobs, "bytes", res.Size, "removed", len(res.Removed))
	return res, nil
}

func writeBackup(dir string, items []keyed, o BackupOptions, now time.Time) (*BackupResult, error) {
	suffix := ""
	if o.Compress {
		suffix = ".gz"
	}
	base := filepath.Join(dir, backupPrefix)
	path := freeStampedPath(base, suffix, now, "", ".gz")
	sum := sha256.New()
	var size int64
	err := writeFileAtomic(path, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, sum)}
		if !o.Compress {
			return writeSnapshot(cw, items, o.Progress)
		}
		zw := gzip.NewWriter(cw)
		if err := writeSnapshot(zw, items, o.Progress); err != nil {
			return err
		}
		err := zw.Close()
		size = cw.n
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("write backup %s: %w", path, err)
	}
	if !o.Compress {
		if st, err := os.Stat(path); err == nil {
			size = st.Size()
		}
	}
	hexsum := hex.EncodeToString(sum.Sum(nil))
	line := fmt.Sprintf("%s  %s\n", hexsum, filepath.Base(path))
	err = writeFileAtomic(path+checksumSuffix, func(w io.Writer) error {
		_, err := io.WriteString(w, line)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("write checksum of %s: %w", path, err)
	}
	return &BackupResult{Path: path, Jobs: len(items), SHA256: hexsum, Size: size}, nil
}

// backupPaths lists dir's backups, newest first.
func backupPaths(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, ok := backupTime(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		ta, _ := backupTime(filepath.Base(a))
		tb, _ := backupTime(filepath.Base(b))
		if c := tb.Compare(ta); c != 0 {
			return c
		}
		return strings.Compare(b, a)
	})
	return out, nil
}

// backupTime parses the stamp out of a backup's file name.
func backupTime(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, backupPrefix)
	if !ok {
		return time.Time{}, false
	}
	rest = strings.TrimSuffix(rest, ".gz")
	t, err := time.Parse(stampLayout, rest)
	return t, err == nil
}

func pruneBackups(dir string, keep int) ([]string, error) {
	paths, err := backupPaths(dir)
	if err != nil || len(paths) <= keep {
		return nil, err
	}
	var removed []string
	for _, p := range paths[keep:] {
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		os.Remove(p + checksumSuffix)
		removed = append(removed, p)
	}
	return removed, syncDir(dir)
}

// readBackup checks a backup's checksum (required when requireSum, else
// checked only if the sidecar exists) and content, and returns its jobs and
// its uncompressed bytes.
func readBackup(path string, requireSum bool) (map[string]*entry, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if err := checkSum(path, data, requireSum); err != nil {
		return nil, nil, err
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, nil, fmt.Errorf("not a valid gzip file: %w", err)
		}
		data, err = io.ReadAll(bufio.NewReader(zr))
		if err != nil {
			return nil, nil, fmt.Errorf("not a valid gzip file: %w", err)
		}
	}
	jobs, problems, err := decodeSnapshot(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not a jobs.json snapshot: %w", err)
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("job %s: %w (%d bad jobs)", problems[0].id, problems[0].err, len(problems))
	}
	return jobs, data, nil
}

func checkSum(path string, data []byte, required bool) error {
	side, err := os.ReadFile(path + checksumSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		if required {
			return fmt.Errorf("checksum file %s is missing", filepath.Base(path)+checksumSuffix)
		}
		return nil
	}
	if err != nil {
		return err
	}
	fields := strings.Fields(string(side))
	if len(fields) < 1 {
		return fmt.Errorf("checksum file %s is empty", filepath.Base(path)+checksumSuffix)
	}
	got := sha256.Sum256(data)
	if !strings.EqualFold(fields[0], hex.EncodeToString(got[:])) {
		return fmt.Errorf("checksum mismatch: %s says %s, the file hashes to %s",
			filepath.Base(path)+checksumSuffix, fields[0], hex.EncodeToString(got[:]))
	}
	return nil
}

// VerifyBackup checks a backup's .sha256 sidecar and content, and returns
// how many jobs it holds.
func VerifyBackup(path string) (int, error) {
	jobs, _, err := readBackup(path, true)
	if err != nil {
		return 0, err
	}
	return len(jobs), nil
}

// ListBackups describes dir's backups, newest first, each verified.
func ListBackups(dir string) ([]BackupInfo, error) {
	paths, err := backupPaths(dir)
	if err != nil {
		return nil, err
	}
	out := make([]BackupInfo, len(paths))
	forEachParallel(len(paths), func(i int) {
		p := paths[i]
		t, _ := backupTime(filepath.Base(p))
		info := BackupInfo{Path: p, Time: t, Compressed: strings.HasSuffix(p, ".gz")}
		if st, err := os.Stat(p); err == nil {
			info.Size = st.Size()
		}
		n, err := VerifyBackup(p)
		if err != nil {
			info.Problem = err.Error()
		} else {
			info.Verified = true
			info.Jobs = n
		}
		out[i] = info
	})
	return out, nil
}

// Restore replaces every job with those of the backup at path. It verifies
// the file first (its checksum when a .sha256 sidecar is beside it, and its
// content), writes a safety backup of the current state, and swaps the
// store in place with a fresh journal so no older record can replay over
// the restored jobs.
func (s *Store) Restore(path string, o BackupOptions) (*RestoreResult, error) {
	if s.readOnly {
		return nil, ErrReadOnly
	}
	jobs, data, err := readBackup(path, false)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be restored: %w", path, err)
	}
	var res *RestoreResult
	err = s.exclusive(func() error {
		s.snapMu.Lock()
		defer s.snapMu.Unlock()
		s.mu.Lock()
		items := s.itemsLocked()
		s.mu.Unlock()
		safety, err := writeBackup(s.dir, items, BackupOptions{Compress: o.Compress, Progress: o.Progress}, s.opts.Now())
		if err != nil {
			return fmt.Errorf("safety backup failed, nothing was restored: %w", err)
		}
		// Fold the journal into jobs.json first, so that from here on the
		// journal is empty and a crash leaves either the old or the restored
		// jobs, never a mix.
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		if err := s.compactLocked(); err != nil {
			return err
		}
		s.jmu.Lock()
		defer s.jmu.Unlock()
		s.mu.Lock()
		empty := s.jsize == int64(len(journalMagic))
		s.mu.Unlock()
		if !empty {
			return errors.New("the journal could not be emptied before the restore; nothing was restored")
		}
		items = items[:0]
		for id, e := range jobs {
			items = append(items, keyed{id, e})
		}
		if _, err := writeJobsFile(s.dir, func(w io.Writer) error { return writeSnapshot(w, items, o.Progress) }); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		s.mu.Lock()
		s.jobs = jobs
		clear(s.counts)
		for _, e := range jobs {
			s.counts[e.status]++
		}
		s.snapBytes = int64(len(data))
		s.mu.Unlock()
		res = &RestoreResult{RestoredJobs: len(jobs), SafetyBackup: safety.Path}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if o.Keep > 0 {
		if _, err := pruneBackups(s.dir, o.Keep); err != nil {
			s.log.Warn("removing old backups failed", "err", err.Error())
		}
	}
	s.log.Debug("store restored", "from", path, "jobs", res.RestoredJobs, "safety_backup", res.SafetyBackup)
	return res, nil
}

// CheckRestoreFile verifies a file offered to Restore, as Restore will: its
// content always, and its checksum when a .sha256 sidecar is beside it (an
// operator's own copy of jobs.json has none). It reports whether a checksum
// was checked.
func CheckRestoreFile(path string) (jobs int, checksummed bool, err error) {
	_, serr := os.Stat(path + checksumSuffix)
	j, _, err := readBackup(path, false)
	if err != nil {
		return 0, false, err
	}
	return len(j), serr == nil, nil
}
