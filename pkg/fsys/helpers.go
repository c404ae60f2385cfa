package fsys

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tempMarker and tempHexLen make the names WriteFileAtomic writes to:
// path + ".tmp-" + 16 hex digits.
const (
	tempMarker = ".tmp-"
	tempHexLen = 16
)

// ErrNotPrivate is the error (wrapped) CheckPrivateDir returns for a
// directory other users could write to or redirect.
var ErrNotPrivate = errors.New("directory is not private")

// WriteFileAtomic replaces path with what write produces, so that after a
// crash at any moment path holds either its old content or the new content,
// whole. It writes a temp file beside path under a name no concurrent call
// shares (see IsTemp), through a 1 MiB buffer, fsyncs it, renames it over
// path and fsyncs the parent directory. The new file has mode perm.
//
// On an error before the rename, the temp file is removed and path is
// untouched. If only the final directory fsync fails, path already holds
// the new content but its durability is unknown; the error says so.
func WriteFileAtomic(fsys FS, path string, perm fs.FileMode, write func(w io.Writer) error) error {
	t, err := WriteTemp(fsys, path, perm, write)
	if err != nil {
		return err
	}
	return Install(fsys, t)
}

// Temp is a file written in full and fsynced under a temporary name beside
// the path it is meant for, not yet in place.
type Temp struct {
	fs   FS
	name string
	path string
	// Info is what stat said of the finished file. A rename keeps it, so
	// it describes the file Install puts at path.
	Info fs.FileInfo
}

// WriteTemp is the first half of WriteFileAtomic: it writes and fsyncs the
// temp file. Install or Discard finishes it.
func WriteTemp(fsys FS, path string, perm fs.FileMode, write func(w io.Writer) error) (_ *Temp, err error) {
	tmp, f, err := createTemp(fsys, path, perm)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			fsys.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return nil, err
	}
	// The file system's errors name the temp file already.
	if err = bw.Flush(); err != nil {
		return nil, err
	}
	if err = f.Sync(); err != nil {
		return nil, err
	}
	if err = f.Close(); err != nil {
		return nil, err
	}
	st, err := fsys.Stat(tmp)
	if err != nil {
		return nil, err
	}
	return &Temp{fs: fsys, name: tmp, path: path, Info: st}, nil
}

// Discard removes a temp file that will not be installed.
func (t *Temp) Discard() { t.fs.Remove(t.name) }

// Install renames each temp file over its path, in order, then fsyncs
// their directory once: files that are replaced together share the one
// directory fsync. The temps must be in the same directory. After a crash,
// each path holds its old or its new content, whole, but one may have been
// replaced without the other. On an error, the temps not yet renamed are
// removed.
func Install(fsys FS, temps ...*Temp) error {
	for i, t := range temps {
		if err := fsys.Rename(t.name, t.path); err != nil {
			for _, rest := range temps[i:] {
				rest.Discard()
			}
			return err
		}
	}
	if len(temps) == 0 {
		return nil
	}
	if err := fsys.SyncDir(filepath.Dir(temps[0].path)); err != nil {
		return fmt.Errorf("%s replaced, but not yet durable: %w", temps[len(temps)-1].path, err)
	}
	return nil
}

// createTemp creates path's temp file exclusively; a name already taken
// (a leftover, or astronomically unlikely, a concurrent call) gets another.
func createTemp(fsys FS, path string, perm fs.FileMode) (string, File, error) {
	var b [tempHexLen / 2]byte
	for try := 0; ; try++ {
		rand.Read(b[:])
		tmp := path + tempMarker + hex.EncodeToString(b[:])
		f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
		if err == nil {
			return tmp, f, nil
		}
		if !errors.Is(err, fs.ErrExist) || try == 10 {
			return "", nil, err
		}
	}
}

// IsTemp reports whether the base name name is a temp file WriteFileAtomic
// writes. After a crash such a file is an unfinished replacement: the file
// it was to replace is intact, so the temp file may be removed.
func IsTemp(name string) bool {
	i := strings.LastIndex(name, tempMarker)
	if i <= 0 || len(name)-i-len(tempMarker) != tempHexLen {
		return false
	}
	for _, c := range name[i+len(tempMarker):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// WriteNewFile creates path, which must not exist, holding data with mode
// perm, and makes both its content and its name durable before returning.
// On an error a partly written file is removed.
func WriteNewFile(fsys FS, path string, perm fs.FileMode, data []byte) error {
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		fsys.Remove(path)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		fsys.Remove(path)
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// ReadFileIfExists returns path's content, or nil and no error when path
// does not exist.
func ReadFileIfExists(fsys FS, path string) ([]byte, error) {
	data, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// MkdirAll creates path and every missing parent with mode perm, and
// fsyncs the parent of each directory it creates, so that a new data
// directory survives a power cut along with the files later made in it.
// A path that exists as a directory is not an error; one that exists as
// something else is.
func MkdirAll(fsys FS, path string, perm fs.FileMode) error {
	path = filepath.Clean(path)
	var missing []string
	for p := path; ; {
		fi, err := fsys.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := fsys.Mkdir(p, perm); err != nil {
			// Another process may have made it meanwhile; its entry may
			// not be durable yet, so sync the parent all the same.
			if fi, serr := fsys.Stat(p); serr != nil || !fi.IsDir() {
				return err
			}
		}
		if parent := filepath.Dir(p); parent != p {
			if err := fsys.SyncDir(parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckPrivateDir returns nil if path is a directory (not a symbolic link
// to one) that neither group nor others can write to. Otherwise its error
// wraps ErrNotPrivate and says how to fix it. On Windows, where the mode
// bits say nothing about access, only the first two checks apply.
func CheckPrivateDir(fsys FS, path string) error {
	return checkPrivateDir(fsys, path, permBitsMeaningful)
}

func checkPrivateDir(fsys FS, path string, checkPerm bool) error {
	fi, err := fsys.Lstat(path)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symbolic link; use the directory it points to instead", ErrNotPrivate, path)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a directory", ErrNotPrivate, path)
	case checkPerm && fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s can be written by other users (mode %04o); run: chmod 700 %s",
			ErrNotPrivate, path, fi.Mode().Perm(), path)
	}
	return nil
}

// Exists reports whether path names anything, a symbolic link included.
// An error other than "does not exist" (permission denied, say) counts as
// existing, so a caller choosing a free name never picks one it cannot see.
func Exists(fsys FS, path string) bool {
	_, err := fsys.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// IsNoSpace reports whether err says the disk (or a quota) is full: ENOSPC,
// EDQUOT on unix, and ERROR_DISK_FULL or ERROR_HANDLE_DISK_FULL on Windows.
func IsNoSpace(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || isNoSpaceOS(err))
}
