package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/webhook"
)

// metrics is the server's own Prometheus registry, not the global default:
// two servers in one process (tests) must not share counters.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	submitted prometheus.Counter
	// recovered counts jobs this node recovered (SPEC §5 step 3): at its
	// start, and on a shared store those of dead nodes.
	recovered prometheus.Counter
	webhooks  *prometheus.CounterVec
	// Maintenance (maintenance.go): runs by result, jobs cleanup deleted.
	backups        *prometheus.CounterVec
	cleanups       *prometheus.CounterVec
	cleanupDeleted prometheus.Counter
}

func newMetrics(s *Server, o Options) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secauto_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "secauto_job_duration_seconds",
			Help:    "Time from start to end of jobs that ran, by final status.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 1800},
		}, []string{"status"}),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "secauto_jobs_submitted_total",
			Help: "Jobs accepted through the API.",
		}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "secauto_jobs_recovered_total",
			Help: "Running jobs this node recovered after a crash: its own at start, and on a shared store those of nodes whose lease lapsed.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secauto_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by event and result (delivered or failed).",
		}, []string{"event", "result"}),
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secauto_backups_total",
			Help: "Backups attempted by the daemon (scheduled or requested), by result (created or failed).",
		}, []string{"result"}),
		cleanups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secauto_cleanup_runs_total",
			Help: "Cleanups run by the daemon (scheduled or requested), by result (completed or failed).",
		}, []string{"result"}),
		cleanupDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "secauto_cleanup_deleted_jobs_total",
			Help: "Jobs deleted by cleanups run by the daemon.",
		}),
	}
	// Both results show from the start, so rate() and alerts see a zero.
	for _, r := range []string{"created", "failed"} {
		m.backups.WithLabelValues(r)
	}
	for _, r := range []string{"completed", "failed"} {
		m.cleanups.WithLabelValues(r)
	}
	m.reg.MustRegister(
		m.requests, m.duration, m.submitted, m.recovered, m.webhooks,
		m.backups, m.cleanups, m.cleanupDeleted, maintCollector{s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_webhook_backlog",
			Help: "Webhook deliveries waiting in the outbox, including those being retried.",
		}, func() float64 { return float64(webhook.Pending(s.st)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_webhook_dead_letters",
			Help: "Webhook events that exhausted their retries or lost their endpoint, kept until retried or cleared.",
		}, func() float64 { return float64(webhook.DeadLetters(s.st)) }),
		storeCollector{s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_queue_length",
			Help: "Pending jobs waiting for a worker.",
		}, func() float64 { return float64(s.queue.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_workers_busy",
			Help: "Workers running a job.",
		}, func() float64 { return float64(s.busy.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_workers",
			Help: "Size of the worker pool.",
		}, func() float64 { return float64(s.workers) }),
		o.syncMetrics.duration, o.syncMetrics.changes, o.syncMetrics.snapshot,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// syncMetrics observes the store's journal writes and snapshots. It exists
// before the store is opened, because the store reports through
// Options.OnSync and Options.OnSnapshot.
type syncMetrics struct {
	duration prometheus.Histogram
	changes  prometheus.Histogram
	snapshot prometheus.Histogram
}

func newSyncMetrics() *syncMetrics {
	return &syncMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "secauto_store_journal_sync_seconds",
			Help:    "Time to write and fsync one group of journal records; every acknowledged change waits for one.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		changes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "secauto_store_journal_sync_changes",
			Help:    "Changes made durable by one journal fsync (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		snapshot: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "secauto_store_snapshot_seconds",
			Help:    "Time to write a complete jobs.json and cut the journal (compaction); writers are not held up by it.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
}

func (m *syncMetrics) observeSnapshot(d time.Duration, _ int) {
	m.snapshot.Observe(d.Seconds())
}

func (m *syncMetrics) observe(d time.Duration, changes int) {
	m.duration.Observe(d.Seconds())
	m.changes.Observe(float64(changes))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) request(pattern string, code int) {
	if pattern == "" {
		pattern = "unmatched"
	}
	m.requests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
}

func (m *metrics) webhookDelivery(event string, err error, _ time.Duration) {
	result := "delivered"
	if err != nil {
		result = "failed"
	}
	m.webhooks.WithLabelValues(event, result).Inc()
}

func (m *metrics) jobFinished(j *job.Job) {
	if j.StartedAt == nil || j.CompletedAt == nil {
		return // cancelled while pending: it never ran
	}
	m.duration.WithLabelValues(string(j.Status)).Observe(j.CompletedAt.Sub(*j.StartedAt).Seconds())
}

var (
	jobsDesc = prometheus.NewDesc("secauto_jobs", "Jobs in the store, by status.", []string{"status"}, nil)
	sizeDesc = prometheus.NewDesc("secauto_store_bytes", "Size of the store's files.", []string{"file"}, nil)
	upDesc   = prometheus.NewDesc("secauto_store_healthy", "1 when the store accepts writes.", nil, nil)
	snapDesc = prometheus.NewDesc("secauto_store_last_snapshot_timestamp_seconds", "When jobs.json was last written from the journal (Unix time); absent until the first snapshot.", nil, nil)
)

// storeCollector reads the store's counts at scrape time, so the gauges
// cannot drift from the store.
type storeCollector struct{ s *Server }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- sizeDesc
	ch <- upDesc
	ch <- snapDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.st.Stats()
	for _, status := range job.Statuses {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(st.ByStatus[status]), string(status))
	}
	ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(st.SnapshotBytes), "snapshot")
	ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(st.JournalBytes), "journal")
	healthy := 0.0
	if c.s.st.Err() == nil {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, healthy)
	if !st.LastSnapshot.IsZero() {
		ch <- prometheus.MustNewConstMetric(snapDesc, prometheus.GaugeValue, unixSeconds(st.LastSnapshot))
	}
}

