package store

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

const (
	dirMode  = 0o700
	fileMode = 0o600
	// stampLayout names backups and files moved aside, in UTC.
	stampLayout = "20060102-150405"
	createFlags = os.O_CREATE | os.O_EXCL | os.O_WRONLY
)

// files writes the data directory's whole files — snapshots, backups,
// copies of damaged files — one writer of each kind at a time.
type files struct {
	fs  fsys.FS
	dir string
	// snapMu is held while jobs.json is replaced (a compaction or a
	// restore), backupMu while a backup is written or old ones removed.
	snapMu   sync.Mutex
	backupMu sync.Mutex
}

func (f *files) path(name string) string { return filepath.Join(f.dir, name) }

// cleanTemps removes what an interrupted write left: temp files, and
// checksum sidecars whose backup was never renamed into place.
func (f *files) cleanTemps() {
	ents, err := f.fs.ReadDir(f.dir)
	if err != nil {
		return
	}
	removed := false
	for _, e := range ents {
		name := e.Name()
		orphan := false
		if base, ok := strings.CutSuffix(name, checksumSuffix); ok {
			if _, isBackup := ParseBackupName(base); isBackup && !fsys.Exists(f.fs, f.path(base)) {
				orphan = true
			}
		}
		// The older layout's temp names were the file's name plus ".tmp".
		old := strings.HasSuffix(name, ".tmp") && (strings.HasPrefix(name, SnapshotFile) || strings.HasPrefix(name, JournalFile) || strings.HasPrefix(name, RecordsFile))
		if e.Type().IsRegular() && (fsys.IsTemp(name) || orphan || old) {
			if f.fs.Remove(f.path(name)) == nil {
				removed = true
			}
		}
	}
	if removed {
		f.fs.SyncDir(f.dir)
	}
}

func randomSuffix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// freeStamped returns base+stamp for the first second at or after t whose
// name is not taken.
func freeStamped(fsy fsys.FS, base string, t time.Time) string {
	t = t.UTC().Truncate(time.Second)
	for {
		if p := base + t.Format(stampLayout); !fsys.Exists(fsy, p) {
			return p
		}
		t = t.Add(time.Second)
	}
}

// moveAside keeps the bytes of a damaged file under a stamped name
// (path.corrupt-YYYYMMDD-HHMMSS). It hard-links where it can, so the
// original stays in place until the caller replaces it atomically; else it
// copies. Never a rename: until its replacement is durable, the damaged
// file is all there is.
func moveAside(fsy fsys.FS, path string, now time.Time) (string, error) {
	dst := freeStamped(fsy, path+".corrupt-", now)
	if err := fsy.Link(path, dst); err != nil {
		data, err := fsy.ReadFile(path)
		if err != nil {
			return "", err
		}
		if err := fsys.WriteNewFile(fsy, dst, fileMode, data); err != nil {
			return "", err
		}
		return dst, nil
	}
	return dst, fsy.SyncDir(filepath.Dir(path))
}

// forEachParallel runs fn(0..n-1) on every core.
func forEachParallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
