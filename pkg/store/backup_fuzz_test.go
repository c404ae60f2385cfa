package store

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
)

// FuzzReadBackup offers arbitrary bytes as a backup file, plain and
// gzip-wrapped, with and without a checksum sidecar, the right one or a
// wrong one. Reading never panics,
// CheckRestoreFile agrees with readBackup, the gzip-wrapped file reads as
// the plain one, and a backup that is accepted holds valid jobs and
// round-trips through writeSnapshot unchanged.
func FuzzReadBackup(f *testing.F) {
	f.Add([]byte(seedJobs), uint8(0))
	f.Add([]byte(seedJobs), uint8(1))
	f.Add([]byte(seedJobs), uint8(2))
	f.Add([]byte(`{}`), uint8(0))
	f.Add([]byte("{\n}\n"), uint8(1))
	f.Add([]byte(`{"a": {"id": "a", "status": "pending", "created_at": "2025-01-01T00:00:00Z"}}`), uint8(0))
	f.Add([]byte("{\n\"a\": {\"id\": \"a\", \"status\": \"pending\", \"created_at\": \"2025-01-01T00:00:00Z\"},\n\"b\": {\"id\": \"b\", \"status\": \"completed\", \"created_at\": \"2025-01-01T00:00:00Z\", \"completed_at\": \"2025-01-02T00:00:00Z\"}\n}\n"), uint8(0))
	f.Add([]byte(`{"a": {"id": "b", "status": "pending", "created_at": "2025-01-01T00:00:00Z"}}`), uint8(0))
	f.Add([]byte(`{"a": {"id": "a", "status": "weird"}}`), uint8(0))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, uint8(0))
	f.Add([]byte(`[]`), uint8(2))
	f.Add([]byte(""), uint8(0))

	dir := f.TempDir()
	plain := filepath.Join(dir, "jobs.json.backup.20250709-143000")
	zipped := plain + ".gz"
	f.Fuzz(func(t *testing.T, data []byte, sidecar uint8) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		mem := memFS{plain: data, zipped: gz.Bytes()}
		os.Remove(plain + checksumSuffix)
		writeFuzzFile(t, plain, data)
		// sidecar: 0 none, 1 the right checksums, 2 wrong ones.
		if sidecar%3 != 0 {
			for _, p := range []string{plain, zipped} {
				sum := sha256.Sum256(mem[p])
				if sidecar%3 == 2 {
					sum[0] ^= 1
				}
				mem[p+checksumSuffix] = []byte(hex.EncodeToString(sum[:]) + "  " + filepath.Base(p) + "\n")
			}
			writeFuzzFile(t, plain+checksumSuffix, mem[plain+checksumSuffix])
		}

		jobs, size, err := readBackup(mem, plain, false)
		n, checksummed, cerr := CheckRestoreFile(plain)
		if (err == nil) != (cerr == nil) || err == nil && n != len(jobs) {
			t.Fatalf("readBackup: %d jobs, %v; CheckRestoreFile: %d jobs, %v", len(jobs), err, n, cerr)
		}
		if cerr == nil && checksummed != (sidecar%3 != 0) {
			t.Fatalf("CheckRestoreFile says checksummed=%v with sidecar mode %d", checksummed, sidecar%3)
		}
		if sidecar%3 == 2 && err == nil {
			t.Fatal("a backup with a wrong checksum was accepted")
		}
		_, _, rerr := readBackup(mem, plain, true)
		if sidecar%3 == 0 && rerr == nil {
			t.Fatal("a backup without its checksum was accepted where one is required")
		}

		zjobs, zsize, zerr := readBackup(mem, zipped, false)
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			// Unwrapped once, the gzip file is the plain one.
			if (err == nil) != (zerr == nil) || err == nil && (len(zjobs) != len(jobs) || zsize != size) {
				t.Fatalf("plain: %d jobs, %d bytes, %v; gzip-wrapped: %d jobs, %d bytes, %v", len(jobs), size, err, len(zjobs), zsize, zerr)
			}
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) && size != int64(len(data)) {
			t.Fatalf("size %d, the file holds %d bytes", size, len(data))
		}

		items := make([]keyed, 0, len(jobs))
		for id, e := range jobs {
			var j job.Job
			if err := json.Unmarshal(rawOf(t, e), &j); err != nil {
				t.Fatalf("accepted job %q is not JSON of a job: %v", id, err)
			}
			if j.ID != id {
				t.Fatalf("accepted job stored under %q has id %q", id, j.ID)
			}
			if j.Status != e.status || !j.Status.Valid() {
				t.Fatalf("job %q: status %q indexed as %q", id, j.Status, e.status)
			}
			items = append(items, keyed{id, e})
		}
		var buf bytes.Buffer
		if _, err := writeSnapshot(&buf, items, nil, nil); err != nil {
			t.Fatal(err)
		}
		back, _, err := readBackup(memFS{plain: buf.Bytes()}, plain, false)
		if err != nil {
			t.Fatalf("rewritten backup does not read back: %v\n%s", err, buf.Bytes())
		}
		if len(back) != len(jobs) {
			t.Fatalf("rewritten backup holds %d jobs, want %d", len(back), len(jobs))
		}
		for id, e := range jobs {
			b, ok := back[id]
			if !ok || !bytes.Equal(rawOf(t, b), rawOf(t, e)) || b.status != e.status || b.created != e.created || b.completed != e.completed {
				t.Fatalf("job %q changed on the round trip", id)
			}
		}
	})
}

func writeFuzzFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// memFS holds the files readBackup reads, so that fuzzing is not bound by
// the disk; it offers nothing else.
type memFS map[string][]byte

func (m memFS) ReadFile(name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// OpenFile opens a file for reading only.
func (m memFS) OpenFile(name string, flag int, _ fs.FileMode) (fsys.File, error) {
	b, ok := m[name]
	if !ok || flag != os.O_RDONLY {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{Reader: bytes.NewReader(b), name: name}, nil
}

type memFile struct {
	*bytes.Reader
	name string
}

func (*memFile) Write([]byte) (int, error)    { return 0, errors.ErrUnsupported }
func (*memFile) Close() error                 { return nil }
func (*memFile) Sync() error                  { return errors.ErrUnsupported }
func (*memFile) Truncate(int64) error         { return errors.ErrUnsupported }
func (f *memFile) Name() string               { return f.name }
func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f}, nil }

type memInfo struct{ f *memFile }

func (i memInfo) Name() string                      { return filepath.Base(i.f.name) }
func (i memInfo) Size() int64                       { return i.f.Size() }
func (memInfo) Mode() fs.FileMode                   { return 0o600 }
func (memInfo) ModTime() time.Time                  { return time.Time{} }
func (memInfo) IsDir() bool                         { return false }
func (memInfo) Sys() any                            { return nil }
func (memFS) Stat(string) (fs.FileInfo, error)      { return nil, errors.ErrUnsupported }
func (memFS) Lstat(string) (fs.FileInfo, error)     { return nil, errors.ErrUnsupported }
func (memFS) ReadDir(string) ([]fs.DirEntry, error) { return nil, errors.ErrUnsupported }
func (memFS) Mkdir(string, fs.FileMode) error       { return errors.ErrUnsupported }
func (memFS) Rename(string, string) error           { return errors.ErrUnsupported }
func (memFS) Remove(string) error                   { return errors.ErrUnsupported }
func (memFS) Link(string, string) error             { return errors.ErrUnsupported }
func (memFS) SyncDir(string) error                  { return errors.ErrUnsupported }
