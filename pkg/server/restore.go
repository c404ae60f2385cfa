package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

var (
	// errRestoring is the cause given to running jobs stopped for a
	// restore.
	errRestoring = errors.New("interrupted by a backup restore")
	// errRestoreShutdown refuses a restore once shutdown has begun: the
	// jobs it would queue would not run.
	errRestoreShutdown = errors.New("the daemon is shutting down; run the restore again once it has stopped")
)

// restoreStopError is a restore given up because its caller went away
// before the running jobs stopped; nothing was restored.
type restoreStopError struct {
	running int
	err     error
}

func (e *restoreStopError) Error() string {
	return fmt.Sprintf("the request ended before the %d running jobs stopped; nothing was restored", e.running)
}

func (e *restoreStopError) Unwrap() error { return e.err }

// restoreReport is what a restore did.
type restoreReport struct {
	store.RestoreResult
	// Interrupted counts the running jobs stopped for it.
	Interrupted int
	// Recovered is the recovery of the jobs the backup holds as running.
	Recovered *store.RecoverResult
	// Queued counts the restored pending jobs queued.
	Queued int
}

// restore replaces the store with the backup at path (which the caller has
// checked is one). It runs while no cleanup, backup or other restore does.
// The queue hands out no job from the start; running jobs are stopped
// (they end failed, and are kept in the safety backup); then, with
// submissions held off, the store is replaced, the jobs the backup holds as
// running are recovered (nothing runs them) and its pending jobs replace
// the queue, oldest first. A submission therefore lands either before the
// safety backup (and is kept in it) or in the restored store, and no job
// is ever queued twice or running without a claim to cancel it.
//
// It returns errRestoreShutdown once shutdown has begun, a
// *restoreStopError when ctx ends before the running jobs stopped, and the
// store's error when it could not restore (the store is then unchanged).
func (s *Server) restore(ctx context.Context, path string) (*restoreReport, error) {
	var rep *restoreReport
	err := s.keeper.exclusive(func() error {
		var err error
		rep, err = s.restoreLocked(ctx, path)
		return err
	})
	return rep, err
}

func (s *Server) restoreLocked(ctx context.Context, path string) (*restoreReport, error) {
	start := s.now()
	if s.draining.Load() || !s.queue.pause() {
		return nil, errRestoreShutdown
	}
	replaced := false
	defer func() {
		if !replaced {
			s.queue.resume()
		}
	}()
	rep := &restoreReport{}
	n, err := s.stopRunning(ctx)
	rep.Interrupted = n
	if err != nil {
		return nil, &restoreStopError{running: n, err: err}
	}

	unlock := s.keeper.lockJobs()
	defer unlock()
	if s.cluster != nil {
		// A claim admitted while the jobs above stopped has registered
		// by now: stop it too.
		m, err := s.stopRunning(ctx)
		n += m
		rep.Interrupted = n
		if err != nil {
			return nil, &restoreStopError{running: n, err: err}
		}
	}
	res, err := s.st.Restore(path, store.BackupOptions{Compress: s.backups.cfg.Compress})
	if err != nil {
		s.log.Error("restore failed", "from", path, "interrupted", n, "error", err)
		return nil, err
	}
	rep.RestoreResult = *res
	rep.SafetyBackup = absPath(res.SafetyBackup)

	// The queue is paused and no job runs, so recovery cannot race a
	// worker starting one.
	rec, err := s.st.Recover(store.RecoverOptions{Now: s.now(), Also: s.jobEvents(webhook.JobRecovered)})
	if err != nil {
		s.log.Error("cannot recover the running jobs of the restored backup; restart the daemon to recover them", "error", err)
		rec = &store.RecoverResult{}
	}
	rep.Recovered = rec
	var ids []string
	pending, err := s.st.List(store.Filter{Statuses: []job.Status{job.Pending}, Oldest: true})
	if err != nil {
		s.log.Error("cannot list the restored pending jobs; restart the daemon to run them", "error", err)
	}
	for _, j := range pending {
		ids = append(ids, j.ID)
	}
	if s.cluster != nil {
		// The store hands out the restored pending jobs itself.
		s.queue.replace(nil)
		s.wakes.fire()
	} else {
		s.queue.replace(ids)
	}
	replaced = true
	s.watch.resyncAll() // every job may differ now, or be gone
	rep.Queued = len(ids)
	s.releaseWaitersOfGoneJobs()

	s.log.Info("restore finished", "trigger", "admin", "from", path, "restored_jobs", res.RestoredJobs,
		"safety_backup", rep.SafetyBackup, "interrupted", n, "failed_running", rec.FailedRunning,
		"requeued", rec.Requeued, "queued", len(ids), "duration_ms", s.now().Sub(start).Milliseconds())
	s.announce(webhook.StoreRestored, map[string]any{
		"path":             path,
		"restored_jobs":    res.RestoredJobs,
		"safety_backup":    rep.SafetyBackup,
		"interrupted_jobs": n,
		"recovered_jobs":   rec.FailedRunning + rec.Requeued,
		"queued_jobs":      len(ids),
	})
	return rep, nil
}

