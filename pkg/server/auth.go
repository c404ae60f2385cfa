package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// hashToken reduces a token to a fixed length, so that comparing it takes
// the same time whatever the length of the token offered.
func hashToken(t string) [32]byte { return sha256.Sum256([]byte(t)) }

// authorized reports whether r carries one of the configured bearer tokens.
// Every token is compared, in constant time, so the answer's timing does
// not tell which token came close.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.tokens) == 0 {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return s.tokenMatches(tok)
}

// tokenMatches reports whether tok (surrounding blanks aside) is one of
// the configured tokens, comparing every one in constant time.
func (s *Server) tokenMatches(tok string) bool {
	got := hashToken(strings.TrimSpace(tok))
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(got[:], s.tokens[i][:])
	}
	return match == 1
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if len(s.tokens) == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="secauto"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token; send Authorization: Bearer TOKEN with a token from server.auth_tokens")
			return
		}
		h(w, r)
	}
}

func (s *Server) authHandler(h http.Handler) http.HandlerFunc { return s.auth(h.ServeHTTP) }
