package cli

// The commands that change jobs (run, jobs cancel, delete, rerun) and
// follow them (run --wait, jobs watch), and stats, do their work through a
// jobAdmin: both Admins implement it, below, the offline one over the
// store and pkg/server's functions, the daemon one over the job endpoints.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// jobAdmin is what the job commands need of an Admin beyond the Admin
// interface.
type jobAdmin interface {
	// Dir is the data directory, as Admin.Dir.
	Dir() string
	// Daemon reports whether a daemon does the work, so that submitted
	// jobs run now; offline they wait for the next serve.
	Daemon() bool
	// Submit validates and stores a submission as POST /playbook/async
	// does.
	Submit(ctx context.Context, req *server.SubmitRequest) (*server.SubmitResponse, error)
	// CancelJobs cancels the pending or running jobs refs name (ids or
	// unique prefixes), each on its own: a ref that names no job, or a
	// job that already ended, is an outcome's error. The error returned
	// is one that stopped them all.
	CancelJobs(ctx context.Context, refs []string) ([]jobOutcome, error)
	// DeleteJobs deletes the jobs refs name durably, cancelling live ones
	// first; each outcome holds the job as it was when it was deleted.
	DeleteJobs(ctx context.Context, refs []string) ([]jobOutcome, error)
	// RerunJob stores a new job from the playbook and submitted context
	// of the job ref names, linked to it both ways.
	RerunJob(ctx context.Context, ref string) (*server.SubmitResponse, error)
	// WatchJob calls fn with the job's events (as GET /job/{id}/events
	// sends them) until it ends, and returns it as it ended. Offline, a
	// job that has not ended cannot progress: its history is sent, then
	// the error says a daemon is needed.
	WatchJob(ctx context.Context, ref string, fn func(jobEvent) error) (*job.Job, error)
	// Stats is what GET /stats answers, computed from the store offline.
	Stats(ctx context.Context) (*server.StatsResponse, error)
}

var (
	_ jobAdmin = (*offlineAdmin)(nil)
	_ jobAdmin = (*daemonClient)(nil)
)

// jobOutcome is what became of one job a command named.
type jobOutcome struct {
	Ref string   // as the command was given it
	Job *job.Job // the job after the change; nil when Err is set
	Err error
}

// jobEndedError is a cancel of a job that already ended.
type jobEndedError struct {
	ID     string
	Status job.Status
}

func (e *jobEndedError) Error() string {
	return fmt.Sprintf("job %s is already %s; only pending and running jobs can be cancelled", e.ID, e.Status)
}

// noDaemonError is a command that needs a running daemon and found none;
// it exits 2, without the hint to --help a usage error gets.
type noDaemonError struct{ msg string }

func (e *noDaemonError) Error() string { return e.msg }

// jobEvent is one event of a watched job.
type jobEvent struct {
	Kind   string // server.EventStep, EventStatus, EventResync, EventEnd
	Step   *server.StepEvent
	Status *server.StatusEvent
	Job    *job.Job // resync and end
}

// withJobAdmin opens the Admin in mode and runs fn on it.
func withJobAdmin(open func(lockMode) (Admin, error), mode lockMode, fn func(jobAdmin) error) error {
	admin, err := open(mode)
	if err != nil {
		return err
	}
	defer admin.Close()
	ja, ok := admin.(jobAdmin)
	if !ok {
		return fmt.Errorf("cannot change jobs of data directory %s this way", admin.Dir())
	}
	return fn(ja)
}

