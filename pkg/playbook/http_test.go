package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/secauto/secauto/pkg/job"
)

const testLimit = 128 // MaxResponseBytes of the runner under test

// intelServer answers like the services playbooks call.
func intelServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Rate-Left", "99")
		w.Write([]byte(`{"ip": "1.2.3.4", "count": 12345678901234567, "nested": {"ok": true}}`))
	})
	mux.HandleFunc("GET /problem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"title": "exists"}`))
	})
	mux.HandleFunc("GET /notjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"broken": `))
	})
	mux.HandleFunc("GET /text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		w.Write([]byte("status body"))
	})
	mux.HandleFunc("GET /size/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Write([]byte(strings.Repeat("x", n)))
	})
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method":       r.Method,
			"path":         r.URL.RequestURI(),
			"host":         r.Host,
			"auth":         r.Header.Get("Authorization"),
			"content_type": r.Header.Get("Content-Type"),
			"body":         readAll(t, r.Body),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPResponses(t *testing.T) {
	srv := intelServer(t)
	tests := []struct {
		name       string
		params     map[string]any
		wantStatus float64 // after the JSON round trip; 0 means no output
		wantBody   any     // after the JSON round trip
		wantErr    string  // substring; empty means the step succeeds
	}{
		{"json body is decoded", map[string]any{"url": srv.URL + "/json"}, 200,
			map[string]any{"ip": "1.2.3.4", "count": 12345678901234567.0, "nested": map[string]any{"ok": true}}, ""},
		{"+json media type is decoded", map[string]any{"url": srv.URL + "/problem", "allow_status": []any{409.0}}, 409,
			map[string]any{"title": "exists"}, ""},
		{"invalid json stays a string", map[string]any{"url": srv.URL + "/notjson"}, 200, `{"broken": `, ""},
		{"text body is a string", map[string]any{"url": srv.URL + "/text"}, 200, "hello", ""},
		{"non-2xx fails and keeps the response", map[string]any{"url": srv.URL + "/status/404"}, 404, "status body", "404 Not Found"},
		{"5xx fails", map[string]any{"url": srv.URL + "/status/503", "allow_status": []any{404.0}}, 503, "status body", "503"},
		{"allow_status accepts a listed status", map[string]any{"url": srv.URL + "/status/404", "allow_status": []any{404.0}}, 404, "status body", ""},
		{"body at the limit is read", map[string]any{"url": srv.URL + "/size/" + strconv.Itoa(testLimit)}, 200, strings.Repeat("x", testLimit), ""},
		{"body over the limit fails", map[string]any{"url": srv.URL + "/size/" + strconv.Itoa(testLimit+1)}, 0, nil, "larger than the 128-byte limit"},
		{"timeout param bounds the request", map[string]any{"url": srv.URL + "/hang", "timeout": "30ms"}, 0, nil, "no complete response within 30ms"},
		{"connection refused", map[string]any{"url": "http://127.0.0.1:1/x"}, 0, nil, "GET http://127.0.0.1:1/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := []job.Step{{Name: "call", Action: "http", Params: tt.params}}
			rc, err := runSteps(t, context.Background(), &Runner{MaxResponseBytes: testLimit}, steps, nil, &recorder{t: t})
			if len(rc.results) != 1 {
				t.Fatalf("recorded %d results", len(rc.results))
			}
			res := rc.results[0]
			if tt.wantErr == "" {
				if err != nil || res.Status != job.StepOK {
					t.Fatalf("Run = %v, result %+v", err, res)
				}
			} else {
				var se *StepError
				if !errors.As(err, &se) || res.Status != job.StepFailed || !strings.Contains(res.Error, tt.wantErr) {
					t.Fatalf("Run = %v, result error %q, want a step failure with %q", err, res.Error, tt.wantErr)
				}
			}
			if tt.wantStatus == 0 {
				if res.Output != nil {
					t.Fatalf("output = %#v, want none", res.Output)
				}
				return
			}
			out, ok := roundTrip(t, res.Output).(map[string]any)
			if !ok {
				t.Fatalf("output = %#v, want an object", res.Output)
			}
			if out["status"] != tt.wantStatus {
				t.Errorf("status = %v, want %v", out["status"], tt.wantStatus)
			}
			if !reflect.DeepEqual(out["body"], tt.wantBody) {
				t.Errorf("body = %#v, want %#v", out["body"], tt.wantBody)
			}
			if _, ok := out["headers"].(map[string]any); !ok {
				t.Errorf("headers = %#v, want an object", out["headers"])
			}
		})
	}
}