// stopRunning cancels every running job and waits until each worker has
// recorded its job's end; the queue is paused, so no job starts meanwhile.
// It returns how many it stopped.
func (s *Server) stopRunning(ctx context.Context) (int, error) {
	n := 0
	for {
		cs := s.queue.claims()
		if len(cs) == 0 {
			return n, nil
		}
		for _, c := range cs {
			c.cancel(errRestoring)
		}
		n += len(cs)
		for _, c := range cs {
			select {
			case <-c.done:
			case <-ctx.Done():
				return n, ctx.Err()
			}
		}
	}
}

// releaseWaitersOfGoneJobs answers the POST /playbook clients whose job a
// restore removed: it will never end.
func (s *Server) releaseWaitersOfGoneJobs() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.waiters))
	for id := range s.waiters {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if _, err := s.st.Get(id); errors.Is(err, store.ErrNotFound) {
			s.releaseWaiters(id)
		}
	}
}

// releaseWaiters answers the clients waiting for job id, which is gone,
// with nil.
func (s *Server) releaseWaiters(id string) {
	s.mu.Lock()
	ws := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	for _, w := range ws {
		w <- nil
	}
}

// handleAdminRestore checks that the request names a usable backup, then
// restores it (see restore).
func (s *Server) handleAdminRestore(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, http.StatusConflict, errRestoreShutdown.Error())
		return
	}
	var req AdminRestoreRequest
	if aerr := decodeJSON(w, r, s.maxBody, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	path, aerr := s.backupNamed(req)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	if _, _, err := store.CheckRestoreFile(path); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is not a usable backup (%v); nothing was changed", filepath.Base(path), err))
		return
	}

	rep, err := s.restore(r.Context(), path)
	var se *restoreStopError
	switch {
	case errors.Is(err, errRestoreShutdown):
		writeError(w, http.StatusConflict, err.Error())
	case errors.As(err, &se):
		writeError(w, http.StatusServiceUnavailable, se.Error())
	case err != nil:
		aerr := s.adminFailure(fmt.Sprintf("cannot restore %s", filepath.Base(path)), err)
		writeError(w, aerr.code, aerr.msg+"; the store is unchanged")
	default:
		writeJSON(w, http.StatusOK, rep.RestoreResult)
	}
}

// backupNamed returns the path of the backup a restore request names. The
// name must be a backup's file name (store.ParseBackupName) and a file of
// the data directory: no path, no "..", no link. A refusal says what to
// send, and nothing of what exists outside the data directory, which is
// never looked at.
func (s *Server) backupNamed(req AdminRestoreRequest) (string, *apiError) {
	name := req.Name
	switch {
	case name == "":
		name = req.Path
	case req.Path != "" && req.Path != name:
		return "", badRequest(`give the backup as "name" only`)
	}
	switch {
	case strings.TrimSpace(name) == "":
		return "", badRequest(`give the backup to restore as "name": its file name in the data directory, as GET /admin/backups lists it`)
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
		return "", badRequest(`"name" must be the file name of a backup in the data directory, not a path; copy a backup from elsewhere in beside the others first ('secauto backup restore FILE' does that)`)
	}
	if _, ok := store.ParseBackupName(name); !ok {
		return "", badRequest(`%q is not the name of a backup; backups are named jobs.json.backup.YYYYMMDD-HHMMSS, with .gz when compressed`, name)
	}
	path := filepath.Join(s.dataDir(), name)
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return "", badRequest("the data directory holds no backup %s; list the backups with GET /admin/backups", name)
	}
	return path, nil
}
