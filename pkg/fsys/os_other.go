//go:build !unix && !windows

package fsys

import (
	"io/fs"
	"os"
)

// openNoFollow refuses a symbolic link found by Lstat: the platform has no
// O_NOFOLLOW.
func openNoFollow(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrSymlink}
	}
	return os.OpenFile(name, flag, perm)
}

func syncDir(name string) error { return fsyncDir(name) }

func rename(oldname, newname string) error { return os.Rename(oldname, newname) }

func isNoSpaceOS(err error) bool { return false }

const permBitsMeaningful = true
