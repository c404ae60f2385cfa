package fsys_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/secauto/secauto/pkg/fsys"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestOpenFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "jobs.json")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot make a symbolic link here: %v", err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY | os.O_TRUNC, os.O_CREATE | os.O_WRONLY, os.O_RDWR | os.O_APPEND} {
		f, err := fsys.OS.OpenFile(link, flag, 0o600)
		if err == nil {
			f.Close()
			t.Fatalf("flag %#x: opened a symbolic link", flag)
		}
		if !errors.Is(err, fsys.ErrSymlink) {
			t.Errorf("flag %#x: error %v does not wrap ErrSymlink", flag, err)
		}
	}
	if got := readString(t, target); got != "secret" {
		t.Fatalf("the link's target changed: %q", got)
	}
	// A link to the file as a directory element is followed: only the last
	// element is refused.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o600)
	if err := os.Symlink(sub, filepath.Join(dir, "sublink")); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OS.OpenFile(filepath.Join(dir, "sublink", "f"), os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("a link in a directory element was refused: %v", err)
	}
	f.Close()
}

func TestOSFileOperations(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a")
	f, err := fsys.OS.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "hello")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := fsys.OS.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
	if f, err := fsys.OS.OpenFile(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) || f != nil {
		t.Fatalf("open missing = %v, %v; want a nil File and ErrNotExist", f, err)
	}
	if err := fsys.OS.Link(p, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.OS.Rename(filepath.Join(dir, "b"), filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.OS.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(dir, "c")); got != "hell" {
		t.Fatalf("c = %q", got)
	}
	if runtime.GOOS != "windows" {
		if err := fsys.OS.SyncDir(filepath.Join(dir, "missing")); err == nil {
			t.Fatal("SyncDir of a missing directory succeeded")
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jobs.json")
	if err := fsys.WriteFileAtomic(fsys.OS, p, 0o600, writeString("one")); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFileAtomic(fsys.OS, p, 0o600, writeString("two")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "two" {
		t.Fatalf("content = %q", got)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"jobs.json"}) {
		t.Fatalf("directory holds %q", names)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
}

func TestWriteFileAtomicErrorKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jobs.json")
	os.WriteFile(p, []byte("old"), 0o600)
	boom := errors.New("boom")
	big := bytes.Repeat([]byte("x"), 3<<20) // past the buffer, so bytes reach the temp file
	err := fsys.WriteFileAtomic(fsys.OS, p, 0o600, func(w io.Writer) error {
		w.Write(big)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want boom", err)
	}
	if got := readString(t, p); got != "old" {
		t.Fatalf("content = %q, want old", got)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"jobs.json"}) {
		t.Fatalf("the temp file was left: %q", names)
	}
	// A target in a missing directory fails without leaving anything.
	if err := fsys.WriteFileAtomic(fsys.OS, filepath.Join(dir, "no", "f"), 0o600, writeString("x")); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}

func TestWriteFileAtomicUniqueTemps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jobs.json")
	const n = 8
	var all sync.WaitGroup
	all.Add(n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = fsys.WriteFileAtomic(fsys.OS, p, 0o600, func(w io.Writer) error {
				// Every call holds its temp file open until all have one.
				all.Done()
				all.Wait()
				_, err := fmt.Fprintf(w, "writer %d", i)
				return err
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	got := readString(t, p)
	if !strings.HasPrefix(got, "writer ") || len(got) != len("writer 0") {
		t.Fatalf("content = %q: writers shared a temp file", got)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"jobs.json"}) {
		t.Fatalf("directory holds %q", names)
	}
}

func TestIsTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jobs.json")
	var seen string
	fsys.WriteFileAtomic(fsys.OS, p, 0o600, func(w io.Writer) error {
		names := listDir(t, dir)
		if len(names) == 1 {
			seen = names[0]
		}
		return nil
	})
	if !strings.HasPrefix(seen, "jobs.json.tmp-") || !fsys.IsTemp(seen) {
		t.Fatalf("temp file %q not recognised", seen)
	}
	for name, want := range map[string]bool{
		"jobs.json.tmp-0123456789abcdef":   true,
		"x.tmp-ffffffffffffffff":           true,
		"jobs.json":                        false,
		"jobs.json.tmp":                    false,
		"jobs.json.tmp-0123456789abcde":    false,
		"jobs.json.tmp-0123456789abcdefa":  false,
		"jobs.json.tmp-0123456789ABCDEF":   false,
		"jobs.json.tmp-0123456789abcdeg":   false,
		".tmp-0123456789abcdef":            false,
		"jobs.json.backup.20250709-143000": false,
	} {
		if got := fsys.IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWriteNewFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "aside")
	if err := fsys.WriteNewFile(fsys.OS, p, 0o600, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, p); got != "data" {
		t.Fatalf("content = %q", got)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if err := fsys.WriteNewFile(fsys.OS, p, 0o600, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteNewFile = %v, want ErrExist", err)
	}
	if got := readString(t, p); got != "data" {
		t.Fatalf("an existing file was changed: %q", got)
	}
}

func TestReadFileIfExists(t *testing.T) {
	dir := t.TempDir()
	data, err := fsys.ReadFileIfExists(fsys.OS, filepath.Join(dir, "missing"))
	if data != nil || err != nil {
		t.Fatalf("missing file = %q, %v", data, err)
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600)
	if data, err := fsys.ReadFileIfExists(fsys.OS, filepath.Join(dir, "f")); string(data) != "x" || err != nil {
		t.Fatalf("file = %q, %v", data, err)
	}
	if _, err := fsys.ReadFileIfExists(fsys.OS, dir); err == nil {
		t.Fatal("reading a directory succeeded")
	}
}

func TestMkdirAll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "c")
	if err := fsys.MkdirAll(fsys.OS, p, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Fatalf("stat: %v %v", fi, err)
	}
	if err := fsys.MkdirAll(fsys.OS, p, 0o700); err != nil {
		t.Fatalf("existing directory: %v", err)
	}
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if err := fsys.MkdirAll(fsys.OS, filepath.Join(f, "x"), 0o700); err == nil {
		t.Fatal("made a directory below a file")
	}
	if err := fsys.MkdirAll(fsys.OS, f, 0o700); err == nil {
		t.Fatal("a file was taken for a directory")
	}
}

func TestCheckPrivateDir(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	os.Chmod(private, 0o700)
	if err := fsys.CheckPrivateDir(fsys.OS, private); err != nil {
		t.Fatalf("0700: %v", err)
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777) // past the umask
	err := fsys.CheckPrivateDir(fsys.OS, open)
	if runtime.GOOS == "windows" {
		if err != nil {
			t.Fatalf("windows: %v", err)
		}
	} else {
		if !errors.Is(err, fsys.ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 700 "+open) {
			t.Fatalf("0777: %v", err)
		}
		os.Chmod(open, 0o750)
		if err := fsys.CheckPrivateDir(fsys.OS, open); err != nil {
			t.Fatalf("0750: %v", err)
		}
		os.Chmod(open, 0o720)
		if err := fsys.CheckPrivateDir(fsys.OS, open); !errors.Is(err, fsys.ErrNotPrivate) {
			t.Fatalf("0720: %v", err)
		}
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if err := fsys.CheckPrivateDir(fsys.OS, file); !errors.Is(err, fsys.ErrNotPrivate) {
		t.Fatalf("a file: %v", err)
	}
	if err := fsys.CheckPrivateDir(fsys.OS, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	link := filepath.Join(dir, "link")
	if os.Symlink(private, link) == nil {
		if err := fsys.CheckPrivateDir(fsys.OS, link); !errors.Is(err, fsys.ErrNotPrivate) {
			t.Fatalf("a symbolic link: %v", err)
		}
	}
}

func TestExists(t *testing.T) {
	dir := t.TempDir()
	if !fsys.Exists(fsys.OS, dir) || fsys.Exists(fsys.OS, filepath.Join(dir, "missing")) {
		t.Fatal("Exists is wrong about a directory or a missing name")
	}
	link := filepath.Join(dir, "dangling")
	if os.Symlink(filepath.Join(dir, "nowhere"), link) == nil && !fsys.Exists(fsys.OS, link) {
		t.Fatal("a dangling symbolic link does not exist")
	}
}

func TestIsNoSpace(t *testing.T) {
	full := &fs.PathError{Op: "write", Path: "jobs.journal", Err: syscall.ENOSPC}
	if !fsys.IsNoSpace(full) || !fsys.IsNoSpace(fmt.Errorf("append: %w", full)) {
		t.Fatal("ENOSPC not recognised")
	}
	if fsys.IsNoSpace(nil) || fsys.IsNoSpace(syscall.EIO) || fsys.IsNoSpace(errors.New("no space")) {
		t.Fatal("another error taken for a full disk")
	}
}
