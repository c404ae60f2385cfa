package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/store/postgres"
)

// secautoPGPeer is secauto's postgres driver as a serve node uses it: jobs
// are created (concurrent creates share one transaction), taken by Claim
// (FOR UPDATE SKIP LOCKED, the way several nodes share the queue) and
// completed by Update, on the same database as the river peer, in a
// schema of its own.
type secautoPGPeer struct {
	url    string
	schema string
	s      *postgres.Store
}

func (p *secautoPGPeer) open(dir string, n int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return &skipError{fmt.Sprintf("PostgreSQL at %s cannot be reached (%v); start it, or pass -postgres URL", redactURL(p.url), err)}
	}
	defer conn.Close(ctx)
	p.schema = "storebench_secauto_" + strconv.Itoa(os.Getpid())
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+p.schema+` CASCADE; CREATE SCHEMA `+p.schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	u, err := url.Parse(p.url)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("search_path", p.schema)
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, postgres.Options{URL: u.String(), Dir: filepath.Join(dir, "secauto-pg")})
	if err != nil {
		return err
	}
	p.s = s
	if n > 0 {
		// The bulk path: a jobs.json-format file restored with COPY.
		src := filepath.Join(dir, "prefill")
		if err := writeJobsJSON(src, n); err != nil {
			return err
		}
		if _, err := s.Restore(filepath.Join(src, store.SnapshotFile), store.BackupOptions{}); err != nil {
			return fmt.Errorf("pre-fill: %w", err)
		}
		if _, err := conn.Exec(ctx, `VACUUM ANALYZE `+p.schema+`.secauto_jobs`); err != nil {
			return fmt.Errorf("pre-fill: %w", err)
		}
	}
	return s.Join(store.Node{ID: "storebench-" + strconv.Itoa(os.Getpid()), StartedAt: time.Now()}, postgres.DefaultLease)
}

func (p *secautoPGPeer) job(i int, lat *[]time.Duration) error {
	t0 := time.Now()
	if _, err := p.s.Create(newJob(i)); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	t1 := time.Now()
	// The oldest pending job, whoever created it: as a node's worker
	// takes one.
	started, err := p.s.Claim(1, func(j *job.Job) error { return j.Start(time.Now()) })
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	t2 := time.Now()
	for _, j := range started {
		if _, err := p.s.Update(j.ID, func(cur *job.Job) error { return cur.Finish(job.Completed, "", time.Now()) }); err != nil {
			return fmt.Errorf("complete: %w", err)
		}
	}
	t3 := time.Now()
	*lat = append(*lat, t1.Sub(t0), t2.Sub(t1), t3.Sub(t2))
	return nil
}

func (p *secautoPGPeer) close() error {
	if p.s == nil {
		return nil
	}
	err := p.s.Close()
	if conn, cerr := pgx.Connect(context.Background(), p.url); cerr == nil {
		conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+p.schema+` CASCADE`)
		conn.Close(context.Background())
	}
	return err
}
