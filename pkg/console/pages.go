package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// windows are the time windows the jobs list offers, by their query
// value (a duration back from now, as GET /jobs?since= takes it).
var windows = []option{
	{"", "any time"}, {"15m", "last 15 minutes"}, {"1h", "last hour"},
	{"24h", "last 24 hours"}, {"7d", "last 7 days"}, {"30d", "last 30 days"},
}

type option struct{ Value, Label string }

func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request, s *session) {
	st := c.srv.Stats()
	c.render(w, r, s, http.StatusOK, "overview", overviewView{
		Stats:  st,
		Counts: statusCounts(st.Jobs),
		Chart:  newChart(c.srv.Throughput()),
	})
}

func (c *Console) handleJobs(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	v := jobsView{Window: q.Get("since"), Windows: windows}
	selected := map[job.Status]bool{}
	for _, name := range q["status"] {
		if st, err := job.ParseStatus(name); err == nil {
			selected[st] = true
		}
	}
	for _, st := range job.Statuses {
		v.Statuses = append(v.Statuses, statusOption{Status: st, Checked: selected[st]})
	}
	page, _ := strconv.Atoi(q.Get("page"))
	v.Page = max(page, 1)
	fq := url.Values{}
	for _, st := range job.Statuses {
		if selected[st] {
			fq.Add("status", string(st))
		}
	}
	if v.Window != "" {
		fq.Set("since", v.Window)
	}
	f, err := server.ParseJobFilter(fq, c.opts.Now())
	if err != nil {
		c.fail(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	size := c.opts.PageSize
	offset := (v.Page - 1) * size
	f.Limit = offset + size + 1
	jobs, err := c.srv.Store().List(f)
	if err != nil {
		c.fail(w, r, s, http.StatusInternalServerError, "The jobs cannot be listed: "+err.Error())
		return
	}
	if len(jobs) > offset+size {
		v.Older = pageURL(fq, v.Page+1)
		jobs = jobs[:offset+size]
	}
	if v.Page > 1 {
		v.Newer = pageURL(fq, v.Page-1)
	}
	if offset < len(jobs) {
		jobs = jobs[offset:]
	} else {
		jobs = nil
	}
	now := c.opts.Now()
	for _, j := range jobs {
		v.Jobs = append(v.Jobs, newJobRow(j, now))
		if !j.Status.Terminal() {
			v.Live = true
		}
	}
	v.Filtered = len(selected) > 0 || v.Window != ""
	// The first page refreshes for the jobs that arrive; a later one
	// while a job on it may still change.
	v.Refresh = v.Page == 1 || v.Live
	v.First, v.Last = offset+1, offset+len(v.Jobs)
	c.render(w, r, s, http.StatusOK, "jobs", v)
}

func pageURL(q url.Values, page int) string {
	p := url.Values{}
	for k, vs := range q {
		p[k] = vs
	}
	if page > 1 {
		p.Set("page", strconv.Itoa(page))
	}
	if len(p) == 0 {
		return "/ui/jobs"
	}
	return "/ui/jobs?" + p.Encode()
}

// getJob reads the job of the {id} path value, answering the error page
// itself when it cannot.
func (c *Console) getJob(w http.ResponseWriter, r *http.Request, s *session) *job.Job {
	id := r.PathValue("id")
	j, err := c.srv.Store().Get(id)
	switch {
	case err == nil:
		return j
	case errors.Is(err, store.ErrNotFound):
		c.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("There is no job %s; it may have been deleted or cleaned up.", id))
	case errors.Is(err, store.ErrAmbiguous):
		c.fail(w, r, s, http.StatusBadRequest, fmt.Sprintf("More than one job starts with %s; give more of the id.", id))
	default:
		c.fail(w, r, s, http.StatusInternalServerError, "The job cannot be read: "+err.Error())
	}
	return nil
}

func (c *Console) handleJob(w http.ResponseWriter, r *http.Request, s *session) {
	j := c.getJob(w, r, s)
	if j == nil {
		return
	}
	reveal := r.URL.Query().Get("reveal") == "1"
	c.render(w, r, s, http.StatusOK, "job", newJobView(j, reveal, c.opts.Now()))
}

func (c *Console) handleJobEvents(w http.ResponseWriter, r *http.Request, _ *session) {
	c.srv.JobEvents(w, r, r.PathValue("id"))
}

// actions are the buttons of a job page, each confirmed on a page of its
// own before it is done.
var actions = map[string]actionInfo{
	"cancel": {Verb: "Cancel", Question: "Cancel this job? A running step is stopped; the job ends as cancelled.", Live: true},
	"rerun":  {Verb: "Rerun", Question: "Start a new job from this job's playbook and submitted context?"},
	"delete": {Verb: "Delete", Question: "Delete this job for good? A live job is cancelled first. This cannot be undone."},
}

type actionInfo struct {
	Verb, Question string
	// Live: only for a pending or running job.
	Live bool
}

func (c *Console) handleConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := actions[r.PathValue("action")]
	if !ok {
		c.fail(w, r, s, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
		return
	}
	j := c.getJob(w, r, s)
	if j == nil {
		return
	}
	c.render(w, r, s, http.StatusOK, "confirm", confirmView{
		Action: r.PathValue("action"), Info: a, Job: newJobRow(j, c.opts.Now()),
		Allowed: !a.Live || !j.Status.Terminal(),
	})
}

func (c *Console) handleJobAction(w http.ResponseWriter, r *http.Request, s *session) {
	action := r.PathValue("action")
	if _, ok := actions[action]; !ok {
		c.fail(w, r, s, http.StatusNotFound, "There is no action "+action+".")
		return
	}
	id := r.PathValue("id")
	switch action {
	case "cancel":
		j, err := c.srv.CancelJob(r.Context(), id)
		if err != nil {
			c.fail(w, r, s, server.HTTPStatus(err), "The job was not cancelled: "+err.Error())
			return
		}
		s.setFlash("Job " + j.ID + " was cancelled.")
		http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(j.ID), http.StatusSeeOther)
	case "rerun":
		nj, err := c.srv.Rerun(id)
		if err != nil {
			c.fail(w, r, s, server.HTTPStatus(err), "The job was not rerun: "+err.Error())
			return
		}
		s.setFlash("Rerun of job " + nj.RerunOf + " started as job " + nj.ID + ".")
		http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(nj.ID), http.StatusSeeOther)
	case "delete":
		if err := c.srv.DeleteJob(r.Context(), id); err != nil {
			c.fail(w, r, s, server.HTTPStatus(err), "The job was not deleted: "+err.Error())
			return
		}
		s.setFlash("Job " + id + " was deleted.")
		http.Redirect(w, r, "/ui/jobs", http.StatusSeeOther)
	}
}

func (c *Console) handleBackups(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.srv.Backups()
	if err != nil {
		c.fail(w, r, s, http.StatusInternalServerError, "The backups cannot be listed: "+err.Error())
		return
	}
	st := c.srv.Stats()
	v := backupsView{LastBackup: st.LastBackup, NextBackup: st.NextBackup, BackupError: st.BackupError}
	for _, b := range list {
		v.Backups = append(v.Backups, backupRow{BackupInfo: b, Name: filepath.Base(b.Path)})
	}
	c.render(w, r, s, http.StatusOK, "backups", v)
}

func (c *Console) handleCreateBackup(w http.ResponseWriter, r *http.Request, s *session) {
	res, err := c.srv.CreateBackup("console")
	if err != nil {
		c.fail(w, r, s, server.HTTPStatus(err), "No backup was written: "+err.Error())
		return
	}
	s.setFlash(fmt.Sprintf("Backup %s written: %d jobs, %s.", filepath.Base(res.Path), res.Jobs, bytesText(res.Size)))
	http.Redirect(w, r, "/ui/backups", http.StatusSeeOther)
}

// since is how long ago t was, for the pages.
func since(now, t time.Time) time.Duration { return now.Sub(t).Truncate(time.Second) }
