package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// RotateOptions controls RotateKeys.
type RotateOptions struct {
	// Batch is how many jobs each durable change re-encrypts; zero means
	// 256.
	Batch int
	// Progress hears jobs re-encrypted of those to do.
	Progress Progress
}

// RotateResult reports a key rotation; its JSON is the CLI's output.
type RotateResult struct {
	// Jobs counts the jobs re-encrypted under the first key now.
	Jobs int `json:"jobs"`
	// Records counts the auxiliary records (webhook outbox) re-encrypted.
	Records int `json:"records"`
	// KeyID is the key everything is now encrypted with.
	KeyID string `json:"key_id"`
}

// RotateKeys re-encrypts under the keyring's first key every job (and
// record) that is plain or sealed with another key, in batches of durable
// changes written through the journal like any other change. It is
// resumable: killed at any point, every job is readable (all keys open)
// and a second run re-encrypts only what the first did not reach. Jobs
// changed meanwhile by a writer are re-read, and a job updated concurrently
// needs no rotation (Update seals with the first key). A job whose key is
// not configured, or that does not authenticate, stops the rotation with a
// *SealedError naming it; what was done before stays done.
func (s *FileStore) RotateKeys(o RotateOptions) (*RotateResult, error) {
	kr := s.opts.Keyring
	if kr == nil {
		return nil, ErrNoKeyring
	}
	if s.w == nil {
		return nil, ErrReadOnly
	}
	batch := o.Batch
	if batch <= 0 {
		batch = 256
	}
	primary := kr.Primary()
	res := &RotateResult{KeyID: primary}

	var todo []string
	s.idx.mu.Lock()
	for id, e := range s.idx.jobs {
		if e.sealKey() != primary {
			todo = append(todo, id)
		}
	}
	var recs []string
	for k, v := range s.idx.records {
		if recordKeyID(v) != primary {
			recs = append(recs, k)
		}
	}
	s.idx.mu.Unlock()
	slices.Sort(todo)
	slices.Sort(recs)
	total := int64(len(todo))
	if o.Progress != nil {
		o.Progress(0, total)
	}
	for start := 0; start < len(todo); start += batch {
		ids := todo[start:min(start+batch, len(todo))]
		n, err := s.rotateBatch(ids, primary)
		res.Jobs += n
		if err != nil {
			return res, err
		}
		if o.Progress != nil {
			o.Progress(int64(start+len(ids)), total)
		}
	}
	for start := 0; start < len(recs); start += batch {
		n, err := s.rotateRecords(recs[start:min(start+batch, len(recs))], primary)
		res.Records += n
		if err != nil {
			return res, err
		}
	}
	s.opts.Logger.Debug("keys rotated", "key_id", primary, "jobs", res.Jobs, "records", res.Records)
	return res, nil
}

// rotateBatch re-encrypts the jobs ids that still need it, as one durable
// change; it starts over when a writer changed one of them meanwhile.
func (s *FileStore) rotateBatch(ids []string, primary string) (int, error) {
	for {
		bases := make(map[string]*entry, len(ids))
		s.idx.mu.Lock()
		for _, id := range ids {
			if e, ok := s.idx.lookupLocked(id); ok && e.sealKey() != primary {
				bases[id] = e
			}
		}
		s.idx.mu.Unlock()
		if len(bases) == 0 {
			return 0, nil
		}
		changes := make([]*change, 0, len(bases))
		for _, id := range ids {
			base, ok := bases[id]
			if !ok {
				continue
			}
			j, err := s.readJob(base)
			if err != nil {
				return 0, err
			}
			e, err := encodeSealed(j, s.opts.Keyring, nil, s.opts.MaxJobBytes)
			if err != nil {
				return 0, err
			}
			changes = append(changes, &change{id: id, e: e})
		}
		err := s.commit(changes, s.unchangedSince(bases))
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("re-encrypting jobs %s…: %w", ids[0], err)
		}
		return len(changes), nil
	}
}

// rotateRecords re-encrypts the records keys that still need it, as one
// durable change; it starts over when the outbox changed one meanwhile, so
// a delivery deleted meanwhile is never brought back.
func (s *FileStore) rotateRecords(keys []string, primary string) (int, error) {
	for {
		old := map[string][]byte{}
		s.idx.mu.Lock()
		for _, k := range keys {
			if v, ok := s.idx.records[k]; ok && recordKeyID(v) != primary {
				old[k] = v
			}
		}
		s.idx.mu.Unlock()
		if len(old) == 0 {
			return 0, nil
		}
		recs := make([]Record, 0, len(old))
		for _, k := range keys {
			v, ok := old[k]
			if !ok {
				continue
			}
			pt, err := openRecord(s.opts.Keyring, k, v)
			if err != nil {
				return 0, err
			}
			recs = append(recs, Record{Key: k, Value: pt})
		}
		changes, err := s.recordChanges(recs)
		if err != nil {
			return 0, err
		}
		err = s.commit(changes, func() error {
			for k, v := range old {
				if cur, ok := s.idx.records[k]; !ok || !bytes.Equal(cur, v) {
					return errRetry
				}
			}
			return nil
		})
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("re-encrypting records: %w", err)
		}
		return len(recs), nil
	}
}
