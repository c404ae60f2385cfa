// Package fsys is the file system the job store writes through: a small
// interface over the operations whose durability the store depends on, the
// real implementation (OS), and helpers that get those operations right once
// (atomic replacement, durable creation). Tests swap in an implementation that
// forgets what was not made durable (package crashfs) to prove the store
// survives a power cut at any point.
//
// The durability rules the interface assumes are POSIX's: written bytes are
// durable once File.Sync returns; a created, renamed or removed name is
// durable once SyncDir of its directory returns.
package fsys

import (
	"io"
	"io/fs"
)

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync makes the file's content durable (fsync).
	Sync() error
	// Truncate changes the file's size; the new size is durable after Sync.
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Name() string
}

// FS is the file system a data directory lives on. Names are paths as the
// os package takes them. Implementations never follow a symbolic link at the
// last element of a name they create or open for writing.
type FS interface {
	// OpenFile is os.OpenFile, refusing a symbolic link as the last element.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
	Lstat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	// Mkdir creates one directory; the new entry is durable after SyncDir
	// of its parent.
	Mkdir(name string, perm fs.FileMode) error
	// Rename replaces newname atomically; durable after SyncDir.
	Rename(oldname, newname string) error
	Remove(name string) error
	// Link makes newname a second name of oldname's file. It may return an
	// error on file systems without hard links; callers then copy.
	Link(oldname, newname string) error
	// SyncDir makes the entries of directory name durable.
	SyncDir(name string) error
}
