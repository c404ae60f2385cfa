// Package crashfs is an in-memory fsys.FS that models a disk which loses,
// at a crash, everything that was not made durable: bytes written since a
// file's last Sync, and names created, renamed or removed since their
// directory's last SyncDir. Tests run the store on it, crash it at every
// mutating operation in turn (SetCrashAt) and check that whatever the store
// acknowledged is still there in the image the crash leaves.
//
// The model follows POSIX as careful databases read it (SQLite's test VFS,
// etcd's tests): File.Sync makes a file's current bytes durable, and nothing
// else does; SyncDir makes a directory's current entries durable, and
// nothing else does, so a new file whose data was synced is still lost if
// its directory was not, and a rename is durable only once both directories
// involved were synced. With CrashOptions.TornWrites a crash may also keep
// part of what was not made durable, as a real disk may: a prefix of the
// bytes appended to a file, a mix of old and new sectors of bytes
// overwritten, and an in-order prefix of the name changes not yet synced.
//
// Names are cleaned with path/filepath; a relative name is taken from the
// root. Errors match package os: errors.Is(err, fs.ErrNotExist) for a
// missing name, fs.ErrExist for O_EXCL on an existing one, syscall.ENOSPC
// for a full quota. There are no symbolic links. An FS is safe for
// concurrent use.
package crashfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

// ErrCrashed is returned (wrapped in an *fs.PathError or *os.LinkError) by
// every call on an FS, and on files opened from it, once it has crashed:
// the machine is off, so nothing that was still running can succeed.
var ErrCrashed = errors.New("crashfs: the machine crashed")

// sectorSize is the unit in which TornWrites mixes old and new bytes of an
// overwritten region.
const sectorSize = 512

// CrashOptions says how much of what was not made durable a crash keeps.
type CrashOptions struct {
	// TornWrites, when false, keeps exactly the durable state. When true,
	// each file keeps its durable bytes plus a random prefix of the bytes
	// appended since (or, where bytes were overwritten or cut, a random
	// mix of old and new sectors and either length), and the name changes
	// not yet synced survive as a random prefix of them in the order they
	// were made (so an unsynced rename may or may not persist, but never
	// half).
	TornWrites bool
	// ZeroFill, with TornWrites, lets the unsynced bytes a crash keeps read
	// as zeros instead (half the time, for each file): the size reached the
	// disk before the data, as XFS or ext4 with data=writeback allow.
	ZeroFill bool
	// Rand draws the random choices. Nil means a source seeded from the
	// number of operations run, so a crash is reproducible. It is used
	// under the FS's lock; do not share one between FSs used in parallel.
	Rand *rand.Rand
}

// FS is the in-memory file system. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	root    *inode
	clock   time.Time
	used    int64 // current bytes of all linked files
	quota   int64 // < 0: none
	pending []*metaOp

	ops     int
	crashAt int // op number that crashes; 0: none
	labels  []string
	opts    CrashOptions
	crashed bool
	image   *FS

	failSync  map[string]error
	failWrite map[string]error
}

var _ fsys.FS = (*FS)(nil)

type inode struct {
	dir   bool
	perm  fs.FileMode
	mtime time.Time
	nlink int
	freed bool // unlinked: its bytes no longer count against the quota

	// Files.
	data      []byte
	durable   []byte
	durMtime  time.Time
	dirtyFrom int64 // lowest offset changed since the last Sync; math.MaxInt64: none

	// Directories.
	entries    map[string]*inode
	durEntries map[string]*inode
}

// assign is one change to a directory entry; ino nil removes it.
type assign struct {
	dir  *inode
	name string
	ino  *inode
}

// metaOp is the set of entry changes one call made (two for a rename),
// which a journaling file system persists together or not at all.
type metaOp struct{ sets []assign }

// New returns an empty FS: a root directory, durable, no quota.
func New() *FS {
	return newFS(time.Time{})
}

