package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
)

// maxAttemptsLimit bounds max_attempts so that a retried playbook that
// crashes the server stops doing so within a reasonable number of restarts.
const maxAttemptsLimit = 100

// SubmitRequest is the body of POST /playbook/async and POST /playbook.
type SubmitRequest struct {
	Playbook []job.Step     `json:"playbook"`
	Context  map[string]any `json:"context,omitempty"`
	// OnInterrupt is "fail" (default) or "retry": what recovery does with
	// the job if the server dies while it runs.
	OnInterrupt string `json:"on_interrupt,omitempty"`
	// MaxAttempts caps the starts of a "retry" job; zero means 3.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// SubmitResponse is the 202 answer of POST /playbook/async.
type SubmitResponse struct {
	JobID  string     `json:"job_id"`
	Status job.Status `json:"status"`
	// RerunOf names the job a rerun was started from (POST
	// /job/{id}/rerun); omitted for a submission.
	RerunOf string `json:"rerun_of,omitempty"`
}

// submit validates and persists a submission and queues its job; the job
// is durable once it returns without error. wait, if not nil, is
// registered to hear of the job's end before the job is queued. A restore
// is held off meanwhile, so the job lands either in the store a restore
// replaces (and in its safety backup) or in the restored one.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, wait chan *job.Job) (*job.Job, *apiError) {
	if s.draining.Load() {
		return nil, errShuttingDown()
	}
	var req SubmitRequest
	if aerr := decodeJSON(w, r, s.maxBody, &req); aerr != nil {
		return nil, aerr
	}
	if err := req.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}

	defer s.keeper.admit()()
	j, err := s.jobs.Create(req.NewJob())
	if err != nil {
		return nil, s.storeError("store the job", err)
	}
	s.metrics.submitted.Inc()
	if wait != nil {
		s.mu.Lock()
		s.waiters[j.ID] = append(s.waiters[j.ID], wait)
		s.mu.Unlock()
	}
	// If the queue is closed (shutdown began after the job was stored), the
	// job stays pending in the store and runs after the restart; the 202
	// is still true.
	s.enqueue(j.ID)
	return j, nil
}

// Validate checks a submission exactly as POST /playbook/async does before
// it stores anything: the playbook and its context within the default
// limits of playbook.ValidateOptions, and on_interrupt and max_attempts.
// The error is a sentence for whoever wrote the submission; it quotes no
// context value.
func (req *SubmitRequest) Validate() error {
	var limits playbook.ValidateOptions // the defaults: steps, template and context size
	if err := limits.Validate(req.Playbook); err != nil {
		return fmt.Errorf("invalid playbook: %w", err)
	}
	if err := limits.ValidateContext(req.Context); err != nil {
		return fmt.Errorf("invalid context: %w", err)
	}
	switch req.OnInterrupt {
	case "", job.OnInterruptFail, job.OnInterruptRetry:
	default:
		return fmt.Errorf("on_interrupt %q is not valid; use %q or %q", req.OnInterrupt, job.OnInterruptFail, job.OnInterruptRetry)
	}
	if req.MaxAttempts < 0 || req.MaxAttempts > maxAttemptsLimit {
		return fmt.Errorf("max_attempts must be between 1 and %d (0 means %d)", maxAttemptsLimit, job.DefaultMaxAttempts)
	}
	return nil
}

// NewJob is the pending job a valid submission becomes, before the store
// gives it an id and a creation time.
func (req *SubmitRequest) NewJob() *job.Job {
	ctx := req.Context
	if ctx == nil {
		ctx = map[string]any{}
	}
	return &job.Job{
		Playbook:    req.Playbook,
		Context:     ctx,
		Results:     []job.Result{},
		OnInterrupt: req.OnInterrupt,
		MaxAttempts: req.MaxAttempts,
	}
}

func errShuttingDown() *apiError {
	return &apiError{http.StatusServiceUnavailable, "server is shutting down; submit again once it is back"}
}

func (s *Server) handleSubmitAsync(w http.ResponseWriter, r *http.Request) {
	j, aerr := s.submit(w, r, nil)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusAccepted, SubmitResponse{JobID: j.ID, Status: job.Pending})
}

// handleSubmitWait answers once the job has ended. A client that goes away
// does not stop the job.
func (s *Server) handleSubmitWait(w http.ResponseWriter, r *http.Request) {
	ch := make(chan *job.Job, 1)
	j, aerr := s.submit(w, r, ch)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}

	select {
	case done := <-ch:
		if done == nil {
			writeError(w, http.StatusConflict, fmt.Sprintf("job %s was removed by a backup restore before it ended", j.ID))
			return
		}
		writeJSON(w, http.StatusOK, done)
	case <-r.Context().Done():
		s.dropWaiter(j.ID, ch)
	case <-s.stopped:
		select {
		case done := <-ch:
			if done != nil {
				writeJSON(w, http.StatusOK, done)
				return
			}
		default:
		}
		s.dropWaiter(j.ID, ch)
		writeJSON(w, http.StatusServiceUnavailable, struct {
			Error string `json:"error"`
			JobID string `json:"job_id"`
		}{
			Error: fmt.Sprintf("server is shutting down; job %s stays pending and runs after the restart", j.ID),
			JobID: j.ID,
		})
	}
}

