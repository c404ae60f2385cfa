package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/server"
	"github.com/secauto/secauto/pkg/store"
)

// daemonClient is the Admin of a data directory a daemon holds: each
// operation is a request to the daemon, which does it with the same store
// calls the offline Admin makes, and whose answer is turned back into
// what the offline Admin would have returned.
var _ Admin = (*daemonClient)(nil)

func (c *daemonClient) Dir() string { return c.dir }

func (c *daemonClient) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// probe checks, once, that the daemon answers the job endpoints, so that a
// daemon that cannot be reached is reported as such, not as a failed read.
func (c *daemonClient) probe(ctx context.Context) error {
	if c.probed {
		return nil
	}
	var probe []*job.Job
	if err := c.do(ctx, "GET", "/jobs", url.Values{"limit": {"1"}}, nil, &probe, daemonPingTimeout); err != nil {
		return err
	}
	c.probed = true
	return nil
}

// ListJobs reads GET /jobs, which lists the daemon's store with the call
// the offline Admin makes.
func (c *daemonClient) ListJobs(ctx context.Context, f store.Filter) ([]*job.Job, error) {
	if err := c.probe(ctx); err != nil {
		return nil, err
	}
	q := url.Values{}
	if len(f.Statuses) > 0 {
		names := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			names[i] = string(s)
		}
		q.Set("status", strings.Join(names, ","))
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Oldest {
		return nil, errors.New("cannot list jobs: the daemon lists jobs newest first only")
	}
	var jobs []*job.Job
	if err := c.do(ctx, "GET", "/jobs", q, nil, &jobs, daemonReadTimeout); err != nil {
		return nil, fmt.Errorf("cannot list jobs: %w", err)
	}
	return jobs, nil
}

// GetJob reads GET /job/{id}, turning its 404 and 400 (the only 400 it
// answers: an ambiguous prefix) into the store's errors.
func (c *daemonClient) GetJob(ctx context.Context, id string) (*job.Job, error) {
	if err := c.probe(ctx); err != nil {
		return nil, err
	}
	if id == "" || strings.Contains(id, "/") {
		return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
	}
	var j job.Job
	err := c.do(ctx, "GET", "/job/"+url.PathEscape(id), nil, nil, &j, daemonReadTimeout)
	var re *remoteError
	if errors.As(err, &re) {
		switch re.code {
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
		case http.StatusBadRequest:
			return nil, fmt.Errorf("%w: %s", store.ErrAmbiguous, re.msg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read job %s: %w", id, err)
	}
	return &j, nil
}

// Cleanup runs a cleanup with exactly the retention the command computed
// and prints, so what it says is what the daemon did.
func (c *daemonClient) Cleanup(ctx context.Context, o store.CleanupOptions) (*store.CleanupResult, error) {
	req := server.AdminCleanupRequest{DryRun: o.DryRun}
	if o.Retention > 0 {
		req.OlderThan = o.Retention.String()
	}
	if len(o.ByStatus) > 0 {
		req.RetentionByStatus = make(map[job.Status]string, len(o.ByStatus))
		for st, d := range o.ByStatus {
			req.RetentionByStatus[st] = d.String()
		}
	}
	var res store.CleanupResult
	if err := c.work(ctx, "POST", "/admin/cleanup", req, &res); err != nil {
		return nil, err
	}
	if res.IDs == nil {
		res.IDs = []string{}
	}
	return &res, nil
}

// Backup has the daemon write a backup with its jobs.backup_keep, and its
// jobs.backup_compress unless compress is set; the daemon reports no
// progress.
func (c *daemonClient) Backup(ctx context.Context, compress *bool, _ store.Progress) (*store.BackupResult, error) {
	var res store.BackupResult
	if err := c.work(ctx, "POST", "/admin/backups", server.AdminBackupRequest{Compress: compress}, &res); err != nil {
		return nil, err
	}
	res.Path = c.local(res.Path)
	for i, p := range res.Removed {
		res.Removed[i] = c.local(p)
	}
	return &res, nil
}

func (c *daemonClient) ListBackups(ctx context.Context) ([]store.BackupInfo, error) {
	var list []store.BackupInfo
	if err := c.work(ctx, "GET", "/admin/backups", nil, &list); err != nil {
		return nil, err
	}
	for i := range list {
		list[i].Path = c.local(list[i].Path)
	}
	return list, nil
}

// Restore has the daemon restore the backup at path. The daemon takes
// only a backup of its data directory, by name: a file from elsewhere is
// copied in beside the other backups first (importBackup).
func (c *daemonClient) Restore(ctx context.Context, path string, _ store.Progress) (*Restored, error) {
	if err := c.ping(ctx); err != nil {
		return nil, err
	}
	out := &Restored{}
	name, ok := backupInDir(c.dir, path)
	if !ok {
		var err error
		if name, err = importBackup(c.dir, path, time.Now()); err != nil {
			return nil, err
		}
		out.Imported = filepath.Join(c.dir, name)
	}
	var res store.RestoreResult
	if err := c.work(ctx, "POST", "/admin/restore", server.AdminRestoreRequest{Name: name}, &res); err != nil {
		return nil, err
	}
	res.SafetyBackup = c.local(res.SafetyBackup)
	out.RestoreResult = res
	return out, nil
}

func (c *daemonClient) Verify(ctx context.Context, _ store.Progress) (*store.VerifyResult, error) {
	var res store.VerifyResult
	if err := c.work(ctx, "GET", "/admin/verify", nil, &res); err != nil {
		return nil, err
	}
	for i := range res.Problems {
		res.Problems[i].File = c.local(res.Problems[i].File)
	}
	return &res, nil
}

// Recover returns the report of the recovery the daemon ran when it
// started: its running jobs are live, so nothing is recovered now. With
// dryRun, what a recovery would do now, which is nothing.
func (c *daemonClient) Recover(ctx context.Context, dryRun bool) (*Recovery, error) {
	var q url.Values
	if dryRun {
		q = url.Values{"dry_run": {"true"}}
	}
	var res server.AdminRecoverResponse
	if err := c.do(ctx, "GET", "/admin/recover", q, nil, &res, daemonPingTimeout); err != nil {
		return nil, err
	}
	out := &Recovery{RecoverResult: res.RecoverResult, Daemon: c.who(), StartedAt: res.StartedAt}
	if out.Actions == nil {
		out.Actions = []store.RecoverAction{}
	}
	if out.RestoredFrom != nil {
		p := c.local(*out.RestoredFrom)
		out.RestoredFrom = &p
	}
	if !dryRun {
		r := res.OpenReport
		r.JournalCorruptPath = c.local(r.JournalCorruptPath)
		r.SnapshotCorruptPath = c.local(r.SnapshotCorruptPath)
		r.RestoredFrom = c.local(r.RestoredFrom)
		out.Repaired = r
	}
	return out, nil
}

// RotateKeys has the daemon re-encrypt its store under the first key of
// its own jobs.encryption_key_file; the daemon reports no progress.
func (c *daemonClient) RotateKeys(ctx context.Context, _ store.Progress) (*store.RotateResult, error) {
	var res store.RotateResult
	if err := c.work(ctx, "POST", "/admin/keys/rotate", nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
