package server

import "net/http"

// routes lists every endpoint of the API. The mux answers 404 and 405 by
// itself; instrument turns those answers into JSON errors.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /playbook/async", s.auth(s.handleSubmitAsync))
	mux.HandleFunc("POST /playbook", s.auth(s.handleSubmitWait))
	mux.HandleFunc("GET /jobs", s.auth(s.handleListJobs))
	mux.HandleFunc("GET /job/{id}", s.auth(s.handleGetJob))
	mux.HandleFunc("DELETE /job/{id}", s.auth(s.handleDeleteJob))
	mux.HandleFunc("POST /job/{id}/cancel", s.auth(s.handleCancelJob))
	mux.HandleFunc("POST /job/{id}/rerun", s.auth(s.handleRerunJob))
	mux.HandleFunc("GET /job/{id}/events", s.auth(s.handleJobEvents))
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /stats", s.auth(s.handleStats))
	mux.Handle("GET /metrics", s.authHandler(s.metrics.handler()))
	s.adminRoutes(mux) // admin.go: what the CLI asks of a running daemon
	s.webhookRoutes(mux)
	if s.console != nil {
		mux.Handle(ConsolePath, s.console(s)) // the mux redirects /ui there
	}
	return s.instrument(mux)
}
