package crashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/secauto/secauto/pkg/fsys"
)

const flagNew = os.O_CREATE | os.O_EXCL | os.O_WRONLY

func mustMkdir(t *testing.T, c *FS, dir string) {
	t.Helper()
	if err := fsys.MkdirAll(c, dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// writeFile creates name holding data, syncing the data if syncData.
func writeFile(t *testing.T, c *FS, name, data string, syncData bool) {
	t.Helper()
	f, err := c.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, data); err != nil {
		t.Fatal(err)
	}
	if syncData {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, c *FS, name string) (string, bool) {
	t.Helper()
	data, err := c.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data), true
}

func wantContent(t *testing.T, c *FS, name, want string) {
	t.Helper()
	got, ok := content(t, c, name)
	if !ok {
		t.Fatalf("%s is missing, want %q", name, want)
	}
	if got != want {
		t.Fatalf("%s = %q, want %q", name, got, want)
	}
}

func wantMissing(t *testing.T, c *FS, name string) {
	t.Helper()
	if got, ok := content(t, c, name); ok {
		t.Fatalf("%s = %q, want it missing", name, got)
	}
}

func TestDurableFileSurvives(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/a", "hello", true)
	if err := c.SyncDir("/data"); err != nil {
		t.Fatal(err)
	}
	img := c.Crash()
	wantContent(t, img, "/data/a", "hello")
	fi, err := img.Stat("/data/a")
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 5 {
		t.Fatalf("stat after crash: %v %v", fi, err)
	}
}

func TestUnsyncedBytesVanish(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/a", "hello", true)
	c.SyncDir("/data")
	f, err := c.OpenFile("/data/a", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, " world")
	img := c.Crash()
	wantContent(t, img, "/data/a", "hello")
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write after crash: %v, want ErrCrashed", err)
	}
	if _, err := c.ReadFile("/data/a"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("read after crash: %v, want ErrCrashed", err)
	}
}

func TestRenameWithoutSyncDirIsUndone(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/jobs.json", "old", true)
	writeFile(t, c, "/data/jobs.json.tmp", "new", true)
	c.SyncDir("/data")
	if err := c.Rename("/data/jobs.json.tmp", "/data/jobs.json"); err != nil {
		t.Fatal(err)
	}
	wantContent(t, c, "/data/jobs.json", "new")
	img := c.Crash()
	wantContent(t, img, "/data/jobs.json", "old")
	wantContent(t, img, "/data/jobs.json.tmp", "new")
}

func TestRenameAcrossDirsNeedsBothSynced(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/a")
	mustMkdir(t, c, "/b")
	writeFile(t, c, "/a/f", "x", true)
	c.SyncDir("/a")
	c.Rename("/a/f", "/b/f")
	c.SyncDir("/b")
	img := c.Crash()
	// Only /b was synced: the new name is durable, the old one not yet gone.
	wantContent(t, img, "/b/f", "x")
	wantContent(t, img, "/a/f", "x")
}

func TestCreatedFileNeedsSyncDir(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/a", "synced data", true)
	img := c.Crash()
	wantMissing(t, img, "/data/a")
	if _, err := img.Stat("/data"); err != nil {
		t.Fatalf("MkdirAll's directory should be durable: %v", err)
	}
}

func TestRemoveWithoutSyncDirIsUndone(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/a", "x", true)
	c.SyncDir("/data")
	c.Remove("/data/a")
	wantMissing(t, c, "/data/a")
	wantContent(t, c.Crash(), "/data/a", "x")
}

