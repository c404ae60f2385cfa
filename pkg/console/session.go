package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// cookieName is the session cookie; it holds a random session id only.
const cookieName = "secauto_session"

// maxFormBytes bounds a form's body; the console's forms are small.
const maxFormBytes = 64 << 10

// maxSessions bounds the sessions kept in memory; beyond it the oldest
// go first.
const maxSessions = 10000

// session is one browser's sign-in, kept in the daemon's memory only (a
// restart signs everyone out).
type session struct {
	csrf    string
	expires time.Time
	// flash is a message for the next page shown (set by a POST, shown
	// after its redirect).
	mu    sync.Mutex
	flash string
}

func (s *session) setFlash(msg string) {
	s.mu.Lock()
	s.flash = msg
	s.mu.Unlock()
}

func (s *session) takeFlash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.flash
	s.flash = ""
	return m
}

// sessions maps the SHA-256 of a session id to its session, so that the
// map's lookup time says nothing of the ids kept.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	ttl time.Duration
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, ttl: ttl, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id.
func (ss *sessions) create() (string, *session) {
	id := randomToken()
	s := &session{csrf: randomToken(), expires: ss.now().Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		ss.prune()
	}
	ss.m[sha256.Sum256([]byte(id))] = s
	return id, s
}

// prune drops expired sessions, and the oldest while too many are left.
func (ss *sessions) prune() {
	now := ss.now()
	for k, s := range ss.m {
		if now.After(s.expires) {
			delete(ss.m, k)
		}
	}
	for len(ss.m) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for k, s := range ss.m {
			if first.IsZero() || s.expires.Before(first) {
				oldest, first = k, s.expires
			}
		}
		delete(ss.m, oldest)
	}
}

func (ss *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[k]
	if s != nil && ss.now().After(s.expires) {
		delete(ss.m, k)
		return nil
	}
	return s
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	delete(ss.m, sha256.Sum256([]byte(id)))
	ss.mu.Unlock()
}

// setCookie sets the session cookie: Secure when the daemon serves TLS,
// when r came over TLS, or when a proxy in front says it did (a header
// that can only make the cookie stricter).
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	secure := c.opts.Secure || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     "/ui/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteStrictMode,
	})
}

// current is the request's session, nil when it has none that is valid.
func (c *Console) current(r *http.Request) (string, *session) {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return "", nil
	}
	return ck.Value, c.sessions.get(ck.Value)
}

// session wraps a page that needs a session. With auth tokens configured,
// a request without a valid one is sent to the sign-in form (a GET) or
// refused (anything else); with none, a session is started on the spot,
// so that forms still carry a CSRF token. Every POST must carry the
// session's CSRF token and come from the console's own origin.
func (c *Console) session(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, s := c.current(r)
		if s == nil {
			if c.srv.AuthRequired() {
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					http.Redirect(w, r, "/ui/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
					return
				}
				c.fail(w, r, nil, http.StatusUnauthorized, "Sign in first: your session has ended or was never started.")
				return
			}
			var id string
			id, s = c.sessions.create()
			c.setCookie(w, r, id, int(c.opts.SessionTTL/time.Second))
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		if r.Method == http.MethodPost && !c.checkPost(r, s) {
			c.fail(w, r, s, http.StatusForbidden, "This form has expired or did not come from this console. Go back, reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// checkPost reports whether a POST carries s's CSRF token and, when the
// browser names one, comes from this origin.
func (c *Console) checkPost(r *http.Request, s *session) bool {
	if !sameOrigin(r) {
		return false
	}
	got := r.PostFormValue("csrf")
	return s != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// sameOrigin reports whether r's Origin header, when present, names the
// host r was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// localNext is where to go after signing in: next if it is a console
// path, else the overview.
func localNext(next string) string {
	if strings.HasPrefix(next, "/ui/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/ui/"
}

func (c *Console) handleSignInForm(w http.ResponseWriter, r *http.Request) {
	if !c.srv.AuthRequired() {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	c.render(w, r, nil, http.StatusOK, "signin", signInView{Next: localNext(r.URL.Query().Get("next"))})
}

// handleSignIn checks the token offered, in constant time as the API does,
// and starts a new session (a fresh id, so none chosen beforehand can be
// carried into it).
func (c *Console) handleSignIn(w http.ResponseWriter, r *http.Request) {
	if !c.srv.AuthRequired() {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	next := localNext(r.PostFormValue("next"))
	if !sameOrigin(r) {
		c.fail(w, r, nil, http.StatusForbidden, "This form did not come from this console.")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || !c.srv.CheckToken(tok) {
		c.render(w, r, nil, http.StatusUnauthorized, "signin", signInView{Next: next, Error: "That token is not one of server.auth_tokens."})
		return
	}
	if old, _ := c.current(r); old != "" {
		c.sessions.delete(old)
	}
	id, _ := c.sessions.create()
	c.setCookie(w, r, id, int(c.opts.SessionTTL/time.Second))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) handleSignOut(w http.ResponseWriter, r *http.Request, _ *session) {
	if id, _ := c.current(r); id != "" {
		c.sessions.delete(id)
	}
	c.setCookie(w, r, "", -1)
	if c.srv.AuthRequired() {
		http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
