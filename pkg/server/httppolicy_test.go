package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/playbook"
	"github.com/secauto/secauto/pkg/store"
)

// Run gives http steps the configured policy, and denies them the
// daemon's own API at the address it listens on.
func TestRunAppliesHTTPPolicy(t *testing.T) {
	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer tool.Close()

	for _, tt := range []struct {
		name   string
		policy *playbook.HTTPPolicyConfig
		tool   bool // whether a step may reach the tool on loopback
	}{
		{"default", nil, true},
		{"loopback denied", &playbook.HTTPPolicyConfig{DeniedNetworks: []string{"127.0.0.0/8"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready := make(chan string, 1)
			ctx, stop := context.WithCancel(context.Background())
			runErr := make(chan error, 1)
			go func() {
				runErr <- Run(ctx, Options{Store: store.Options{Dir: t.TempDir()}, HTTPPolicy: tt.policy, Ready: func(a string) { ready <- a }})
			}()
			var addr string
			select {
			case addr = <-ready:
			case err := <-runErr:
				t.Fatalf("Run: %v", err)
			}
			defer func() {
				stop()
				if err := <-runErr; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			api := "http://" + addr
			run := func(url string) *job.Job {
				t.Helper()
				body := fmt.Sprintf(`{"playbook":[{"name":"call","action":"http","params":{"url":%q}}]}`, url)
				resp, err := http.Post(api+"/playbook", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var j job.Job
				if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
					t.Fatal(err)
				}
				return &j
			}
			if j := run(api + "/health"); j.Status != job.Failed || !strings.Contains(j.Error, "may not connect") {
				t.Errorf("step calling the daemon's own API: %s %q", j.Status, j.Error)
			}
			j := run(tool.URL)
			if ok := j.Status == job.Completed; ok != tt.tool {
				t.Errorf("step calling a tool on loopback: %s %q", j.Status, j.Error)
			}
			if !tt.tool && !strings.Contains(j.Error, "playbook.http.denied_networks") {
				t.Errorf("refusal does not name the setting: %q", j.Error)
			}
		})
	}
}
