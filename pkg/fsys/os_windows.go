//go:build windows

package fsys

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// openNoFollow refuses a symbolic link found by Lstat. Windows has no
// O_NOFOLLOW, and creating a symbolic link there takes a privilege an
// attacker of a data directory rarely has, so the check before the open is
// enough. Other reparse points (deduplicated or cloud files) are ordinary
// files to their owner and stay readable.
func openNoFollow(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrSymlink}
	}
	if flag == os.O_RDONLY {
		return openShared(name)
	}
	return os.OpenFile(name, flag, perm)
}

// openShared opens name for reading with every sharing mode, delete
// included: the store keeps jobs.json open to read jobs from it, and a
// compaction renames a new jobs.json over it. As on POSIX, the open handle
// goes on reading the file it opened.
func openShared(name string) (*os.File, error) {
	p, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ,
		syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL|syscall.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		// syscall.Errno tells fs.ErrNotExist and fs.ErrPermission.
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(h), name), nil
}

// syncDir does nothing: Windows cannot open a directory for fsync, and NTFS
// journals creates and renames itself.
func syncDir(name string) error { return nil }

// rename retries while Windows refuses because another process (a script
// reading jobs.json, an antivirus scan) has newname open.
func rename(oldname, newname string) error {
	var err error
	for wait := 5 * time.Millisecond; wait < 3*time.Second; wait *= 2 {
		if err = os.Rename(oldname, newname); err == nil {
			return nil
		}
		var errno syscall.Errno
		if !errors.As(err, &errno) || (errno != syscall.ERROR_ACCESS_DENIED && errno != errorSharingViolation) {
			return err
		}
		time.Sleep(wait)
	}
	return err
}

const (
	errorSharingViolation syscall.Errno = 32
	errorHandleDiskFull   syscall.Errno = 39
	errorDiskFull         syscall.Errno = 112
)

func isNoSpaceOS(err error) bool {
	return errors.Is(err, errorDiskFull) || errors.Is(err, errorHandleDiskFull)
}

const permBitsMeaningful = false
