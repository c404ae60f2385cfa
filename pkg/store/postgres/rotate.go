package postgres

import (
	"bytes"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/store"
)

// RotateKeys re-seals under the keyring's first key every job and record
// that is plain or sealed with another key, in batches of one transaction
// each. It is resumable: what is already sealed with the first key is
// skipped. A job changed meanwhile was sealed by its writer and is left as
// it is. A job whose key is missing stops the rotation with a
// *store.SealedError; what was done before stays done.
func (s *Store) RotateKeys(o store.RotateOptions) (_ *store.RotateResult, err error) {
	defer scrubErr(s.o.URL, &err)
	kr := s.o.Keyring
	if kr == nil {
		return nil, store.ErrNoKeyring
	}
	done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	batch := o.Batch
	if batch <= 0 {
		batch = 256
	}
	primary := kr.Primary()
	res := &store.RotateResult{KeyID: primary}
	var total int64
	if err := s.pool.QueryRow(s.ctx, "SELECT count(*) FROM secauto_jobs WHERE key_id <> $1", primary).Scan(&total); err != nil {
		return nil, err
	}
	if o.Progress != nil {
		o.Progress(0, total)
	}
	var seen int64
	last := ""
	for {
		rows, err := s.pool.Query(s.ctx, "SELECT id, version, doc FROM secauto_jobs WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3", primary, last, batch)
		if err != nil {
			return res, err
		}
		type found struct {
			id      string
			version int64
			doc     []byte
		}
		fs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
			var f found
			err := r.Scan(&f.id, &f.version, &f.doc)
			return f, err
		})
		if err != nil {
			return res, err
		}
		if len(fs) == 0 {
			break
		}
		var ids []string
		var versions []int64
		var docs [][]byte
		for _, f := range fs {
			j, err := s.codec.DecodeJob(f.id, f.doc)
			if err != nil {
				return res, err
			}
			doc, err := s.codec.EncodeJob(j)
			if err != nil {
				return res, err
			}
			ids, versions, docs = append(ids, f.id), append(versions, f.version), append(docs, doc)
		}
		tag, err := s.pool.Exec(s.ctx, `UPDATE secauto_jobs AS t SET doc = u.doc, key_id = $1, version = nextval('secauto_jobs_version')
			FROM unnest($2::text[], $3::bigint[], $4::bytea[]) AS u(id, version, doc)
			WHERE t.id = u.id AND t.version = u.version`, primary, ids, versions, docs)
		if err != nil {
			return res, fmt.Errorf("re-encrypting jobs %s…: %w", ids[0], err)
		}
		res.Jobs += int(tag.RowsAffected())
		seen += int64(len(fs))
		last = fs[len(fs)-1].id
		if o.Progress != nil {
			o.Progress(min(seen, total), total)
		}
	}
	rows, err := s.pool.Query(s.ctx, "SELECT key, value FROM secauto_records ORDER BY key")
	if err != nil {
		return res, err
	}
	type rec struct {
		key string
		val []byte
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
		var x rec
		err := r.Scan(&x.key, &x.val)
		return x, err
	})
	if err != nil {
		return res, err
	}
	for _, r := range recs {
		if store.RecordKeyID(r.val) == primary {
			continue
		}
		pt, err := s.codec.OpenRecord(r.key, r.val)
		if err != nil {
			return res, err
		}
		nv, err := s.codec.SealRecord(r.key, pt)
		if err != nil {
			return res, err
		}
		if bytes.Equal(nv, r.val) {
			continue
		}
		tag, err := s.pool.Exec(s.ctx, "UPDATE secauto_records SET value = $3 WHERE key = $1 AND value = $2", r.key, r.val, nv)
		if err != nil {
			return res, fmt.Errorf("re-encrypting records: %w", err)
		}
		res.Records += int(tag.RowsAffected())
	}
	s.o.Logger.Debug("keys rotated", "key_id", primary, "jobs", res.Jobs, "records", res.Records)
	return res, nil
}