func TestHTTPRequestIsSent(t *testing.T) {
	srv := intelServer(t)
	jobCtx := map[string]any{"token": "s3cret", "ip": "10.0.0.9", "count": 2.0}
	tests := []struct {
		name   string
		params map[string]any
		want   map[string]any // fields of the echoed request
	}{
		{"defaults to GET", map[string]any{"url": srv.URL + "/echo"},
			map[string]any{"method": "GET", "body": "", "content_type": ""}},
		{"method, templated url and headers", map[string]any{
			"method": "delete", "url": srv.URL + "/echo?ip={{.context.ip}}",
			"headers": map[string]any{"Authorization": "Bearer {{.context.token}}", "Host": "intel.example"},
		}, map[string]any{"method": "DELETE", "path": "/echo?ip=10.0.0.9", "auth": "Bearer s3cret", "host": "intel.example"}},
		{"string body is rendered and sent as is", map[string]any{
			"method": "POST", "url": srv.URL + "/echo", "body": "ip={{.context.ip}}",
		}, map[string]any{"body": "ip=10.0.0.9", "content_type": ""}},
		{"object body is rendered and sent as JSON", map[string]any{
			"method": "POST", "url": srv.URL + "/echo",
			"body": map[string]any{"ip": "{{.context.ip}}", "n": 2.0, "tags": []any{"{{.context.count}}"}},
		}, map[string]any{"body": `{"ip":"10.0.0.9","n":2,"tags":["2"]}`, "content_type": "application/json"}},
		{"a given content type wins", map[string]any{
			"method": "PUT", "url": srv.URL + "/echo", "body": []any{"a"},
			"headers": map[string]any{"content-type": "application/vnd.api+json"},
		}, map[string]any{"body": `["a"]`, "content_type": "application/vnd.api+json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := []job.Step{{Name: "call", Action: "http", Params: tt.params}}
			rc, err := runSteps(t, context.Background(), &Runner{}, steps, jobCtx, &recorder{t: t})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			echoed := rc.results[0].Output.(map[string]any)["body"].(map[string]any)
			for k, v := range tt.want {
				if echoed[k] != v {
					t.Errorf("server saw %s = %#v, want %#v", k, echoed[k], v)
				}
			}
		})
	}
}

