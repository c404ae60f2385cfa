package fsys_test

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/fsys/crashfs"
)

const (
	dataDir = "/srv/data"
	target  = dataDir + "/jobs.json"
)

var (
	oldContent = strings.Repeat("old ", 1000)
	newContent = strings.Repeat("new!", 3000)
)

// atomicWriter is WriteFileAtomic or a copy of it with a step missing.
type atomicWriter func(fsys.FS, string, fs.FileMode, func(io.Writer) error) error

// crashOutcome runs one replacement of target on a fresh crashfs, crashing
// at mutating operation n of the replacement (0: never), and then, if the
// replacement returned, at once. It returns what the reboot finds at target
// ("" if missing), whether the replacement returned success, and whether
// the crash point n was reached.
func crashOutcome(t *testing.T, write atomicWriter, withOld bool, n int, opts crashfs.CrashOptions) (got string, acked, reached bool) {
	t.Helper()
	c := crashfs.New()
	if err := fsys.MkdirAll(c, dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if withOld {
		if err := fsys.WriteFileAtomic(c, target, 0o600, writeString(oldContent)); err != nil {
			t.Fatal(err)
		}
	}
	c.SetCrashOptions(opts)
	c.SetCrashAt(n)
	werr := write(c, target, 0o600, writeString(newContent))
	if werr != nil && !errors.Is(werr, crashfs.ErrCrashed) {
		t.Fatalf("crash at %d: %v", n, werr)
	}
	_, reached = c.Crashed()
	img := c.Crash()
	data, err := img.ReadFile(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	// What a store does on start: temp files are leftovers.
	ents, _ := img.ReadDir(dataDir)
	for _, e := range ents {
		if e.Name() != "jobs.json" && !fsys.IsTemp(e.Name()) {
			t.Fatalf("crash at %d left %s", n, e.Name())
		}
	}
	return string(data), werr == nil, reached
}

// crashEverywhere calls check with the outcome of a crash at every mutating
// operation of one replacement, and right after it returns.
func crashEverywhere(t *testing.T, write atomicWriter, withOld bool, opts crashfs.CrashOptions, check func(n int, got string, acked bool)) {
	for n := 1; ; n++ {
		got, acked, reached := crashOutcome(t, write, withOld, n, opts)
		check(n, got, acked && !reached)
		if !reached {
			return // the replacement finished before op n; the crash came after it
		}
	}
}

func TestWriteFileAtomicSurvivesEveryCrash(t *testing.T) {
	for _, withOld := range []bool{true, false} {
		for seed := range uint64(20) {
			opts := crashfs.CrashOptions{}
			if seed > 0 {
				opts = crashfs.CrashOptions{TornWrites: true, Rand: rand.New(rand.NewPCG(seed, 7))}
			}
			points := 0
			crashEverywhere(t, fsys.WriteFileAtomic, withOld, opts, func(n int, got string, acked bool) {
				points++
				old := ""
				if withOld {
					old = oldContent
				}
				switch {
				case got != old && got != newContent:
					t.Fatalf("old file %v, seed %d, crash at %d: target holds %d bytes, neither old nor new", withOld, seed, n, len(got))
				case acked && got != newContent:
					t.Fatalf("old file %v, seed %d: WriteFileAtomic returned, then a crash lost the new content", withOld, seed)
				}
			})
			if points < 6 {
				t.Fatalf("only %d crash points", points)
			}
		}
	}
}

// writeWithoutSyncDir is WriteFileAtomic without its last step, the
// directory fsync: the mistake crashfs exists to catch.
func writeWithoutSyncDir(fs fsys.FS, path string, perm fs.FileMode, write func(io.Writer) error) error {
	tmp := path + ".tmp-0123456789abcdef"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fs.Rename(tmp, path)
}

func TestCrashFSCatchesMissingSyncDir(t *testing.T) {
	lost := false
	crashEverywhere(t, writeWithoutSyncDir, true, crashfs.CrashOptions{}, func(n int, got string, acked bool) {
		if acked && got != newContent {
			lost = true
		}
	})
	if !lost {
		t.Fatal("no crash lost the new content after the write returned without a directory fsync")
	}
	// And on a new file, the file itself is gone.
	lost = false
	crashEverywhere(t, writeWithoutSyncDir, false, crashfs.CrashOptions{}, func(n int, got string, acked bool) {
		if acked && got == "" {
			lost = true
		}
	})
	if !lost {
		t.Fatal("no crash lost a new file after the write returned without a directory fsync")
	}
}

func TestMkdirAllIsDurable(t *testing.T) {
	c := crashfs.New()
	if err := fsys.MkdirAll(c, "/a/b/c", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteNewFile(c, "/a/b/c/f", 0o600, []byte("x")); err != nil {
		t.Fatal(err)
	}
	img := c.Crash()
	if data, err := img.ReadFile(filepath.Join("/a/b/c", "f")); err != nil || string(data) != "x" {
		t.Fatalf("after crash: %q, %v", data, err)
	}
}

func TestCheckPrivateDirOnCrashFS(t *testing.T) {
	c := crashfs.New()
	c.Mkdir("/open", 0o777)
	c.Mkdir("/private", 0o700)
	if err := fsys.CheckPrivateDir(c, "/private"); err != nil {
		t.Fatal(err)
	}
	err := fsys.CheckPrivateDir(c, "/open")
	if runtime.GOOS != "windows" && !errors.Is(err, fsys.ErrNotPrivate) {
		t.Fatalf("0777: %v", err)
	}
}
