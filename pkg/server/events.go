package server

import (
	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// jobEvents returns the store.UpdateWith callback that queues, in the same
// durable write as a job's change, the webhook event for the job's new
// status. An event is therefore queued exactly when its change happened.
func (s *Server) jobEvents(event string) func(*job.Job) []store.Record {
	return s.outbox.JobRecords(event)
}

// announce queues an event that is not about one job (backup.created,
// cleanup.completed, store.restored ...) with data as its payload, and
// wakes the dispatcher. A failure to queue is logged: the operation it
// reports has already happened and must not be undone for it.
func (s *Server) announce(event string, data any) {
	if err := s.outbox.Enqueue(s.st, webhook.Event{Event: event, Data: data}); err != nil {
		s.log.Error("cannot queue webhook event", "event", event, "error", err)
		return
	}
	s.hooks.Notify()
}