func TestHTTPOutputFeedsLaterSteps(t *testing.T) {
	srv := intelServer(t)
	playbook := `[
		{"name": "fetch", "action": "http", "params": {"url": "` + srv.URL + `/json"}},
		{"name": "say", "action": "log", "params": {"message":
			"{{.steps.fetch.body.ip}} {{.steps.fetch.status}} {{.steps.fetch.body.count}} {{index .steps.fetch.headers \"X-Rate-Left\"}} {{if .steps.fetch.body.nested.ok}}ok{{end}}"}},
		{"name": "missing", "action": "log", "params": {"message": "{{.steps.fetch.body.asn}}"}}
	]`
	rc, err := runJSON(t, context.Background(), &Runner{}, playbook, nil)
	if got := rc.results[1].Output; !reflect.DeepEqual(got, map[string]any{"message": "1.2.3.4 200 12345678901234567 99 ok"}) {
		t.Errorf("log output = %#v", got)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "missing" || !strings.Contains(err.Error(), `"asn"`) {
		t.Fatalf("Run = %v, want step missing to fail naming key asn", err)
	}
}

// TestHTTPErrorsHideSecrets: query strings and user info often carry
// credentials, and step errors travel to logs and webhooks.
func TestHTTPErrorsHideSecrets(t *testing.T) {
	srv := intelServer(t)
	jobCtx := map[string]any{"key": "APIKEY123"}
	for _, url := range []string{
		srv.URL + "/status/500?key={{.context.key}}",
		"http://user:{{.context.key}}@127.0.0.1:1/x?key={{.context.key}}",
		"http://127.0.0.1:1/x?key={{.context.key}}",
	} {
		steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": url}}}
		rc, err := runSteps(t, context.Background(), &Runner{}, steps, jobCtx, &recorder{t: t})
		if err == nil {
			t.Fatalf("%s: Run succeeded", url)
		}
		if strings.Contains(err.Error(), "APIKEY123") || strings.Contains(rc.results[0].Error, "APIKEY123") {
			t.Errorf("%s: error reveals the secret: %v", url, err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("%s: error does not say where the request went: %v", url, err)
		}
	}
}

// redirectServers are two origins on loopback that differ only by port:
// net/http keeps Authorization across such a redirect.
func redirectServers(t *testing.T) (a, b *httptest.Server, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	echo := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "body": readAll(t, r.Body)})
	}
	muxB := http.NewServeMux()
	b = httptest.NewServer(muxB)
	t.Cleanup(b.Close)
	muxA := http.NewServeMux()
	a = httptest.NewServer(muxA)
	t.Cleanup(a.Close)
	muxA.HandleFunc("/echo", echo)
	muxB.HandleFunc("/echo", echo)
	muxA.Handle("/cross", http.RedirectHandler(b.URL+"/echo", http.StatusFound))
	muxA.Handle("/same", http.RedirectHandler("/echo", http.StatusFound))
	muxA.Handle("/back", http.RedirectHandler(b.URL+"/bounce", http.StatusFound))
	muxB.Handle("/bounce", http.RedirectHandler(a.URL+"/echo", http.StatusFound))
	muxA.Handle("/cross307", http.RedirectHandler(b.URL+"/echo", http.StatusTemporaryRedirect))
	muxA.Handle("/same307", http.RedirectHandler("/echo", http.StatusTemporaryRedirect))
	muxA.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/loop?token=SECRET", http.StatusFound)
	})
	return a, b, hits
}

func TestRedirectHeaders(t *testing.T) {
	a, _, _ := redirectServers(t)
	stepHeaders := map[string]any{"Authorization": "Bearer SECRET", "X-Api-Key": "SECRET", "X-Custom": "SECRET", "Cookie": "s=SECRET"}
	tests := []struct {
		path string
		kept bool // whether the final server sees the step's headers
	}{
		{"/cross", false},
		{"/same", true},
		{"/back", false}, // left the origin once: the way back is not trusted
	}
	for _, tt := range tests {
		steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{
			"url": a.URL + tt.path + "?key=SECRET", "headers": stepHeaders,
		}}}
		rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
		if err != nil {
			t.Fatalf("%s: Run: %v", tt.path, err)
		}
		seen := rc.results[0].Output.(map[string]any)["body"].(map[string]any)["headers"].(map[string]any)
		for k := range stepHeaders {
			if _, ok := seen[k]; ok != tt.kept {
				t.Errorf("%s: header %s reached the final server: %v, want %v", tt.path, k, ok, tt.kept)
			}
		}
		if ref, ok := seen["Referer"]; ok && !tt.kept {
			t.Errorf("%s: Referer %v sent across origins", tt.path, ref)
		}
	}
}

func TestRedirectBody(t *testing.T) {
	a, _, _ := redirectServers(t)
	call := func(path string) (*recorder, error) {
		steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{
			"method": "POST", "url": a.URL + path, "body": map[string]any{"api_key": "SECRET"},
		}}}
		return runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
	}
	rc, err := call("/same307")
	if err != nil || rc.results[0].Output.(map[string]any)["body"].(map[string]any)["body"] != `{"api_key":"SECRET"}` {
		t.Fatalf("same-origin 307: Run = %v, output %v", err, rc.results[0].Output)
	}
	rc, err = call("/cross307")
	if err == nil || !strings.Contains(rc.results[0].Error, "would send the request body to another origin") {
		t.Fatalf("cross-origin 307: Run = %v, result error %q", err, rc.results[0].Error)
	}
}

