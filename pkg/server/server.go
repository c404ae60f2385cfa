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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
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
)

// Options configures Run and New.
type Options struct {
	// Store opens the data directory. Run fills Owner (pid, host, command
	// and, once listening, the API address); New ignores this field.
	Store store.Options
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
	// MaxBodyBytes caps request bodies (413 above it); zero means 1 MiB.
	MaxBodyBytes int64
	// ShutdownTimeout is how long running jobs may go on after the stop
	// signal before they are failed; zero means 30s.
	ShutdownTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once with host:port after the listener is
	// open, the lock file names the address and workers have started.
	Ready func(addr string)
	// Runner executes playbooks; nil means a zero playbook.Runner.
	Runner *playbook.Runner
	// Webhooks are the endpoints events are delivered to (SPEC §9).
	Webhooks []webhook.Endpoint
	// Maintenance configures cleanup and backups, run in the background
	// and through the admin endpoints.
	Maintenance Maintenance
	// Now is the clock; nil means time.Now. Tests use a fake one.
	Now func() time.Time

	// syncMetrics is set by Run, which must create it before the store.
	syncMetrics *syncMetrics
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

// Causes given to a running job's context so the worker can tell why it
// stopped.
var (
	errCancelled = errors.New("cancelled by request")
	errShutdown  = errors.New("interrupted by shutdown")
)

// Server is the API and worker pool over one open store. Create it with New,
// call Start, serve Handler, and call Shutdown when done; Run does all of
// that for the daemon.
type Server struct {
	st      *store.Store
	log     *slog.Logger
	now     func() time.Time
	maint   Maintenance
	outbox  *webhook.Outbox
	hooks   *webhook.Dispatcher
	runner  *playbook.Runner
	workers int
	maxBody int64
	tokens  [][32]byte
	started time.Time
	handler http.Handler
	metrics *metrics
	queue   *queue
	// keeper runs the background cleanup and backups (maintenance.go).
	keeper *maintainer

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
	// stopped is closed once every worker has exited.
	stopped chan struct{}

	mu      sync.Mutex
	running map[string]*run
	waiters map[string][]chan *job.Job

	// recovered is the report of the recovery pass Run made at start.
	recovered atomic.Pointer[store.RecoverResult]

	startOnce    sync.Once
	shutdownOnce sync.Once
}

// run is a job a worker has taken: its cancel function and a channel closed
// once the worker is done with it.
type run struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// New builds a Server over an open, recovered store and queues its pending
// jobs, oldest first. It starts nothing; see Start.
func New(st *store.Store, o Options) (*Server, error) {
	o = o.withDefaults()
	s := &Server{
		st:        st,
		log:       o.Logger,
		now:       o.Now,
		maint:     o.Maintenance,
		outbox:    webhook.NewOutbox(o.Webhooks, o.Now),
		runner:    o.Runner,
		workers:   o.Workers,
		maxBody:   o.MaxBodyBytes,
		started:   time.Now(),
		queue:     newQueue(),
		stopped:   make(chan struct{}),
		hooksDone: make(chan struct{}),
		running:   make(map[string]*run),
		waiters:   make(map[string][]chan *job.Job),
	}
	for _, t := range o.AuthTokens {
		if t == "" {
			return nil, errors.New("an auth token is empty; remove it from server.auth_tokens or give it a value")
		}
		s.tokens = append(s.tokens, hashToken(t))
	}
	s.jobsCtx, s.stopJobs = context.WithCancelCause(context.Background())
	s.hooksCtx, s.stopHooks = context.WithCancel(context.Background())
	s.metrics = newMetrics(s, o)
	s.keeper = newMaintainer(s) // loads the schedule, for /stats before Start
	s.hooks = &webhook.Dispatcher{
		Store:      st,
		Endpoints:  o.Webhooks,
		Logger:     o.Logger,
		Now:        o.Now,
		OnDelivery: s.metrics.webhookDelivery,
	}
	s.handler = s.routes()

	pending, err := st.List(store.Filter{Statuses: []job.Status{job.Pending}, Oldest: true})
	if err != nil {
		return nil, fmt.Errorf("list pending jobs: %w", err)
	}
	for _, j := range pending {
		s.queue.push(j.ID)
	}
	return s, nil
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
			s.mu.Lock()
			n := len(s.running)
			s.mu.Unlock()
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

// Run is the daemon: it opens the store (a *store.LockedError is returned as
// is), runs recovery, starts the workers, listens on Address:Port and
// serves until ctx is done, then shuts down gracefully (see Shutdown),
// writes a complete jobs.json and releases the lock. It returns nil after a
// clean shutdown.
func Run(ctx context.Context, o Options) error {
	o = o.withDefaults()
	if err := o.CheckExposure(); err != nil {
		return err
	}
	log := o.Logger

	so := o.Store
	if so.Logger == nil {
		so.Logger = log
	}
	if next := so.OnSync; next != nil {
		so.OnSync = func(d time.Duration, n int) { o.syncMetrics.observe(d, n); next(d, n) }
	} else {
		so.OnSync = o.syncMetrics.observe
	}
	if next := so.OnSnapshot; next != nil {
		so.OnSnapshot = func(d time.Duration, n int) { o.syncMetrics.observeSnapshot(d, n); next(d, n) }
	} else {
		so.OnSnapshot = o.syncMetrics.observeSnapshot
	}
	host, _ := os.Hostname()
	so.Owner = store.Owner{PID: os.Getpid(), Host: host, Command: "secauto serve", StartedAt: time.Now().UTC()}
	st, err := store.Open(so)
	if err != nil {
		return err
	}
	closeStore := func() error {
		if err := st.Close(); err != nil {
			return fmt.Errorf("close store: %w", err)
		}
		return nil
	}

	// The job.recovered events are written with the recovered jobs, so an
	// interrupted job is announced even if this start crashes too.
	outbox := webhook.NewOutbox(o.Webhooks, o.Now)
	rec, err := st.Recover(store.RecoverOptions{Also: outbox.JobRecords(webhook.JobRecovered)})
	if err != nil {
		return errors.Join(fmt.Errorf("recover jobs: %w", err), closeStore())
	}
	logRecovery(log, st.Report(), rec)

	s, err := New(st, o)
	if err != nil {
		return errors.Join(err, closeStore())
	}
	s.setRecovery(rec)

	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, fmt.Sprint(o.Port)))
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s port %d: %w; choose another --port or stop what uses it", o.Address, o.Port, err), closeStore())
	}
	addr := dialAddress(ln.Addr())
	owner := so.Owner
	owner.Address = addr
	if err := st.SetOwner(owner); err != nil {
		ln.Close()
		return errors.Join(fmt.Errorf("record the API address in the lock file: %w", err), closeStore())
	}

	s.Start()

	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening", "address", addr, "workers", o.Workers, "auth", len(o.AuthTokens) > 0, "queued", s.queue.len())
	if o.Ready != nil {
		o.Ready(addr)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.ShutdownTimeout.String())
	case err := <-serveErr:
		runErr = fmt.Errorf("serve http: %w", err)
		log.Error("http server stopped; shutting down", "error", err)
	}

	// New connections are refused while running jobs drain; handlers still
	// in flight (POST /playbook waiting on a job) end when their job does
	// or when Shutdown releases them.
	s.draining.Store(true)
	httpDone := make(chan struct{})
	httpCtx, cancelHTTP := context.WithCancel(context.Background())
	go func() {
		defer close(httpDone)
		if err := hs.Shutdown(httpCtx); err != nil {
			hs.Close()
		}
	}()
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	if err := s.Shutdown(drainCtx); err != nil {
		log.Warn("running jobs were interrupted by shutdown")
	}
	cancelDrain()
	select {
	case <-httpDone:
	case <-time.After(5 * time.Second):
		log.Warn("closing connections that did not finish")
	}
	cancelHTTP()
	<-httpDone

	if err := closeStore(); err != nil {
		log.Error("closing the store failed", "error", err)
		return errors.Join(runErr, err)
	}
	log.Info("stopped")
	return runErr
}

