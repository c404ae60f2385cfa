package journal

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

func job(i int, size int) Change {
	id := fmt.Sprintf("job-%03d", i)
	v := fmt.Sprintf(`{"id":%q,"pad":"%s"}`, id, strings.Repeat("x", size))
	return Change{{Kind: PutJob, Key: id, Value: []byte(v)}}
}

func encode(cs ...Change) []byte {
	b := []byte(magicV2)
	for _, c := range cs {
		b = appendChange(b, c)
	}
	return b
}

func keysOf(entries []Entry) []string {
	var ks []string
	for _, e := range entries {
		for _, r := range e.Change {
			ks = append(ks, r.Key)
		}
	}
	return ks
}

func sameChange(a, b Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || a[i].Key != b[i].Key || string(a[i].Value) != string(b[i].Value) {
			return false
		}
	}
	return true
}

func journalPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "jobs.journal")
}

// faultFS is the real file system, with the journal's file wrapped so a
// test can fail its writes and fsyncs, slow its fsyncs down and count them.
type faultFS struct {
	fsys.FS
	mu        sync.Mutex
	failWrite error // next Write writes half and returns this
	failSync  error // next Sync returns this
	syncDelay time.Duration
	syncs     int
	written   int64 // bytes written through wrapped files
	synced    int64 // written as of the last successful Sync
}

func newFaultFS() *faultFS { return &faultFS{FS: fsys.OS} }

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".journal") {
		return file, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *faultFS) setFailWrite(err error) { f.mu.Lock(); f.failWrite = err; f.mu.Unlock() }
func (f *faultFS) setFailSync(err error)  { f.mu.Lock(); f.failSync = err; f.mu.Unlock() }

func (f *faultFS) counts() (syncs int, written, synced int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs, f.written, f.synced
}

type faultFile struct {
	fsys.File
	fs *faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	fail := f.fs.failWrite
	f.fs.failWrite = nil
	f.fs.mu.Unlock()
	if fail != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: fail}
	}
	n, err := f.File.Write(p)
	f.fs.mu.Lock()
	f.fs.written += int64(n)
	f.fs.mu.Unlock()
	return n, err
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	fail, delay := f.fs.failSync, f.fs.syncDelay
	f.fs.failSync = nil
	f.fs.syncs++
	f.fs.mu.Unlock()
	time.Sleep(delay)
	if fail != nil {
		return fail
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	f.fs.synced = f.fs.written
	f.fs.mu.Unlock()
	return nil
}
