package journal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secauto/secauto/pkg/fsys"
)

// Cut replaces the journal with its header plus the bytes after Position
// mark: everything written after a snapshot that covers the journal up to
// mark. It is
// atomic: the new file is complete and durable before it replaces the old
// one, so a crash leaves one or the other. It waits for the batch being
// written; changes enqueued meanwhile go into the new file. Afterwards
// Size is the header plus the bytes kept.
//
// A failure before the replacement leaves the old journal in use and the
// writer working (a full disk wraps ErrNoSpace); a failure after it, when
// the file in use is unknown or its name not durable, fails the writer.
func (w *Writer) Cut(mark int64) error {
	req := &cutReq{mark: mark, done: make(chan error, 1)}
	w.mu.Lock()
	switch {
	case w.closing:
		w.mu.Unlock()
		return ErrClosed
	case w.err != nil:
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.cuts = append(w.cuts, req)
	w.mu.Unlock()
	w.wake()
	return <-req.done
}

func (w *Writer) cut(mark int64) error {
	w.mu.Lock()
	size, base, err := w.size, w.base, w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	pos := mark
	if mark = headerLen + pos - base; mark < headerLen || mark > size {
		return fmt.Errorf("journal: cut at position %d outside the journal [%d, %d]", pos, base, base+size-headerLen)
	}
	data := make([]byte, headerLen+size-mark)
	copy(data, magicV2)
	if n, err := w.f.ReadAt(data[headerLen:], mark); n < len(data)-headerLen {
		return fmt.Errorf("journal: read %s: %w", w.path, err)
	}
	tmp, err := writeTemp(w.fs, w.path, data)
	if err != nil {
		if fsys.IsNoSpace(err) {
			return fmt.Errorf("journal: cut %s: %w: %w", w.path, ErrNoSpace, err)
		}
		return fmt.Errorf("journal: cut %s: %w", w.path, err)
	}
	// Windows refuses to replace an open file, so ours goes first.
	w.f.Close()
	w.f = nil
	w.allocEnd = 0
	rerr := w.fs.Rename(tmp, w.path)
	if rerr != nil {
		w.fs.Remove(tmp)
	}
	f, err := w.fs.OpenFile(w.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return w.fail(fmt.Errorf("journal: reopen %s after cutting it: %w", w.path, err))
	}
	w.f = f
	if rerr != nil {
		// The old journal is still in place, whole, and open again.
		return fmt.Errorf("journal: cut %s: %w", w.path, rerr)
	}
	if err := w.fs.SyncDir(filepath.Dir(w.path)); err != nil {
		// Until the rename is durable a crash may bring the old journal
		// back, and with it lose whatever is appended to the new one.
		return w.fail(fmt.Errorf("journal: cut %s, but its directory could not be made durable: %w", w.path, err))
	}
	w.mu.Lock()
	w.size = int64(len(data))
	w.base = pos
	w.mu.Unlock()
	return nil
}

// writeTemp writes data durably to a new file beside path, under a name
// fsys.IsTemp recognises as a leftover after a crash.
func writeTemp(fs fsys.FS, path string, data []byte) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	tmp := path + ".tmp-" + hex.EncodeToString(b[:])
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fs.Remove(tmp)
		return "", err
	}
	return tmp, nil
}
