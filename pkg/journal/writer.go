package journal

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

// Options configure a Writer.
type Options struct {
	// OnCommit is called by the writer's goroutine once per batch, in
	// journal order, with the user values of the batch's changes (in the
	// order they were enqueued) and the batch's error (nil once durable),
	// before any waiter of that batch is woken: the store makes the
	// changes visible there. end is the Position just after the batch. It
	// must not call the Writer.
	OnCommit func(users []any, end int64, err error)
	// OnSync is called after each fsync of a batch with how long its write
	// and fsync took and how many changes it held (metrics).
	OnSync func(d time.Duration, changes int)
	// MaxChangeBytes bounds one change's encoded records; Enqueue refuses
	// a larger one with an error wrapping ErrTooLarge. 0, or more than
	// MaxChange, means MaxChange.
	MaxChangeBytes int
	// Preallocate keeps this many bytes allocated past the end of the
	// file (without changing its size), so appends still find room on a
	// full disk. Best effort, Linux only; 0 turns it off.
	Preallocate int64
}

// Writer appends changes to a journal with group commit: every change
// enqueued while one batch is written and fsynced goes into the next batch,
// one write and one fsync for all of them, each change framed on its own.
type Writer struct {
	fs   fsys.FS
	path string
	o    Options
	max  int
	kick chan struct{}
	exit chan struct{}

	mu   sync.Mutex
	cur  *batch
	cuts []*cutReq
	size int64 // durable length, raised after OnCommit
	// base is the Position of the first byte after the header: positions
	// count every byte ever appended, so they survive a Cut unchanged.
	base    int64
	err     error // set once the writer refuses everything
	closing bool

	// Owned by the writer's goroutine once it runs.
	f        fsys.File
	allocEnd int64
}

type batch struct {
	buf   []byte
	users []any
	done  chan struct{}
	err   error
}

type cutReq struct {
	mark int64
	done chan error
}

// Ticket is a change's place in the journal.
type Ticket struct{ b *batch }

// Wait returns once the change is durable (nil) or has failed. A failed
// change is not in the journal and was never visible.
func (t *Ticket) Wait() error {
	<-t.b.done
	return t.b.err
}

// OpenWriter opens the journal at path for appending. A missing file is
// created holding only the header, durably (file and directory fsynced).
// size is the journal's valid length (Scan.Good of a scan without damage,
// as Repair leaves it); a longer file is truncated to it, and a shorter one
// is refused. A v1 journal, or a file without a journal header, is refused:
// Repair it first. A file shorter than a header (its creation was cut
// short) is started afresh.
func OpenWriter(fs fsys.FS, path string, size int64, o Options) (*Writer, error) {
	f, size, err := openJournal(fs, path, size)
	if err != nil {
		return nil, err
	}
	max := o.MaxChangeBytes
	if max <= 0 || max > MaxChange {
		max = MaxChange
	}
	w := &Writer{
		fs: fs, path: path, o: o, max: max,
		kick: make(chan struct{}, 1), exit: make(chan struct{}),
		size: size, base: headerLen, f: f,
	}
	go w.loop()
	return w, nil
}

func openJournal(fs fsys.FS, path string, size int64) (fsys.File, int64, error) {
	f, err := fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, iofs.ErrNotExist) {
		if err := fsys.WriteNewFile(fs, path, 0o600, []byte(magicV2)); err != nil {
			return nil, 0, fmt.Errorf("journal: create %s: %w", path, err)
		}
		f, err = fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		return f, headerLen, err
	}
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (fsys.File, int64, error) {
		f.Close()
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	n := fi.Size()
	var hdr [headerLen]byte
	if n >= headerLen {
		if _, err := f.ReadAt(hdr[:], 0); err != nil {
			return fail(fmt.Errorf("journal: read %s: %w", path, err))
		}
	}
	switch {
	case n < headerLen && size <= headerLen:
		// Nothing was ever acknowledged from a file this short: its
		// creation was interrupted.
		if err := f.Truncate(0); err != nil {
			return fail(err)
		}
		if _, err := f.Write([]byte(magicV2)); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		if err := fs.SyncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
		return f, headerLen, nil
	case string(hdr[:]) == magicV1:
		return fail(fmt.Errorf("journal: %s is in the v1 format; Repair rewrites it in the current one", path))
	case string(hdr[:]) != magicV2:
		return fail(fmt.Errorf("journal: %s does not start with a journal header; Repair it first", path))
	}
	size = max(size, headerLen)
	if size > n {
		return fail(fmt.Errorf("journal: %s holds %d bytes, fewer than the %d said to be valid", path, n, size))
	}
	if size < n {
		if err := f.Truncate(size); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	return f, size, nil
}

// Framed is a change checked and encoded into its frames, ready to be
// enqueued. Framing computes the checksums, so callers that enqueue under
// a lock of their own frame first, outside it.
type Framed struct{ b []byte }

// Frame checks and encodes c. It refuses a change without records, a
// record without key or with an unknown kind, a delete with a value, and a
// change larger than MaxChangeBytes (ErrTooLarge).
func (w *Writer) Frame(c Change) (Framed, error) {
	if err := c.check(); err != nil {
		return Framed{}, err
	}
	if n := payloadSize(c); n > w.max {
		return Framed{}, fmt.Errorf("journal: %w: %d bytes, the limit is %d", ErrTooLarge, n, w.max)
	}
	return Framed{appendChange(nil, c)}, nil
}

// Enqueue frames c and enqueues it; see Frame and EnqueueFramed.
func (w *Writer) Enqueue(c Change, user any) (*Ticket, error) {
	f, err := w.Frame(c)
	if err != nil {
		return nil, err
	}
	return w.EnqueueFramed(f, user)
}

// EnqueueFramed fixes f's place in the journal, after every change
// enqueued before it, and returns without waiting for I/O. Callers that
// order changes with their own state hold their own lock around it. user
// is handed to OnCommit with the batch holding f. Once the writer is
// closed it returns ErrClosed, and once it has failed, Err.
func (w *Writer) EnqueueFramed(f Framed, user any) (*Ticket, error) {
	if len(f.b) == 0 {
		return nil, errors.New("journal: change was not framed")
	}
	w.mu.Lock()
	switch {
	case w.closing:
		w.mu.Unlock()
		return nil, ErrClosed
	case w.err != nil:
		err := w.err
		w.mu.Unlock()
		return nil, err
	}
	b := w.cur
	if b == nil {
		b = &batch{done: make(chan struct{})}
		w.cur = b
	}
	b.buf = append(b.buf, f.b...)
	b.users = append(b.users, user)
	w.mu.Unlock()
	w.wake()
	return &Ticket{b}, nil
}

// Append writes c and returns once it is durable or has failed.
func (w *Writer) Append(c Change) error {
	t, err := w.Enqueue(c, nil)
	if err != nil {
		return err
	}
	return t.Wait()
}

// Size returns the journal's durable length. It is raised after OnCommit
// returns, so a caller reading it under the lock OnCommit takes never
// counts bytes whose changes it has not applied (a snapshot taken there
// and cut at Size loses nothing).
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Position is the durable end of the journal counted in bytes ever
// appended, a point that a Cut does not move: a snapshot taken at Position
// P is cut with Cut(P) however many cuts happened meanwhile. Until the
// first Cut it equals Size.
func (w *Writer) Position() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base + w.size - headerLen
}