// validRef reports whether ref can be a job id or id prefix: letters,
// digits, '-' and '_' only, so that nothing else (a '/', "..", a query)
// ever reaches a path of the API or a lookup.
func validRef(ref string) bool {
	if ref == "" || len(ref) > 128 {
		return false
	}
	for _, c := range ref {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// refNotFound is the error for a ref that names no job.
func refNotFound(ref string) error {
	return fmt.Errorf("%w: %s", store.ErrNotFound, ref)
}

// jobRefError says, in the commands' words, why a ref named no single job;
// other errors are returned as they are.
func jobRefError(ref string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no job has id or id prefix %q; list jobs with 'secauto jobs list'", ref)
	case errors.Is(err, store.ErrAmbiguous):
		return fmt.Errorf("id prefix %q matches more than one job; give more of the id", ref)
	}
	return err
}

// --- offline ---

func (a *offlineAdmin) Daemon() bool { return false }

func (a *offlineAdmin) outbox() (*webhook.Outbox, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	return webhook.NewOutbox(webhookEndpoints(cfg), a.now), nil
}

func (a *offlineAdmin) Submit(_ context.Context, req *server.SubmitRequest) (res *server.SubmitResponse, err error) {
	if err := req.Validate(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	err = a.with(mode, func(s store.Store) error {
		j, err := s.Create(req.NewJob())
		if err != nil {
			return fmt.Errorf("cannot store the job: %w", err)
		}
		res = &server.SubmitResponse{JobID: j.ID, Status: j.Status}
		return nil
	})
	return res, err
}

// cancelStored cancels the live job id in s, queuing its job.cancelled
// event with the change. No daemon runs, so a running job is one a crash
// left: nothing runs it, and it is cancelled as it stands.
func cancelStored(s store.Store, ob *webhook.Outbox, id string, now time.Time) (*job.Job, error) {
	var ended *jobEndedError
	j, err := s.UpdateWith(id, func(j *job.Job) error {
		if j.Status.Terminal() {
			ended = &jobEndedError{ID: j.ID, Status: j.Status}
			return ended
		}
		return j.Finish(job.Cancelled, server.CancelledByRequest, now)
	}, ob.JobRecords(""))
	if ended != nil {
		return nil, ended
	}
	return j, err
}

func (a *offlineAdmin) CancelJobs(_ context.Context, refs []string) ([]jobOutcome, error) {
	return a.changeJobs(refs, func(s store.Store, ob *webhook.Outbox, j *job.Job) (*job.Job, error) {
		if j.Status.Terminal() {
			return nil, &jobEndedError{ID: j.ID, Status: j.Status}
		}
		return cancelStored(s, ob, j.ID, a.now())
	})
}

func (a *offlineAdmin) DeleteJobs(_ context.Context, refs []string) ([]jobOutcome, error) {
	return a.changeJobs(refs, func(s store.Store, ob *webhook.Outbox, j *job.Job) (*job.Job, error) {
		if !j.Status.Terminal() {
			c, err := cancelStored(s, ob, j.ID, a.now())
			var ended *jobEndedError
			switch {
			case err == nil:
				j = c
			case errors.As(err, &ended):
			default:
				return nil, err
			}
		}
		if err := s.Delete(j.ID); err != nil {
			return nil, err
		}
		return j, nil
	})
}

// changeJobs opens the store once for every ref and applies change to the
// job each names.
func (a *offlineAdmin) changeJobs(refs []string, change func(store.Store, *webhook.Outbox, *job.Job) (*job.Job, error)) (out []jobOutcome, err error) {
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	ob, err := a.outbox()
	if err != nil {
		return nil, err
	}
	err = a.with(mode, func(s store.Store) error {
		for _, ref := range refs {
			o := jobOutcome{Ref: ref}
			if !validRef(ref) {
				o.Err = refNotFound(ref)
			} else if j, err := s.Get(ref); err != nil {
				o.Err = err
			} else {
				o.Job, o.Err = change(s, ob, j)
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

func (a *offlineAdmin) RerunJob(_ context.Context, ref string) (res *server.SubmitResponse, err error) {
	if !validRef(ref) {
		return nil, refNotFound(ref)
	}
	mode, err := a.writeMode()
	if err != nil {
		return nil, err
	}
	err = a.with(mode, func(s store.Store) error {
		j, err := server.RerunJob(s, ref)
		if err != nil {
			return err
		}
		res = &server.SubmitResponse{JobID: j.ID, Status: j.Status, RerunOf: j.RerunOf}
		return nil
	})
	return res, err
}

func (a *offlineAdmin) WatchJob(ctx context.Context, ref string, fn func(jobEvent) error) (*job.Job, error) {
	if !validRef(ref) {
		return nil, refNotFound(ref)
	}
	j, err := a.GetJob(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := history(j, fn); err != nil {
		return nil, err
	}
	if !j.Status.Terminal() {
		return nil, &noDaemonError{fmt.Sprintf("job %s is %s and no daemon runs data directory %s, so it cannot progress; start 'secauto serve' and watch it again", j.ID, j.Status, a.dir)}
	}
	return j, fn(jobEvent{Kind: server.EventEnd, Job: j})
}

// history sends what GET /job/{id}/events sends first: the job's step
// results so far, then its status.
func history(j *job.Job, fn func(jobEvent) error) error {
	for i := range j.Results {
		if err := fn(jobEvent{Kind: server.EventStep, Step: &server.StepEvent{JobID: j.ID, Index: i, Result: j.Results[i]}}); err != nil {
			return err
		}
	}
	ev := server.NewStatusEvent(j)
	return fn(jobEvent{Kind: server.EventStatus, Status: &ev})
}

func (a *offlineAdmin) Stats(context.Context) (res *server.StatsResponse, err error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	o := server.Options{
		Workers: cfg.Server.Workers,
		Maintenance: server.Maintenance{
			Retention:         cfg.Jobs.Retention(""),
			RetentionByStatus: cfg.Jobs.RetentionOverrides(),
			CleanupInterval:   cfg.Jobs.CleanupInterval.Duration(),
			BackupEnabled:     cfg.Jobs.BackupEnabled,
			BackupInterval:    cfg.Jobs.BackupInterval.Duration(),
			BackupKeep:        cfg.Jobs.BackupKeep,
			BackupCompress:    cfg.Jobs.BackupCompress,
		},
		Now: a.now,
	}
	err = a.with(readOnly, func(s store.Store) error {
		res, err = server.OfflineStats(s, o)
		if err != nil {
			return fmt.Errorf("cannot compute the figures: %w", err)
		}
		return nil
	})
	return res, err
}

// --- through the daemon ---

func (c *daemonClient) Daemon() bool { return true }

func (c *daemonClient) Submit(ctx context.Context, req *server.SubmitRequest) (*server.SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	if err := c.probe(ctx); err != nil {
		return nil, err
	}
	var res server.SubmitResponse
	err := c.do(ctx, "POST", "/playbook/async", nil, req, &res, daemonReadTimeout)
	var re *remoteError
	if errors.As(err, &re) && (re.code == http.StatusBadRequest || re.code == http.StatusRequestEntityTooLarge) {
		return nil, usageErrorf("%s", re.msg)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot submit the playbook: %w", err)
	}
	return &res, nil
}

func (c *daemonClient) CancelJobs(ctx context.Context, refs []string) ([]jobOutcome, error) {
	return c.changeJobs(ctx, refs, func(j *job.Job) (*job.Job, error) {
		if j.Status.Terminal() {
			return nil, &jobEndedError{ID: j.ID, Status: j.Status}
		}
		return c.cancel(ctx, j.ID)
	})
}

// cancel is POST /job/{id}/cancel; its 409 becomes a *jobEndedError
// naming the status the job ended with.
func (c *daemonClient) cancel(ctx context.Context, id string) (*job.Job, error) {
	var j job.Job
	err := c.do(ctx, "POST", "/job/"+url.PathEscape(id)+"/cancel", nil, nil, &j, daemonReadTimeout)
	var re *remoteError
	if errors.As(err, &re) {
		switch re.code {
		case http.StatusNotFound:
			return nil, refNotFound(id)
		case http.StatusConflict:
			cur, gerr := c.GetJob(ctx, id)
			if gerr != nil {
				return nil, gerr
			}
			return nil, &jobEndedError{ID: id, Status: cur.Status}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot cancel job %s: %w", id, err)
	}
	return &j, nil
}

func (c *daemonClient) DeleteJobs(ctx context.Context, refs []string) ([]jobOutcome, error) {
	return c.changeJobs(ctx, refs, func(j *job.Job) (*job.Job, error) {
		if !j.Status.Terminal() {
			// Cancelled here rather than by the DELETE, so that what is
			// printed is the job as it was deleted.
			cj, err := c.cancel(ctx, j.ID)
			var ended *jobEndedError
			switch {
			case err == nil:
				j = cj
			case errors.As(err, &ended):
				if j, err = c.GetJob(ctx, j.ID); err != nil {
					return nil, err
				}
			default:
				return nil, err
			}
		}
		err := c.do(ctx, "DELETE", "/job/"+url.PathEscape(j.ID), nil, nil, nil, daemonReadTimeout)
		var re *remoteError
		if errors.As(err, &re) && re.code == http.StatusNotFound {
			return nil, refNotFound(j.ID)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot delete job %s: %w", j.ID, err)
		}
		return j, nil
	})
}

func (c *daemonClient) changeJobs(ctx context.Context, refs []string, change func(*job.Job) (*job.Job, error)) ([]jobOutcome, error) {
	if err := c.probe(ctx); err != nil {
		return nil, err
	}
	var out []jobOutcome
	for _, ref := range refs {
		o := jobOutcome{Ref: ref}
		if !validRef(ref) {
			o.Err = refNotFound(ref)
		} else if j, err := c.GetJob(ctx, ref); err != nil {
			o.Err = err
		} else {
			o.Job, o.Err = change(j)
		}
		var de *daemonError
		if errors.As(o.Err, &de) {
			return out, o.Err // the daemon went away: the rest would fail alike
		}
		out = append(out, o)
	}
	return out, nil
}

func (c *daemonClient) RerunJob(ctx context.Context, ref string) (*server.SubmitResponse, error) {
	if !validRef(ref) {
		return nil, refNotFound(ref)
	}
	if err := c.probe(ctx); err != nil {
		return nil, err
	}
	var res server.SubmitResponse
	err := c.do(ctx, "POST", "/job/"+url.PathEscape(ref)+"/rerun", nil, nil, &res, daemonReadTimeout)
	var re *remoteError
	if errors.As(err, &re) {
		switch {
		case re.code == http.StatusNotFound:
			return nil, refNotFound(ref)
		case re.code == http.StatusBadRequest && strings.Contains(re.msg, "matches more than one job"):
			return nil, fmt.Errorf("%w: %s", store.ErrAmbiguous, re.msg)
		case re.code == http.StatusBadRequest:
			return nil, errors.New(re.msg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot rerun job %s: %w", ref, err)
	}
	return &res, nil
}

func (c *daemonClient) Stats(ctx context.Context) (*server.StatsResponse, error) {
	var res server.StatsResponse
	if err := c.do(ctx, "GET", "/stats", nil, nil, &res, daemonReadTimeout); err != nil {
		return nil, fmt.Errorf("cannot read the daemon's figures: %w", err)
	}
	return &res, nil
}

// sseIdle is how long a stream may stay silent (the daemon sends a
// heartbeat every 15s) before the daemon is taken to be gone.
var sseIdle = 45 * time.Second

// maxEventBytes bounds one event the daemon streams: a whole job of up to
// jobs.max_job_bytes, with room to spare.
const maxEventBytes = 64 << 20

func (c *daemonClient) WatchJob(ctx context.Context, ref string, fn func(jobEvent) error) (*job.Job, error) {
	if !validRef(ref) {
		return nil, refNotFound(ref)
	}
	j, err := c.GetJob(ctx, ref) // resolves a prefix; 404 is ErrNotFound
	if err != nil {
		return nil, err
	}
	var final *job.Job
	gone := false
	err = c.stream(ctx, "/job/"+url.PathEscape(j.ID)+"/events", func(event string, data []byte) error {
		ev := jobEvent{Kind: event}
		var target any
		switch event {
		case server.EventStep:
			ev.Step = &server.StepEvent{}
			target = ev.Step
		case server.EventStatus:
			ev.Status = &server.StatusEvent{}
			target = ev.Status
		case server.EventResync, server.EventEnd:
			ev.Job = &job.Job{}
			target = ev.Job
		case server.EventGone:
			gone = true
			return errStreamDone
		default:
			return nil // an event of a later release
		}
		if err := json.Unmarshal(data, target); err != nil {
			return fmt.Errorf("the daemon sent a %s event that does not decode: %w", event, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
		if event == server.EventEnd {
			final = ev.Job
			return errStreamDone
		}
		return nil
	})
	switch {
	case gone:
		return nil, fmt.Errorf("job %s was deleted while it was watched", j.ID)
	case final != nil:
		return final, nil
	case err != nil:
		return nil, err
	}
	return nil, fmt.Errorf("%s stopped sending the events of job %s before it ended; watch it again with 'secauto jobs watch %s' once the daemon is back", c.who(), j.ID, j.ID)
}

// errStreamDone ends a stream from its callback.
var errStreamDone = errors.New("stream done")

// stream reads the Server-Sent Events at path, calling fn with each
// event's name and data, until the stream ends, fn returns an error
// (errStreamDone: a normal end) or ctx ends.
func (c *daemonClient) stream(ctx context.Context, path string, fn func(event string, data []byte) error) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scheme, host := c.baseURL()
	u := url.URL{Scheme: scheme, Host: host, Path: path}
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return c.cannotAsk(err.Error())
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", c.agent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// Silence longer than the heartbeats allow means the daemon is gone.
	var silent atomic.Bool
	idle := time.AfterFunc(daemonPingTimeout+sseIdle, func() { silent.Store(true); cancel() })
	defer idle.Stop()
	broken := func(err error) error {
		switch {
		case silent.Load():
			return c.cannotAsk(fmt.Sprintf("it sent nothing for %s", sseIdle))
		case parent.Err() != nil:
			return parent.Err()
		}
		return c.cannotAsk(transportReason(err, sseIdle))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return broken(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.failure("GET", path, resp.StatusCode, data)
	}
	r := bufio.NewReader(resp.Body)
	var event string
	var data bytes.Buffer
	for {
		idle.Reset(sseIdle)
		line, err := readLine(r, maxEventBytes)
		if err != nil {
			if errors.Is(err, io.EOF) && ctx.Err() == nil {
				return nil
			}
			return broken(err)
		}
		switch {
		case line == "":
			if event != "" || data.Len() > 0 {
				if event == "" {
					event = "message"
				}
				if err := fn(event, data.Bytes()); err != nil {
					if errors.Is(err, errStreamDone) {
						return nil
					}
					return err
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, ":"): // heartbeat
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			if data.Len() > maxEventBytes {
				return fmt.Errorf("the daemon sent an event larger than %d bytes", maxEventBytes)
			}
		}
	}
}

// readLine reads one line without its end of line, of at most max bytes.
func readLine(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		part, more, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, part...)
		if len(b) > max {
			return "", fmt.Errorf("line longer than %d bytes", max)
		}
		if !more {
			return string(b), nil
		}
	}
}
