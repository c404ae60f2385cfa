package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverPeer inserts one-step River jobs and lets River work them: River
// makes each job running when its fetcher takes it and completed when its
// completer records the end, both in PostgreSQL. The writers only insert,
// as a River application does: River works jobs asynchronously, and its
// completer records ends in batches (every 250ms, sooner once 100 wait), so
// a writer waiting for each job's end would measure that pause rather than
// River's throughput. A level lasts until every job inserted was reported
// completed (drain). Each run has its own schema, made and dropped for it,
// with River's migrations applied by rivermigrate.
type riverPeer struct {
	url        string
	maxWorkers int
	pool       *pgxpool.Pool
	client     *river.Client[pgx.Tx]
	schema     string
	cancelSub  func()

	mu          sync.Mutex
	inserted    map[int64]time.Time // jobs not yet completed: when their insert began
	ended       map[int64]time.Time // completed before their insert returned
	outstanding int
	jobLat      []time.Duration // insert to completion, of jobs ended this level
	failed      error
}

// benchArgs carries the job's JSON, as a River job would carry what its
// worker needs.
type benchArgs struct {
	Job json.RawMessage `json:"job"`
}

func (benchArgs) Kind() string { return "storebench" }

type benchWorker struct {
	river.WorkerDefaults[benchArgs]
}

// Work is the one step: nothing beyond River's own bookkeeping.
func (benchWorker) Work(context.Context, *river.Job[benchArgs]) error { return nil }

func (p *riverPeer) open(_ string, n int) error {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(p.url)
	if err != nil {
		return &skipError{fmt.Sprintf("-postgres %q is not a PostgreSQL URL: %v", redactURL(p.url), err)}
	}
	// The server's default too, but a peer's durability is not left to a
	// server's configuration: every commit waits for its WAL flush.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.MaxConns = int32(p.maxWorkers + 16)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(pctx, cfg)
	if err == nil {
		err = pool.Ping(pctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return &skipError{fmt.Sprintf("PostgreSQL at %s cannot be reached (%v); start it, or pass -postgres URL", redactURL(p.url), err)}
	}
	p.pool = pool
	var fsync string
	if err := pool.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		return err
	}
	if fsync != "on" {
		return &skipError{fmt.Sprintf("PostgreSQL at %s runs with fsync=%s, so its commits are not durable; turn fsync on to compare it", redactURL(p.url), fsync)}
	}
	p.schema = "storebench_" + strconv.Itoa(os.Getpid())
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+p.schema+` CASCADE; CREATE SCHEMA `+p.schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: p.schema, Logger: quiet})
	if err != nil {
		return err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	if n > 0 {
		// Completed jobs straight into River's table in one statement:
		// quick, and what River's own inserts would leave once worked.
		args, _ := json.Marshal(benchArgs{Job: encode(prefillJob(0, time.Now()))})
		_, err := pool.Exec(ctx, `INSERT INTO `+p.schema+`.river_job
			(state, attempt, max_attempts, attempted_at, finalized_at, created_at, scheduled_at, args, kind, queue, tags)
			SELECT 'completed', 1, 25, now(), now(), now() - interval '1 hour', now(), $1::jsonb, 'storebench', 'default', '{}'
			FROM generate_series(1, $2)`, string(args), n)
		if err != nil {
			return fmt.Errorf("pre-fill: %w", err)
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+p.schema+`.river_job`); err != nil {
			return fmt.Errorf("pre-fill: %w", err)
		}
	}

	workers := river.NewWorkers()
	river.AddWorker(workers, &benchWorker{})
	p.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:  p.schema,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: p.maxWorkers}},
		Workers: workers,
		Logger:  quiet,
		// River's shortest waits between fetches, so a job is taken as
		// soon as it is inserted (LISTEN/NOTIFY wakes the fetcher too).
		FetchCooldown:     river.FetchCooldownMin,
		FetchPollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	p.inserted, p.ended = map[int64]time.Time{}, map[int64]time.Time{}
	events, cancelSub := p.client.SubscribeConfig(&river.SubscribeConfig{
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed},
		ChanSize: 1 << 20,
	})
	p.cancelSub = cancelSub
	go func() {
		for ev := range events {
			now := time.Now()
			p.mu.Lock()
			if ev.Kind != river.EventKindJobCompleted && p.failed == nil {
				p.failed = fmt.Errorf("river job %d ended %s", ev.Job.ID, ev.Job.State)
			}
			if t0, ok := p.inserted[ev.Job.ID]; ok {
				p.jobLat = append(p.jobLat, now.Sub(t0))
				delete(p.inserted, ev.Job.ID)
				p.outstanding--
			} else {
				p.ended[ev.Job.ID] = now
			}
			p.mu.Unlock()
		}
	}()
	return p.client.Start(ctx)
}

func (p *riverPeer) job(i int, lat *[]time.Duration) error {
	ctx := context.Background()
	t0 := time.Now()
	res, err := p.client.Insert(ctx, benchArgs{Job: encode(newIDJob(i))}, nil)
	if err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	*lat = append(*lat, time.Since(t0))
	id := res.Job.ID
	p.mu.Lock()
	defer p.mu.Unlock()
	if end, ok := p.ended[id]; ok {
		delete(p.ended, id)
		p.jobLat = append(p.jobLat, end.Sub(t0))
		return nil
	}
	p.inserted[id] = t0
	p.outstanding++
	return nil
}

// drain waits until River has completed every job inserted, and returns
// their latencies from insert to completion.
func (p *riverPeer) drain() ([]time.Duration, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		p.mu.Lock()
		left, failed := p.outstanding, p.failed
		if left == 0 || failed != nil {
			lat := p.jobLat
			p.jobLat = nil
			p.mu.Unlock()
			return lat, failed
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d river jobs did not complete within 5 minutes", left)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *riverPeer) close() error {
	var errs []error
	if p.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, p.client.Stop(ctx))
		cancel()
		p.cancelSub()
	}
	if p.pool != nil {
		if p.schema != "" {
			_, err := p.pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+p.schema+` CASCADE`)
			errs = append(errs, err)
		}
		p.pool.Close()
	}
	return errors.Join(errs...)
}

// redactURL drops a password from a URL for messages.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			userinfo := u[scheme+3 : at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				return u[:scheme+3] + userinfo[:c] + ":xxxxx" + u[at:]
			}
		}
	}
	return u
}

// postgresPIDs lists the PostgreSQL server's processes on this host, whose
// writes are River's.
func postgresPIDs() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "postgres") {
			pids = append(pids, pid)
		}
	}
	return pids
}
