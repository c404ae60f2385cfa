package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"

	"github.com/secauto/secauto/pkg/fsys"
)

// snapFile is an open jobs.json that index entries read their bytes from.
// A compaction replaces jobs.json by name and moves the entries to the new
// file; the old one stays open, so that a listing or backup still holding
// its entries reads them, and is closed once nothing refers to it.
type snapFile struct {
	f    fsys.File
	name string
}

func openSnapFile(fsy fsys.FS, path string) (*snapFile, error) {
	f, err := fsy.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	sf := &snapFile{f: f, name: path}
	runtime.AddCleanup(sf, func(f fsys.File) { f.Close() }, f)
	return sf, nil
}

// read returns the size bytes at off, checked against crc.
func (sf *snapFile) read(off int64, size uint32, crc uint32) ([]byte, error) {
	buf := make([]byte, size)
	if err := sf.readAt(buf, off); err != nil {
		return nil, err
	}
	if crc32.Checksum(buf, crcTable) != crc {
		return nil, sf.rotted(off)
	}
	return buf, nil
}

func (sf *snapFile) readAt(buf []byte, off int64) error {
	n, err := sf.f.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s at offset %d: %w", sf.name, off, err)
}

func (sf *snapFile) rotted(off int64) error {
	return fmt.Errorf("%s at offset %d: %w; `secauto verify` reports it and the next start takes it from a backup", sf.name, off, errJobRotted)
}

// snapCursor reads entries' bytes for a pass over jobs in id order — a
// snapshot or a backup — through a window of the file, since in that order
// the jobs of a jobs.json follow one another: one read per window, not per
// job. What it returns is valid until the next call.
type snapCursor struct {
	sf   *snapFile
	base int64
	buf  []byte
}

const cursorWindow = 1 << 20

func (c *snapCursor) bytes(e *entry) ([]byte, error) {
	if e.snap == nil {
		return e.raw, nil
	}
	end := e.off + int64(e.size)
	if c.sf != e.snap || e.off < c.base || end > c.base+int64(len(c.buf)) {
		if err := c.fill(e); err != nil {
			return nil, err
		}
	}
	b := c.buf[e.off-c.base : end-c.base]
	if crc32.Checksum(b, crcTable) != e.crc {
		return nil, e.snap.rotted(e.off)
	}
	return b, nil
}

func (c *snapCursor) fill(e *entry) error {
	want := max(cursorWindow, int(e.size))
	if cap(c.buf) < want {
		c.buf = make([]byte, want)
	}
	c.buf = c.buf[:want]
	n, err := e.snap.f.ReadAt(c.buf, e.off)
	c.sf, c.base, c.buf = e.snap, e.off, c.buf[:n]
	if n < int(e.size) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read %s at offset %d: %w", e.snap.name, e.off, err)
	}
	return nil
}
