// Package server owns the secauto daemon: the HTTP API of SPEC section 8,
// the worker pool that runs playbooks as jobs, the recovery pass at start
// (SPEC section 5) and the graceful shutdown.
//
// Every job's state lives in pkg/store. The server itself keeps only what a
// crash may lose without harm: the queue of pending job ids (rebuilt from
// the store at start), the cancel functions of running jobs and the clients
// waiting on POST /playbook. A state change is made durable in the store
// before it is answered, logged or passed to the Notifier.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// Defaults applied to zero Options fields.
const (
	DefaultAddress         = "127.0.0.1"
	DefaultWorkers         = 5
	DefaultMaxBodyBytes    = 1 << 20
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultNodeLease is store.node_lease's default (SPEC §11).
	DefaultNodeLease = 15 * time.Second
)

// Options configures Run and New.
type Options struct {
	// Store opens the data directory. Run fills Owner (pid, host, command
	// and, once listening, the API address); New ignores this field.
	Store store.Options
	// OpenStore opens another driver than the file driver, from Store's
	// settings (the data directory is then where backups go); nil means
	// store.Open.
	OpenStore func(store.Options) (store.Store, error)
	// NodeLease is how long this node may go without renewing its lease
	// on a shared store before the others take it for dead (SPEC §11);
	// zero means 15s.
	NodeLease time.Duration
	// Address is the IP or host name to listen on; empty means 127.0.0.1.
	Address string
	// Port to listen on; 0 picks any free port (the address is passed to
	// Ready and recorded in the lock file).
	Port int
	// Workers is how many jobs run at once; zero means DefaultWorkers.
	Workers int
	// AuthTokens, when not empty, are the bearer tokens every endpoint but
	// /health requires.
	AuthTokens []string
	// Insecure allows a non-loopback Address without AuthTokens.
	Insecure bool
	// TLS, when set, makes Run serve HTTPS only; the lock file then
	// records the address as https://host:port, so that commands
	// delegating to the daemon know to speak TLS.
	TLS *tls.Config
	// MaxBodyBytes caps request bodies (413 above it); zero means 1 MiB.
	MaxBodyBytes int64
	// ShutdownTimeout is how long running jobs may go on after the stop
	// signal before they are failed; zero means 30s.
	ShutdownTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once with host:port (https://host:port
	// with TLS) after the listener is open, the lock file names the
	// address and workers have started.
	Ready func(addr string)
	// Runner executes playbooks; nil means a zero playbook.Runner.
	Runner *playbook.Runner
	// HTTPPolicy says what http steps may reach (playbook.http in the
	// configuration); nil means the default policy. Run applies it, with
	// the API's own address denied, unless Runner has a Client of its own.
	HTTPPolicy *playbook.HTTPPolicyConfig
	// Webhooks are the endpoints events are delivered to (SPEC §9).
	Webhooks []webhook.Endpoint
	// Maintenance configures cleanup and backups, run in the background
	// and through the admin endpoints.
	Maintenance Maintenance
	// Now is the clock; nil means time.Now. Tests use a fake one.
	Now func() time.Time
	// Console, when set, builds the web console from the server; its
	// handler answers everything under ConsolePath (/ui/) and does its own
	// authentication.
	Console func(*Server) http.Handler

	// syncMetrics is set by Run, which must create it before the store.
	syncMetrics *syncMetrics
	// wrapJobs, when set, puts a jobWriter in front of the store (tests).
	wrapJobs func(jobWriter) jobWriter
}

// Maintenance is the data directory's upkeep: the retention cleanup
// applies and the backups it writes. A zero interval turns that background
// run off; the admin endpoints work either way.
type Maintenance struct {
	Retention         time.Duration
	RetentionByStatus map[job.Status]time.Duration
	CleanupInterval   time.Duration
	BackupEnabled     bool
	BackupInterval    time.Duration
	BackupKeep        int
	BackupCompress    bool
}

// CancelledByRequest is the error of a job cancelled through the API or
// the command line.
const CancelledByRequest = "cancelled by request"

// Causes given to a running job's context so the worker can tell why it
// stopped.
var (
	errCancelled = errors.New(CancelledByRequest)
	errShutdown  = errors.New("interrupted by shutdown")
)

// Server is the API and worker pool over one open store. Create it with New,
// call Start, serve Handler, and call Shutdown when done; Run does all of
// that for the daemon.
type Server struct {
	st      store.Store
	log     *slog.Logger
	now     func() time.Time
	outbox  *webhook.Outbox
	hooks   *webhook.Dispatcher
	runner  *playbook.Runner
	workers int
	maxBody int64
	tokens  [][32]byte
	started time.Time
	handler http.Handler
	metrics *metrics
	// console is Options.Console.
	console func(*Server) http.Handler
	// ended counts job endings of the last hour (Throughput).
	ended endings
	// jobs is where job changes are written: st, but for tests.
	jobs jobWriter
	// queue holds the pending jobs and the claims of the running ones;
	// on a shared store (cluster.go) only the claims.
	queue *jobQueue
	// cluster is st when it is shared by several nodes, else nil; wakes
	// reaches its idle workers.
	cluster store.Cluster
	wakes   *broadcast
	// watch holds the GET /job/{id}/events streams' subscriptions.
	watch *watchers
	// keeper runs the cleaner's and backuper's runs and restores, one at
	// a time, and keeps restores apart from submissions (maintainer.go).
	keeper  *maintainer
	cleaner *cleaner
	backups *backuper

	// jobsCtx is the parent of every running job's context; it is not the
	// context Run was given, because the stop signal must not interrupt
	// jobs before the shutdown timeout.
	jobsCtx  context.Context
	stopJobs context.CancelCauseFunc
	wg       sync.WaitGroup
	// hooksCtx stops webhook delivery, after the workers, so that events
	// of jobs that end during shutdown still get their first attempt.
	hooksCtx  context.Context
	stopHooks context.CancelFunc
	hooksDone chan struct{}
	busy      atomic.Int64
	draining  atomic.Bool
	// noSpace counts writes waiting for disk space to return.
	noSpace atomic.Int64
	// stopped is closed once every worker has exited.
	stopped chan struct{}

	// mu guards waiters: the POST /playbook clients waiting for a job.
	mu      sync.Mutex
	waiters map[string][]chan *job.Job

	// recovered is the report of the recovery pass Run made at start.
	recovered atomic.Pointer[store.RecoverResult]

	startOnce    sync.Once
	shutdownOnce sync.Once
}

// New builds a Server over an open, recovered store and queues its pending
// jobs, oldest first. It starts nothing; see Start.
func New(st store.Store, o Options) (*Server, error) {
	o = o.withDefaults()
	s := &Server{
		st:        st,
		log:       o.Logger,
		now:       o.Now,
		outbox:    webhook.NewOutbox(o.Webhooks, o.Now),
		runner:    o.Runner,
		workers:   o.Workers,
		maxBody:   o.MaxBodyBytes,
		started:   time.Now(),
		jobs:      st,
		stopped:   make(chan struct{}),
		hooksDone: make(chan struct{}),
		waiters:   make(map[string][]chan *job.Job),
		console:   o.Console,
	}
	if o.wrapJobs != nil {
		s.jobs = o.wrapJobs(st)
	}
	s.watch = newWatchers()
	s.jobs = &publishingWriter{jobWriter: s.jobs, w: s.watch}
	for _, t := range o.AuthTokens {
		if t == "" {
			return nil, errors.New("an auth token is empty; remove it from server.auth_tokens or give it a value")
		}
		s.tokens = append(s.tokens, hashToken(t))
	}
	s.jobsCtx, s.stopJobs = context.WithCancelCause(context.Background())
	s.queue = newJobQueue(s.jobsCtx)
	s.hooksCtx, s.stopHooks = context.WithCancel(context.Background())
	s.metrics = newMetrics(s, o)
	mo := o.Maintenance
	s.cleaner = &cleaner{st: st, log: o.Logger, runs: s.metrics.cleanups, deleted: s.metrics.cleanupDeleted,
		cfg: cleanerConfig{Retention: mo.Retention, ByStatus: mo.RetentionByStatus, Interval: mo.CleanupInterval}}
	backupInterval := mo.BackupInterval
	if !mo.BackupEnabled {
		backupInterval = 0
	}
	s.backups = &backuper{st: st, log: o.Logger, runs: s.metrics.backups,
		cfg: backuperConfig{Interval: backupInterval, Keep: mo.BackupKeep, Compress: mo.BackupCompress}}
	// Loads the schedule now, for /stats before Start.
	s.keeper = newMaintainer(st, o.Logger, o.Now, s.outbox, func() { s.hooks.Notify() }, s.backups, s.cleaner)
	s.hooks = &webhook.Dispatcher{
		Store:      st,
		Endpoints:  o.Webhooks,
		Logger:     o.Logger,
		Now:        o.Now,
		OnDelivery: s.metrics.webhookDelivery,
	}
	s.ended.seed(st, o.Now())
	s.handler = s.routes()
	s.wakes = newBroadcast()
	if cl, ok := st.(store.Cluster); ok {
		// The store hands out its pending jobs itself.
		s.cluster = cl
		return s, nil
	}
	pending, err := st.List(store.Filter{Statuses: []job.Status{job.Pending}, Oldest: true})
	if err != nil {
		return nil, fmt.Errorf("list pending jobs: %w", err)
	}
	for _, j := range pending {
		s.queue.push(j.ID)
	}
	return s, nil
}

// enqueue queues a job just stored pending. On a shared store the store's
// own notification of the new job wakes the workers of every node, this
// one's too: waking them here as well would make each idle worker claim
// twice for one job.
func (s *Server) enqueue(id string) {
	if s.cluster == nil {
		s.queue.push(id)
	}
}

func (o Options) withDefaults() Options {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Runner == nil {
		o.Runner = &playbook.Runner{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NodeLease <= 0 {
		o.NodeLease = DefaultNodeLease
	}
	if o.syncMetrics == nil {
		o.syncMetrics = newSyncMetrics()
	}
	return o
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Start launches the workers and webhook delivery. Calling it again does
// nothing.
func (s *Server) Start() {
	s.startOnce.Do(func() {
		go func() {
			defer close(s.hooksDone)
			s.hooks.Run(s.hooksCtx)
		}()
		s.wg.Add(s.workers)
		for range s.workers {
			go s.worker()
		}
		s.keeper.start()
	})
}

// Shutdown refuses new submissions, lets running jobs finish until ctx is
// done, then cancels them; the workers mark them failed with "interrupted by
// shutdown". Pending jobs stay pending in the store. Clients waiting on
// POST /playbook for a job that never started are answered 503. Shutdown
// does not close the store. It returns ctx's error when jobs had to be
// interrupted, nil when they all finished in time.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutdownOnce.Do(func() {
		s.draining.Store(true)
		s.queue.close()
		s.Start() // so that wg.Wait below cannot wait on workers never started
		// No maintenance run starts from here; one in progress is waited for.
		s.keeper.stop()
		workersDone := make(chan struct{})
		go func() { s.wg.Wait(); close(workersDone) }()
		select {
		case <-workersDone:
		case <-ctx.Done():
			err = ctx.Err()
			n := s.queue.busy()
			s.log.Warn("shutdown timeout reached; interrupting running jobs", "jobs", n)
			s.stopJobs(errShutdown)
			<-workersDone
		}
		s.stopJobs(nil)
		// Undelivered events stay in the outbox for the next start.
		s.stopHooks()
		<-s.hooksDone
		close(s.stopped)
	})
	return err
}
