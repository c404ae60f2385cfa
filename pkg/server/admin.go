package server

// The admin endpoints (SPEC §6 "one writer"): while the daemon holds the
// data directory, every other secauto command asks it over these to do its
// work, so that cleanup, backups, restores, verification and the recovery
// report run in the one process that writes the directory. Request and
// answer bodies are the store's result types, whose JSON is also what the
// offline commands print with -o json.
//
//	POST /admin/cleanup   {"dry_run", "older_than", "retention_by_status"} → store.CleanupResult
//	POST /admin/backups   {"compress"} (optional)                         → store.BackupResult (201)
//	GET  /admin/backups                                                   → []store.BackupInfo
//	POST /admin/restore   {"path": "/absolute/backup"}                    → store.RestoreResult
//	GET  /admin/verify                                                    → store.VerifyResult
//	GET  /admin/recover[?dry_run=true]                                    → AdminRecoverResponse
//
// Paths in answers are absolute, so a client with another working
// directory can use them.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// AdminCleanupRequest is the body of POST /admin/cleanup; an empty body is
// a cleanup with the configured retention.
type AdminCleanupRequest struct {
	DryRun bool `json:"dry_run"`
	// OlderThan (a duration: "7d", "12h", "720h0m0s") replaces the
	// configured retention for every terminal status, the configured
	// per-status retentions included. Empty means jobs.retention_days.
	OlderThan string `json:"older_than,omitempty"`
	// RetentionByStatus overrides the retention per terminal status
	// ({"failed": "90d"}); when given it replaces the configured
	// jobs.retention_by_status.
	RetentionByStatus map[job.Status]string `json:"retention_by_status,omitempty"`
}

// AdminBackupRequest is the optional body of POST /admin/backups.
type AdminBackupRequest struct {
	// Compress overrides jobs.backup_compress when set.
	Compress *bool `json:"compress,omitempty"`
}

// AdminRestoreRequest is the body of POST /admin/restore.
type AdminRestoreRequest struct {
	// Path is the absolute path of the backup on the daemon's host.
	Path string `json:"path"`
}

// AdminRecoverResponse is the answer of GET /admin/recover: the report of
// the recovery pass the daemon ran when it started (with dry_run, what a
// pass would do now: nothing, since every running job is live), and what
// opening the data directory repaired then.
type AdminRecoverResponse struct {
	store.RecoverResult
	OpenReport store.OpenReport `json:"open_report"`
	// StartedAt is when the daemon started and recovered.
	StartedAt time.Time `json:"started_at"`
}

// errRestoring is the cause given to running jobs stopped for a restore.
var errRestoring = errors.New("interrupted by a backup restore")

// adminRoutes adds the admin endpoints to mux.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/cleanup", s.auth(s.handleAdminCleanup))
	mux.HandleFunc("POST /admin/backups", s.auth(s.handleAdminBackup))
	mux.HandleFunc("GET /admin/backups", s.auth(s.handleAdminListBackups))
	mux.HandleFunc("POST /admin/restore", s.auth(s.handleAdminRestore))
	mux.HandleFunc("GET /admin/verify", s.auth(s.handleAdminVerify))
	mux.HandleFunc("GET /admin/recover", s.auth(s.handleAdminRecover))
}

// setRecovery keeps the report of the recovery pass run before the server
// was built, for GET /admin/recover.
func (s *Server) setRecovery(r *store.RecoverResult) { s.recovered.Store(r) }

// recovery is the report setRecovery kept, nil when none was.
func (s *Server) recovery() *store.RecoverResult { return s.recovered.Load() }

// dataDir is the absolute path of the data directory.
func (s *Server) dataDir() string {
	d, err := filepath.Abs(s.st.Dir())
	if err != nil {
		return s.st.Dir()
	}
	return d
}

// absPath makes a path the store answered (relative to the daemon's
// working directory when the data directory was given so) absolute.
func absPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// adminFailure is the answer to a maintenance operation the store could
// not do: 503 when the store no longer accepts writes, 500 otherwise. The
// cause is named: only an authenticated operator sees it, and it is what
// they need (a full disk, a permission).
func (s *Server) adminFailure(what string, err error) *apiError {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrClosed) || s.st.Err() != nil {
		code = http.StatusServiceUnavailable
	}
	return &apiError{code, fmt.Sprintf("%s: %v", what, err)}
}

