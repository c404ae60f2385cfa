//go:build unix

package fsys

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

func openNoFollow(name string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW, perm)
	if err != nil && errors.Is(err, syscall.ELOOP) {
		// ELOOP also means a loop in an earlier element; name the symlink
		// case only when it is the one.
		if fi, lerr := os.Lstat(name); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: ErrSymlink}
		}
	}
	return f, err
}

func syncDir(name string) error { return fsyncDir(name) }

func rename(oldname, newname string) error { return os.Rename(oldname, newname) }

func isNoSpaceOS(err error) bool { return errors.Is(err, syscall.EDQUOT) }

const permBitsMeaningful = true