func newFS(clock time.Time) *FS {
	c := &FS{quota: -1, clock: clock}
	c.root = &inode{dir: true, perm: 0o755, nlink: 1, entries: map[string]*inode{}, durEntries: map[string]*inode{}}
	c.root.mtime = c.now()
	return c
}

// now is the modification time for a change: the wall clock, but always
// later than the previous one, so every write changes a file's ModTime.
func (c *FS) now() time.Time {
	t := time.Now().Round(0)
	if !t.After(c.clock) {
		t = c.clock.Add(time.Nanosecond)
	}
	c.clock = t
	return t
}

// SetCrashAt makes the n-th mutating operation from now (1-based) crash the
// FS instead of running: it fails with ErrCrashed, Crashed returns the
// image of what was durable just before it, and every later call fails.
// Mutating operations are OpenFile for writing or creating, Write,
// Truncate, Sync, Rename, Remove, Link, Mkdir and SyncDir. n <= 0 cancels.
// The crash uses the options last given to SetCrashOptions.
func (c *FS) SetCrashAt(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= 0 {
		c.crashAt = 0
		return
	}
	c.crashAt = c.ops + n
}

// SetCrashOptions sets the options SetCrashAt and Crash crash with.
func (c *FS) SetCrashOptions(opts CrashOptions) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opts = opts
}

// Crash cuts the power now: it returns a new FS holding only what survives
// (see CrashOptions; by default exactly the durable state), and every later
// call on c, or on a file opened from it, fails with ErrCrashed. On an FS
// that has already crashed it returns the image of that crash.
func (c *FS) Crash() *FS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashLocked(c.opts)
}

// CrashWith is Crash with the given options.
func (c *FS) CrashWith(opts CrashOptions) *FS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashLocked(opts)
}

// Crashed returns the image a crash left and true, or nil and false if c
// has not crashed.
func (c *FS) Crashed() (*FS, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.image, c.crashed
}

// Ops returns how many mutating operations have been attempted on c, the
// one a crash stopped included.
func (c *FS) Ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Labels returns a label for each mutating operation attempted so far, in
// order: "write jobs.journal", "sync jobs.json.tmp-…", "rename a→b",
// "syncdir data" (base names). The label of operation n is Labels()[n-1].
func (c *FS) Labels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.labels)
}

// SetQuota limits the current bytes of all files together to bytes. A
// Write that would pass it writes the part that fits and returns an error
// wrapping syscall.ENOSPC (fsys.IsNoSpace reports true); a Truncate that
// would pass it changes nothing and fails the same way. Truncating and
// removing files free space. A negative bytes removes the limit.
func (c *FS) SetQuota(bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quota = bytes
}

// Used returns the current bytes of all files, as SetQuota counts them.
func (c *FS) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// FailSync makes File.Sync and SyncDir fail with err for every file or
// directory whose base name matches pattern (filepath.Match syntax; "" or
// "*" matches all). A failed sync makes nothing durable. A nil err removes
// the pattern.
func (c *FS) FailSync(pattern string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failSync = setFault(c.failSync, pattern, err)
}

// FailWrite makes File.Write and File.Truncate fail with err, changing
// nothing, for every file whose base name matches pattern (as FailSync).
// A nil err removes the pattern.
func (c *FS) FailWrite(pattern string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failWrite = setFault(c.failWrite, pattern, err)
}

func setFault(m map[string]error, pattern string, err error) map[string]error {
	if pattern == "" {
		pattern = "*"
	}
	if err == nil {
		delete(m, pattern)
		return m
	}
	if m == nil {
		m = map[string]error{}
	}
	m[pattern] = err
	return m
}

func fault(m map[string]error, base string) error {
	for pattern, err := range m {
		if ok, _ := filepath.Match(pattern, base); ok {
			return err
		}
	}
	return nil
}