// decodeOptional reads a JSON body into v when there is one.
func (s *Server) decodeOptional(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	return decodeJSON(w, r, s.maxBody, v)
}

// cleanupOptions turns a cleanup request into the store's options, with
// the daemon's configured retention where the request gives none.
func (s *Server) cleanupOptions(req AdminCleanupRequest) (store.CleanupOptions, *apiError) {
	co := store.CleanupOptions{DryRun: req.DryRun, Retention: s.maint.Retention, ByStatus: s.maint.RetentionByStatus}
	parse := func(field, v string) (time.Duration, *apiError) {
		d, err := config.ParseDuration(v)
		if err != nil {
			return 0, badRequest("%s: %v", field, err)
		}
		if d <= 0 {
			return 0, badRequest("%s %q must be a positive duration such as 30d", field, v)
		}
		return d, nil
	}
	if req.OlderThan != "" {
		d, aerr := parse("older_than", req.OlderThan)
		if aerr != nil {
			return co, aerr
		}
		co.Retention, co.ByStatus = d, nil
	}
	if len(req.RetentionByStatus) > 0 {
		co.ByStatus = make(map[job.Status]time.Duration, len(req.RetentionByStatus))
		for st, v := range req.RetentionByStatus {
			if !st.Terminal() {
				return co, badRequest("retention_by_status: %q is not a terminal status; use completed, failed or cancelled", st)
			}
			d, aerr := parse("retention_by_status."+string(st), v)
			if aerr != nil {
				return co, aerr
			}
			co.ByStatus[st] = d
		}
	}
	if co.Retention <= 0 {
		return co, badRequest("the daemon has no retention configured; give older_than")
	}
	return co, nil
}

