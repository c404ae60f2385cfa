// Package postgres is the postgres driver of the job store: one database
// shared by any number of serve processes (nodes, SPEC §11). It stores
// every job exactly as the file driver encodes it (package store's Codec:
// the same limits, the same sealing), so backups move between the drivers
// unchanged, and adds store.Cluster: claiming pending jobs exactly once,
// node leases renewed in database time, rescue of a dead node's running
// jobs exactly once, cluster-wide locks and wake-ups through LISTEN/NOTIFY.
//
// Writes are durable when they return: every session runs with
// synchronous_commit on, whatever the server's default. Creates are
// gathered by committer goroutines into one transaction each (group
// commit), so throughput does not stop at one commit per job.
//
// The schema (migrations/, applied by migrate.go) has three tables. A
// job is one row of secauto_jobs: doc holds its encoding, the other
// columns are copies of what listing, claiming, cleanup and recovery
// select on, and version, drawn from a sequence on every write, makes
// each update land only on the state it read (which fences a dead node's
// late writes). secauto_records holds the webhook outbox and the
// maintenance schedule, claimable by one node at a time. secauto_nodes has
// a row per live node, whose lease_until (database time) it renews.
//
// Close stops the background work and deletes the node's row: running jobs
// the node left (a shutdown that could not settle them) are then orphans,
// which the next RescueDead of any node settles at once instead of after
// the lease.
//
// What callers should know:
//   - Node.ID names one process: a Join whose id has a row left by an
//     earlier process takes it over and orphans that process's running jobs
//     (the next RescueDead settles them). Two live processes must not share
//     an id.
//   - A node starts jobs through Claim, after Join. A job moved to running
//     by Update on a store that has not joined has no node, and is an
//     orphan to RescueDead.
//   - Times are stored to the microsecond in the indexed columns (the doc
//     keeps nanoseconds): two jobs created within one microsecond are
//     listed by id.
//   - Stats counts the jobs with one grouped query on each call.
package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/secauto/secauto/pkg/seal"
	"github.com/secauto/secauto/pkg/store"
)

// Options configures Open.
type Options struct {
	// URL is the database, postgres://...; its password never appears in
	// an error or a log line.
	URL string
	// Dir is where Backup writes backups (the data directory); Dir()
	// returns it. Empty means no backups.
	Dir string
	// ReadOnly applies no migrations (a schema older than the code is an
	// error naming `secauto migrate up`) and refuses writes.
	ReadOnly bool
	// MaxJobBytes refuses a job whose encoding is larger; zero means
	// store.DefaultMaxJobBytes.
	MaxJobBytes int
	// Keyring seals jobs and records as the file driver does.
	Keyring *seal.Keyring
	Logger  *slog.Logger
	// Now is the clock of job times; leases use the database's clock.
	Now func() time.Time
	// OnUnreadable hears each job a listing leaves out because it cannot
	// be read.
	OnUnreadable func(id string, err error)
}

// Store is an open postgres store. All methods are safe for concurrent use.
//
// It is a connection pool and the parts that run beside it, each in a file
// of its own: the group commit of creates (commit.go), this process's place
// in the cluster (node.go), the connection that hears the other nodes
// (listen.go), what Err says (health.go), and the store's lifetime
// (life.go).
type Store struct {
	o       Options
	pool    *pgxpool.Pool
	codec   store.Codec
	backups *store.Backups // nil without Dir
	schema  string         // the tables' schema: it names the advisory locks

	// ctx is the context of every query; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	life   life

	health  *health
	creates *groupCommit
	member  *membership
	events  *listener
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Cluster = (*Store)(nil)
)

// Open connects, applies the pending migrations (unless ReadOnly, which
// instead refuses a schema older than the code), and returns the store.
func Open(ctx context.Context, o Options) (_ *Store, err error) {
	defer scrubErr(o.URL, &err)
	if o.URL == "" {
		return nil, errors.New("no PostgreSQL URL given; set store.postgres_url or $SECAUTO_POSTGRES_URL")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxJobBytes <= 0 {
		o.MaxJobBytes = store.DefaultMaxJobBytes
	}
	cfg, err := parseConfig(o.URL)
	if err != nil {
		return nil, err
	}
	h := &health{url: o.URL}
	cfg.ConnConfig.Tracer = tracer{h}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(o.URL, err)
	}
	s := &Store{
		o: o, pool: pool,
		codec:  store.Codec{Keyring: o.Keyring, MaxJobBytes: o.MaxJobBytes},
		health: h,
		member: newMembership(),
		events: newListener(cfg.ConnConfig),
	}
	if err := s.prepare(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if o.Dir != "" && !o.ReadOnly {
		if s.backups, err = store.NewBackups(o.Dir); err != nil {
			pool.Close()
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.creates = newGroupCommit(s.ctx, pool, s.codec.KeyID(), s.member.id)
	if !o.ReadOnly {
		for range committers {
			s.life.spawn(s.creates.run)
		}
	}
	return s, nil
}

// prepare checks the connection and the schema, migrating when writable.
func (s *Store) prepare(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return connectError(s.o.URL, err)
	}
	defer c.Release()
	if s.schema, err = schemaOf(ctx, c.Conn()); err != nil {
		return err
	}
	var st MigrationStatus
	if s.o.ReadOnly {
		st, err = status(ctx, c.Conn())
	} else {
		st, err = migrate(ctx, c.Conn())
	}
	if err != nil {
		return err
	}
	return checkSchema(st)
}

// begin is called by every write: it holds the store open until done
// runs, and refuses writes on a closed or read-only store.
func (s *Store) begin() (done func(), err error) {
	if s.o.ReadOnly {
		return nil, store.ErrReadOnly
	}
	return s.life.enter()
}

// readable refuses reads on a closed store.
func (s *Store) readable() error {
	if s.life.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Dir is where backups are written.
func (s *Store) Dir() string { return s.o.Dir }

// Report is empty: opening a database repairs nothing.
func (s *Store) Report() store.OpenReport { return store.OpenReport{} }

// SetOwner records who holds the store; once joined, the node's row
// carries its host, pid and address.
func (s *Store) SetOwner(o store.Owner) (err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return err
	}
	id := s.member.setOwner(o)
	if id == "" || s.life.closed.Load() {
		return nil
	}
	_, err = s.pool.Exec(s.ctx, "UPDATE secauto_nodes SET host = coalesce(nullif($2, ''), host), pid = coalesce(nullif($3, 0), pid), address = coalesce(nullif($4, ''), address) WHERE id = $1",
		id, o.Host, o.PID, o.Address)
	return err
}

// Snapshot does nothing: the database is the store's compact form.
func (s *Store) Snapshot() error {
	return s.readable()
}

// Close waits for the writes in flight, stops the background work and
// deletes the node's row (see the package documentation).
func (s *Store) Close() error {
	if !s.life.end(s.cancel) {
		return nil
	}
	var err error
	if id := s.member.id(); id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = s.pool.Exec(ctx, "DELETE FROM secauto_nodes WHERE id = $1", id)
		cancel()
		scrubErr(s.o.URL, &err)
	}
	s.pool.Close()
	return err
}

func (s *Store) logUnreadable(id string, err error) {
	s.o.Logger.Error("job skipped in a listing: it cannot be read", "job_id", id, "err", err.Error())
	if s.o.OnUnreadable != nil {
		s.o.OnUnreadable(id, err)
	}
}
