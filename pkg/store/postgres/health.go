package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// health is what Err says while the store is open: whether this node can
// reach the database and keep its lease. The server answers /health with
// 503 while Err is set, so that a load balancer stops sending work to a
// node that cannot do it; each cause is cleared by its next success.
type health struct {
	url string
	// bad is set while either cause is: the check on every query's end
	// takes no lock otherwise.
	bad   atomic.Bool
	mu    sync.Mutex
	lease error // the last renewal of the node's lease failed
	reach error // the last connection attempt failed, and no query answered since
}

func (h *health) err() error {
	if !h.bad.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lease != nil {
		return h.lease
	}
	return h.reach
}

// renewed records how the renewal of a lease of this length went.
func (h *health) renewed(err error, lease time.Duration) {
	if err == nil && !h.bad.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lease = nil
	if err != nil {
		why := "the database does not answer, so this node cannot renew its lease"
		if answered(err) {
			why = "the database refuses to renew this node's lease"
		}
		h.lease = fmt.Errorf("%s (it will be taken for dead after store.node_lease, %s): %w", why, lease, err)
		scrubErr(h.url, &h.lease)
	}
	h.bad.Store(h.lease != nil || h.reach != nil)
}

// connected records how opening a connection went.
func (h *health) connected(err error) {
	if err == nil && !h.bad.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reach = nil
	if err != nil {
		h.reach = connectError(h.url, err)
		scrubErr(h.url, &h.reach)
	}
	h.bad.Store(h.lease != nil || h.reach != nil)
}

// answered reports whether err is the database's answer (an SQL error),
// rather than a connection that failed.
func answered(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// tracer hears every connection attempt and every query of the store's
// connections: a connection that cannot be opened sets health.reach, and
// the next answer from the database clears it.
type tracer struct{ h *health }

func (t tracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

func (t tracer) TraceConnectEnd(_ context.Context, d pgx.TraceConnectEndData) { t.h.connected(d.Err) }

func (t tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t tracer) TraceQueryEnd(_ context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if d.Err == nil || answered(d.Err) {
		t.h.connected(nil)
	}
}

// Err is store.ErrClosed once the store is closed. While it is open, it
// says why this node cannot work: its lease cannot be renewed, or the
// database cannot be reached (see health); else nil.
func (s *Store) Err() error {
	if s.life.closed.Load() {
		return store.ErrClosed
	}
	return s.health.err()
}

// Stats counts the jobs by status. Healthy is false when the database
// does not answer, or Err is set.
func (s *Store) Stats() store.Stats {
	st := store.Stats{ByStatus: map[job.Status]int{}}
	for _, s := range job.Statuses {
		st.ByStatus[s] = 0
	}
	if s.life.closed.Load() {
		return st
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT status, count(*) FROM secauto_jobs GROUP BY status")
	if err != nil {
		return st
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st
		}
		st.ByStatus[job.Status(status)] = n
		st.Jobs += n
	}
	st.Healthy = rows.Err() == nil && s.Err() == nil
	return st
}
