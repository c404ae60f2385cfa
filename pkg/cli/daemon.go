package cli

// While "secauto serve" holds the data directory (SPEC §6), the other
// commands do not touch its files: they ask the daemon over its API
// (pkg/server/admin.go and the job endpoints) and print its answer exactly
// as they print their own results offline. This file is that API's
// transport; daemon_admin.go is the Admin over it.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

const (
	// daemonDialTimeout bounds connecting to the daemon.
	daemonDialTimeout = 10 * time.Second
	// daemonPingTimeout bounds the first, cheap request, so that a daemon
	// that hangs is reported at once, not after a long operation's time.
	daemonPingTimeout = 10 * time.Second
	// daemonReadTimeout bounds a request that only reads a few jobs.
	daemonReadTimeout = time.Minute
	// daemonWorkTimeout bounds a request whose work grows with the store
	// (backups, restore, verify, cleanup).
	daemonWorkTimeout = 30 * time.Minute
)

// daemonClient asks the daemon that holds a data directory to do a
// command's work.
type daemonClient struct {
	dir    string // the data directory, as this command names it
	owner  store.Owner
	token  string
	locked *store.LockedError
	http   *http.Client
	agent  string
	pinged bool // the admin endpoints answered
	probed bool // the job endpoints answered
}

func newDaemonClient(dir string, owner store.Owner, token, version string) *daemonClient {
	tr := &http.Transport{
		Proxy:               nil, // the daemon is on this host; never go through a proxy
		DialContext:         (&net.Dialer{Timeout: daemonDialTimeout}).DialContext,
		TLSHandshakeTimeout: daemonDialTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &daemonClient{
		dir:    dir,
		owner:  owner,
		token:  token,
		locked: &store.LockedError{Path: filepath.Join(dir, store.LockFile), Owner: owner},
		http:   &http.Client{Transport: tr},
		agent:  "secauto/" + version,
	}
}

// trust makes the client speak TLS to the daemon with tc.
func (c *daemonClient) trust(tc *tls.Config) {
	c.http.Transport.(*http.Transport).TLSClientConfig = tc
}

// baseURL splits the address the daemon recorded into scheme and host.
func (c *daemonClient) baseURL() (scheme, host string) {
	if h, ok := strings.CutPrefix(c.owner.Address, server.TLSScheme); ok {
		return "https", h
	}
	return "http", c.owner.Address
}

// daemonError is a daemon that holds the data directory but cannot be
// asked to do the work. It wraps the *store.LockedError the command would
// have met opening the directory itself, so it exits with status 2 like
// it.
type daemonError struct {
	msg    string
	locked *store.LockedError
}

func (e *daemonError) Error() string { return e.msg }
func (e *daemonError) Unwrap() error { return e.locked }

// remoteError is an error the daemon answered: its {"error": ...} message
// and HTTP status.
type remoteError struct {
	code int
	msg  string
}

func (e *remoteError) Error() string { return e.msg }

// who names the daemon: "secauto serve (pid 123)".
func (c *daemonClient) who() string { return describeOwner(c.owner) }

func describeOwner(o store.Owner) string {
	cmd := o.Command
	if cmd == "" {
		cmd = "secauto serve"
	}
	if o.PID == 0 {
		return cmd
	}
	return fmt.Sprintf("%s (pid %d)", cmd, o.PID)
}

// cannotAsk is the exit-2 error for a daemon that holds the directory but
// cannot be reached; reason says why.
func (c *daemonClient) cannotAsk(reason string) error {
	return &daemonError{
		msg: fmt.Sprintf("%s holds data directory %s but its API at %s cannot be reached: %s; check that it is running, or stop it and run this command again",
			c.who(), c.dir, c.owner.Address, reason),
		locked: c.locked,
	}
}

// transportReason says briefly why a request did not get an answer.
func transportReason(err error, timeout time.Duration) string {
	var (
		ue *url.Error
		ve *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &ve):
		return fmt.Sprintf("its certificate is not trusted (%v); give this command the daemon's configuration (--config or $SECAUTO_CONFIG), whose server.tls_cert it then trusts", ve.Err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ue) && ue.Timeout():
		return fmt.Sprintf("it did not answer within %s", timeout)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// do sends a request with in as its JSON body (none when nil) and decodes
// a 2xx answer into out. It returns a *daemonError when the daemon cannot
// be asked (exit 2) and a *remoteError for an error it answered.
func (c *daemonClient) do(ctx context.Context, method, path string, query url.Values, in, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cannot encode the request to the daemon: %w", err)
		}
		body = bytes.NewReader(b)
	}
	scheme, host := c.baseURL()
	u := url.URL{Scheme: scheme, Host: host, Path: path}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return c.cannotAsk(err.Error())
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.cannotAsk(transportReason(err, timeout))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return c.cannotAsk("its answer broke off: " + transportReason(err, timeout))
	}

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return &daemonError{
				msg: fmt.Sprintf("%s holds data directory %s but what answers at %s is not its API (%s %s: %v); check the address in %s",
					c.who(), c.dir, c.owner.Address, method, path, err, c.locked.Path),
				locked: c.locked,
			}
		}
		return nil
	}

	return c.failure(method, path, resp.StatusCode, data)
}