func (s *Server) dropWaiter(id string, ch chan *job.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

// ParseJobFilter reads the query of GET /jobs: status (comma-separated or
// repeated), since (RFC 3339 time, YYYY-MM-DD, or a duration back from now
// such as 1h or 30d) and limit.
func ParseJobFilter(q map[string][]string, now time.Time) (store.Filter, error) {
	var f store.Filter
	for _, v := range q["status"] {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			st, err := job.ParseStatus(name)
			if err != nil {
				return f, err
			}
			f.Statuses = append(f.Statuses, st)
		}
	}
	if v := first(q["since"]); v != "" {
		t, err := parseSince(v, now)
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	if v := first(q["limit"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit %q is not valid; give a whole number of jobs, 0 for all", v)
		}
		f.Limit = n
	}
	return f, nil
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// parseSince reads a point in time: an RFC 3339 time, a date, or a
// duration (Go syntax plus days) counted back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("since %q is not valid; give an RFC 3339 time like 2025-07-09T15:30:00Z or a duration like 1h or 30d", v)
	}
	return now.Add(-d), nil
}

func (s *Server) handleListJobs(w http.ResponseWriter, r *http.Request) {
	f, err := ParseJobFilter(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	jobs, err := s.st.List(f)
	if err != nil {
		aerr := s.storeError("list jobs", err)
		writeError(w, aerr.code, aerr.msg)
		return
	}
	if jobs == nil {
		jobs = []*job.Job{}
	}
	writeJSON(w, http.StatusOK, jobs)
}

// lookup finds the job named by the {id} path value; a unique id prefix is
// accepted, as the CLI accepts it.
func (s *Server) lookup(r *http.Request) (*job.Job, *apiError) {
	return s.lookupID(r.PathValue("id"))
}

// lookupID finds the job id names, or the job a unique prefix names.
func (s *Server) lookupID(id string) (*job.Job, *apiError) {
	j, err := s.st.Get(id)
	switch {
	case err == nil:
		return j, nil
	case errors.Is(err, store.ErrNotFound):
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("job %s not found", id)}
	case errors.Is(err, store.ErrAmbiguous):
		return nil, badRequest("job id prefix %s matches more than one job; give more of the id", id)
	}
	var sealed *store.SealedError
	if errors.As(err, &sealed) {
		// The daemon lacks the key, or the file was changed: say which.
		return nil, &apiError{http.StatusInternalServerError, err.Error()}
	}
	return nil, s.storeError("read the job", err)
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	j, aerr := s.lookup(r)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) handleCancelJob(w http.ResponseWriter, r *http.Request) {
	j, aerr := s.lookup(r)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	if j.Status.Terminal() {
		writeError(w, http.StatusConflict, (&conflictError{j}).Error()+"; only pending and running jobs can be cancelled")
		return
	}
	j, aerr = s.cancel(r.Context(), j.ID)
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	s.log.Info("job cancelled", "job_id", j.ID)
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) cancel(ctx context.Context, id string) (*job.Job, *apiError) {
	j, err := s.cancelJob(ctx, id)
	var ce *conflictError
	switch {
	case err == nil:
		return j, nil
	case errors.As(err, &ce):
		return nil, &apiError{http.StatusConflict, err.Error() + "; only pending and running jobs can be cancelled"}
	case errors.Is(err, store.ErrNotFound):
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("job %s not found", id)}
	case ctx.Err() != nil:
		return nil, &apiError{http.StatusServiceUnavailable, "request ended before the job stopped"}
	}
	return nil, s.storeError("cancel the job", err)
}

// handleDeleteJob cancels a live job, then deletes it durably.
func (s *Server) handleDeleteJob(w http.ResponseWriter, r *http.Request) {
	if aerr := s.deleteJob(r.Context(), r.PathValue("id")); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteJob cancels the job id names if it is live, then deletes it
// durably.
func (s *Server) deleteJob(ctx context.Context, id string) *apiError {
	j, aerr := s.lookupID(id)
	if aerr != nil {
		// A job encrypted with a key this daemon lacks (a lost key) can
		// still be deleted: it cannot be running here, since no worker
		// could read it.
		var sealed *store.SealedError
		if _, err := s.st.Get(id); !errors.As(err, &sealed) || sealed.JobID == "" {
			return aerr
		}
		j = &job.Job{ID: sealed.JobID, Status: job.Cancelled}
	}
	if !j.Status.Terminal() {
		if _, aerr := s.cancel(ctx, j.ID); aerr != nil && aerr.code != http.StatusConflict {
			return aerr
		}
	}
	if err := s.st.Delete(j.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return &apiError{http.StatusNotFound, fmt.Sprintf("job %s not found", j.ID)}
		}
		return s.storeError("delete the job", err)
	}
	s.queue.remove(j.ID)
	s.watch.deleted(j.ID)
	s.log.Info("job deleted", "job_id", j.ID)
	return nil
}
