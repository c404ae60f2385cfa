package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"gopkg.in/yaml.v3"
)

// The shipped example must load, name every key of the schema and show
// exactly the defaults, so the file and the code cannot drift apart.
func TestShippedExample(t *testing.T) {
	path := filepath.Join("..", "..", "config.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("shipped config.yaml does not load: %v", err)
	}
	want := Default()
	want.File = path
	// The example writes empty lists and maps out; Default leaves them nil.
	h := cfg.Playbook.HTTP
	if len(cfg.Webhooks) != 0 || len(cfg.Server.AuthTokens) != 0 || len(cfg.Jobs.RetentionByStatus) != 0 || len(h.AllowedHosts) != 0 || len(h.DeniedNetworks) != 0 {
		t.Fatalf("example enables webhooks, tokens, per-status retention or http limits; it should show defaults: %+v", cfg)
	}
	cfg.Webhooks, cfg.Server.AuthTokens, cfg.Jobs.RetentionByStatus = nil, nil, nil
	cfg.Playbook.HTTP = PlaybookHTTP{}
	cfg.lines = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("example differs from the defaults:\n got %+v\nwant %+v", cfg, want)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	collectKeys(doc.Content[0], "", present)
	for _, key := range schemaKeys(reflect.TypeOf(Config{}), "") {
		if !present[key] {
			t.Errorf("config.yaml does not show key %s", key)
		}
	}
	// Every key line has a comment above it or beside it.
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		trim := strings.TrimSpace(l)
		if trim == "" || strings.HasPrefix(trim, "#") || !strings.Contains(trim, ":") {
			continue
		}
		if strings.HasSuffix(trim, ":") && i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "#") {
			continue // a section whose first key is commented
		}
		if i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") || strings.Contains(l, " #") {
			continue
		}
		if strings.HasSuffix(trim, ":") {
			continue // section headers (jobs:, server:, logging:)
		}
		t.Errorf("config.yaml:%d: %q has no comment", i+1, trim)
	}
}

func collectKeys(n *yaml.Node, path string, into map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		p := join(path, n.Content[i].Value)
		into[p] = true
		collectKeys(n.Content[i+1], p, into)
	}
}

func schemaKeys(t reflect.Type, path string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := join(path, name)
		keys = append(keys, p)
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) {
			keys = append(keys, schemaKeys(f.Type, p)...)
		}
	}
	return keys
}