// failure turns an answer other than 2xx into the error do returns for it.
func (c *daemonClient) failure(method, path string, code int, data []byte) error {
	var eb struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(data, &eb)
	msg := strings.TrimSpace(eb.Error)
	switch {
	case code == http.StatusUnauthorized:
		why := "this command sent no bearer token"
		if c.token != "" {
			why = "the bearer token this command sent is not one of its server.auth_tokens"
		}
		return &daemonError{
			msg: fmt.Sprintf("%s holds data directory %s but its API at %s refused this command: %s; give this command the daemon's configuration (--config or $SECAUTO_CONFIG) so it sends one of server.auth_tokens",
				c.who(), c.dir, c.owner.Address, why),
			locked: c.locked,
		}
	case code == http.StatusNotFound && strings.HasPrefix(msg, "no endpoint "),
		code == http.StatusMethodNotAllowed:
		return &daemonError{
			msg: fmt.Sprintf("%s holds data directory %s but its API at %s does not offer %s %s, probably because it is an older release; stop it and run this command again, or upgrade and restart it",
				c.who(), c.dir, c.owner.Address, method, path),
			locked: c.locked,
		}
	case msg == "":
		msg = fmt.Sprintf("%s answered %s %s with status %d; check its log", c.who(), method, path, code)
	}
	return &remoteError{code: code, msg: msg}
}

// work sends a request whose work grows with the store: after a quick
// check that the daemon answers at all, it may take daemonWorkTimeout.
func (c *daemonClient) work(ctx context.Context, method, path string, in, out any) error {
	if err := c.ping(ctx); err != nil {
		return err
	}
	return c.do(ctx, method, path, nil, in, out, daemonWorkTimeout)
}

// ping checks, once, that the daemon answers this command and offers the
// admin endpoints, with a request that reads next to nothing.
func (c *daemonClient) ping(ctx context.Context) error {
	if c.pinged {
		return nil
	}
	var res server.AdminRecoverResponse
	if err := c.do(ctx, "GET", "/admin/recover", url.Values{"dry_run": {"true"}}, nil, &res, daemonPingTimeout); err != nil {
		return err
	}
	c.pinged = true
	return nil
}

// local turns a path the daemon answered (absolute, on its host, which
// is this host) into the path this command would have printed offline: a
// file of the data directory is named through the data directory as this
// command was given it.
func (c *daemonClient) local(p string) string {
	if p == "" || !filepath.IsAbs(p) {
		return p
	}
	parent, err1 := os.Stat(filepath.Dir(p))
	dir, err2 := os.Stat(c.dir)
	if err1 != nil || err2 != nil || !os.SameFile(parent, dir) {
		return p
	}
	return filepath.Join(c.dir, filepath.Base(p))
}
