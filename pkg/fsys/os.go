package fsys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// OS is the real file system, through package os. Its OpenFile refuses a
// symbolic link as the last element of the name, so a link planted in a data
// directory cannot redirect a write; its SyncDir fsyncs the directory where
// the platform can (on Windows it does nothing: NTFS journals names itself);
// its Rename on Windows retries for a few seconds while another process holds
// the target open. ReadFile, Stat and ReadDir follow links as package os
// does: reading through a link cannot damage the store.
var OS FS = osFS{}

// ErrSymlink is the error (inside an *fs.PathError) OS.OpenFile returns for
// a name whose last element is a symbolic link.
var ErrSymlink = errors.New("is a symbolic link; refusing to open it")

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := openNoFollow(name, flag, perm)
	if err != nil {
		// A nil *os.File must not become a non-nil File.
		return nil, err
	}
	return f, nil
}

func (osFS) ReadFile(name string) ([]byte, error)       { return os.ReadFile(name) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) Lstat(name string) (fs.FileInfo, error)     { return os.Lstat(name) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error  { return os.Mkdir(name, perm) }
func (osFS) Rename(oldname, newname string) error       { return rename(oldname, newname) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) Link(oldname, newname string) error         { return os.Link(oldname, newname) }
func (osFS) SyncDir(name string) error                  { return syncDir(name) }

// fsyncDir opens and fsyncs a directory. Some file systems cannot sync a
// directory and say so with EINVAL; there the entry is as durable as that
// file system can make it, so that is not an error.
func fsyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	cerr := d.Close()
	if err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync directory %s: %w", name, err)
	}
	return cerr
}
