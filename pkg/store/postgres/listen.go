package postgres

import (
	"context"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the channel of wake-ups (""), settled jobs
// ("settled:NODE:ID", NODE query-escaped) and ended ones ("ended:ID").
const notifyChannel = "secauto_jobs"

// listener is the connection of its own that LISTENs on notifyChannel, and
// what it hands on: Wake for jobs that may have become pending anywhere,
// Settled for this node's jobs another ended. A notification is lost while
// the connection is down, so a reconnect wakes the node and checks its
// running jobs (reconcile).
type listener struct {
	cfg     *pgx.ConnConfig
	once    sync.Once
	ready   chan struct{} // closed once LISTEN first succeeded
	wake    chan struct{}
	settled chan string
	ended   chan string
}

func newListener(cfg *pgx.ConnConfig) *listener {
	return &listener{
		cfg:     cfg,
		ready:   make(chan struct{}),
		wake:    make(chan struct{}, 1),
		settled: make(chan string, 256),
		ended:   make(chan string, 1024),
	}
}

// poke wakes the node; wake-ups coalesce.
func (l *listener) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// deliver announces that this node's job id was ended by another.
func (l *listener) deliver(id string, log *slog.Logger) {
	select {
	case l.settled <- id:
	default:
		log.Warn("a settled job was not announced: too many at once; its run stops at its next change", "job_id", id)
	}
}

// announce hands on that job id ended on some node. Dropped when nobody
// keeps up: Ended's readers look again on their own now and then.
func (l *listener) announce(id string) {
	select {
	case l.ended <- id:
	default:
	}
}

// Ended receives the id of every job that ended, or was deleted, on any
// node.
func (s *Store) Ended() <-chan string {
	s.listenSoon()
	return s.events.ended
}

// Wake receives (coalesced) whenever a job may have become pending on any
// node, and after the notification connection was lost and restored.
func (s *Store) Wake() <-chan struct{} {
	s.listenSoon()
	return s.events.wake
}

// Settled receives the id of a job this node runs that another node (or
// process) ended: cancelled, deleted, restored over or recovered.
func (s *Store) Settled() <-chan string {
	s.listenSoon()
	return s.events.settled
}

// listenSoon starts the listener unless the store is closed or read-only.
func (s *Store) listenSoon() {
	if done, err := s.begin(); err == nil {
		s.startListener()
		done()
	}
}

// startListener starts the listener once. The caller holds the store
// open, so that no listener starts after Close waited for the goroutines.
func (s *Store) startListener() {
	s.events.once.Do(func() { s.life.spawn(s.listen) })
}

// listen holds the connection and hands what it hears to Wake and
// Settled. It reconnects with backoff when the connection drops, and then
// wakes the node and checks its running jobs, since notifications sent
// meanwhile were lost.
func (s *Store) listen() {
	backoff := 100 * time.Millisecond
	first := true
	for s.ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(s.ctx, s.events.cfg.Copy())
		if err == nil {
			if _, err = conn.Exec(s.ctx, "LISTEN "+notifyChannel); err != nil {
				conn.Close(context.Background())
			}
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			scrubErr(s.o.URL, &err)
			s.o.Logger.Warn("cannot listen for other nodes' notifications; retrying", "err", err.Error(), "in", backoff)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if first {
			close(s.events.ready)
			first = false
		} else {
			s.reconcile()
		}
		s.events.poke()
		for {
			n, err := conn.WaitForNotification(s.ctx)
			if err != nil {
				if s.ctx.Err() == nil {
					scrubErr(s.o.URL, &err)
					s.o.Logger.Warn("lost the connection that listens for other nodes' notifications; reconnecting", "err", err.Error())
				}
				break
			}
			s.dispatch(n.Payload)
		}
		conn.Close(context.Background())
	}
}

func (s *Store) dispatch(payload string) {
	if id, ok := strings.CutPrefix(payload, "ended:"); ok {
		s.events.announce(id)
		return
	}
	rest, ok := strings.CutPrefix(payload, "settled:")
	if !ok {
		s.events.poke()
		return
	}
	enode, id, ok := strings.Cut(rest, ":")
	node, err := url.QueryUnescape(enode)
	if !ok || err != nil || node != s.member.id() {
		return
	}
	s.member.forget(id)
	s.events.deliver(id, s.o.Logger)
}

// reconcile announces the jobs this node runs that another ended while
// its notifications were not heard.
func (s *Store) reconcile() {
	node, want := s.member.runningNow()
	if node == "" || len(want) == 0 {
		return
	}
	ids := slices.Sorted(maps.Keys(want))
	rows, err := s.pool.Query(s.ctx, "SELECT id, attempt FROM secauto_jobs WHERE id = ANY($1) AND status = 'running' AND node = $2", ids, node)
	if err != nil {
		return
	}
	still := map[string]int{}
	for rows.Next() {
		var id string
		var a int
		if rows.Scan(&id, &a) == nil {
			still[id] = a
		}
	}
	if rows.Err() != nil {
		return
	}
	for _, id := range ids {
		if a, ok := still[id]; ok && a == want[id] {
			continue
		}
		if s.member.settle(id, want[id]) {
			s.events.deliver(id, s.o.Logger)
		}
	}
}
