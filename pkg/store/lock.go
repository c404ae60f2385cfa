package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// lockPatience is how long Open waits for a lock held by someone else.
const lockPatience = 200 * time.Millisecond

// dirLock is a held secauto.lock.
type dirLock struct {
	fl  *flock.Flock
	dir string
}

// acquireLock makes this process the directory's only writer and records
// who it is.
func acquireLock(dir string, o Owner) (*dirLock, error) {
	lpath := filepath.Join(dir, LockFile)
	if st, err := os.Lstat(lpath); err == nil && st.Mode()&os.ModeSymlink != 0 {
		return nil, &DirError{Path: dir, Err: fmt.Errorf("%s is a symbolic link", lpath)}
	}
	fl := flock.New(lpath, flock.SetPermissions(fileMode))
	// Locked probes the lock with a shared lock held for an instant; a
	// short retry keeps such a probe from turning a writer away.
	ctx, cancel := context.WithTimeout(context.Background(), lockPatience)
	defer cancel()
	ok, err := fl.TryLockContext(ctx, 10*time.Millisecond)
	if errors.Is(err, context.DeadlineExceeded) {
		ok, err = false, nil
	}
	if err != nil {
		return nil, &DirError{Path: dir, Err: fmt.Errorf("lock %s: %w", lpath, err)}
	}
	if !ok {
		owner, _ := ReadOwner(dir)
		return nil, &LockedError{Path: lpath, Owner: owner}
	}
	l := &dirLock{fl: fl, dir: dir}
	if err := l.writeOwner(fillOwner(o)); err != nil {
		fl.Unlock()
		return nil, &DirError{Path: dir, Err: err}
	}
	return l, nil
}

func (l *dirLock) release() error { return l.fl.Unlock() }

func fillOwner(o Owner) Owner {
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.StartedAt.IsZero() {
		o.StartedAt = time.Now().UTC()
	}
	return o
}

// SetOwner updates what secauto.lock says about this process, typically the
// API address once the daemon listens.
func (s *FileStore) SetOwner(o Owner) error {
	if s.closed.Load() {
		// The lock is released: another process may hold it and its
		// record now.
		return ErrClosed
	}
	if s.w == nil {
		return ErrReadOnly
	}
	if s.lock == nil {
		return nil
	}
	return s.lock.writeOwner(fillOwner(o))
}

// ownerOffset is where the owner record starts in secauto.lock. On Windows
// the lock covers byte 0 and no other handle may read or write it, so the
// record lives after it.
const ownerOffset = 1

// writeOwner rewrites the lock file in place: renaming a new file over it
// would leave the lock on an unlinked inode and let a second writer in.
func (l *dirLock) writeOwner(o Owner) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	f, err := os.OpenFile(filepath.Join(l.dir, LockFile), os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, ownerOffset); err != nil {
		return fmt.Errorf("record owner in %s: %w", LockFile, err)
	}
	if err := f.Truncate(ownerOffset + int64(len(data))); err != nil {
		return err
	}
	return f.Sync()
}

// ReadOwner returns what secauto.lock in dir says about the process that
// holds (or last held) it. It does not tell whether the lock is held.
func ReadOwner(dir string) (Owner, error) {
	var o Owner
	var err error
	// The holder may be rewriting the file; a torn read parses badly, so try again.
	for range 5 {
		var data []byte
		data, err = readOwnerBytes(filepath.Join(dir, LockFile))
		if errors.Is(err, fs.ErrNotExist) {
			return o, err
		}
		if err == nil {
			if err = json.Unmarshal(data, &o); err == nil {
				return o, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return o, err
}

func readOwnerBytes(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() <= ownerOffset {
		return nil, errors.New("the lock file records no owner")
	}
	data := make([]byte, st.Size()-ownerOffset)
	n, err := f.ReadAt(data, ownerOffset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return data[:n], nil
}

// Locked reports whether a process holds dir's lock, and if so what the
// lock file says about it.
func Locked(dir string) (bool, Owner, error) {
	fl := flock.New(dir + string(os.PathSeparator) + LockFile)
	if _, err := os.Stat(fl.Path()); errors.Is(err, fs.ErrNotExist) {
		return false, Owner{}, nil
	}
	ok, err := fl.TryRLock()
	if err != nil {
		return false, Owner{}, &DirError{Path: dir, Err: err}
	}
	if ok {
		fl.Unlock()
		return false, Owner{}, nil
	}
	o, _ := ReadOwner(dir)
	return true, o, nil
}