var (
	backupLastDesc = prometheus.NewDesc("secauto_backup_last_success_timestamp_seconds",
		"When the newest backup was taken (Unix time); absent until there is one.", nil, nil)
	backupAgeDesc = prometheus.NewDesc("secauto_backup_age_seconds",
		"Seconds since the newest backup was taken; absent until there is one.", nil, nil)
	backupNextDesc = prometheus.NewDesc("secauto_backup_next_timestamp_seconds",
		"When the next background backup is due (Unix time); absent when background backups are off.", nil, nil)
	cleanupLastDesc = prometheus.NewDesc("secauto_cleanup_last_success_timestamp_seconds",
		"When the last successful cleanup ran (Unix time); absent until one has.", nil, nil)
	cleanupNextDesc = prometheus.NewDesc("secauto_cleanup_next_timestamp_seconds",
		"When the next background cleanup is due (Unix time); absent when background cleanup is off.", nil, nil)
)

// maintCollector reports the maintenance schedule at scrape time. A time
// that does not exist (no backup yet, task off) is left out rather than
// reported as 0 or NaN, so "absent" alerts and age arithmetic stay right.
type maintCollector struct{ s *Server }

func (c maintCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backupLastDesc
	ch <- backupAgeDesc
	ch <- backupNextDesc
	ch <- cleanupLastDesc
	ch <- cleanupNextDesc
}

func (c maintCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.s.keeper.status(taskBackup)
	if !b.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(backupLastDesc, prometheus.GaugeValue, unixSeconds(b.LastSuccess))
		ch <- prometheus.MustNewConstMetric(backupAgeDesc, prometheus.GaugeValue, max(c.s.now().Sub(b.LastSuccess).Seconds(), 0))
	}
	if !b.Next.IsZero() {
		ch <- prometheus.MustNewConstMetric(backupNextDesc, prometheus.GaugeValue, unixSeconds(b.Next))
	}
	cl := c.s.keeper.status(taskCleanup)
	if !cl.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(cleanupLastDesc, prometheus.GaugeValue, unixSeconds(cl.LastSuccess))
	}
	if !cl.Next.IsZero() {
		ch <- prometheus.MustNewConstMetric(cleanupNextDesc, prometheus.GaugeValue, unixSeconds(cl.Next))
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
