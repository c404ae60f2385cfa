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
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/secauto/secauto/pkg/job"
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
type Store struct {
	o       Options
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig
	codec   store.Codec
	backups *store.Backups // nil without Dir
	schema  string

	ctx    context.Context
	cancel context.CancelFunc
	// gate is shared by every write and held alone by Close, which waits
	// for the writes in flight before stopping the committers.
	gate    sync.RWMutex
	closed  atomic.Bool
	creates chan *createReq
	wg      sync.WaitGroup

	// self claims records for a process that has not joined.
	self string

	mu       sync.Mutex
	node     *store.Node // set by Join
	lease    time.Duration
	owner    store.Owner
	running  map[string]int // the jobs this node runs: id → attempt
	listenOn sync.Once
	ready    chan struct{} // closed once LISTEN first succeeded
	wake     chan struct{}
	settled  chan string

	// createTxns and createJobs count the group commit's transactions and
	// the jobs they stored.
	createTxns, createJobs atomic.Int64
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Cluster = (*Store)(nil)
)

// notifyChannel is the channel of wake-ups ("") and settled jobs
// ("settled:NODE:ID", NODE query-escaped).
const notifyChannel = "secauto_jobs"

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
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(o.URL, err)
	}
	s := &Store{
		o: o, pool: pool, connCfg: cfg.ConnConfig,
		codec:   store.Codec{Keyring: o.Keyring, MaxJobBytes: o.MaxJobBytes},
		creates: make(chan *createReq, 1024),
		self:    "process-" + uuid.NewString(),
		running: map[string]int{},
		ready:   make(chan struct{}),
		wake:    make(chan struct{}, 1),
		settled: make(chan string, 256),
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
	if !o.ReadOnly {
		for range committers {
			s.wg.Add(1)
			go s.committer()
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

func parseConfig(raw string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("store.postgres_url %s is not a valid PostgreSQL URL: %v", Redact(raw), err)
	}
	rp := cfg.ConnConfig.RuntimeParams
	// Durability is the store's promise, not the server's default.
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "secauto"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	return cfg, nil
}

func connectError(raw string, err error) error {
	return fmt.Errorf("PostgreSQL at %s cannot be reached: %w; check store.postgres_url and that the server runs", Redact(raw), err)
}

var (
	dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
)

// Redact returns the URL with its password replaced, for messages.
func Redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(urlPassword.ReplaceAllString(raw, "${1}xxxxx@"), "${1}xxxxx")
}

// passwords lists the passwords raw holds, however it spells them.
func passwords(raw string) []string {
	var out []string
	if u, err := url.Parse(raw); err == nil {
		if p, has := u.User.Password(); has && p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, p, url.QueryEscape(p))
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(raw, -1) {
		if p := strings.TrimSuffix(strings.TrimPrefix(m[0], m[1]), "@"); p != "" {
			out = append(out, p)
		}
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(raw, -1) {
		if p := strings.Trim(m[2], "'"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// scrubbed is an error whose message had the URL's password taken out.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrubErr replaces *err by one whose message holds no password of raw.
func scrubErr(raw string, err *error) {
	if *err == nil {
		return
	}
	msg := (*err).Error()
	clean := msg
	if raw != "" {
		clean = strings.ReplaceAll(clean, raw, Redact(raw))
	}
	for _, p := range passwords(raw) {
		clean = strings.ReplaceAll(clean, p, "xxxxx")
	}
	if clean != msg {
		*err = &scrubbed{msg: clean, err: *err}
	}
}

// begin is called by every write: it holds the gate until done runs, and
// refuses writes on a closed or read-only store.
func (s *Store) begin() (done func(), err error) {
	if s.o.ReadOnly {
		return nil, store.ErrReadOnly
	}
	s.gate.RLock()
	if s.closed.Load() {
		s.gate.RUnlock()
		return nil, store.ErrClosed
	}
	return s.gate.RUnlock, nil
}

// Dir is where backups are written.
func (s *Store) Dir() string { return s.o.Dir }

// Report is empty: opening a database repairs nothing.
func (s *Store) Report() store.OpenReport { return store.OpenReport{} }

// Err is store.ErrClosed once the store is closed, else nil: the database
// itself says, on each write, whether it takes it.
func (s *Store) Err() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Stats counts the jobs by status. Healthy is false when the database
// does not answer.
func (s *Store) Stats() store.Stats {
	st := store.Stats{ByStatus: map[job.Status]int{}}
	for _, s := range job.Statuses {
		st.ByStatus[s] = 0
	}
	if s.closed.Load() {
		return st
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT status, count(*) FROM secauto_jobs GROUP BY status")
	if err != nil {
		return st
	}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st
		}
		st.ByStatus[job.Status(status)] = n
		st.Jobs += n
	}
	st.Healthy = rows.Err() == nil
	return st
}

// SetOwner records who holds the store; once joined, the node's row
// carries its host, pid and address.
func (s *Store) SetOwner(o store.Owner) (err error) {
	defer scrubErr(s.o.URL, &err)
	if s.closed.Load() {
		return store.ErrClosed
	}
	s.mu.Lock()
	s.owner = o
	n := s.node
	s.mu.Unlock()
	if n == nil || s.closed.Load() {
		return nil
	}
	_, err = s.pool.Exec(s.ctx, "UPDATE secauto_nodes SET host = coalesce(nullif($2, ''), host), pid = coalesce(nullif($3, 0), pid), address = coalesce(nullif($4, ''), address) WHERE id = $1",
		n.ID, o.Host, o.PID, o.Address)
	return err
}

// Snapshot does nothing: the database is the store's compact form.
func (s *Store) Snapshot() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Close waits for the writes in flight, stops the background work and
// deletes the node's row (see the package documentation).
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.gate.Lock()
	s.cancel()
	s.wg.Wait()
	s.gate.Unlock()
	s.mu.Lock()
	n := s.node
	s.mu.Unlock()
	var err error
	if n != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = s.pool.Exec(ctx, "DELETE FROM secauto_nodes WHERE id = $1", n.ID)
		cancel()
		scrubErr(s.o.URL, &err)
	}
	s.pool.Close()
	return err
}

// nodeID is the joined node's id, "" before Join.
func (s *Store) nodeID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == nil {
		return ""
	}
	return s.node.ID
}

func (s *Store) logUnreadable(id string, err error) {
	s.o.Logger.Error("job skipped in a listing: it cannot be read", "job_id", id, "err", err.Error())
	if s.o.OnUnreadable != nil {
		s.o.OnUnreadable(id, err)
	}
}
