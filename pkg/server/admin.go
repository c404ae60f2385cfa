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
//	POST /admin/restore   {"name": "jobs.json.backup.20250709-143000"}    → store.RestoreResult
//	GET  /admin/verify                                                    → store.VerifyResult
//	GET  /admin/recover[?dry_run=true]                                    → AdminRecoverResponse
//	POST /admin/keys/rotate                                               → store.RotateResult
//
// Paths in answers are absolute, so a client with another working
// directory can use them.

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
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

// AdminRestoreRequest is the body of POST /admin/restore. The backup is
// named by its file name in the data directory, never by a path: an API
// client must not make the daemon read files elsewhere on its host. A
// backup from elsewhere is first copied in beside the others (secauto
// backup restore FILE does that).
type AdminRestoreRequest struct {
	// Name is the backup's file name, as GET /admin/backups lists it.
	Name string `json:"name,omitempty"`
	// Path is the field earlier releases took; it is accepted as Name is,
	// a file name only.
	Path string `json:"path,omitempty"`
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

// adminRoutes adds the admin endpoints to mux.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/cleanup", s.auth(s.handleAdminCleanup))
	mux.HandleFunc("POST /admin/backups", s.auth(s.handleAdminBackup))
	mux.HandleFunc("GET /admin/backups", s.auth(s.handleAdminListBackups))
	mux.HandleFunc("POST /admin/restore", s.auth(s.handleAdminRestore)) // restore.go
	mux.HandleFunc("GET /admin/verify", s.auth(s.handleAdminVerify))
	mux.HandleFunc("GET /admin/recover", s.auth(s.handleAdminRecover))
	mux.HandleFunc("POST /admin/keys/rotate", s.auth(s.handleAdminRotateKeys))
}

// handleAdminRotateKeys re-encrypts the store under the first key of the
// daemon's jobs.encryption_key_file (secauto keys rotate).
func (s *Server) handleAdminRotateKeys(w http.ResponseWriter, r *http.Request) {
	res, err := s.st.RotateKeys(store.RotateOptions{})
	if err != nil {
		done := 0
		if res != nil {
			done = res.Jobs
		}
		aerr := s.adminFailure(fmt.Sprintf("key rotation stopped after %d jobs", done), err)
		var sealed *store.SealedError
		if errors.Is(err, store.ErrNoKeyring) || errors.As(err, &sealed) {
			aerr.code = http.StatusConflict
		}
		writeError(w, aerr.code, aerr.msg)
		return
	}
	s.log.Info("keys rotated", "key_id", res.KeyID, "jobs", res.Jobs, "records", res.Records)
	writeJSON(w, http.StatusOK, res)
}

// setRecovery keeps the report of the recovery pass run before the server
// was built, for GET /admin/recover.
func (s *Server) setRecovery(r *store.RecoverResult) {
	s.recovered.Store(r)
	s.metrics.recovered.Add(float64(r.FailedRunning + r.Requeued))
}

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
	co := s.cleaner.options()
	co.DryRun = req.DryRun
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
	var (
		res *store.CleanupResult
		run runResult
	)
	if co.DryRun {
		// It changes nothing, so it need not wait for a run in progress.
		co.Now = s.now()
		res, run = s.cleaner.cleanup(co)
		if run.err == nil {
			s.log.Info("cleanup finished", "trigger", "admin", "dry_run", true, "deleted", res.Deleted)
		}
	} else {
		// Through the maintainer, as a scheduled cleanup: one run at a
		// time, recorded in the schedule, counted and announced.
		s.keeper.do(s.cleaner, "admin", func(start time.Time) runResult {
			co.Now = start
			res, run = s.cleaner.cleanup(co)
			return run
		})
	}
	if run.err != nil {
		aerr := s.adminFailure("cleanup failed", run.err)
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
	res, aerr := s.backup(req.Compress, "admin")
	if aerr != nil {
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

// backup writes a backup now, compressed as configured unless compress
// says otherwise, for trigger (the webhook event and log name it).
func (s *Server) backup(compress *bool, trigger string) (*store.BackupResult, *apiError) {
	bo := s.backups.options()
	if compress != nil {
		bo.Compress = *compress
	}
	var (
		res *store.BackupResult
		run runResult
	)
	// Through the maintainer, so it cannot collide with a scheduled backup
	// and moves the schedule on as one would.
	s.keeper.do(s.backups, trigger, func(time.Time) runResult {
		res, run = s.backups.backup(bo)
		return run
	})
	if run.err != nil {
		return nil, s.adminFailure("cannot write backup", run.err)
	}
	return res, nil
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
	// The live store is checked under its own locks: no file being
	// written is re-read.
	res, err := s.st.Verify(store.VerifyOptions{CheckRecords: webhook.Check})
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("cannot verify %s: %v", s.dataDir(), err))
		return
	}
	if res.Problems == nil {
		res.Problems = []store.Problem{}
	}
	writeJSON(w, http.StatusOK, res)
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