// logRecovery logs the recovery pass: one record per job it changed and a
// summary with what Open repaired.
func logRecovery(log *slog.Logger, rep store.OpenReport, rec *store.RecoverResult) {
	for _, a := range rec.Actions {
		log.Warn("recovered job", "job_id", a.JobID, "from", string(a.From), "to", string(a.To), "reason", a.Reason)
	}
	attrs := []any{
		"failed_running", rec.FailedRunning,
		"requeued", rec.Requeued,
		"pending", rec.Pending,
		"snapshot_jobs", rep.SnapshotJobs,
		"journal_records", rep.JournalRecords,
		"journal_truncated_bytes", rep.JournalTruncatedBytes,
	}
	if rep.JournalCorruptPath != "" {
		attrs = append(attrs, "journal_corrupt_path", rep.JournalCorruptPath)
	}
	if rep.SnapshotCorruptPath != "" {
		attrs = append(attrs, "snapshot_corrupt_path", rep.SnapshotCorruptPath)
	}
	if rep.RestoredFrom != "" {
		attrs = append(attrs, "restored_from", rep.RestoredFrom)
	}
	level := slog.LevelInfo
	if len(rec.Actions) > 0 || rep.JournalTruncatedBytes > 0 || rep.SnapshotCorruptPath != "" {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "recovery finished", attrs...)
}

// CheckExposure refuses what Run refuses: an API on a non-loopback
// address without auth tokens, unless Insecure. Callers check it first to
// report it as the configuration mistake it is.
func (o Options) CheckExposure() error {
	addr := o.Address
	if addr == "" {
		addr = DefaultAddress
	}
	if len(o.AuthTokens) == 0 && !o.Insecure && !isLoopback(addr) {
		return fmt.Errorf("refusing to listen on non-loopback address %s without auth tokens; set server.auth_tokens or use --insecure", addr)
	}
	return nil
}

// isLoopback reports whether host names only the local machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialAddress is the host:port clients on this machine use to reach a
// listener; an unspecified address (0.0.0.0, ::) becomes loopback.
func dialAddress(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		if ip.To4() != nil || ip == nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