func TestRedirectBound(t *testing.T) {
	a, _, hits := redirectServers(t)
	mustPolicy := func(n int) *Runner {
		p, err := NewHTTPPolicy(HTTPPolicyConfig{MaxRedirects: n})
		if err != nil {
			t.Fatal(err)
		}
		return &Runner{Client: p.Client()}
	}
	tests := []struct {
		name     string
		r        *Runner
		params   map[string]any
		wantHits int64
		wantErr  string
	}{
		{"default bound", &Runner{}, nil, DefaultMaxRedirects + 1, "stopped after 5 redirects"},
		{"configured bound", mustPolicy(2), nil, 3, "stopped after 2 redirects; the redirect to " + a.URL + "/loop was not followed"},
		{"no redirects", mustPolicy(-1), nil, 1, "302 Found; list the status in allow_status"},
		{"no redirects, 3xx allowed", mustPolicy(-1), map[string]any{"allow_status": []any{302.0}}, 1, ""},
	}
	for _, tt := range tests {
		hits.Store(0)
		params := map[string]any{"url": a.URL + "/loop"}
		for k, v := range tt.params {
			params[k] = v
		}
		rc, err := runSteps(t, context.Background(), tt.r, []job.Step{{Name: "call", Action: "http", Params: params}}, nil, &recorder{t: t})
		msg := rc.results[0].Error
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(msg, tt.wantErr)) {
			t.Errorf("%s: Run = %v, result error %q, want %q", tt.name, err, msg, tt.wantErr)
		}
		if strings.Contains(msg, "SECRET") {
			t.Errorf("%s: error reveals the query: %q", tt.name, msg)
		}
		if got := hits.Load(); got != tt.wantHits {
			t.Errorf("%s: server saw %d requests, want %d", tt.name, got, tt.wantHits)
		}
	}
}

func TestRedirectDowngradeRefused(t *testing.T) {
	var plainHit atomic.Bool
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { plainHit.Store(true) }))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/in-clear", http.StatusFound))
	t.Cleanup(secure.Close)
	p, err := NewHTTPPolicy(HTTPPolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p.Client().Transport.(*http.Transport).TLSClientConfig = secure.Client().Transport.(*http.Transport).TLSClientConfig
	steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": secure.URL + "/start"}}}
	rc, err := runSteps(t, context.Background(), &Runner{Client: p.Client()}, steps, nil, &recorder{t: t})
	want := "redirect from " + secure.URL + "/start to " + plain.URL + "/in-clear refused: it leaves https for plain http"
	if err == nil || !strings.Contains(rc.results[0].Error, want) || plainHit.Load() {
		t.Fatalf("Run = %v, result error %q, plain server hit %v; want %q", err, rc.results[0].Error, plainHit.Load(), want)
	}
}

// TestZeroRunnerIsGuarded: a Runner built without a policy still refuses
// the metadata address.
func TestZeroRunnerIsGuarded(t *testing.T) {
	steps := []job.Step{{Name: "call", Action: "http", Params: map[string]any{"url": "http://169.254.169.254/latest/meta-data/"}}}
	rc, err := runSteps(t, context.Background(), &Runner{}, steps, nil, &recorder{t: t})
	var de *DeniedError
	if !errors.As(err, &de) || de.Addr.String() != "169.254.169.254:80" ||
		rc.results[0].Error != "GET http://169.254.169.254/latest/meta-data/: http steps may not connect to 169.254.169.254:80: it is a cloud metadata address; list the address in playbook.http.allowed_hosts to allow it" {
		t.Fatalf("Run = %v, result error %q", err, rc.results[0].Error)
	}
}
