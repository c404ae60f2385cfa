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
// completer records the end, both in PostgreSQL. Each job has its own
// schema, made and dropped for the run, with River's migrations applied by
// rivermigrate.
type riverPeer struct {
	url        string
	maxWorkers int
	pool       *pgxpool.Pool
	client     *river.Client[pgx.Tx]
	schema     string
	cancelSub  func()

	mu      sync.Mutex
	waiting map[int64]chan struct{}
	ended   map[int64]bool
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
	p.waiting, p.ended = map[int64]chan struct{}{}, map[int64]bool{}
	events, cancelSub := p.client.SubscribeConfig(&river.SubscribeConfig{
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed},
		ChanSize: 1 << 20,
	})
	p.cancelSub = cancelSub
	go func() {
		for ev := range events {
			p.mu.Lock()
			if ch, ok := p.waiting[ev.Job.ID]; ok {
				close(ch)
				delete(p.waiting, ev.Job.ID)
			} else {
				p.ended[ev.Job.ID] = true
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
	if p.ended[id] {
		delete(p.ended, id)
		p.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	p.waiting[id] = ch
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("river job %d did not complete within a minute", id)
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