func TestLinkNeedsSyncDir(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/data")
	writeFile(t, c, "/data/a", "x", true)
	c.SyncDir("/data")
	if err := c.Link("/data/a", "/data/b"); err != nil {
		t.Fatal(err)
	}
	wantContent(t, c, "/data/b", "x")
	c2 := New()
	mustMkdir(t, c2, "/d")
	writeFile(t, c2, "/d/a", "x", true)
	c2.Link("/d/a", "/d/b")
	c2.SyncDir("/d")
	img := c2.Crash()
	wantContent(t, img, "/d/b", "x")
	wantMissing(t, c.Crash(), "/data/b")

	// The two names are one file after the crash too.
	f, _ := img.OpenFile("/d/a", os.O_WRONLY|os.O_APPEND, 0)
	io.WriteString(f, "y")
	f.Close()
	wantContent(t, img, "/d/b", "xy")
}

func TestOSErrorSemantics(t *testing.T) {
	c := New()
	if _, err := c.Stat("/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat missing: %v", err)
	}
	if err := c.Mkdir("/a/b", 0o700); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("mkdir without parent: %v", err)
	}
	mustMkdir(t, c, "/a")
	if err := c.Mkdir("/a", 0o700); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("mkdir existing: %v", err)
	}
	writeFile(t, c, "/a/f", "x", false)
	if _, err := c.OpenFile("/a/f", flagNew, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on existing: %v", err)
	}
	if _, err := c.OpenFile("/a", os.O_WRONLY, 0); err == nil {
		t.Fatal("opened a directory for writing")
	}
	if _, err := c.OpenFile("/a/f/g", os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		t.Fatal("created a file below a file")
	}
	if err := c.Remove("/a"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("remove non-empty dir: %v", err)
	}
	if err := c.Rename("/a/missing", "/a/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rename missing: %v", err)
	}
	writeFile(t, c, "/a/g", "old", false)
	if err := c.Rename("/a/f", "/a/g"); err != nil {
		t.Fatalf("rename over a file: %v", err)
	}
	wantContent(t, c, "/a/g", "x")
	wantMissing(t, c, "/a/f")
	if _, err := c.ReadFile("/a"); err == nil {
		t.Fatal("ReadFile of a directory succeeded")
	}
	r, _ := c.OpenFile("/a/g", os.O_RDONLY, 0)
	if _, err := r.Write([]byte("x")); err == nil {
		t.Fatal("wrote to a read-only file")
	}
	r.Close()
	if err := r.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

func TestFileHandles(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/d")
	f, err := c.OpenFile("/d/f", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fi0, _ := f.Stat()
	io.WriteString(f, "hello world")
	fi1, _ := f.Stat()
	if fi1.Size() != 11 || !fi1.ModTime().After(fi0.ModTime()) {
		t.Fatalf("after write: size %d mtime %v (was %v)", fi1.Size(), fi1.ModTime(), fi0.ModTime())
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt = %d %v %q", n, err, buf)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF {
		t.Fatalf("ReadAt at end = %d %v", n, err)
	}
	if _, err := f.Read(buf); err != io.EOF {
		t.Fatalf("Read at end: %v", err)
	}
	f.Sync()
	f.Close()
	fi2, _ := c.Stat("/d/f")
	if !fi2.ModTime().Equal(fi1.ModTime()) {
		t.Fatal("ModTime changed without a write")
	}
	r, _ := c.OpenFile("/d/f", os.O_RDONLY, 0)
	all, err := io.ReadAll(r)
	if err != nil || string(all) != "hello world" {
		t.Fatalf("ReadAll = %q %v", all, err)
	}
	if r.Name() != "/d/f" {
		t.Fatalf("Name = %q", r.Name())
	}
	w, _ := c.OpenFile("/d/f", os.O_WRONLY, 0)
	if err := w.Truncate(5); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "HE")
	w.Close()
	wantContent(t, c, "/d/f", "HEllo")

	c.Mkdir("/d/sub", 0o700)
	ents, err := c.ReadDir("/d")
	if err != nil || len(ents) != 2 || ents[0].Name() != "f" || ents[0].IsDir() || ents[1].Name() != "sub" || !ents[1].IsDir() || ents[1].Type() != fs.ModeDir {
		t.Fatalf("ReadDir = %v %v", ents, err)
	}
}

