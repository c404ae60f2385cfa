package store

import (
	"errors"
	"os"
	"syscall"
	"time"
)

const canSyncDir = false

// replaceFile renames src over dst. Windows refuses while another process
// has dst open (a script reading jobs.json, an antivirus scan), so it
// retries for a while before giving up.
func replaceFile(src, dst string) error {
	var err error
	for wait := 5 * time.Millisecond; wait < 3*time.Second; wait *= 2 {
		if err = os.Rename(src, dst); err == nil {
			return nil
		}
		var errno syscall.Errno
		if !errors.As(err, &errno) || (errno != syscall.ERROR_ACCESS_DENIED && errno != 32 /* ERROR_SHARING_VIOLATION */) {
			return err
		}
		time.Sleep(wait)
	}
	return err
}
