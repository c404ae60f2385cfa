// Package console is secauto's web console: server-rendered pages under
// /ui/ for the people who watch the jobs (an overview, the jobs list, one
// job with its timeline, the backups), on the daemon's own listener.
//
// It depends on pkg/server, never the reverse: the daemon mounts it
// through server.Options.Console. Authentication is the API's: when
// server.auth_tokens is set, a sign-in form takes one of those tokens,
// compares it in constant time, and answers with a cookie holding a
// random session id (the token itself is never stored in the browser);
// with no tokens, as the API, no sign-in is asked for. Every POST carries
// a CSRF token tied to the session. Every page is rendered by html/template
// from embedded templates, with a strict Content-Security-Policy: one small
// embedded script (live updates) and one style sheet, nothing inline.
package console

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/secauto/secauto/pkg/server"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configures the console.
type Options struct {
	// Secure marks the session cookie Secure; set it when the daemon
	// serves HTTPS (or sits behind a proxy that does).
	Secure bool
	// SessionTTL is how long a sign-in lasts; zero means 12 hours.
	SessionTTL time.Duration
	// PageSize is how many jobs a page of the list shows; zero means 50.
	PageSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console is the web console's handler.
type Console struct {
	srv      *server.Server
	opts     Options
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New builds the console over a server. Its handler answers every path
// under /ui/.
func New(srv *server.Server, o Options) *Console {
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.PageSize <= 0 {
		o.PageSize = 50
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{srv: srv, opts: o, sessions: newSessions(o.SessionTTL, o.Now)}
	c.pages = parsePages()
	c.mux = c.routes()
	return c
}

// Mount is what server.Options.Console takes: it builds a console with o
// over the server being built.
func Mount(o Options) func(*server.Server) http.Handler {
	return func(s *server.Server) http.Handler { return New(s, o) }
}

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/signin", c.handleSignInForm)
	mux.HandleFunc("POST /ui/signin", c.handleSignIn)
	mux.HandleFunc("POST /ui/signout", c.session(c.handleSignOut))
	mux.HandleFunc("GET /ui/{$}", c.session(c.handleOverview))
	mux.HandleFunc("GET /ui/jobs", c.session(c.handleJobs))
	mux.HandleFunc("GET /ui/jobs/{id}", c.session(c.handleJob))
	mux.HandleFunc("GET /ui/jobs/{id}/events", c.session(c.handleJobEvents))
	mux.HandleFunc("GET /ui/jobs/{id}/{action}", c.session(c.handleConfirm))
	mux.HandleFunc("POST /ui/jobs/{id}/{action}", c.session(c.handleJobAction))
	mux.HandleFunc("GET /ui/backups", c.session(c.handleBackups))
	mux.HandleFunc("POST /ui/backups", c.session(c.handleCreateBackup))
	mux.HandleFunc("/ui/", c.session(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.fail(w, r, s, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	}))
	return mux
}

// ServeHTTP sets the security headers every answer carries, then serves
// the page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// ContentSecurityPolicy is the policy of every console answer: scripts,
// styles and everything else only from the console itself, none inline,
// no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
