package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/secauto/secauto/pkg/store"
)

// sealRecords checks records and seals their values as the file driver
// does (store.Codec.SealRecord).
func (s *Store) sealRecords(recs []store.Record) ([]store.Record, error) {
	out := make([]store.Record, 0, len(recs))
	for _, r := range recs {
		v, err := s.codec.SealRecord(r.Key, r.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, store.Record{Key: r.Key, Value: v})
	}
	return out, nil
}

// putRecords writes sealed records in tx, in order: for a key given twice
// the last one wins, and a nil value deletes.
func putRecords(ctx context.Context, tx pgx.Tx, recs []store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	last := map[string]int{}
	for i, r := range recs {
		last[r.Key] = i
	}
	var delKeys, putKeys []string
	var putVals [][]byte
	for i, r := range recs {
		if last[r.Key] != i {
			continue
		}
		if r.Value == nil {
			delKeys = append(delKeys, r.Key)
		} else {
			putKeys = append(putKeys, r.Key)
			putVals = append(putVals, r.Value)
		}
	}
	if len(delKeys) > 0 {
		if _, err := tx.Exec(ctx, "DELETE FROM secauto_records WHERE key = ANY($1)", delKeys); err != nil {
			return err
		}
	}
	if len(putKeys) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO secauto_records (key, value)
			SELECT * FROM unnest($1::text[], $2::bytea[])
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, putKeys, putVals); err != nil {
			return err
		}
	}
	return nil
}

// PutRecords stores records (a nil Value deletes) durably, in one
// transaction.
func (s *Store) PutRecords(recs ...store.Record) (err error) {
	defer scrubErr(s.o.URL, &err)
	sealed, err := s.sealRecords(recs)
	if err != nil || len(sealed) == 0 {
		return err
	}
	done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	return pgx.BeginFunc(s.ctx, s.pool, func(tx pgx.Tx) error {
		return putRecords(s.ctx, tx, sealed)
	})
}

// Records returns the records whose keys start with prefix, sorted by
// key, their values opened when sealed. A record that cannot be read (or
// a database that does not answer) is logged and left out.
func (s *Store) Records(prefix string) []store.Record {
	if s.life.closed.Load() {
		return nil
	}
	rows, err := s.pool.Query(s.ctx, "SELECT key, value FROM secauto_records WHERE key LIKE $1 ESCAPE '\\' ORDER BY key", likePrefix(prefix))
	if err != nil {
		scrubErr(s.o.URL, &err)
		s.o.Logger.Error("records cannot be read", "prefix", prefix, "err", err.Error())
		return nil
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			break
		}
		pt, err := s.codec.OpenRecord(k, v)
		if err != nil {
			s.o.Logger.Error("record skipped: it cannot be read", "record", k, "err", err.Error())
			continue
		}
		out = append(out, store.Record{Key: k, Value: pt})
	}
	if err := rows.Err(); err != nil {
		scrubErr(s.o.URL, &err)
		s.o.Logger.Error("records cannot be read", "prefix", prefix, "err", err.Error())
	}
	return out
}

// ClaimRecord reserves the record key for this node (or, before Join, this
// process) for ttl, and reports false when another holds it or there is no
// such record.
func (s *Store) ClaimRecord(key string, ttl time.Duration) (_ bool, err error) {
	defer scrubErr(s.o.URL, &err)
	done, err := s.begin()
	if err != nil {
		return false, err
	}
	defer done()
	tag, err := s.pool.Exec(s.ctx, `UPDATE secauto_records SET claimed_by = $2, claimed_until = now() + $3 * interval '1 microsecond'
		WHERE key = $1 AND (claimed_until IS NULL OR claimed_until < now() OR claimed_by = $2)`,
		key, s.member.claimant(), ttl.Microseconds())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}
