package server

// What the web console (pkg/console) needs of a running server, exported
// so that the console can live in its own package and depend on this one,
// never the other way round. The console mounts at /ui/ through
// Options.Console and does its own authentication (a sign-in form and a
// session cookie); the methods here do not check any.

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// ConsolePath is where Options.Console's handler is mounted.
const ConsolePath = "/ui/"

// Store is the store the server runs on, for reading jobs.
func (s *Server) Store() store.Store { return s.st }

// AuthRequired reports whether server.auth_tokens are set: the console
// then asks for one before it shows anything.
func (s *Server) AuthRequired() bool { return len(s.tokens) > 0 }

// CheckToken reports whether tok is one of the configured tokens, compared
// in constant time as the API compares bearer tokens.
func (s *Server) CheckToken(tok string) bool {
	return len(s.tokens) > 0 && s.tokenMatches(tok)
}

// CancelJob cancels a pending or running job as POST /job/{id}/cancel
// does. The error of a failure carries the status the API would answer
// (see HTTPStatus).
func (s *Server) CancelJob(ctx context.Context, id string) (*job.Job, error) {
	j, aerr := s.lookupID(id)
	if aerr != nil {
		return nil, aerr
	}
	if j.Status.Terminal() {
		return nil, &apiError{http.StatusConflict, (&conflictError{j}).Error() + "; only pending and running jobs can be cancelled"}
	}
	j, aerr = s.cancel(ctx, j.ID)
	if aerr != nil {
		return nil, aerr
	}
	s.log.Info("job cancelled", "job_id", j.ID)
	return j, nil
}

// Rerun stores and queues a rerun of job id, as POST /job/{id}/rerun
// does, and returns the new pending job.
func (s *Server) Rerun(id string) (*job.Job, error) {
	nj, aerr := s.rerun(id)
	if aerr != nil {
		return nil, aerr
	}
	return nj, nil
}

// DeleteJob cancels job id if it is live and deletes it, as DELETE
// /job/{id} does.
func (s *Server) DeleteJob(ctx context.Context, id string) error {
	if aerr := s.deleteJob(ctx, id); aerr != nil {
		return aerr
	}
	return nil
}

// CreateBackup writes a backup now with the configured options, as POST
// /admin/backups does; trigger names who asked, in the log and the
// backup.created event.
func (s *Server) CreateBackup(trigger string) (*store.BackupResult, error) {
	res, aerr := s.backup(nil, trigger)
	if aerr != nil {
		return nil, aerr
	}
	return res, nil
}

// Backups lists the data directory's backups, newest first, each verified.
func (s *Server) Backups() ([]store.BackupInfo, error) {
	return store.ListBackups(s.dataDir())
}

// JobEvents serves the Server-Sent Events of job id (GET /job/{id}/events)
// to a client the caller has authenticated.
func (s *Server) JobEvents(w http.ResponseWriter, r *http.Request, id string) {
	r = r.Clone(r.Context())
	r.SetPathValue("id", id)
	s.handleJobEvents(w, r)
}

// HTTPStatus is the status the API answers for an error returned by the
// methods above: 404 for an unknown job, 409 for one that already ended,
// 500 for an error it does not know.
func HTTPStatus(err error) int {
	var aerr *apiError
	if errors.As(err, &aerr) {
		return aerr.code
	}
	return http.StatusInternalServerError
}

// Throughput is how many jobs ended in each minute of the last hour.
type Throughput struct {
	// Start is the beginning of the first minute; Minutes[i] covers
	// Start+i minutes to Start+i+1 minutes.
	Start   time.Time
	Minutes []EndCounts
}

// EndCounts counts the jobs that ended in one interval, by how.
type EndCounts struct {
	Completed, Failed, Cancelled int
}

// Total is the number of jobs that ended.
func (c EndCounts) Total() int { return c.Completed + c.Failed + c.Cancelled }

// endingsWindow is how many minutes endings keeps.
const endingsWindow = 60

// endings counts job endings per minute over the last hour, in memory:
// filled from the store's jobs of the last hour when the server is built,
// then as jobs end.
type endings struct {
	mu sync.Mutex
	// minute is the Unix minute of counts[minute%endingsWindow].
	minute [endingsWindow]int64
	counts [endingsWindow]EndCounts
}

func (e *endings) add(j *job.Job) {
	if j == nil || j.CompletedAt == nil || !j.Status.Terminal() {
		return
	}
	m := j.CompletedAt.Unix() / 60
	e.mu.Lock()
	defer e.mu.Unlock()
	i := m % endingsWindow
	if e.minute[i] != m {
		if e.minute[i] > m {
			return // older than the window
		}
		e.minute[i], e.counts[i] = m, EndCounts{}
	}
	switch j.Status {
	case job.Completed:
		e.counts[i].Completed++
	case job.Failed:
		e.counts[i].Failed++
	case job.Cancelled:
		e.counts[i].Cancelled++
	}
}

func (e *endings) last(now time.Time) Throughput {
	end := now.Unix() / 60
	first := end - endingsWindow + 1
	out := Throughput{Start: time.Unix(first*60, 0).UTC(), Minutes: make([]EndCounts, endingsWindow)}
	e.mu.Lock()
	defer e.mu.Unlock()
	for m := first; m <= end; m++ {
		if i := m % endingsWindow; e.minute[i] == m {
			out.Minutes[m-first] = e.counts[i]
		}
	}
	return out
}

// seed counts the jobs of st that ended in the hour before now. The store
// selects them by completion time from its index, so only they are read
// however large the history.
func (e *endings) seed(st store.Store, now time.Time) {
	cut := now.Add(-endingsWindow * time.Minute)
	jobs, err := st.List(store.Filter{Statuses: []job.Status{job.Completed, job.Failed, job.Cancelled}, EndedSince: cut})
	if err != nil {
		return
	}
	for _, j := range jobs {
		if j.CompletedAt != nil && j.CompletedAt.After(cut) {
			e.add(j)
		}
	}
}

// Throughput is how many jobs ended in each minute of the last hour, by
// status.
func (s *Server) Throughput() Throughput { return s.ended.last(s.now()) }