// begin counts a mutating operation, crashing instead if it is the one
// SetCrashAt named. c.mu is held.
func (c *FS) begin(label string) error {
	if c.crashed {
		return ErrCrashed
	}
	c.ops++
	c.labels = append(c.labels, label)
	if c.crashAt > 0 && c.ops >= c.crashAt {
		c.crashLocked(c.opts)
		return ErrCrashed
	}
	return nil
}

// alive fails a read once the machine is off. c.mu is held.
func (c *FS) alive() error {
	if c.crashed {
		return ErrCrashed
	}
	return nil
}

func base(name string) string { return filepath.Base(filepath.Clean(name)) }

// split turns a name into its elements below the root.
func split(name string) []string {
	p := filepath.Clean(name)
	p = filepath.ToSlash(p[len(filepath.VolumeName(p)):])
	var parts []string
	for _, e := range strings.Split(p, "/") {
		if e != "" && e != "." && e != ".." {
			parts = append(parts, e)
		}
	}
	return parts
}

func (c *FS) walk(parts []string) (*inode, error) {
	d := c.root
	for _, e := range parts {
		if !d.dir {
			return nil, syscall.ENOTDIR
		}
		next := d.entries[e]
		if next == nil {
			return nil, fs.ErrNotExist
		}
		d = next
	}
	return d, nil
}

func (c *FS) lookup(name string) (*inode, error) { return c.walk(split(name)) }

// lookupParent returns the directory that holds name's last element, the
// element ("" for the root) and the inode it names (nil if none).
func (c *FS) lookupParent(name string) (dir *inode, elem string, ino *inode, err error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", c.root, nil
	}
	dir, err = c.walk(parts[:len(parts)-1])
	if err != nil {
		return nil, "", nil, err
	}
	if !dir.dir {
		return nil, "", nil, syscall.ENOTDIR
	}
	elem = parts[len(parts)-1]
	return dir, elem, dir.entries[elem], nil
}

// apply makes one call's entry changes, current at once and durable only
// when SyncDir reaches each directory. Links are counted up before down, so
// a rename never frees the file it moves.
func (c *FS) apply(sets ...assign) {
	var old []*inode
	for _, s := range sets {
		if o := s.dir.entries[s.name]; o != nil {
			old = append(old, o)
		}
		if s.ino == nil {
			delete(s.dir.entries, s.name)
		} else {
			s.dir.entries[s.name] = s.ino
			s.ino.nlink++
		}
		s.dir.mtime = c.now()
	}
	for _, o := range old {
		o.nlink--
		if o.nlink == 0 && !o.dir && !o.freed {
			o.freed = true
			c.used -= int64(len(o.data))
		}
	}
	c.pending = append(c.pending, &metaOp{sets: sets})
}

func (c *FS) newFile(perm fs.FileMode) *inode {
	t := c.now()
	return &inode{perm: perm.Perm(), mtime: t, durMtime: t, dirtyFrom: math.MaxInt64}
}

func (c *FS) newDir(perm fs.FileMode) *inode {
	return &inode{dir: true, perm: perm.Perm(), mtime: c.now(), entries: map[string]*inode{}, durEntries: map[string]*inode{}}
}

