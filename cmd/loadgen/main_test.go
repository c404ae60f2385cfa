package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRefusesRemoteURL(t *testing.T) {
	for _, u := range []string{"http://192.0.2.1:8080", "http://example.com", "not a url"} {
		err := run(options{url: u, clients: 1, duration: time.Second, max: 1, mode: "async"}, io.Discard)
		if err == nil {
			t.Errorf("%s was accepted", u)
		}
	}
}

// fakeServer acknowledges submissions and reports them all completed.
func fakeServer(t *testing.T, token string) (*httptest.Server, *int) {
	var (
		mu sync.Mutex
		n  int
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/playbook/async":
			if _, err := io.ReadAll(r.Body); err != nil {
				t.Error(err)
			}
			mu.Lock()
			n++
			id := n
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, `{"job_id":"%d","status":"pending"}`, id)
		case "/stats":
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(w, `{"jobs":{"completed":%d,"failed":0,"cancelled":0}}`, n)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	return ts, &n
}

func TestAsyncCountsAcknowledged(t *testing.T) {
	ts, n := fakeServer(t, "tok")
	var out bytes.Buffer
	if err := run(options{url: ts.URL, clients: 4, duration: time.Minute, max: 200, token: "tok", mode: "async"}, &out); err != nil {
		t.Fatal(err)
	}
	if *n != 200 || !strings.Contains(out.String(), "200 acknowledged, 0 errors") || !strings.Contains(out.String(), "p99") {
		t.Errorf("server saw %d submissions; output:\n%s", *n, out.String())
	}
}

func TestErrorsAreCounted(t *testing.T) {
	ts, _ := fakeServer(t, "tok")
	var out bytes.Buffer
	if err := run(options{url: ts.URL, clients: 2, duration: time.Minute, max: 10, mode: "async"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 acknowledged, 10 errors") || !strings.Contains(out.String(), "status 401") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestE2EWaitsForCompletion(t *testing.T) {
	ts, _ := fakeServer(t, "")
	var out bytes.Buffer
	if err := run(options{url: ts.URL, clients: 3, duration: time.Minute, max: 30, mode: "e2e", wait: time.Minute}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "e2e: 30 jobs ended (30 completed, 0 failed)") {
		t.Errorf("output:\n%s", out.String())
	}
}
