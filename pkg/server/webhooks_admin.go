package server

// The webhook admin endpoints: what "secauto webhooks" asks of a running
// daemon, which holds the outbox and the dead letters (SPEC §6), behind the
// same auth as the rest of the API.
//
//	GET  /admin/webhooks                                   → []webhook.Delivery
//	POST /admin/webhooks/retry  {"ids": [...]}             → AdminWebhooksRetryResponse
//	POST /admin/webhooks/clear  {"ids": [...]} | {"all": true} → AdminWebhooksClearResponse
//
// An id that names no dead letter is a 404 and changes nothing.

import (
	"errors"
	"net/http"
	"sync"

	"github.com/secauto/secauto/pkg/webhook"
)

// AdminWebhooksRequest is the body of POST /admin/webhooks/retry and
// /admin/webhooks/clear: the dead letters to act on, by delivery or event
// id. Retry with no ids retries every dead letter; clear with no ids
// needs All, so that an empty request never deletes them all.
type AdminWebhooksRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// AdminWebhooksRetryResponse is the answer of POST /admin/webhooks/retry.
type AdminWebhooksRetryResponse struct {
	Retried int `json:"retried"`
}

// AdminWebhooksClearResponse is the answer of POST /admin/webhooks/clear.
type AdminWebhooksClearResponse struct {
	Cleared int `json:"cleared"`
}

// webhookAdminMu keeps two retries or clears from reading the same dead
// letters and both counting them.
var webhookAdminMu sync.Mutex

// webhookRoutes adds the webhook admin endpoints to mux.
func (s *Server) webhookRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/webhooks", s.auth(s.handleAdminWebhooks))
	mux.HandleFunc("POST /admin/webhooks/retry", s.auth(s.handleAdminWebhooksRetry))
	mux.HandleFunc("POST /admin/webhooks/clear", s.auth(s.handleAdminWebhooksClear))
}

func (s *Server) handleAdminWebhooks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, webhook.List(s.st))
}

func (s *Server) handleAdminWebhooksRetry(w http.ResponseWriter, r *http.Request) {
	var req AdminWebhooksRequest
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	ids := req.IDs
	if req.All {
		ids = nil
	}
	webhookAdminMu.Lock()
	n, err := webhook.Retry(s.st, ids, s.now())
	webhookAdminMu.Unlock()
	if err != nil {
		s.webhookAdminError(w, "cannot retry webhook dead letters", err)
		return
	}
	if n > 0 {
		s.log.Info("webhook dead letters queued again", "trigger", "admin", "retried", n)
		s.hooks.Notify()
	}
	writeJSON(w, http.StatusOK, AdminWebhooksRetryResponse{Retried: n})
}

func (s *Server) handleAdminWebhooksClear(w http.ResponseWriter, r *http.Request) {
	var req AdminWebhooksRequest
	if aerr := s.decodeOptional(w, r, &req); aerr != nil {
		writeError(w, aerr.code, aerr.msg)
		return
	}
	if len(req.IDs) == 0 && !req.All {
		writeError(w, http.StatusBadRequest, `name the dead letters to clear in "ids", or give "all": true to clear every one`)
		return
	}
	ids := req.IDs
	if req.All {
		ids = nil
	}
	webhookAdminMu.Lock()
	n, err := webhook.Clear(s.st, ids)
	webhookAdminMu.Unlock()
	if err != nil {
		s.webhookAdminError(w, "cannot clear webhook dead letters", err)
		return
	}
	if n > 0 {
		// Deleting undelivered events is worth a line in the log.
		s.log.Warn("webhook dead letters cleared", "trigger", "admin", "cleared", n)
	}
	writeJSON(w, http.StatusOK, AdminWebhooksClearResponse{Cleared: n})
}

func (s *Server) webhookAdminError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, webhook.ErrNoDeadLetter) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	aerr := s.adminFailure(what, err)
	writeError(w, aerr.code, aerr.msg)
}