func pathErr(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

func linkErr(op, oldname, newname string, err error) error {
	return &os.LinkError{Op: op, Old: oldname, New: newname, Err: err}
}

const accMode = os.O_RDONLY | os.O_WRONLY | os.O_RDWR

// OpenFile opens name as os.OpenFile does: O_CREATE, O_EXCL, O_TRUNC,
// O_APPEND and the access modes are honoured, perm's permission bits are
// kept as given (no umask), and a directory opened for writing is refused.
func (c *FS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	acc := flag & accMode
	mutating := acc != os.O_RDONLY || flag&(os.O_CREATE|os.O_TRUNC) != 0
	if mutating {
		verb := "open "
		if flag&os.O_CREATE != 0 {
			verb = "create "
		}
		if err := c.begin(verb + base(name)); err != nil {
			return nil, pathErr("open", name, err)
		}
	} else if err := c.alive(); err != nil {
		return nil, pathErr("open", name, err)
	}
	dir, elem, ino, err := c.lookupParent(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	switch {
	case ino == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case ino == nil:
		ino = c.newFile(perm)
		c.apply(assign{dir, elem, ino})
	case flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", name, fs.ErrExist)
	case ino.dir && (acc != os.O_RDONLY || flag&(os.O_CREATE|os.O_TRUNC) != 0):
		return nil, pathErr("open", name, syscall.EISDIR)
	case flag&os.O_TRUNC != 0 && acc != os.O_RDONLY:
		c.truncate(ino, 0)
	}
	return &file{c: c, ino: ino, name: name, base: base(name), flag: flag}, nil
}

// ReadFile returns name's current content.
func (c *FS) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, pathErr("open", name, err)
	}
	ino, err := c.lookup(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	if ino.dir {
		return nil, pathErr("read", name, syscall.EISDIR)
	}
	return bytes.Clone(ino.data), nil
}

// Stat describes name.
func (c *FS) Stat(name string) (fs.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, pathErr("stat", name, err)
	}
	ino, err := c.lookup(name)
	if err != nil {
		return nil, pathErr("stat", name, err)
	}
	return ino.info(base(name)), nil
}

// Lstat is Stat: the FS has no symbolic links.
func (c *FS) Lstat(name string) (fs.FileInfo, error) {
	fi, err := c.Stat(name)
	if pe, ok := err.(*fs.PathError); ok {
		pe.Op = "lstat"
	}
	return fi, err
}

// ReadDir returns the current entries of directory name, sorted by name.
func (c *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, pathErr("open", name, err)
	}
	d, err := c.lookup(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	if !d.dir {
		return nil, pathErr("readdirent", name, syscall.ENOTDIR)
	}
	out := make([]fs.DirEntry, 0, len(d.entries))
	for _, n := range slices.Sorted(maps.Keys(d.entries)) {
		out = append(out, fs.FileInfoToDirEntry(d.entries[n].info(n)))
	}
	return out, nil
}

// Mkdir creates directory name; its entry is durable after SyncDir of the
// parent.
func (c *FS) Mkdir(name string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.begin("mkdir " + base(name)); err != nil {
		return pathErr("mkdir", name, err)
	}
	dir, elem, ino, err := c.lookupParent(name)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	if ino != nil {
		return pathErr("mkdir", name, fs.ErrExist)
	}
	c.apply(assign{dir, elem, c.newDir(perm)})
	return nil
}

// Rename moves oldname to newname, replacing a file there, as os.Rename
// does (it refuses to replace a directory). Durable once SyncDir has run on
// both directories.
func (c *FS) Rename(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.begin("rename " + base(oldname) + "→" + base(newname)); err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	od, oe, oi, err := c.lookupParent(oldname)
	if err == nil && oi == nil {
		err = fs.ErrNotExist
	}
	if err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	if od == nil {
		return linkErr("rename", oldname, newname, syscall.EBUSY)
	}
	nd, ne, ni, err := c.lookupParent(newname)
	if err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	switch {
	case ni == oi:
		return nil
	case nd == nil || ni != nil && ni.dir:
		return linkErr("rename", oldname, newname, syscall.EEXIST)
	case ni != nil && oi.dir:
		return linkErr("rename", oldname, newname, syscall.ENOTDIR)
	case oi.dir && isUnder(split(newname), split(oldname)):
		return linkErr("rename", oldname, newname, syscall.EINVAL)
	}
	c.apply(assign{nd, ne, oi}, assign{od, oe, nil})
	return nil
}

func isUnder(p, dir []string) bool {
	return len(p) > len(dir) && slices.Equal(p[:len(dir)], dir)
}

