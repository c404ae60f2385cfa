package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const (
	dirMode  = 0o700
	fileMode = 0o600
	// stampLayout names backups and files moved aside, in UTC.
	stampLayout = "20060102-150405"
)

// writeFileAtomic replaces dir/name with what write produces: it writes a
// temp file beside it, fsyncs it, renames it over the old file and fsyncs
// the directory, so a crash leaves either the old or the new file, whole.
func writeFileAtomic(path string, write func(w io.Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = replaceFile(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or create in dir durable. Windows cannot sync a
// directory (NTFS journals the rename itself), so there it does nothing.
func syncDir(dir string) error {
	if !canSyncDir {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// freeStampedPath returns base+stamp+suffix for the first second at or
// after t whose name (and, for backups, whose .gz twin) is not taken, so two
// files made in the same second keep the fixed name format.
func freeStampedPath(base, suffix string, t time.Time, alsoFree ...string) string {
	t = t.UTC().Truncate(time.Second)
	for {
		stamp := t.Format(stampLayout)
		p := base + stamp + suffix
		taken := exists(p)
		for _, alt := range alsoFree {
			taken = taken || exists(base+stamp+alt)
		}
		if !taken {
			return p
		}
		t = t.Add(time.Second)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// moveAside keeps the bytes of a damaged file under a stamped name. It
// hard-links where it can so the original path stays in place until the
// caller replaces it atomically; elsewhere it copies.
func moveAside(path string, now time.Time) (string, error) {
	dst := freeStampedPath(path+".corrupt-", "", now)
	if err := os.Link(path, dst); err != nil {
		if err := copyFile(path, dst); err != nil {
			return "", err
		}
	}
	return dst, syncDir(filepath.Dir(path))
}

// writeAside writes data as a new stamped file next to path, durably.
func writeAside(path string, data []byte, now time.Time) (string, error) {
	dst := freeStampedPath(path+".corrupt-", "", now)
	if err := writeNewFile(dst, data); err != nil {
		return "", err
	}
	return dst, syncDir(filepath.Dir(path))
}

func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeNewFile(dst, data)
}

// readFileIfExists returns nil, nil for a missing file.
func readFileIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
