package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// A client that sends a body the server will not read keeps sending after
// the answer. Closing the connection then would make the server's kernel
// reset it, and a reset may discard the answer before the client reads it
// (RFC 9112 section 9.6): the client sees a broken connection instead of
// 413. So the unread rest of a body is read and thrown away, up to a bound
// in size and time that keeps a client from holding the server forever.
const (
	// maxDrainBytes bounds what is read and discarded after the answer.
	maxDrainBytes = 16 << 20
	// drainTimeout bounds how long that may take.
	drainTimeout = 5 * time.Second
)

// trackedBody remembers whether a request body was read to its end, so
// the rest is drained only when something is left.
type trackedBody struct {
	io.ReadCloser
	read int64
	eof  bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// trackBody puts a trackedBody in front of r's body; nil when there is no
// body to track.
func trackBody(r *http.Request) *trackedBody {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	tb := &trackedBody{ReadCloser: r.Body}
	r.Body = tb
	return tb
}

// drain sends the answer already written and then reads what is left of
// the body, within maxDrainBytes and drainTimeout.
func drain(w http.ResponseWriter, r *http.Request, tb *trackedBody) {
	if tb == nil || tb.eof {
		return
	}
	// A client waiting for "100 Continue" sends nothing once it has the
	// final answer instead, so there is nothing to wait for.
	if tb.read == 0 && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.CopyN(io.Discard, tb.ReadCloser, maxDrainBytes)
}
