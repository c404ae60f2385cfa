package postgres

import (
	"context"
	"time"
)

// Exclusive runs fn while this process holds the cluster-wide advisory
// lock name (on a connection of its own), and reports false without
// running fn when another holds it.
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
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key); uerr != nil {
			// Ending the session releases the lock.
			conn.Conn().Close(ctx)
		}
	}()
	return true, fn()
}