// Err returns nil, or the error after which the writer refuses everything:
// a failed fsync (the file's state is then unknown) or a failed write it
// could not undo.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close writes what is queued, waits for it, and closes the file. Later
// calls return ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closing = true
	w.mu.Unlock()
	w.wake()
	<-w.exit
	if w.f == nil {
		return w.Err()
	}
	return w.f.Close()
}

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// loop is the writer's goroutine: it owns the file, so batches and cuts
// never overlap.
func (w *Writer) loop() {
	defer close(w.exit)
	for {
		w.mu.Lock()
		if len(w.cuts) > 0 {
			c := w.cuts[0]
			w.cuts = w.cuts[1:]
			w.mu.Unlock()
			c.done <- w.cut(c.mark)
			continue
		}
		b, closing := w.cur, w.closing
		w.cur = nil
		w.mu.Unlock()
		switch {
		case b != nil:
			w.write(b)
		case closing:
			return
		default:
			<-w.kick
		}
	}
}

func (w *Writer) write(b *batch) {
	w.mu.Lock()
	err, size, base := w.err, w.size, w.base
	w.mu.Unlock()
	if err == nil {
		err = w.writeSync(b, size)
	}
	if w.o.OnCommit != nil {
		w.o.OnCommit(b.users, base+size+int64(len(b.buf))-headerLen, err)
	}
	if err == nil {
		w.mu.Lock()
		w.size = size + int64(len(b.buf))
		w.mu.Unlock()
	}
	b.err = err
	close(b.done)
}

func (w *Writer) writeSync(b *batch, size int64) error {
	start := time.Now()
	if end := size + int64(len(b.buf)); w.o.Preallocate > 0 && end > w.allocEnd {
		w.allocEnd = end
		if preallocate(w.f, size, int64(len(b.buf))+w.o.Preallocate) == nil {
			w.allocEnd = end + w.o.Preallocate
		}
	}
	if _, err := w.f.Write(b.buf); err != nil {
		return w.undo(err, size)
	}
	err := w.f.Sync()
	if w.o.OnSync != nil {
		w.o.OnSync(time.Since(start), len(b.users))
	}
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages and cleared the error: retrying could "succeed" over lost
		// data. Only reopening and reading the file tells what it holds.
		return w.fail(fmt.Errorf("journal: fsync %s failed, so it takes no more changes until reopened: %w", w.path, err))
	}
	return nil
}

// undo cuts a failed write back off, so the file ends at the last durable
// change again and the next batch can try afresh.
func (w *Writer) undo(werr error, size int64) error {
	w.allocEnd = 0 // truncation frees the preallocated blocks too
	if err := w.f.Truncate(size); err != nil {
		return w.fail(fmt.Errorf("journal: write to %s failed (%v), and cutting it back failed: %w", w.path, werr, err))
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(fmt.Errorf("journal: write to %s failed (%v), and fsync after cutting it back failed: %w", w.path, werr, err))
	}
	if fsys.IsNoSpace(werr) {
		return fmt.Errorf("journal: %w: %w", ErrNoSpace, werr)
	}
	return fmt.Errorf("journal: write %s: %w", w.path, werr)
}

func (w *Writer) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}
