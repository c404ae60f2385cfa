//go:build linux

package journal

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/secauto/secauto/pkg/fsys"
)

func TestPreallocateKeepsSize(t *testing.T) {
	path := journalPath(t)
	const room = 4 << 20
	w, err := OpenWriter(fsys.OS, path, 0, Options{Preallocate: room})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(job(1, 100)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != w.Size() {
		t.Fatalf("file is %d bytes, journal %d: preallocation changed the size", fi.Size(), w.Size())
	}
	probe, _ := os.Create(path + ".probe")
	defer probe.Close()
	if err := preallocate(probe, 0, 4096); errors.Is(err, syscall.EOPNOTSUPP) {
		t.Skip("file system cannot preallocate")
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks*512 < room {
		t.Fatalf("%d bytes allocated, want at least %d", st.Blocks*512, room)
	}
	if s := readClean(t, path); len(s.Entries) != 1 {
		t.Fatalf("%d entries", len(s.Entries))
	}
}
