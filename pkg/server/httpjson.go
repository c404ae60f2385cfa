package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

var (
	jsonContentType = []string{"application/json"}
	bufPool         = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// writeJSON answers with v as JSON. The body is encoded into a pooled
// buffer first, so the answer goes out in one write with a Content-Length
// and an encoding error can still become a 500.
func writeJSON(w http.ResponseWriter, code int, v any) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			bufPool.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		buf.Reset()
		code = http.StatusInternalServerError
		fmt.Fprintf(buf, "{\"error\":%q}\n", "encode response: "+err.Error())
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// errorBody is the JSON form of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// apiError is a request that cannot be served, with the status to answer.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// decodeJSON reads exactly one JSON value from the body into v, refusing
// unknown fields and bodies above max bytes (413). A 413 closes the
// connection after the answer: the rest of such a body is not worth
// reading beyond what instrument drains so that the client gets the answer.
func decodeJSON(w http.ResponseWriter, r *http.Request, max int64, v any) *apiError {
	if r.ContentLength > max {
		return tooLarge(w, max)
	}
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(w, err, max)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(w, max)
		}
		return badRequest("request body must hold a single JSON object")
	}
	return nil
}

func tooLarge(w http.ResponseWriter, max int64) *apiError {
	w.Header().Set("Connection", "close")
	return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes; send a smaller playbook or raise server.max_body_bytes", max)}
}

// decodeError turns a json decoding error into a message that names the
// problem in the request, without echoing its content.
func decodeError(w http.ResponseWriter, err error, max int64) *apiError {
	var (
		mbe  *http.MaxBytesError
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		ierr *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(w, max)
	case errors.Is(err, io.EOF):
		return badRequest("request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is not valid JSON: it ends too early")
	case errors.As(err, &syn):
		return badRequest("request body is not valid JSON: %s at byte %d", syn.Error(), syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest("request body must be a JSON object, not %s", typ.Value)
		}
		return badRequest("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &ierr):
		return &apiError{http.StatusInternalServerError, err.Error()}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown field %s in request body", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("request body is not valid JSON: %v", err)
}

// jsonKind names a Go kind the way a JSON author reads it.
func jsonKind(kind string) string {
	switch kind {
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	}
	return kind
}

// recorder remembers the status of an answer for the request counter, and
// turns the mux's plain-text or bodiless errors (404, 405, the 400 for the
// request target *) into JSON errors.
type recorder struct {
	http.ResponseWriter
	r       *http.Request
	code    int
	swallow bool
}

func (rw *recorder) WriteHeader(code int) {
	if rw.code != 0 {
		return
	}
	rw.code = code
	h := rw.Header()
	if ct := h.Get("Content-Type"); code >= 400 && (ct == "" || strings.HasPrefix(ct, "text/plain")) {
		var msg string
		switch code {
		case http.StatusNotFound:
			msg = fmt.Sprintf("no endpoint %s %s", rw.r.Method, rw.r.URL.Path)
		case http.StatusMethodNotAllowed:
			msg = fmt.Sprintf("method %s is not allowed on %s; use %s", rw.r.Method, rw.r.URL.Path, h.Get("Allow"))
		case http.StatusBadRequest:
			msg = fmt.Sprintf("bad request target %q", rw.r.RequestURI)
		default:
			msg = strings.ToLower(http.StatusText(code))
		}
		rw.swallow = true
		writeJSON(rw.ResponseWriter, code, errorBody{Error: msg})
		return
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.code == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.swallow {
		return len(p), nil
	}
	return rw.ResponseWriter.Write(p)
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// instrument counts every request by route and status, and drains what a
// handler left unread of a body (drain.go), so that an early answer such
// as 413 or 401 reaches the client.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &recorder{ResponseWriter: w, r: r}
		tb := trackBody(r)
		next.ServeHTTP(rw, r)
		drain(rw, r, tb)
		code := rw.code
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.request(r.Pattern, code)
	})
}
