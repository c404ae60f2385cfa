//go:build !linux

package journal

import "errors"

// preallocate is Linux only (fallocate with FALLOC_FL_KEEP_SIZE); elsewhere
// appends on a full disk fail and are undone like any other.
func preallocate(f any, off, n int64) error { return errors.ErrUnsupported }
