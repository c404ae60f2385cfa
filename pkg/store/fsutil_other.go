//go:build !windows

package store

import "os"

const canSyncDir = true

// replaceFile renames src over dst, atomically.
func replaceFile(src, dst string) error { return os.Rename(src, dst) }
