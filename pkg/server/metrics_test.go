package server

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/secauto/secauto/pkg/job"
)

// /metrics parses as the Prometheus text format and passes the checks of
// "promtool check metrics" (promlint), with every family present: the
// maintenance gauges appear once a backup and a cleanup have run.
func TestMetricsParseAndLint(t *testing.T) {
	e := newEnv(t, Options{Maintenance: Maintenance{
		BackupEnabled:   true,
		BackupInterval:  time.Hour,
		CleanupInterval: time.Hour,
		Retention:       time.Hour,
	}})
	id := e.submit(`{"playbook":[{"name":"a","action":"log","params":{"message":"x"}}]}`)
	e.waitStatus(id, job.Completed)
	if code, b := e.do("POST", "/admin/backups", ""); code != http.StatusCreated {
		t.Fatalf("backup: %d %s", code, b)
	}
	waitFor(t, "the backup to be recorded", func() bool { return !e.srv.keeper.status(taskBackup).LastSuccess.IsZero() })
	// A cleanup on request, reported as the schedule's are.
	if code, b := e.do("POST", "/admin/cleanup", ""); code != http.StatusOK {
		t.Fatalf("cleanup: %d %s", code, b)
	}
	if err := e.st.Snapshot(); err != nil {
		t.Fatal(err)
	}

	code, body := e.do("GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	for _, name := range []string{
		"secauto_backup_last_success_timestamp_seconds",
		"secauto_backup_age_seconds",
		"secauto_backup_next_timestamp_seconds",
		"secauto_backups_total",
		"secauto_cleanup_last_success_timestamp_seconds",
		"secauto_cleanup_next_timestamp_seconds",
		"secauto_cleanup_runs_total",
		"secauto_cleanup_deleted_jobs_total",
		"secauto_store_last_snapshot_timestamp_seconds",
		"secauto_jobs",
		"secauto_http_requests_total",
		"secauto_store_journal_sync_seconds",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if mf := families["secauto_backup_age_seconds"]; mf != nil {
		if age := mf.GetMetric()[0].GetGauge().GetValue(); age < 0 || age > 60 {
			t.Errorf("backup age %v s, want a few seconds", age)
		}
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
