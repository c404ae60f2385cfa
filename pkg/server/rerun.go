package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// RerunPlaybookError is a rerun refused because the original job's playbook
// or submitted context no longer passes the validation a submission does
// (it was stored by an earlier release, or by hand).
type RerunPlaybookError struct{ Err error }

func (e *RerunPlaybookError) Error() string {
	return fmt.Sprintf("cannot rerun the job: %v; submit a corrected playbook instead", e.Err)
}

func (e *RerunPlaybookError) Unwrap() error { return e.Err }

// RerunJob stores, in st, a new pending job from the playbook and
// submitted context of the job id names, linked to it both ways (the new
// job's rerun_of, the original's reruns) in one durable change. The new
// job passes the validation a submission does, else the error is a
// *RerunPlaybookError. The daemon queues the job it returns; offline it
// waits for the next serve.
func RerunJob(st store.Store, id string) (*job.Job, error) {
	return st.Rerun(id, func(orig *job.Job) (*job.Job, error) {
		nj := orig.Rerun()
		req := SubmitRequest{Playbook: nj.Playbook, Context: nj.Context, OnInterrupt: nj.OnInterrupt, MaxAttempts: nj.MaxAttempts}
		if err := req.Validate(); err != nil {
			return nil, &RerunPlaybookError{err}
		}
		return nj, nil
	})
}

// handleRerunJob is POST /job/{id}/rerun: 202 like a submission, 404 for
// an unknown id.
func (s *Server) handleRerunJob(w http.ResponseWriter, r *http.Request) {
	nj, aerr := s.rerun(r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusAccepted, SubmitResponse{JobID: nj.ID, Status: job.Pending, RerunOf: nj.RerunOf})
}

// rerun stores and queues a rerun of the job id names.
func (s *Server) rerun(id string) (*job.Job, *apiError) {
	if s.draining.Load() {
		return nil, errShuttingDown()
	}
	nj, err := func() (*job.Job, error) {
		defer s.keeper.admit()()
		return RerunJob(s.st, id)
	}()
	var pe *RerunPlaybookError
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("job %s not found", id)}
	case errors.Is(err, store.ErrAmbiguous):
		return nil, badRequest("job id prefix %s matches more than one job; give more of the id", id)
	case errors.As(err, &pe):
		return nil, badRequest("%s", pe.Error())
	case err != nil:
		return nil, s.storeError("store the rerun", err)
	}
	s.metrics.submitted.Inc()
	s.enqueue(nj.ID)
	s.watch.publishID(s.st, nj.RerunOf) // its reruns changed
	s.log.Info("job rerun", "job_id", nj.ID, "rerun_of", nj.RerunOf)
	return nj, nil
}
