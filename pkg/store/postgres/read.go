package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// pgxQuerier is what a pool, a connection and a transaction share.
type pgxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Get returns the job with this id, or the only job whose id starts with
// it (store.ErrAmbiguous when several do, store.ErrNotFound when none).
func (s *Store) Get(idOrPrefix string) (_ *job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return nil, err
	}
	id, doc, err := s.find(s.ctx, s.pool, idOrPrefix, false)
	if err != nil {
		return nil, err
	}
	return s.codec.DecodeJob(id, doc)
}

// find resolves an id or unique prefix to the id and doc of one job; with
// idOnly it reads no doc.
func (s *Store) find(ctx context.Context, q pgxQuerier, idOrPrefix string, idOnly bool) (string, []byte, error) {
	if idOrPrefix == "" {
		return "", nil, fmt.Errorf("%w: empty id", store.ErrNotFound)
	}
	col := "doc"
	if idOnly {
		col = "''::bytea"
	}
	var doc []byte
	err := q.QueryRow(ctx, "SELECT "+col+" FROM secauto_jobs WHERE id = $1", idOrPrefix).Scan(&doc)
	if err == nil {
		return idOrPrefix, doc, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", nil, err
	}
	rows, err := q.Query(ctx, "SELECT id, "+col+" FROM secauto_jobs WHERE id LIKE $1 ESCAPE '\\' ORDER BY id LIMIT 6", likePrefix(idOrPrefix))
	if err != nil {
		return "", nil, err
	}
	defer rows.Close() // a failed Scan leaves them open, holding the connection
	var matches []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &doc); err != nil {
			return "", nil, err
		}
		matches = append(matches, id)
	}
	if err := rows.Err(); err != nil {
		return "", nil, err
	}
	switch len(matches) {
	case 0:
		return "", nil, fmt.Errorf("%w: %s", store.ErrNotFound, idOrPrefix)
	case 1:
		return matches[0], doc, nil
	}
	if len(matches) > 5 {
		matches = append(matches[:5], "…")
	}
	return "", nil, fmt.Errorf("%w: %q matches %s", store.ErrAmbiguous, idOrPrefix, strings.Join(matches, ", "))
}

func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// List returns the jobs matching f, newest first (by creation time, then
// id) unless f.Oldest. A job that cannot be read is left out and named
// (Options.OnUnreadable).
func (s *Store) List(f store.Filter) (_ []*job.Job, err error) {
	defer scrubErr(s.o.URL, &err)
	if err := s.readable(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if len(f.Statuses) > 0 {
		sts := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			sts[i] = string(st)
		}
		args = append(args, sts)
		where = append(where, "status = ANY($"+strconv.Itoa(len(args))+")")
	}
	if !f.Since.IsZero() {
		args = append(args, f.Since)
		where = append(where, "created_at >= $"+strconv.Itoa(len(args)))
	}
	if !f.EndedSince.IsZero() {
		args = append(args, f.EndedSince)
		where = append(where, "completed_at >= $"+strconv.Itoa(len(args)))
	}
	q := "SELECT id, doc FROM secauto_jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Oldest {
		q += " ORDER BY created_at, id"
	} else {
		q += " ORDER BY created_at DESC, id DESC"
	}
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += " LIMIT $" + strconv.Itoa(len(args))
	}
	rows, err := s.pool.Query(s.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*job.Job{}
	for rows.Next() {
		var id string
		var doc []byte
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, err
		}
		j, err := s.codec.DecodeJob(id, doc)
		if err != nil {
			s.logUnreadable(id, err)
			continue
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
