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
	webhooks  *prometheus.CounterVec
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
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secauto_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by event and result (delivered or failed).",
		}, []string{"event", "result"}),
	}
	m.reg.MustRegister(
		m.requests, m.duration, m.submitted, m.webhooks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secauto_webhook_backlog",
			Help: "Webhook deliveries waiting in the outbox, including those being retried.",
		}, func() float64 { return float64(webhook.Pending(s.st)) }),
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
		o.syncMetrics.duration, o.syncMetrics.changes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// syncMetrics observes the store's journal writes. It exists before the
// store is opened, because the store reports through Options.OnSync.
type syncMetrics struct {
	duration prometheus.Histogram
	changes  prometheus.Histogram
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
	}
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
)

// storeCollector reads the store's counts at scrape time, so the gauges
// cannot drift from the store.
type storeCollector struct{ s *Server }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- sizeDesc
	ch <- upDesc
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
}
