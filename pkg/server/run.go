package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// TLSScheme prefixes the address Run records in the lock file and passes
// to Ready when it serves HTTPS; a plain host:port means HTTP.
const TLSScheme = "https://"

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
	var err error
	host, _ := os.Hostname()
	so.Owner = store.Owner{PID: os.Getpid(), Host: host, Command: "secauto serve", StartedAt: time.Now().UTC()}
	var st store.Store
	if o.OpenStore != nil {
		st, err = o.OpenStore(so)
	} else {
		st, err = store.Open(so)
	}
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

	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, fmt.Sprint(o.Port)))
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s port %d: %w; choose another --port or stop what uses it", o.Address, o.Port, err), closeStore())
	}
	if o.Runner, err = stepRunner(o, ln); err != nil {
		ln.Close()
		return errors.Join(err, closeStore())
	}
	s, err := New(st, o)
	if err != nil {
		ln.Close()
		return errors.Join(err, closeStore())
	}
	s.setRecovery(rec)

	addr := dialAddress(ln.Addr())
	if o.TLS != nil {
		tc := o.TLS.Clone()
		// HTTP/1.1 only, as over plain TCP: the API needs nothing of
		// HTTP/2, and one protocol keeps answers to oversized bodies
		// (drain.go) the same on both.
		tc.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, tc)
		addr = TLSScheme + addr
	}
	owner := so.Owner
	owner.Address = addr
	if err := st.SetOwner(owner); err != nil {
		ln.Close()
		return errors.Join(fmt.Errorf("record the API address in the lock file: %w", err), closeStore())
	}

	clusterCtx, stopCluster := context.WithCancel(context.Background())
	clusterDone := make(chan struct{})
	if s.cluster != nil {
		node := store.Node{ID: nodeID(host), Host: host, PID: os.Getpid(), Address: addr, StartedAt: owner.StartedAt}
		if err := s.cluster.Join(node, o.NodeLease); err != nil {
			ln.Close()
			stopCluster()
			return errors.Join(fmt.Errorf("join the nodes sharing the store: %w", err), closeStore())
		}
		log.Info("joined the nodes sharing the store", "node", node.ID, "lease", o.NodeLease.String())
		go func() {
			defer close(clusterDone)
			s.runCluster(clusterCtx, o.NodeLease)
		}()
	} else {
		close(clusterDone)
	}
	defer func() {
		stopCluster()
		<-clusterDone
	}()

	s.Start()
	gcStop := make(chan struct{})
	defer close(gcStop)
	go s.paceGC(gcStop)

	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening", "address", addr, "tls", o.TLS != nil, "workers", o.Workers, "auth", len(o.AuthTokens) > 0, "queued", s.queue.len())
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

	stopCluster()
	<-clusterDone
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

// nodeID names this process among the nodes of a shared store: readable in
// logs, and unique even when a node restarts on the same host with the same
// pid.
func nodeID(host string) string {
	if host == "" {
		host = "node"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
}
