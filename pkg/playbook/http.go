package playbook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// httpMethods are the methods an http step may use. Others (CONNECT, TRACE)
// have no place in an automation playbook.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// httpParams are the literal params of an http step, parsed.
type httpParams struct {
	method  string
	timeout time.Duration // zero: the Runner's default
	allow   []int
}

func checkHTTP(p map[string]any) error {
	if _, err := parseHTTPParams(p); err != nil {
		return err
	}
	v, ok := p["url"]
	if !ok {
		return errors.New("params.url is missing")
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("params.url must be a string, not %s", typeName(v))
	}
	if s == "" {
		return errors.New("params.url is empty")
	}
	if !isTemplate(s) {
		if _, err := parseURL(s); err != nil {
			return err
		}
	}
	if h, ok := p["headers"]; ok {
		m, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("params.headers must be an object of strings, not %s", typeName(h))
		}
		for _, k := range sortedKeys(m) {
			if !validHeaderName(k) {
				return fmt.Errorf("params.headers: %q is not a valid header name", k)
			}
			if _, ok := m[k].(string); !ok {
				return fmt.Errorf("params.headers.%s must be a string, not %s", k, typeName(m[k]))
			}
		}
	}
	return nil
}

func parseHTTPParams(p map[string]any) (httpParams, error) {
	hp := httpParams{method: http.MethodGet}
	if v, ok := p["method"]; ok {
		s, ok := v.(string)
		if !ok {
			return hp, fmt.Errorf("params.method must be a string, not %s", typeName(v))
		}
		// Upper-cased because "post" in a playbook means POST; sent as
		// written, most servers would answer 405 or 501.
		m := strings.ToUpper(s)
		if !slices.Contains(httpMethods, m) {
			return hp, fmt.Errorf("params.method %q is not an HTTP method; use one of %s", s, strings.Join(httpMethods, ", "))
		}
		hp.method = m
	}
	if v, ok := p["timeout"]; ok {
		d, err := parseDuration("params.timeout", v)
		if err != nil {
			return hp, err
		}
		hp.timeout = d
	}
	if v, ok := p["allow_status"]; ok {
		list, ok := v.([]any)
		if !ok {
			return hp, fmt.Errorf("params.allow_status must be an array of status codes, not %s", typeName(v))
		}
		for i, e := range list {
			code, ok := toInt(e)
			if !ok || code < 100 || code > 599 {
				return hp, fmt.Errorf("params.allow_status[%d] must be an HTTP status code (100-599), not %v", i, e)
			}
			hp.allow = append(hp.allow, code)
		}
	}
	return hp, nil
}

// toInt accepts the integer forms a param can take: float64 from JSON,
// json.Number, or a Go int from a caller building steps in code. Values far
// outside any status code are refused before conversion can overflow.
func toInt(v any) (int, bool) {
	const bound = 1 << 20
	var f float64
	switch x := v.(type) {
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case float64:
		f = x
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, false
		}
		f = float64(i)
	default:
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > bound {
		return 0, false
	}
	return int(f), true
}

func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// *url.Error repeats the URL, which may hold rendered secrets.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("params.url is not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("params.url must start with http:// or https://")
	}
	if u.Host == "" {
		return nil, fmt.Errorf("params.url has no host")
	}
	return u, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// redact gives the URL for error messages without userinfo, query or
// fragment: query strings often carry API keys, and error messages end up in
// logs and webhooks.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.ForceQuery = false
	c.Fragment = ""
	c.RawFragment = ""
	return c.String()
}

func runHTTP(ctx context.Context, r *Runner, p map[string]any, data map[string]any) (outcome, error) {
	hp, err := parseHTTPParams(p)
	if err != nil {
		return outcome{}, err
	}
	raw, err := renderString("params.url", p["url"].(string), data)
	if err != nil {
		return outcome{}, err
	}
	u, err := parseURL(raw)
	if err != nil {
		return outcome{}, fmt.Errorf("after rendering, %w", err)
	}

	var body io.Reader
	jsonBody := false
	if b, ok := p["body"]; ok && b != nil {
		rendered, err := renderValue("params.body", b, data)
		if err != nil {
			return outcome{}, err
		}
		if s, ok := rendered.(string); ok {
			body = strings.NewReader(s)
		} else {
			enc, err := json.Marshal(rendered)
			if err != nil {
				return outcome{}, fmt.Errorf("encode params.body as JSON: %w", err)
			}
			body = bytes.NewReader(enc)
			jsonBody = true
		}
	}

	timeout := hp.timeout
	if timeout == 0 {
		timeout = r.httpTimeout()
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, hp.method, u.String(), body)
	if err != nil {
		return outcome{}, fmt.Errorf("build request for %s: %w", redact(u), err)
	}
	if h, ok := p["headers"].(map[string]any); ok {
		for _, k := range sortedKeys(h) {
			s, _ := h[k].(string)
			v, err := renderString("params.headers."+k, s, data)
			if err != nil {
				return outcome{}, err
			}
			if http.CanonicalHeaderKey(k) == "Host" {
				// net/http ignores a Host entry in Header.
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
	}
	if jsonBody && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}

	target := hp.method + " " + redact(u)
	resp, err := stepClient(r).Do(req)
	if err != nil {
		return outcome{}, requestError(ctx, reqCtx, target, timeout, err)
	}
	defer resp.Body.Close()

	limit := r.maxResponseBytes()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return outcome{}, requestError(ctx, reqCtx, target, timeout, err)
	}
	if int64(len(respBody)) > limit {
		return outcome{}, fmt.Errorf("%s: response body is larger than the %d-byte limit", target, limit)
	}

	headers := make(map[string]any, len(resp.Header))
	for k, v := range resp.Header {
		headers[k] = strings.Join(v, ", ")
	}
	out := map[string]any{
		"status":  resp.StatusCode,
		"headers": headers,
	}
	decoded, err := decodeBody(resp.Header.Get("Content-Type"), respBody)
	if err != nil {
		// Status and headers are kept: they say what the service answered.
		return outcome{output: out}, fmt.Errorf("%s answered %s with a body that was not kept: %w", target, resp.Status, err)
	}
	out["body"] = decoded
	if !statusAllowed(resp.StatusCode, hp.allow) {
		return outcome{output: out}, fmt.Errorf("%s answered %s; list the status in allow_status to accept it", target, resp.Status)
	}
	return outcome{output: out}, nil
}