// Remove removes a file or an empty directory; durable after SyncDir.
func (c *FS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.begin("remove " + base(name)); err != nil {
		return pathErr("remove", name, err)
	}
	dir, elem, ino, err := c.lookupParent(name)
	switch {
	case err != nil:
		return pathErr("remove", name, err)
	case ino == nil:
		return pathErr("remove", name, fs.ErrNotExist)
	case dir == nil:
		return pathErr("remove", name, syscall.EBUSY)
	case ino.dir && len(ino.entries) > 0:
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	c.apply(assign{dir, elem, nil})
	return nil
}

// Link makes newname a second name of file oldname; durable after SyncDir
// of newname's directory.
func (c *FS) Link(oldname, newname string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.begin("link " + base(oldname) + "→" + base(newname)); err != nil {
		return linkErr("link", oldname, newname, err)
	}
	oi, err := c.lookup(oldname)
	if err != nil {
		return linkErr("link", oldname, newname, err)
	}
	if oi.dir {
		return linkErr("link", oldname, newname, syscall.EPERM)
	}
	nd, ne, ni, err := c.lookupParent(newname)
	switch {
	case err != nil:
		return linkErr("link", oldname, newname, err)
	case ni != nil:
		return linkErr("link", oldname, newname, fs.ErrExist)
	}
	c.apply(assign{nd, ne, oi})
	return nil
}

// SyncDir makes the current entries of directory name durable.
func (c *FS) SyncDir(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := base(name)
	if err := c.begin("syncdir " + b); err != nil {
		return pathErr("sync", name, err)
	}
	d, err := c.lookup(name)
	if err != nil {
		return pathErr("open", name, err)
	}
	if !d.dir {
		return pathErr("sync", name, syscall.ENOTDIR)
	}
	if err := fault(c.failSync, b); err != nil {
		return pathErr("sync", name, err)
	}
	c.syncDir(d)
	return nil
}

func (c *FS) syncDir(d *inode) {
	d.durEntries = maps.Clone(d.entries)
	kept := c.pending[:0]
	for _, op := range c.pending {
		sets := op.sets[:0]
		for _, s := range op.sets {
			if s.dir != d {
				sets = append(sets, s)
			}
		}
		op.sets = sets
		if len(sets) > 0 {
			kept = append(kept, op)
		}
	}
	clear(c.pending[len(kept):])
	c.pending = kept
}

// truncate sets ino's size, counting the change against the quota. It
// reports false, changing nothing, if the quota does not allow growth.
func (c *FS) truncate(ino *inode, size int64) bool {
	old := int64(len(ino.data))
	if size > old && !ino.freed && c.quota >= 0 && c.used+size-old > c.quota {
		return false
	}
	if size < old {
		ino.data = ino.data[:size]
	} else {
		ino.data = append(ino.data, make([]byte, size-old)...)
	}
	if !ino.freed {
		c.used += size - old
	}
	ino.dirtyFrom = min(ino.dirtyFrom, min(size, old))
	ino.mtime = c.now()
	return true
}

func (ino *inode) info(name string) fs.FileInfo {
	fi := &fileInfo{name: name, mode: ino.perm, mtime: ino.mtime}
	if ino.dir {
		fi.mode |= fs.ModeDir
	} else {
		fi.size = int64(len(ino.data))
	}
	return fi
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi *fileInfo) Sys() any           { return nil }

// file is an open file. Its offset is guarded by the FS's lock.
type file struct {
	c      *FS
	ino    *inode
	name   string
	base   string
	flag   int
	off    int64
	closed bool
}

func (f *file) Name() string { return f.name }

// check fails a call on a closed file or a crashed FS. f.c.mu is held.
func (f *file) check(op string) error {
	if err := f.c.alive(); err != nil {
		return pathErr(op, f.name, err)
	}
	if f.closed {
		return pathErr(op, f.name, fs.ErrClosed)
	}
	return nil
}

func (f *file) readable() bool { return f.flag&accMode != os.O_WRONLY }
func (f *file) writable() bool { return f.flag&accMode != os.O_RDONLY }

func (f *file) Read(p []byte) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	n, err := f.readAt(p, f.off, "read")
	f.off += int64(n)
	if err == nil && n == 0 && len(p) > 0 {
		err = io.EOF
	}
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if off < 0 {
		return 0, pathErr("readat", f.name, syscall.EINVAL)
	}
	n, err := f.readAt(p, off, "read")
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (f *file) readAt(p []byte, off int64, op string) (int, error) {
	if err := f.check(op); err != nil {
		return 0, err
	}
	if f.ino.dir {
		return 0, pathErr(op, f.name, syscall.EISDIR)
	}
	if !f.readable() {
		return 0, pathErr(op, f.name, syscall.EBADF)
	}
	if off >= int64(len(f.ino.data)) {
		return 0, nil
	}
	return copy(p, f.ino.data[off:]), nil
}

// Write writes at the file's offset (at its end with O_APPEND). Past the
// quota it writes the part that fits and fails with syscall.ENOSPC.
func (f *file) Write(p []byte) (int, error) {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if err := c.begin("write " + f.base); err != nil {
		return 0, pathErr("write", f.name, err)
	}
	if !f.writable() {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if err := fault(c.failWrite, f.base); err != nil {
		return 0, pathErr("write", f.name, err)
	}
	ino := f.ino
	off := f.off
	if f.flag&os.O_APPEND != 0 {
		off = int64(len(ino.data))
	}
	size := int64(len(ino.data))
	n := int64(len(p))
	if !ino.freed && c.quota >= 0 && max(size, off+n)-size > c.quota-c.used {
		// What fits: the bytes over existing ones and the room left.
		n = max(0, min(n, size+max(0, c.quota-c.used)-off))
	}
	if n > 0 {
		if end := off + n; end > size {
			ino.data = append(ino.data, make([]byte, end-size)...)
			if !ino.freed {
				c.used += end - size
			}
		}
		copy(ino.data[off:], p[:n])
		ino.dirtyFrom = min(ino.dirtyFrom, off, size)
		ino.mtime = c.now()
		f.off = off + n
	}
	if n < int64(len(p)) {
		return int(n), pathErr("write", f.name, syscall.ENOSPC)
	}
	return int(n), nil
}

// Truncate changes the file's size; growth counts against the quota.
func (f *file) Truncate(size int64) error {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f.check("truncate"); err != nil {
		return err
	}
	if err := c.begin("truncate " + f.base); err != nil {
		return pathErr("truncate", f.name, err)
	}
	switch {
	case !f.writable() || f.ino.dir:
		return pathErr("truncate", f.name, syscall.EINVAL)
	case size < 0:
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	if err := fault(c.failWrite, f.base); err != nil {
		return pathErr("truncate", f.name, err)
	}
	if !c.truncate(f.ino, size) {
		return pathErr("truncate", f.name, syscall.ENOSPC)
	}
	return nil
}

// Sync makes the file's current bytes durable; on a directory it is
// SyncDir.
func (f *file) Sync() error {
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	label := "sync "
	if f.ino.dir {
		label = "syncdir "
	}
	if err := c.begin(label + f.base); err != nil {
		return pathErr("sync", f.name, err)
	}
	if err := fault(c.failSync, f.base); err != nil {
		return pathErr("sync", f.name, err)
	}
	if f.ino.dir {
		c.syncDir(f.ino)
		return nil
	}
	ino := f.ino
	if ino.dirtyFrom != math.MaxInt64 || len(ino.durable) != len(ino.data) {
		from := min(ino.dirtyFrom, int64(len(ino.durable)), int64(len(ino.data)))
		ino.durable = append(ino.durable[:from], ino.data[from:]...)
	}
	ino.dirtyFrom = math.MaxInt64
	ino.durMtime = ino.mtime
	return nil
}

func (f *file) Stat() (fs.FileInfo, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check("stat"); err != nil {
		return nil, err
	}
	return f.ino.info(f.base), nil
}

func (f *file) Close() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check("close"); err != nil {
		return err
	}
	f.closed = true
	return nil
}
