package postgres

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/secauto/secauto/pkg/store"
)

// life is the store's lifetime: the writes in flight and the goroutines
// that run beside them (the committers, the lease renewal, the listener).
// Close must not stop a committer while a create waits on it, so it
// waits for every write that entered, and refuses those that come after.
type life struct {
	// gate is shared by every write and held alone by Close.
	gate   sync.RWMutex
	closed atomic.Bool
	wg     sync.WaitGroup
}

// enter holds the store open until done runs, or refuses with
// store.ErrClosed.
func (l *life) enter() (done func(), err error) {
	l.gate.RLock()
	if l.closed.Load() {
		l.gate.RUnlock()
		return nil, store.ErrClosed
	}
	return l.gate.RUnlock, nil
}

// spawn runs f in the background; end waits for it. It is called while
// the store is held open (in Open, or between enter and done), so that no
// goroutine starts once end waits.
func (l *life) spawn(f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
}

// end closes the store: it waits for the writes in flight, then cancels
// the background work (stop) and waits for it. It reports false when the
// store was already closed.
func (l *life) end(stop context.CancelFunc) bool {
	if l.closed.Swap(true) {
		return false
	}
	l.gate.Lock()
	stop()
	l.wg.Wait()
	l.gate.Unlock()
	return true
}
