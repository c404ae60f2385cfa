package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// DefaultLease is how long a node that stops renewing stays alive to the
// others (store.node_lease).
const DefaultLease = 15 * time.Second

// membership is this process's place in the cluster: the node it joined
// as, with its lease, and the jobs it runs. The running set tells this
// node's own notifications from others', and, after the listening
// connection was lost, which of its runs another node ended meanwhile.
type membership struct {
	// self claims records for a process that has not joined.
	self string

	mu      sync.Mutex
	joining bool        // a Join is under way
	node    *store.Node // set by Join
	lease   time.Duration
	running map[string]int // id → attempt
}

func newMembership() *membership {
	return &membership{self: "process-" + uuid.NewString(), running: map[string]int{}}
}

// id is the joined node's id, "" before Join.
func (m *membership) id() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == nil {
		return ""
	}
	return m.node.ID
}

// joined returns the node and its lease, or nil before Join.
func (m *membership) joined() (*store.Node, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node, m.lease
}

// claimant names this process in claims: its node once joined.
func (m *membership) claimant() string {
	if id := m.id(); id != "" {
		return id
	}
	return m.self
}

// setOwner records o in the node (what o leaves empty stays), for the
// row the renewal inserts again, and returns the node's id ("" before
// Join).
func (m *membership) setOwner(o store.Owner) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == nil {
		return ""
	}
	n := *m.node
	n.Host = cmp.Or(o.Host, n.Host)
	n.PID = cmp.Or(o.PID, n.PID)
	n.Address = cmp.Or(o.Address, n.Address)
	m.node = &n
	return n.ID
}

// reserve lets one Join at a time through; done(n, lease) ends it,
// joined when n is not nil.
func (m *membership) reserve() (done func(n *store.Node, lease time.Duration), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.node != nil:
		return nil, fmt.Errorf("this store already joined as node %s", m.node.ID)
	case m.joining:
		return nil, errors.New("this store is already joining")
	}
	m.joining = true
	return func(n *store.Node, lease time.Duration) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.joining = false
		m.node, m.lease = n, lease
	}, nil
}

// runs records jobs this node started. It is called before their
// transaction commits, so that a notification about one of them is never
// taken for another node's job; stopped undoes it when it failed.
func (m *membership) runs(jobs []*job.Job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range jobs {
		m.running[j.ID] = j.Attempts
	}
}

func (m *membership) stopped(jobs []*job.Job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range jobs {
		delete(m.running, j.ID)
	}
}

// track keeps the running set up to date with a change this node made.
func (m *membership) track(j *job.Job, from job.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case j.Status == job.Running && from != job.Running && m.node != nil:
		m.running[j.ID] = j.Attempts
	case j.Status != job.Running:
		delete(m.running, j.ID)
	}
}

// forget drops one job, or all when id is "", from the running set.
func (m *membership) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == "" {
		clear(m.running)
		return
	}
	delete(m.running, id)
}

// runningNow returns the node's id and a copy of its running set.
func (m *membership) runningNow() (string, map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == nil {
		return "", nil
	}
	return m.node.ID, maps.Clone(m.running)
}

// settle drops id from the running set if it still runs attempt, and
// reports whether it did: only then is its end news to the run.
func (m *membership) settle(id string, attempt int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.running[id]
	if ok && cur == attempt {
		delete(m.running, id)
		return true
	}
	return false
}

// Join registers this node and renews its lease every third of lease until
// Close. A row left by an earlier process with the same id is taken over:
// that process is gone, so the jobs it was running become orphans, which
// the next RescueDead settles (with their events).
func (s *Store) Join(n store.Node, lease time.Duration) (err error) {
	defer scrubErr(s.o.URL, &err)
	if n.ID == "" {
		return errors.New("a node needs an id to join")
	}
	if lease <= 0 {
		lease = DefaultLease
	}
	if n.StartedAt.IsZero() {
		n.StartedAt = s.o.Now()
	}
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	joined, err := s.member.reserve()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(s.ctx, "UPDATE secauto_jobs SET node = NULL, version = nextval('secauto_jobs_version') WHERE node = $1 AND status = 'running'", n.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			s.o.Logger.Warn("an earlier process of this node left running jobs; they are recovered as orphans", "node", n.ID, "jobs", tag.RowsAffected())
		}
		_, err = tx.Exec(s.ctx, `INSERT INTO secauto_nodes (id, host, pid, address, started_at, lease_until)
			VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')
			ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, address = EXCLUDED.address,
				started_at = EXCLUDED.started_at, lease_until = EXCLUDED.lease_until`,
			n.ID, n.Host, n.PID, n.Address, n.StartedAt, lease.Microseconds())
		return err
	})
	if err != nil {
		joined(nil, 0)
		return err
	}
	joined(&n, lease)
	s.life.spawn(func() { s.renew(lease) })
	s.startListener()
	select {
	case <-s.events.ready:
	case <-time.After(5 * time.Second):
		s.o.Logger.Warn("not yet listening for other nodes' wake-ups; retrying in the background")
	}
	return nil
}

const renewSQL = `INSERT INTO secauto_nodes (id, host, pid, address, started_at, lease_until)
	VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')
	ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
	RETURNING (xmax = 0)`

// renew keeps the node's lease, in database time. A row that was deleted
// (the node was declared dead: its jobs were recovered) is inserted again.
// Err says so while renewals fail.
func (s *Store) renew(lease time.Duration) {
	t := time.NewTicker(max(lease/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// A renewal that takes longer than the interval is as good as
		// failed: the node may be taken for dead before it lands.
		ctx, cancel := context.WithTimeout(s.ctx, max(lease/3, time.Second))
		n, _ := s.member.joined() // its latest owner
		var inserted bool
		err := s.pool.QueryRow(ctx, renewSQL, n.ID, n.Host, n.PID, n.Address, n.StartedAt, lease.Microseconds()).Scan(&inserted)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		s.health.renewed(err, lease)
		switch {
		case err != nil:
			scrubErr(s.o.URL, &err)
			s.o.Logger.Warn("the node's lease could not be renewed", "node", n.ID, "err", err.Error())
		case inserted:
			s.o.Logger.Warn("this node had been declared dead by another, which recovered its running jobs; it joined again", "node", n.ID)
		}
	}
}
