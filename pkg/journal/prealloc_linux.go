//go:build linux

package journal

import (
	"errors"

	"golang.org/x/sys/unix"
)

// preallocate reserves [off, off+n) of f's blocks without changing its
// size, so the appends that land there cannot fail for want of space. Only
// files with a descriptor (an *os.File) can; others are left alone.
func preallocate(f any, off, n int64) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return errors.ErrUnsupported
	}
	return unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
}