func TestQuota(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/d")
	c.SetQuota(10)
	f, _ := c.OpenFile("/d/a", os.O_CREATE|os.O_WRONLY, 0o600)
	n, err := io.WriteString(f, "0123456789abc")
	if n != 10 || !fsys.IsNoSpace(err) {
		t.Fatalf("write past quota = %d, %v; want 10 and ENOSPC", n, err)
	}
	if _, err := io.WriteString(f, "x"); !fsys.IsNoSpace(err) {
		t.Fatalf("write on a full disk: %v", err)
	}
	if err := fsys.WriteNewFile(c, "/d/b", 0o600, []byte("y")); !fsys.IsNoSpace(err) {
		t.Fatalf("WriteNewFile on a full disk: %v", err)
	}
	if fsys.Exists(c, "/d/b") {
		t.Fatal("WriteNewFile left a partial file")
	}
	if err := f.Truncate(4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, _ = c.OpenFile("/d/a", os.O_WRONLY|os.O_APPEND, 0)
	if n, err := io.WriteString(f, "wxyz"); n != 4 || err != nil {
		t.Fatalf("write after truncate freed space = %d, %v", n, err)
	}
	f.Close()
	if c.Used() != 8 {
		t.Fatalf("Used = %d, want 8", c.Used())
	}
	c.Remove("/d/a")
	if err := fsys.WriteNewFile(c, "/d/b", 0o600, []byte("0123456789")); err != nil {
		t.Fatalf("write after remove freed space: %v", err)
	}
	c.SetQuota(-1)
	if err := fsys.WriteNewFile(c, "/d/c", 0o600, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
}

func TestFailSyncAndWrite(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/d")
	eio := syscall.EIO
	c.FailSync("*.journal", eio)
	f, _ := c.OpenFile("/d/jobs.journal", os.O_CREATE|os.O_WRONLY, 0o600)
	io.WriteString(f, "rec")
	if err := f.Sync(); !errors.Is(err, eio) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	if err := fsys.WriteNewFile(c, "/d/other", 0o600, []byte("x")); err != nil {
		t.Fatalf("a file that does not match failed: %v", err)
	}
	c.FailSync("*.journal", nil)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	c.FailWrite("", eio)
	if _, err := f.Write([]byte("x")); !errors.Is(err, eio) {
		t.Fatalf("Write = %v, want EIO", err)
	}
	c.FailWrite("", nil)
	c.SyncDir("/d")
	wantContent(t, c.Crash(), "/d/jobs.journal", "rec")
}

func TestSetCrashAt(t *testing.T) {
	// Each step is one mutating operation, so crashing at n must leave what
	// running the first n-1 steps and crashing by hand leaves.
	var f fsys.File
	// onF runs op on the file the third step opened; if that open was the
	// crash, there is no file, and the step fails as the crash would.
	onF := func(op func(fsys.File) error) func(*FS) error {
		return func(*FS) error {
			if f == nil {
				return ErrCrashed
			}
			return op(f)
		}
	}
	steps := []func(c *FS) error{
		func(c *FS) error { return c.Mkdir("/data", 0o700) },
		func(c *FS) error { return c.SyncDir("/") },
		func(c *FS) (err error) { f, err = c.OpenFile("/data/a", flagNew, 0o600); return err },
		onF(func(f fsys.File) error { _, err := io.WriteString(f, "one"); return err }),
		onF(fsys.File.Sync),
		func(c *FS) error { return c.SyncDir("/data") },
		onF(func(f fsys.File) error { _, err := io.WriteString(f, "two"); return err }),
		onF(func(f fsys.File) error { return f.Truncate(2) }),
		onF(fsys.File.Sync),
		func(c *FS) error { return c.Link("/data/a", "/data/b") },
		func(c *FS) error { return c.Rename("/data/a", "/data/c") },
		func(c *FS) error { return c.SyncDir("/data") },
		func(c *FS) error { return c.Remove("/data/b") },
		func(c *FS) error { return c.SyncDir("/data") },
	}
	wantLabels := []string{"mkdir data", "syncdir /", "create a", "write a", "sync a", "syncdir data",
		"write a", "truncate a", "sync a", "link a→b", "rename a→c", "syncdir data", "remove b", "syncdir data"}
	for n := 1; n <= len(steps); n++ {
		f = nil
		ref := New()
		for i, step := range steps[:n-1] {
			if err := step(ref); err != nil {
				t.Fatalf("step %d: %v", i+1, err)
			}
		}
		want := dump(ref.Crash())

		f = nil
		c := New()
		c.SetCrashAt(n)
		for i, step := range steps {
			err := step(c)
			if i+1 < n && err != nil {
				t.Fatalf("crash at %d: step %d failed early: %v", n, i+1, err)
			}
			if i+1 >= n && !errors.Is(err, ErrCrashed) {
				t.Fatalf("crash at %d: step %d returned %v, want ErrCrashed", n, i+1, err)
			}
		}
		img, ok := c.Crashed()
		if !ok || c.Ops() != n {
			t.Fatalf("crash at %d: crashed %v after %d ops", n, ok, c.Ops())
		}
		if got := dump(img); got != want {
			t.Fatalf("crash at %d (%s): image\n%s\nwant\n%s", n, c.Labels()[n-1], got, want)
		}
		if c.Crash() != img {
			t.Fatal("Crash after SetCrashAt returned another image")
		}
		if n == len(steps) && !slices.Equal(c.Labels(), wantLabels) {
			t.Fatalf("labels = %q, want %q", c.Labels(), wantLabels)
		}
	}
}

// dump lists every name, durable or not, with its content.
func dump(c *FS) string {
	var b strings.Builder
	var walk func(dir string)
	walk = func(dir string) {
		ents, _ := c.ReadDir(dir)
		for _, e := range ents {
			p := strings.TrimSuffix(dir, "/") + "/" + e.Name()
			if e.IsDir() {
				fmt.Fprintf(&b, "%s/\n", p)
				walk(p)
				continue
			}
			data, _ := c.ReadFile(p)
			fmt.Fprintf(&b, "%s %q\n", p, data)
		}
	}
	walk("/")
	return b.String()
}

func TestTornWrites(t *testing.T) {
	sawPrefix, sawRename, sawNoRename := false, false, false
	for seed := range uint64(200) {
		c := New()
		c.SetCrashOptions(CrashOptions{TornWrites: true, Rand: rand.New(rand.NewPCG(seed, 1))})
		mustMkdir(t, c, "/d")
		writeFile(t, c, "/d/log", "durable", true)
		writeFile(t, c, "/d/new", "new", true)
		c.SyncDir("/d")
		f, _ := c.OpenFile("/d/log", os.O_WRONLY|os.O_APPEND, 0)
		io.WriteString(f, "+appended")
		c.Rename("/d/new", "/d/target")
		img := c.Crash()
		log, _ := content(t, img, "/d/log")
		if !strings.HasPrefix("durable+appended", log) || len(log) < len("durable") {
			t.Fatalf("seed %d: log = %q", seed, log)
		}
		if len(log) > len("durable") && len(log) < len("durable+appended") {
			sawPrefix = true
		}
		_, hasNew := content(t, img, "/d/new")
		_, hasTarget := content(t, img, "/d/target")
		if hasNew == hasTarget {
			t.Fatalf("seed %d: a rename half persisted (new %v, target %v)", seed, hasNew, hasTarget)
		}
		sawRename = sawRename || hasTarget
		sawNoRename = sawNoRename || hasNew
	}
	if !sawPrefix || !sawRename || !sawNoRename {
		t.Fatalf("torn writes never showed: prefix %v, rename kept %v, rename lost %v", sawPrefix, sawRename, sawNoRename)
	}
}

func TestTornOverwriteMixesSectors(t *testing.T) {
	old := bytes.Repeat([]byte{'o'}, 4*sectorSize)
	cur := bytes.Repeat([]byte{'n'}, 4*sectorSize)
	for seed := range uint64(50) {
		c := New()
		mustMkdir(t, c, "/d")
		fsys.WriteNewFile(c, "/d/f", 0o600, old)
		f, _ := c.OpenFile("/d/f", os.O_WRONLY, 0)
		f.Write(cur)
		img := c.CrashWith(CrashOptions{TornWrites: true, Rand: rand.New(rand.NewPCG(seed, 2))})
		got, _ := img.ReadFile("/d/f")
		if len(got) != len(old) {
			t.Fatalf("size %d", len(got))
		}
		for off := 0; off < len(got); off += sectorSize {
			s := got[off : off+sectorSize]
			if !bytes.Equal(s, old[:sectorSize]) && !bytes.Equal(s, cur[:sectorSize]) {
				t.Fatalf("seed %d: sector at %d is neither old nor new", seed, off)
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/d")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("/d/g%d", g)
			for i := range 50 {
				err := fsys.WriteFileAtomic(c, name, 0o600, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%d", i)
					return err
				})
				if err != nil && !errors.Is(err, ErrCrashed) {
					t.Error(err)
					return
				}
				c.ReadDir("/d")
				c.Stat(name)
			}
		})
	}
	wg.Go(func() {
		for c.Ops() < 200 {
			runtime.Gosched()
		}
		c.Crash()
	})
	wg.Wait()
	img, ok := c.Crashed()
	if !ok {
		t.Fatal("not crashed")
	}
	ents, _ := img.ReadDir("/d")
	for _, e := range ents {
		if fsys.IsTemp(e.Name()) {
			continue
		}
		data, _ := img.ReadFile("/d/" + e.Name())
		if len(data) == 0 {
			t.Fatalf("%s survived empty", e.Name())
		}
	}
}

func TestTornWritesZeroFill(t *testing.T) {
	sawZeros := false
	for seed := range uint64(50) {
		c := New()
		mustMkdir(t, c, "/d")
		fsys.WriteNewFile(c, "/d/log", 0o600, []byte("durable"))
		f, _ := c.OpenFile("/d/log", os.O_WRONLY|os.O_APPEND, 0)
		io.WriteString(f, "+appended")
		img := c.CrashWith(CrashOptions{TornWrites: true, ZeroFill: true, Rand: rand.New(rand.NewPCG(seed, 3))})
		got, _ := img.ReadFile("/d/log")
		if !bytes.HasPrefix(got, []byte("durable")) || len(got) > len("durable+appended") {
			t.Fatalf("seed %d: log = %q", seed, got)
		}
		tail := got[len("durable"):]
		if len(tail) > 0 && bytes.Count(tail, []byte{0}) == len(tail) {
			sawZeros = true
		} else if !strings.HasPrefix("+appended", string(tail)) {
			t.Fatalf("seed %d: tail %q is neither zeros nor the bytes written", seed, tail)
		}
	}
	if !sawZeros {
		t.Fatal("no crash kept a zero-filled tail")
	}
}

func TestOpenDirectory(t *testing.T) {
	c := New()
	mustMkdir(t, c, "/d")
	for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_CREATE | os.O_RDONLY, os.O_TRUNC | os.O_RDONLY} {
		if _, err := c.OpenFile("/d", flag, 0); !errors.Is(err, syscall.EISDIR) {
			t.Errorf("flag %#x: %v, want EISDIR", flag, err)
		}
	}
	d, err := c.OpenFile("/d", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// fsync of a directory handle is SyncDir, as on unix.
	fsys.WriteNewFile(c, "/d/f", 0o600, nil)
	c.Remove("/d/f")
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, c.Crash(), "/d/f")
}
