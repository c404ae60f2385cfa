package cli

import (
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/secauto/secauto/pkg/store"
)

// busyDelay is how long work runs before a spinner appears; quicker work,
// the usual case, shows nothing.
const busyDelay = 750 * time.Millisecond

// busy runs fn and, when stderr is a terminal and fn takes longer than
// busyDelay (a large store), shows its progress on stderr meanwhile: a bar
// once fn reports through the store.Progress it is given, a spinner with
// the elapsed time until then.
func busy(ios *IOStreams, what string, fn func(store.Progress) error) error {
	if !ios.IsStderrTTY() {
		return fn(nil)
	}
	var (
		mu    sync.Mutex
		done  bool
		bar   *progressbar.ProgressBar
		total int64 = -1
	)
	progress := func(n, max int64) {
		mu.Lock()
		defer mu.Unlock()
		if bar == nil || done {
			return
		}
		if max != total {
			total = max
			bar.ChangeMax64(max)
		}
		_ = bar.Set64(n)
	}
	timer := time.AfterFunc(busyDelay, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(ios.ErrOut),
			progressbar.OptionSetDescription(what),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
		)
	})
	err := fn(progress)
	timer.Stop()
	mu.Lock()
	done = true
	if bar != nil {
		_ = bar.Exit()
		_ = bar.Clear()
	}
	mu.Unlock()
	return err
}
