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
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

// Backup files are jobs.json.backup.YYYYMMDD-HHMMSS[.gz] with a .sha256
// sidecar in the format `sha256sum -c` reads. The name rule lives here
// only; the daemon and the command line call BackupName and
// ParseBackupName instead of rebuilding it.
const (
	backupPrefix   = SnapshotFile + ".backup."
	checksumSuffix = ".sha256"
)

// BackupName is the file name of a backup stamped t (UTC, to the second).
func BackupName(t time.Time, compressed bool) string {
	name := backupPrefix + t.UTC().Format(stampLayout)
	if compressed {
		name += ".gz"
	}
	return name
}

// ParseBackupName reports whether name (a base name) is a backup's, and its
// stamp.
func ParseBackupName(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, backupPrefix)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(stampLayout, strings.TrimSuffix(rest, ".gz"))
	return t, err == nil
}

// Backup writes a complete snapshot of the durable jobs, as of one moment,
// with its .sha256 sidecar, then removes the oldest backups beyond o.Keep.
func (s *FileStore) Backup(o BackupOptions) (*BackupResult, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.w == nil {
		return nil, ErrReadOnly
	}
	res, err := s.files.backup(s.idx.view().items, o, s.opts.Now())
	if err != nil {
		return res, err
	}
	if len(res.Skipped) > 0 {
		s.opts.Logger.Error("backup written without jobs whose bytes changed on disk since secauto wrote them; run secauto verify", "file", res.Path, "job_ids", firstN(res.Skipped, 20))
	}
	s.opts.Logger.Debug("backup created", "file", res.Path, "jobs", res.Jobs, "bytes", res.Size, "removed", len(res.Removed))
	return res, nil
}

// backup writes a backup of items, then removes the oldest backups
// beyond o.Keep.
func (f *files) backup(items []keyed, o BackupOptions, now time.Time) (*BackupResult, error) {
	res, err := f.writeBackup(items, o, now)
	if err != nil {
		return nil, err
	}
	if o.Keep > 0 {
		res.Removed, err = f.pruneBackups(o.Keep)
		if err != nil {
			return res, fmt.Errorf("backup %s written, but removing old backups failed: %w", res.Path, err)
		}
	}
	return res, nil
}

