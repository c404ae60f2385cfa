package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockPing is how often the session holding a lock is checked while the
// work it guards runs.
var lockPing = 5 * time.Second

// Exclusive runs fn while this process holds the cluster-wide advisory
// lock name (on a connection of its own), and reports false without
// running fn when another holds it.
//
// The lock lives as long as that session: if its connection drops while
// fn runs, the lock is gone and another node may take it. fn cannot be
// stopped, so Exclusive says so instead: the session is pinged meanwhile
// (which logs the loss at once, and keeps an idle connection from being
// cut), and when fn returns, an error saying the lock was lost is joined
// to fn's.
func (s *Store) Exclusive(name string, fn func() error) (_ bool, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return false, err
	}
	conn, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	key := "secauto:" + s.schema + ":" + name
	var ok bool
	if err := conn.QueryRow(s.ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&ok); err != nil {
		return false, err
	}
	if !ok {
		return false, nil
	}
	stop := make(chan struct{})
	var lost error
	var wg sync.WaitGroup
	wg.Go(func() { lost = s.keepLock(conn.Conn(), name, stop) })
	ferr := fn()
	close(stop)
	wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var released bool
	uerr := conn.QueryRow(ctx, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key).Scan(&released)
	if uerr != nil {
		// Ending the session releases the lock, if it still held it.
		conn.Conn().Close(ctx)
	}
	switch {
	case lost != nil:
	case uerr != nil:
		lost = uerr
	case uerr == nil && !released:
		lost = errors.New("the session no longer held it")
	default:
		return true, ferr
	}
	return true, errors.Join(ferr, fmt.Errorf("the cluster-wide lock %q was lost while this node held it (its connection to the database dropped), so another node may have done the same work meanwhile: %w", name, lost))
}

// keepLock pings the session holding lock name every lockPing until stop
// is closed, and returns the error of a ping that failed.
func (s *Store) keepLock(c *pgx.Conn, name string, stop <-chan struct{}) error {
	t := time.NewTicker(lockPing)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, max(lockPing, time.Second))
		err := c.Ping(ctx)
		cancel()
		if s.ctx.Err() != nil {
			return nil // closing: the unlock tells
		}
		if err != nil {
			scrubErr(s.o.URL, &err)
			s.o.Logger.Error("lost the cluster-wide lock: its connection to the database dropped, and another node may take it while this one still works under it", "lock", name, "err", err.Error())
			return err
		}
	}
}