// defaultPolicy serves a Runner without a Client, so that a zero Runner is
// as guarded as a configured one.
var defaultPolicy = sync.OnceValue(func() *HTTPPolicy {
	p, err := NewHTTPPolicy(HTTPPolicyConfig{})
	if err != nil {
		panic(err) // the empty configuration has nothing to reject
	}
	return p
})

func stepClient(r *Runner) *http.Client {
	if r.Client != nil {
		return r.Client
	}
	return defaultPolicy().Client()
}

// checkRedirect keeps the step's headers with the origin it addressed.
// net/http drops only Authorization and cookies when the host changes, and
// keeps them across a change of port or scheme, while playbooks carry API
// keys in headers of their own (X-Api-Key) and in the query string, which
// net/http repeats to the next host as the Referer.
//
// Once a chain has left the original origin the headers stay off, even if
// it comes back: the path it comes back to was chosen by the other host.
// A redirect from https to plain http is refused rather than followed
// without headers, since the step asked for a protected channel. A
// cross-origin 307 or 308 would resend the body, which may hold secrets
// too, so it is refused.
func (p *HTTPPolicy) checkRedirect(req *http.Request, via []*http.Request) error {
	if p.maxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	prev := via[len(via)-1]
	if len(via) > p.maxRedirects {
		return fmt.Errorf("stopped after %d redirects; the redirect to %s was not followed", p.maxRedirects, redact(req.URL))
	}
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect from %s to %s refused: it leaves https for plain http", redact(prev.URL), redact(req.URL))
	}
	orig := via[0]
	crossed := !sameOrigin(req.URL, orig.URL)
	for _, r := range via[1:] {
		crossed = crossed || !sameOrigin(r.URL, orig.URL)
	}
	if !crossed {
		return nil
	}
	if req.Body != nil && req.Body != http.NoBody {
		return fmt.Errorf("redirect from %s to %s refused: it would send the request body to another origin", redact(prev.URL), redact(req.URL))
	}
	for k := range orig.Header {
		req.Header.Del(k)
	}
	req.Header.Del("Referer")
	return nil
}

// sameOrigin compares scheme, host and port, as browsers scope credentials.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// requestError explains a failed request. Cancellation of the step's own
// context is returned as is so that Run can tell it apart.
func requestError(stepCtx, reqCtx context.Context, target string, timeout time.Duration, err error) error {
	if stepCtx.Err() != nil {
		return stepCtx.Err()
	}
	if errors.Is(reqCtx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: no complete response within %s (params.timeout)", target, timeout)
	}
	// *url.Error repeats the full URL, query string included.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s: %w", target, err)
}

func statusAllowed(code int, allow []int) bool {
	return (code >= 200 && code < 300) || slices.Contains(allow, code)
}

// maxBodyDepth bounds the nesting of a decoded JSON body: the body sits
// inside the step's output object, which may nest job.MaxValueDepth deep.
const maxBodyDepth = job.MaxValueDepth - 1

// decodeBody returns the body as decoded JSON when the server says it is
// JSON and it parses, else as a string. Numbers keep their exact digits
// (json.Number), so large ids survive the round trip into the results.
//
// A JSON body nested deeper than a job may store is an error (a
// *job.LimitError naming the JSON nesting depth), not a string: kept as
// text it would pass here, but a later step reading .steps.NAME.body
// would find a string where the service sent an object, and the step would
// claim a success it did not have. Checking the depth first also spares
// the decoder a document built to exhaust it.
func decodeBody(contentType string, b []byte) (any, error) {
	if len(b) > 0 && isJSONType(contentType) {
		if err := job.CheckDepth(b, maxBodyDepth); err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil {
			// Trailing data means it was not one JSON document after all.
			if _, err := dec.Token(); err == io.EOF {
				return v, nil
			}
		}
	}
	return string(b), nil
}

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}
