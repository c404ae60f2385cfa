package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/config"
	"github.com/secauto/secauto/pkg/server"
)

func TestServeOptionsFromConfigAndFlags(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte(`
jobs: {snapshot_interval: 5s}
server:
  address: 0.0.0.0
  port: 9000
  workers: 7
  auth_tokens: [t0k3n-0123456789abcdef]
  max_body_bytes: 2MiB
  shutdown_timeout: 1m
logging: {level: debug, format: json, file: ""}
`))
	if err != nil {
		t.Fatal(err)
	}
	ios, _, _, errOut := TestStreams()
	var got server.Options
	opts := &ServeOptions{
		IO:       ios,
		Config:   func() (*config.Config, error) { return cfg, nil },
		StoreDir: func() (string, error) { return "/var/lib/secauto", nil },
		Run: func(ctx context.Context, o server.Options) error {
			got = o
			o.Logger.Debug("hello")
			return nil
		},
	}
	if err := serveRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got.Store.Dir != "/var/lib/secauto" || got.Store.SnapshotInterval != 5*time.Second || got.Address != "0.0.0.0" ||
		got.Port != 9000 || got.Workers != 7 || len(got.AuthTokens) != 1 || got.MaxBodyBytes != 2<<20 || got.ShutdownTimeout != time.Minute {
		t.Errorf("options from config: %+v", got)
	}
	// logging.format json and level debug are honoured.
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(errOut.Bytes()), &rec); err != nil || rec["msg"] != "hello" {
		t.Errorf("log is not JSON at debug level: %q", errOut)
	}

	port, workers, addr := 0, 2, "127.0.0.2"
	opts.Port, opts.Workers, opts.Address, opts.Insecure = &port, &workers, &addr, true
	if err := serveRun(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got.Port != 0 || got.Workers != 2 || got.Address != "127.0.0.2" || !got.Insecure {
		t.Errorf("flags must override the config: %+v", got)
	}

	bad := -1
	opts.Workers = &bad
	if err := serveRun(context.Background(), opts); exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "--workers -1") {
		t.Errorf("bad --workers: %v", err)
	}

	// A non-loopback address without tokens is a configuration mistake:
	// exit 2 before anything starts, so systemd does not retry it.
	cfg.Server.AuthTokens = nil
	opts.Workers, opts.Address, opts.Insecure = nil, nil, false
	got = server.Options{}
	if err := serveRun(context.Background(), opts); exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "non-loopback address 0.0.0.0") || got.Address != "" {
		t.Errorf("0.0.0.0 without tokens: exit %d, %v, ran with %q", exitCode(err), err, got.Address)
	}
}

func TestLoggerFormat(t *testing.T) {
	var b bytes.Buffer
	newLogger(&b, true, config.Logging{Level: "warn"}).Info("hidden")
	newLogger(&b, true, config.Logging{Level: "warn"}).Warn("shown")
	if s := b.String(); strings.Contains(s, "hidden") || !strings.HasPrefix(s, "time=") {
		t.Errorf("terminal default should be text at warn: %q", s)
	}
	b.Reset()
	newLogger(&b, false, config.Logging{Level: "info"}).Info("x")
	if !strings.HasPrefix(b.String(), "{") {
		t.Errorf("piped default should be JSON: %q", b.String())
	}
}

// playbook.http reaches the daemon's options; an entry the playbook
// package refuses stops serve with exit 2, naming its key and line.
func TestServeHTTPPolicy(t *testing.T) {
	load := func(src string) *ServeOptions {
		cfg, err := config.Parse("c.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		ios, _, _, _ := TestStreams()
		return &ServeOptions{IO: ios, Config: func() (*config.Config, error) { return cfg, nil }}
	}
	opts := load("playbook:\n  http:\n    allowed_hosts: [\"*.example.com\", 10.0.0.0/8]\n    denied_networks: [10.9.0.0/16]\n")
	cfg, _ := opts.Config()
	so, err := serveOptions(opts, cfg, "data")
	if err != nil {
		t.Fatal(err)
	}
	if p := so.HTTPPolicy; p == nil || len(p.AllowedHosts) != 2 || len(p.DeniedNetworks) != 1 {
		t.Errorf("policy: %+v", so.HTTPPolicy)
	}
	opts = load("playbook:\n  http:\n    allowed_hosts:\n      - intel.example\n      - \"intel.example:0\"\n")
	cfg, _ = opts.Config()
	_, err = serveOptions(opts, cfg, "data")
	if exitCode(err) != ExitUsage || err == nil || !strings.HasPrefix(err.Error(), `c.yaml:5: playbook.http.allowed_hosts[1]: "intel.example:0" `) {
		t.Errorf("refused entry: exit %d, %v", exitCode(err), err)
	}
}