func (s *Server) handleAdminCleanup(w http.ResponseWriter, r *http.Request) {
	var req AdminCleanupRequest
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	co, aerr := s.cleanupOptions(req)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	if !co.DryRun {
		// One maintenance run at a time, the schedule's included.
		s.keeper.runMu.Lock()
		defer s.keeper.runMu.Unlock()
	}
	start := s.now()
	co.Now = start
	res, err := s.st.Cleanup(co)
	if co.DryRun {
		if err == nil {
			s.log.Info("cleanup finished", "trigger", "admin", "dry_run", true, "deleted", res.Deleted)
		}
	} else {
		// Logs "cleanup finished", counts it in /stats and the metrics,
		// and queues cleanup.completed with the schedule's record.
		s.keeper.noteCleanup("admin", start, s.now().Sub(start), res, err, true)
	}
	if err != nil {
		aerr := s.adminFailure("cleanup failed", err)
		writeError(w, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleAdminBackup(w http.ResponseWriter, r *http.Request) {
	var req AdminBackupRequest
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	bo := store.BackupOptions{Keep: max(s.maint.BackupKeep, 0), Compress: s.maint.BackupCompress}
	if req.Compress != nil {
		bo.Compress = *req.Compress
	}
	s.keeper.runMu.Lock()
	defer s.keeper.runMu.Unlock()
	start := s.now()
	res, err := s.st.Backup(bo)
	if err != nil && res != nil {
		// Written, but removing old backups failed: the backup counts.
		s.log.Warn("backup written, but old backups could not be removed", "path", res.Path, "error", err)
		err = nil
	}
	// Logs "backup finished" (or "backup failed"), counts it, and queues
	// backup.created or backup.failed.
	s.keeper.noteBackup("admin", start, s.now().Sub(start), res, err, true)
	if err != nil {
		aerr := s.adminFailure("cannot write backup", err)
		writeError(w, aerr.code, aerr.msg)
		return
	}
	out := *res
	out.Path = absPath(out.Path)
	out.Removed = make([]string, len(res.Removed))
	for i, p := range res.Removed {
		out.Removed[i] = absPath(p)
	}
	if len(out.Removed) == 0 {
		out.Removed = nil
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) handleAdminListBackups(w http.ResponseWriter, r *http.Request) {
	list, err := store.ListBackups(s.dataDir())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot list backups: "+err.Error())
		return
	}
	if list == nil {
		list = []store.BackupInfo{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleAdminVerify(w http.ResponseWriter, r *http.Request) {
	dir := s.dataDir()
	res, err := store.VerifyWith(dir, store.VerifyOptions{CheckRecords: webhook.Check})
	if err == nil && !res.OK && journalProblem(dir, res) {
		// The journal is appended to while it is read; a record caught
		// half-written looks like a torn tail. Look once more.
		time.Sleep(50 * time.Millisecond)
		res, err = store.VerifyWith(dir, store.VerifyOptions{CheckRecords: webhook.Check})
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("cannot verify %s: %v", dir, err))
		return
	}
	if res.Problems == nil {
		res.Problems = []store.Problem{}
	}
	writeJSON(w, http.StatusOK, res)
}

func journalProblem(dir string, res *store.VerifyResult) bool {
	jpath := filepath.Join(dir, store.JournalFile)
	for _, p := range res.Problems {
		if p.File == jpath {
			return true
		}
	}
	return false
}

func (s *Server) handleAdminRecover(w http.ResponseWriter, r *http.Request) {
	dry := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("dry_run %q is not valid; give true or false", v))
			return
		}
		dry = b
	}
	out := AdminRecoverResponse{StartedAt: s.started.UTC()}
	if dry {
		// The daemon recovered at start and its running jobs are live:
		// a pass now would change nothing.
		out.RecoverResult = store.RecoverResult{DryRun: true, Actions: []store.RecoverAction{}, Pending: s.st.Stats().ByStatus[job.Pending]}
		writeJSON(w, http.StatusOK, out)
		return
	}
	rec := s.recovery()
	if rec == nil {
		writeError(w, http.StatusServiceUnavailable, `this daemon kept no report of its start-time recovery; read it in its log (message "recovery finished")`)
		return
	}
	out.RecoverResult = *rec
	if out.Actions == nil {
		out.Actions = []store.RecoverAction{}
	}
	if rec.RestoredFrom != nil {
		p := absPath(*rec.RestoredFrom)
		out.RestoredFrom = &p
	}
	out.OpenReport = s.st.Report()
	out.OpenReport.JournalCorruptPath = absPath(out.OpenReport.JournalCorruptPath)
	out.OpenReport.SnapshotCorruptPath = absPath(out.OpenReport.SnapshotCorruptPath)
	out.OpenReport.RestoredFrom = absPath(out.OpenReport.RestoredFrom)
	writeJSON(w, http.StatusOK, out)
}

func errShuttingDownConflict() *apiError {
	return &apiError{http.StatusConflict, "the daemon is shutting down; run the restore again once it has stopped"}
}

// handleAdminRestore replaces the store with a backup. Running jobs are
// stopped first (they end failed, and are kept in the safety backup), the
// queue hands out nothing meanwhile, and afterwards jobs the backup holds
// as running are recovered (nothing runs them) and its pending jobs are
// queued, oldest first.
func (s *Server) handleAdminRestore(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		aerr := errShuttingDownConflict()
		writeError(w, aerr.code, aerr.msg)
		return
	}
	var req AdminRestoreRequest
	if aerr := decodeJSON(w, r, s.maxBody, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	path := req.Path
	switch {
	case strings.TrimSpace(path) == "":
		writeError(w, http.StatusBadRequest, `give the backup to restore as "path"`)
		return
	case !filepath.IsAbs(path):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path %q is not absolute; give the backup's absolute path on the daemon's host", path))
		return
	}
	path = filepath.Clean(path)
	if fi, err := os.Stat(path); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("cannot read backup %s: %v; nothing was changed", path, errors.Unwrap(err)))
		return
	} else if !fi.Mode().IsRegular() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is not a file; nothing was changed", path))
		return
	}
	if _, _, err := store.CheckRestoreFile(path); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s is not a usable backup (%v); nothing was changed", path, err))
		return
	}

	start := s.now()
	// Holding the queue's lock keeps workers from taking jobs (and
	// submissions from queueing theirs) until the new queue is in place.
	q := s.queue
	q.mu.Lock()
	queueHeld := true
	release := func(ids []string, replace bool) {
		if !queueHeld {
			return
		}
		queueHeld = false
		if replace {
			q.ids = ids
			q.cond.Broadcast()
		}
		q.mu.Unlock()
	}
	defer release(nil, false)
	if q.closed || s.draining.Load() {
		aerr := errShuttingDownConflict()
		writeError(w, aerr.code, aerr.msg)
		return
	}

	interrupted, err := s.stopRunning(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the request ended before the %d running jobs stopped; nothing was restored", interrupted))
		return
	}
	res, err := s.st.Restore(path, store.BackupOptions{Compress: s.maint.BackupCompress})
	if err != nil {
		s.log.Error("restore failed", "from", path, "interrupted", interrupted, "error", err)
		aerr := s.adminFailure(fmt.Sprintf("cannot restore %s", path), err)
		writeError(w, aerr.code, aerr.msg+"; the store is unchanged")
		return
	}

	// A job the backup holds as running is run by nobody: recover it as
	// a start would. s.mu is held so that no worker can register a job
	// (which it does before starting it) while recovery looks.
	for {
		s.mu.Lock()
		if len(s.running) == 0 {
			break
		}
		s.mu.Unlock()
		// A worker that took its job just before the queue was held.
		n, _ := s.stopRunning(context.Background())
		interrupted += n
	}
	rec, recErr := s.st.Recover(store.RecoverOptions{Now: s.now(), Also: s.jobEvents(webhook.JobRecovered)})
	s.mu.Unlock()
	if recErr != nil {
		s.log.Error("cannot recover the running jobs of the restored backup; restart the daemon to recover them", "error", recErr)
		rec = &store.RecoverResult{}
	}

	var ids []string
	pending, err := s.st.List(store.Filter{Statuses: []job.Status{job.Pending}, Oldest: true})
	if err != nil {
		s.log.Error("cannot list the restored pending jobs; restart the daemon to run them", "error", err)
	}
	for _, j := range pending {
		ids = append(ids, j.ID)
	}
	release(ids, true)
	s.releaseWaitersOfGoneJobs()

	out := *res
	out.SafetyBackup = absPath(out.SafetyBackup)
	s.log.Info("restore finished", "trigger", "admin", "from", path, "restored_jobs", res.RestoredJobs,
		"safety_backup", out.SafetyBackup, "interrupted", interrupted, "failed_running", rec.FailedRunning,
		"requeued", rec.Requeued, "queued", len(ids), "duration_ms", s.now().Sub(start).Milliseconds())
	s.announce(webhook.StoreRestored, map[string]any{
		"path":             path,
		"restored_jobs":    res.RestoredJobs,
		"safety_backup":    out.SafetyBackup,
		"interrupted_jobs": interrupted,
		"recovered_jobs":   rec.FailedRunning + rec.Requeued,
		"queued_jobs":      len(ids),
	})
	writeJSON(w, http.StatusOK, out)
}

// releaseWaitersOfGoneJobs answers the POST /playbook clients whose job a
// restore removed: it will never end.
func (s *Server) releaseWaitersOfGoneJobs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ws := range s.waiters {
		if _, err := s.st.Get(id); errors.Is(err, store.ErrNotFound) {
			for _, w := range ws {
				w <- nil
			}
			delete(s.waiters, id)
		}
	}
}

// stopRunning cancels every running job and waits until each worker has
// recorded its job's end. It returns how many it stopped.
func (s *Server) stopRunning(ctx context.Context) (int, error) {
	s.mu.Lock()
	runs := make([]*run, 0, len(s.running))
	for _, r := range s.running {
		runs = append(runs, r)
	}
	s.mu.Unlock()
	for _, r := range runs {
		r.cancel(errRestoring)
	}
	for _, r := range runs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return len(runs), ctx.Err()
		}
	}
	return len(runs), nil
}
