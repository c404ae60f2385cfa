//go:build unix

package seal

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

func checkPrivate(path string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s may be read or written by other users (mode %04o); run chmod 600 %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Getuid(); int(st.Uid) != uid {
			return fmt.Errorf("%s is owned by uid %d, not by the user secauto runs as (uid %d); run chown %d %s", path, st.Uid, uid, uid, path)
		}
	}
	return nil
}
