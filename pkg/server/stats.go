package server

import (
	"net/http"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// StatsResponse is the answer of GET /stats.
type StatsResponse struct {
	// Jobs counts jobs by status; every status is present.
	Jobs       map[job.Status]int `json:"jobs"`
	Total      int                `json:"total"`
	StoreBytes int64              `json:"store_bytes"`
	Store      store.Stats        `json:"store"`
	// StartedAt is when the daemon started, and UptimeSeconds how long
	// ago; null and 0 in the figures a command computes from the store
	// while no daemon runs (Offline).
	StartedAt     *time.Time `json:"started_at"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Workers       int        `json:"workers"`
	BusyWorkers   int64      `json:"busy_workers"`
	QueueLength   int        `json:"queue_length"`
	// LastBackup is when the newest backup was taken (by the schedule, on
	// request, or offline by the CLI); LastCleanup when the last successful
	// cleanup ran. Both are null until there is one.
	LastBackup  *time.Time `json:"last_backup"`
	LastCleanup *time.Time `json:"last_cleanup"`
	// NextBackup and NextCleanup are when the background runs fall due;
	// null when that background run is off.
	NextBackup  *time.Time `json:"next_backup"`
	NextCleanup *time.Time `json:"next_cleanup"`
	// BackupError and CleanupError hold the last run's error while the
	// task is failing (it is retried within the hour).
	BackupError  string `json:"backup_error,omitempty"`
	CleanupError string `json:"cleanup_error,omitempty"`
	// WebhookBacklog counts deliveries waiting in the outbox.
	WebhookBacklog int `json:"webhook_backlog"`
	// WebhookDeadLetters counts events that exhausted their retries or
	// lost their endpoint, kept until retried or cleared.
	WebhookDeadLetters int  `json:"webhook_dead_letters"`
	ShuttingDown       bool `json:"shutting_down"`
	// Offline is set in the figures computed from the store while no
	// daemon runs: Workers is then what serve would run, BusyWorkers 0,
	// QueueLength the pending jobs it would queue.
	Offline bool `json:"offline,omitempty"`
}

// HealthResponse is the answer of GET /health.
type HealthResponse struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, HealthResponse{Status: "shutting_down"})
		return
	}
	if err := s.jobs.Err(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, HealthResponse{Status: "unavailable", Error: "the job store is not accepting writes: " + err.Error()})
		return
	}
	if s.noSpace.Load() > 0 {
		writeJSON(w, http.StatusServiceUnavailable, HealthResponse{Status: "disk_full", Error: "the disk holding the data directory is full; jobs wait until space is freed"})
		return
	}
	writeJSON(w, http.StatusOK, HealthResponse{Status: "ok"})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// Stats is what GET /stats answers.
func (s *Server) Stats() *StatsResponse {
	st := s.st.Stats()
	byStatus := make(map[job.Status]int, len(job.Statuses))
	for _, status := range job.Statuses {
		byStatus[status] = st.ByStatus[status]
	}
	backup, cleanup := s.keeper.status(taskBackup), s.keeper.status(taskCleanup)
	started := s.started.UTC()
	return &StatsResponse{
		LastBackup:         timePtr(backup.LastSuccess),
		LastCleanup:        timePtr(cleanup.LastSuccess),
		NextBackup:         timePtr(backup.Next),
		NextCleanup:        timePtr(cleanup.Next),
		BackupError:        backup.Error,
		CleanupError:       cleanup.Error,
		Jobs:               byStatus,
		Total:              st.Jobs,
		StoreBytes:         st.SnapshotBytes + st.JournalBytes,
		Store:              st,
		StartedAt:          &started,
		UptimeSeconds:      time.Since(s.started).Seconds(),
		Workers:            s.workers,
		BusyWorkers:        s.busy.Load(),
		QueueLength:        s.queued(byStatus),
		WebhookBacklog:     webhook.Pending(s.st),
		WebhookDeadLetters: webhook.DeadLetters(s.st),
		ShuttingDown:       s.draining.Load(),
	}
}

// OfflineStats computes what GET /stats would answer for st, a store no
// daemon serves (opened read-only will do), with the workers and
// maintenance schedule of o: the same counts, sizes and maintenance
// times, with no uptime and no busy worker. It starts nothing and writes
// nothing.
func OfflineStats(st store.Store, o Options) (*StatsResponse, error) {
	s, err := New(st, o)
	if err != nil {
		return nil, err
	}
	res := s.Stats()
	res.StartedAt, res.UptimeSeconds, res.BusyWorkers, res.Offline = nil, 0, 0, true
	return res, nil
}
