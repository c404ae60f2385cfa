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
