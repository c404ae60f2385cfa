package postgres

import (
	"context"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// Err is store.ErrClosed once the store is closed, else nil: the database
// itself says, on each write, whether it takes it.
func (s *Store) Err() error {
	if s.life.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Stats counts the jobs by status. Healthy is false when the database
// does not answer.
func (s *Store) Stats() store.Stats {
	st := store.Stats{ByStatus: map[job.Status]int{}}
	for _, s := range job.Statuses {
		st.ByStatus[s] = 0
	}
	if s.life.closed.Load() {
		return st
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT status, count(*) FROM secauto_jobs GROUP BY status")
	if err != nil {
		return st
	}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st
		}
		st.ByStatus[job.Status(status)] = n
		st.Jobs += n
	}
	st.Healthy = rows.Err() == nil
	return st
}
