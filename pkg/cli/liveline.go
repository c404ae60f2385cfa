package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/server"
)

// liveLine keeps one status line at the bottom of a terminal while a job is
// watched: each event's line is printed above it, and it is redrawn every
// second so the elapsed time moves while a long step runs.
type liveLine struct {
	mu    sync.Mutex
	w     io.Writer
	now   func() time.Time
	start time.Time
	id    string
	state string
	steps int
	shown bool
	stop  chan struct{}
	done  sync.WaitGroup
}

const clearLine = "\r\x1b[K"

func newLiveLine(w io.Writer, id string, now func() time.Time) *liveLine {
	l := &liveLine{w: w, now: now, start: now(), id: id, state: "waiting", stop: make(chan struct{})}
	l.done.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.mu.Lock()
				l.drawLocked()
				l.mu.Unlock()
			}
		}
	})
	return l
}

// wrap returns print, with the status line kept below what it writes.
func (l *liveLine) wrap(print func(jobEvent) error) func(jobEvent) error {
	return func(ev jobEvent) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.shown {
			fmt.Fprint(l.w, clearLine)
			l.shown = false
		}
		err := print(ev)
		switch ev.Kind {
		case server.EventStep:
			l.steps = ev.Step.Index + 1
		case server.EventStatus:
			l.id, l.state = ev.Status.JobID, string(ev.Status.Status)
		case server.EventResync, server.EventEnd:
			l.id, l.state, l.steps = ev.Job.ID, string(ev.Job.Status), len(ev.Job.Results)
		}
		if ev.Kind != server.EventEnd {
			l.drawLocked()
		}
		return err
	}
}

func (l *liveLine) drawLocked() {
	fmt.Fprintf(l.w, "%sjob %s %s · %d steps done · %s", clearLine, l.id, l.state, l.steps,
		humanDuration(l.now().Sub(l.start).Truncate(time.Second)))
	l.shown = true
}

// close stops the redraws and removes the line.
func (l *liveLine) close() {
	close(l.stop)
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shown {
		fmt.Fprint(l.w, clearLine)
		l.shown = false
	}
}