// writeBackup writes the backup to a temp file, then its sidecar, then
// renames the backup into place: a crash at any point leaves either no
// backup (a temp file and perhaps a sidecar of nothing, both cleaned at the
// next open) or a backup whose checksum verifies. Backups are written one at
// a time, so two in the same second get two names.
func (f *files) writeBackup(items []keyed, o BackupOptions, now time.Time) (*BackupResult, error) {
	f.backupMu.Lock()
	defer f.backupMu.Unlock()
	path := f.freeBackupPath(now, o.Compress)
	sum := sha256.New()
	tmp, err := f.fs.OpenFile(path+".tmp-"+randomSuffix(), createFlags, fileMode)
	if err != nil {
		return nil, fmt.Errorf("write backup %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			f.fs.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	cw := &countWriter{w: io.MultiWriter(bw, sum)}
	var skipped []jobProblem
	if o.Compress {
		zw := gzip.NewWriter(cw)
		if skipped, err = writeSnapshot(zw, items, o.Progress, nil); err == nil {
			err = zw.Close()
		}
	} else {
		skipped, err = writeSnapshot(cw, items, o.Progress, nil)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("write backup %s: %w", path, err)
	}
	hexsum := hex.EncodeToString(sum.Sum(nil))
	line := fmt.Sprintf("%s  %s\n", hexsum, filepath.Base(path))
	err = fsys.WriteFileAtomic(f.fs, path+checksumSuffix, fileMode, func(w io.Writer) error {
		_, err := io.WriteString(w, line)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("write checksum of %s: %w", path, err)
	}
	if err := f.fs.Rename(tmp.Name(), path); err != nil {
		f.fs.Remove(path + checksumSuffix)
		return nil, fmt.Errorf("write backup %s: %w", path, err)
	}
	done = true
	if err := f.fs.SyncDir(f.dir); err != nil {
		return nil, fmt.Errorf("write backup %s: %w", path, err)
	}
	res := &BackupResult{Path: path, Jobs: len(items) - len(skipped), SHA256: hexsum, Size: cw.n, KeyIDs: keyIDsOf(entriesOf(items))}
	for _, p := range skipped {
		res.Skipped = append(res.Skipped, p.id)
	}
	return res, nil
}

// freeBackupPath is the backup path for the first second at or after now
// whose name (and .gz twin, and their sidecars) is not taken.
func (f *files) freeBackupPath(now time.Time, compress bool) string {
	t := now.UTC().Truncate(time.Second)
	for {
		plain := filepath.Join(f.dir, BackupName(t, false))
		gz := filepath.Join(f.dir, BackupName(t, true))
		if !fsys.Exists(f.fs, plain) && !fsys.Exists(f.fs, gz) &&
			!fsys.Exists(f.fs, plain+checksumSuffix) && !fsys.Exists(f.fs, gz+checksumSuffix) {
			if compress {
				return gz
			}
			return plain
		}
		t = t.Add(time.Second)
	}
}

// backupPaths lists dir's backups, newest first.
func backupPaths(fsy fsys.FS, dir string) ([]string, error) {
	ents, err := fsy.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	type named struct {
		path string
		t    time.Time
	}
	var found []named
	for _, e := range ents {
		if t, ok := ParseBackupName(e.Name()); ok && e.Type().IsRegular() {
			found = append(found, named{filepath.Join(dir, e.Name()), t})
		}
	}
	slices.SortFunc(found, func(a, b named) int {
		if c := b.t.Compare(a.t); c != 0 {
			return c
		}
		return strings.Compare(b.path, a.path)
	})
	out := make([]string, len(found))
	for i, n := range found {
		out[i] = n.path
	}
	return out, nil
}

func (f *files) pruneBackups(keep int) ([]string, error) {
	f.backupMu.Lock()
	defer f.backupMu.Unlock()
	paths, err := backupPaths(f.fs, f.dir)
	if err != nil || len(paths) <= keep {
		return nil, err
	}
	var removed []string
	for _, p := range paths[keep:] {
		// The sidecar goes last: a backup is never left without one.
		if err := f.fs.Remove(p); err != nil {
			return removed, err
		}
		f.fs.Remove(p + checksumSuffix)
		removed = append(removed, p)
	}
	return removed, f.fs.SyncDir(f.dir)
}

// readBackup checks a backup's checksum (required when requireSum, else
// checked only if the sidecar exists) and content, and returns its jobs and
// its uncompressed size. A plain backup in secauto's layout is hashed and
// indexed a chunk at a time, its jobs left in the file, so that restoring
// a large history does not hold it in memory; others are read whole.
func readBackup(fsy fsys.FS, path string, requireSum bool) (map[string]*entry, int64, error) {
	sf, err := openSnapFile(fsy, path)
	if err != nil {
		return nil, 0, err
	}
	st, err := sf.f.Stat()
	if err != nil {
		return nil, 0, err
	}
	var magic [2]byte
	if st.Size() >= 4 && sf.readAt(magic[:], 0) == nil && magic != [2]byte{0x1f, 0x8b} {
		if err := checkSum(fsy, path, io.NewSectionReader(sf.f, 0, st.Size()), requireSum); err != nil {
			return nil, 0, err
		}
		// A backup may come from anywhere: check every job in full.
		jobs, problems, ok, err := readSnapshotLines(sf, st.Size(), nil)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			return backupJobs(jobs, problems, st.Size())
		}
	}
	data, err := fsy.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if err := checkSum(fsy, path, bytes.NewReader(data), requireSum); err != nil {
		return nil, 0, err
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, 0, fmt.Errorf("not a valid gzip file: %w", err)
		}
		data, err = io.ReadAll(bufio.NewReader(zr))
		if err != nil {
			return nil, 0, fmt.Errorf("not a valid gzip file: %w", err)
		}
	}
	jobs, problems, err := decodeSnapshot(data, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("not a jobs.json snapshot: %w", err)
	}
	return backupJobs(jobs, problems, int64(len(data)))
}

func backupJobs(jobs map[string]*entry, problems []jobProblem, size int64) (map[string]*entry, int64, error) {
	if len(problems) > 0 {
		return nil, 0, fmt.Errorf("job %s: %w (%d bad jobs)", problems[0].id, problems[0].err, len(problems))
	}
	return jobs, size, nil
}

func checkSum(fsy fsys.FS, path string, data io.Reader, required bool) error {
	side, err := fsy.ReadFile(path + checksumSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		if required {
			// Wrapped, so that a backup pruned while it is read is told
			// apart from one that never had its checksum.
			return fmt.Errorf("checksum file %s is missing: %w", filepath.Base(path)+checksumSuffix, err)
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
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		return err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if !strings.EqualFold(fields[0], got) {
		return fmt.Errorf("checksum mismatch: %s says %s, the file hashes to %s",
			filepath.Base(path)+checksumSuffix, fields[0], got)
	}
	return nil
}

// newestGoodBackup returns the newest backup whose checksum and content
// verify, with its jobs and uncompressed size.
func newestGoodBackup(fsy fsys.FS, dir string, log *slog.Logger) (string, map[string]*entry, int64) {
	paths, _ := backupPaths(fsy, dir)
	for _, p := range paths {
		jobs, size, err := readBackup(fsy, p, true)
		if err != nil {
			log.Warn("backup skipped", "file", p, "reason", err.Error())
			continue
		}
		return p, jobs, size
	}
	return "", nil, 0
}

// VerifyBackup checks a backup's .sha256 sidecar and content, and returns
// how many jobs it holds.
func VerifyBackup(path string) (int, error) {
	jobs, _, err := readBackup(fsys.OS, path, true)
	return len(jobs), err
}

// ListBackups describes dir's backups, newest first, each verified. A
// backup removed while it is being listed (a daemon pruning old ones) is
// left out, not reported.
func ListBackups(dir string) ([]BackupInfo, error) {
	return listBackups(fsys.OS, dir)
}

func listBackups(fsy fsys.FS, dir string) ([]BackupInfo, error) {
	paths, err := backupPaths(fsy, dir)
	if err != nil {
		return nil, err
	}
	out := make([]BackupInfo, len(paths))
	gone := make([]bool, len(paths))
	forEachParallel(len(paths), func(i int) {
		p := paths[i]
		t, _ := ParseBackupName(filepath.Base(p))
		info := BackupInfo{Path: p, Time: t, Compressed: strings.HasSuffix(p, ".gz")}
		st, err := fsy.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			gone[i] = true
			return
		}
		if err == nil {
			info.Size = st.Size()
		}
		jobs, _, err := readBackup(fsy, p, true)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !fsys.Exists(fsy, p):
			gone[i] = true
		case err != nil:
			info.Problem = err.Error()
		default:
			info.Verified = true
			info.Jobs = len(jobs)
			info.KeyIDs = keyIDsOf(maps.Values(jobs))
		}
		out[i] = info
	})
	kept := out[:0]
	for i, info := range out {
		if !gone[i] {
			kept = append(kept, info)
		}
	}
	return kept, nil
}

// CheckRestoreFile verifies a file offered to Restore, as Restore will: its
// content always, and its checksum when a .sha256 sidecar is beside it (an
// operator's own copy of jobs.json has none). It reports whether a checksum
// was checked.
func CheckRestoreFile(path string) (jobs int, checksummed bool, err error) {
	_, serr := fsys.OS.Stat(path + checksumSuffix)
	j, _, err := readBackup(fsys.OS, path, false)
	if err != nil {
		return 0, false, err
	}
	return len(j), serr == nil, nil
}