func TestSeedConfigKeepsMeaning(t *testing.T) {
	cfg, err := Parse("config.yaml", []byte(`
data_directory: "jobsdata"
jobs:
  retention_days: 7
  cleanup_interval: 12
  backup_enabled: false
  backup_interval: 1.5
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDirectory != "jobsdata" || cfg.Jobs.RetentionDays != 7 || cfg.Jobs.BackupEnabled {
		t.Errorf("values not taken: %+v", cfg.Jobs)
	}
	if got := cfg.Jobs.CleanupInterval.Duration(); got != 12*time.Hour {
		t.Errorf("cleanup_interval = %v, want 12h", got)
	}
	if got := cfg.Jobs.BackupInterval.Duration(); got != 90*time.Minute {
		t.Errorf("backup_interval = %v, want 1h30m", got)
	}
	// Keys the file leaves out keep their defaults.
	if cfg.Server.Port != 8080 || cfg.Server.Workers != 5 || cfg.Jobs.BackupKeep != 10 || cfg.Logging.File != "logs/secauto.log" {
		t.Errorf("defaults lost: %+v %+v", cfg.Server, cfg.Logging)
	}
}

func TestFullConfig(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`
jobs:
  retention_days: 14
  retention_by_status: {failed: 90, cancelled: 3}
  cleanup_interval: "6h"
  backup_interval: 7d
  backup_keep: 0
  backup_compress: true
  snapshot_interval: 5s
  max_job_bytes: 4MiB
server:
  address: 0.0.0.0
  port: 0
  workers: 2
  auth_tokens: ["abcdefghijklmnop", "0123456789abcdef"]
  max_body_bytes: 512KiB
  shutdown_timeout: 2m
webhooks:
  - url: https://hooks.example.com/x
    events: [job.failed, backup.failed]
    secret: s3cret
logging: {level: debug, format: json, file: ""}
`))
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Jobs
	if j.Retention(job.Failed) != 90*24*time.Hour || j.Retention(job.Completed) != 14*24*time.Hour || j.Retention(job.Cancelled) != 3*24*time.Hour {
		t.Errorf("retention wrong: %v", j.RetentionByStatus)
	}
	if got := j.RetentionOverrides(); got[job.Failed] != 90*24*time.Hour || len(got) != 2 {
		t.Errorf("overrides = %v", got)
	}
	if j.MaxJobBytes != 4<<20 {
		t.Errorf("max_job_bytes = %d", j.MaxJobBytes)
	}
	if j.CleanupInterval.Duration() != 6*time.Hour || j.BackupInterval.Duration() != 7*24*time.Hour || j.SnapshotInterval.Duration() != 5*time.Second {
		t.Errorf("intervals wrong: %+v", j)
	}
	s := cfg.Server
	if s.Port != 0 || s.Workers != 2 || s.MaxBodyBytes != 512*1024 || s.ShutdownTimeout.Duration() != 2*time.Minute || len(s.AuthTokens) != 2 {
		t.Errorf("server wrong: %+v", s)
	}
	if len(cfg.Webhooks) != 1 || cfg.Webhooks[0].Secret != "s3cret" || len(cfg.Webhooks[0].Events) != 2 {
		t.Errorf("webhooks wrong: %+v", cfg.Webhooks)
	}
	if cfg.Logging.File != "" || cfg.Logging.Format != "json" || cfg.Logging.Level != "debug" {
		t.Errorf("logging wrong: %+v", cfg.Logging)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "jobs:\n"} {
		cfg, err := Parse("c.yaml", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		want := Default()
		want.File = "c.yaml"
		cfg.lines = nil
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("%q: got %+v, want defaults", src, cfg)
		}
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // each a full line of the error
	}{
		{"unknown key", "jobs:\n  retention_days: 30\n  cleanup_intervall: 24\n",
			[]string{"config.yaml:3: jobs.cleanup_intervall: unknown key (did you mean cleanup_interval?)"}},
		{"unknown top-level key", "\n\nfoo: 1\n",
			[]string{"config.yaml:3: foo: unknown key; remove it or check the example config.yaml"}},
		{"several at once", "server:\n  prot: 80\n  workers: 0\nlogging:\n  level: loud\n",
			[]string{"config.yaml:2: server.prot: unknown key (did you mean port?)"}},
		{"bad int", "server:\n  port: eighty\n",
			[]string{`config.yaml:2: server.port: expected a whole number, got "eighty"`}},
		{"bad bool", "jobs:\n  backup_enabled: maybe\n",
			[]string{`config.yaml:2: jobs.backup_enabled: expected true or false, got "maybe"`}},
		{"bad interval", "jobs:\n  cleanup_interval: soon\n",
			[]string{`config.yaml:2: jobs.cleanup_interval: invalid duration "soon"; write one such as 30d, 12h or 90m`}},
		{"number as timeout", "server:\n  shutdown_timeout: 30\n",
			[]string{`config.yaml:2: server.shutdown_timeout: "30" is not a duration; write one with a unit, such as 30s or 2m`}},
		{"port range", "server:\n  port: 70000\n",
			[]string{"config.yaml:2: server.port: 70000 is out of range; use 1-65535 (0 picks a free port)"}},
		{"job size", "jobs:\n  max_job_bytes: 16\n",
			[]string{"config.yaml:2: jobs.max_job_bytes: 16 is too small; allow at least 64KiB per job (the default is 16MiB)"}},
		{"workers", "server:\n  workers: 0\n",
			[]string{"config.yaml:2: server.workers: 0 is too small; run at least 1 worker"}},
		{"live status retention", "jobs:\n  retention_by_status:\n    running: 3\n",
			[]string{`config.yaml:3: jobs.retention_by_status.running: "running" is not a terminal status; use completed, failed or cancelled (pending and running jobs are never cleaned up)`}},
		{"webhook url", "webhooks:\n  - url: ftp://x/y\n  - url: /relative\n  - url: ftp://u:pw@x/\n",
			[]string{
				`config.yaml:2: webhooks[0].url: "ftp://x/y" is not an absolute http or https URL`,
				`config.yaml:3: webhooks[1].url: "/relative" is not an absolute http or https URL`,
				`config.yaml:4: webhooks[2].url: "ftp://u:xxxxx@x/" is not an absolute http or https URL`,
			}},
		{"webhook event", "webhooks:\n  - url: http://h/\n    events: [job.done]\n",
			[]string{`config.yaml:3: webhooks[0].events[0]: unknown event "job.done"; use one of job.recovered, job.completed, job.failed, job.cancelled, backup.created, backup.failed, cleanup.completed, store.restored`}},
		{"level", "logging:\n  level: loud\n",
			[]string{`config.yaml:2: logging.level: "loud" is not a level; use debug, info, warn or error`}},
		{"format", "logging:\n  format: xml\n",
			[]string{`config.yaml:2: logging.format: "xml" is not a format; use json or text`}},
		{"section as scalar", "jobs: 5\n",
			[]string{`config.yaml:1: jobs: expected a section of keys, got "5"`}},
		{"repeated key", "server:\n  port: 1\n  port: 2\n",
			[]string{"config.yaml:3: server.port: key is repeated (first at line 2); keep one"}},
		{"syntax", "server:\n  port: 1\n    workers: 2\n",
			[]string{"config.yaml:3: mapping values are not allowed in this context; fix the YAML syntax"}},
		{"empty token", "server:\n  auth_tokens: [\"\"]\n",
			[]string{"config.yaml:2: server.auth_tokens[0]: token is empty; remove it or give a value"}},
		{"short token", "server:\n  auth_tokens: [short]\n",
			[]string{"config.yaml:2: server.auth_tokens[0]: token is shorter than 16 characters; use a random one such as the output of 'openssl rand -hex 32'"}},
		{"cert without key", "server:\n  tls_cert: c.pem\n",
			[]string{"config.yaml:2: server.tls_cert: is set but server.tls_key is not; give both, or neither to serve plain HTTP"}},
		{"key without cert", "server:\n  tls_key: k.pem\n",
			[]string{"config.yaml:2: server.tls_key: is set but server.tls_cert is not; give both, or neither to serve plain HTTP"}},
		{"denied network", "playbook:\n  http:\n    denied_networks: [10.0.0.0/8, 10.0.0.0/33, fd00::1, lan]\n",
			[]string{
				`config.yaml:3: playbook.http.denied_networks[1]: "10.0.0.0/33" is not a network; write a CIDR such as 10.0.0.0/8 or fd00::/8, or an address`,
				`config.yaml:3: playbook.http.denied_networks[3]: "lan" is not a network; write a CIDR such as 10.0.0.0/8 or fd00::/8, or an address`,
			}},
		{"allowed host", "playbook:\n  http:\n    allowed_hosts: [\"*.example.com\", 10.0.0.0/8, \"a b\", \"http://x\"]\n",
			[]string{
				`config.yaml:3: playbook.http.allowed_hosts[2]: "a b" is not a host; give a name, *.domain, an address or a CIDR, with an optional :port`,
				`config.yaml:3: playbook.http.allowed_hosts[3]: "http://x" is not a host; give a name, *.domain, an address or a CIDR, with an optional :port`,
			}},
		{"store driver", "store:\n  driver: sqlite\n  node_lease: 0s\n",
			[]string{
				`config.yaml:2: store.driver: "sqlite" is not a driver; use file or postgres`,
				`config.yaml:3: store.node_lease: must be positive, such as 15s`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("config.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if tt.name == "several at once" {
				// Unknown keys stop before validation; only they are listed.
				if len(got) != 1 || got[0] != tt.want[0] {
					t.Fatalf("got %q", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	if p, err := Locate("", getenv); err != nil || p != "" {
		t.Errorf("no file: got %q, %v; want defaults", p, err)
	}
	if err := os.WriteFile("config.yaml", []byte("jobs: {retention_days: 3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, _ := Locate("", getenv); p != "config.yaml" {
		t.Errorf("working directory file: got %q", p)
	}
	env[EnvConfig] = "/etc/secauto.yaml"
	if p, _ := Locate("", getenv); p != "/etc/secauto.yaml" {
		t.Errorf("env: got %q", p)
	}
	if p, _ := Locate("mine.yaml", getenv); p != "mine.yaml" {
		t.Errorf("flag: got %q", p)
	}

	_, err := Load(filepath.Join(dir, "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml does not exist") {
		t.Errorf("missing file: %v", err)
	}
	cfg, err := Load("config.yaml")
	if err != nil || cfg.Jobs.RetentionDays != 3 || cfg.File != "config.yaml" {
		t.Errorf("load: %+v, %v", cfg, err)
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0":       0,
		"30d":     30 * 24 * time.Hour,
		"1d12h":   36 * time.Hour,
		"1.5d":    36 * time.Hour,
		"90m":     90 * time.Minute,
		"1h30m":   90 * time.Minute,
		"250ms":   250 * time.Millisecond,
		"-2d":     -48 * time.Hour,
		" 7d ":    7 * 24 * time.Hour,
		"2d30m":   48*time.Hour + 30*time.Minute,
		"1us":     time.Microsecond,
		"100000d": 100000 * 24 * time.Hour,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "d", "3x", "1..2d", "1d-2h", "1e400d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                          "0s",
		30 * 24 * time.Hour:        "30d",
		36 * time.Hour:             "1d12h",
		2 * time.Hour:              "2h",
		90 * time.Minute:           "1h30m",
		30 * time.Second:           "30s",
		-48 * time.Hour:            "-2d",
		24*time.Hour + time.Second: "1d1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("round trip of %v gave %v, %v", d, back, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"1048576": 1 << 20, "1MiB": 1 << 20, "512 KiB": 512 << 10, "2MB": 2e6, "1kb": 1000, "10B": 10,
	} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "lots"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestValidateInCode(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c.Server.Workers = -1
	err := c.Validate()
	if err == nil || err.Error() != "server.workers: -1 is too small; run at least 1 worker" {
		t.Errorf("got %v", err)
	}
}
