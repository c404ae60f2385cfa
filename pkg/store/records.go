package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// RecordsFile holds the auxiliary records (see Record) as of the last
// snapshot, as one JSON object keyed by record key.
const RecordsFile = "secauto.state.json"

// Record is an auxiliary durable value kept beside the jobs and made
// durable through the same journal: the webhook outbox and the maintenance
// schedule live here, so an event is queued in the same write as the job
// change that caused it. Value must be JSON; nil deletes the key.
type Record struct {
	Key   string
	Value json.RawMessage
}

const (
	recRecord       byte = 'R'
	recRecordDelete byte = 'X'
)

func appendRecordBody(buf []byte, r *Record) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(r.Key)))
	buf = append(buf, r.Key...)
	return append(buf, r.Value...)
}

func decodeRecordBody(body []byte) (*Record, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || uint64(len(body)-k) < n {
		return nil, errors.New("record key length out of range")
	}
	key := string(body[k : k+int(n)])
	val := body[k+int(n):]
	if key == "" || !json.Valid(val) {
		return nil, fmt.Errorf("record %q does not hold JSON", key)
	}
	return &Record{Key: key, Value: val}, nil
}

// PutRecords stores records (Value nil deletes) durably, all in one write.
func (s *Store) PutRecords(recs ...Record) error {
	changes, err := recordChanges(recs)
	if err != nil || len(changes) == 0 {
		return err
	}
	return s.commit(changes, nil)
}

func recordChanges(recs []Record) ([]*change, error) {
	changes := make([]*change, 0, len(recs))
	for i := range recs {
		r := recs[i]
		if r.Key == "" {
			return nil, errors.New("record without key")
		}
		if r.Value != nil && !json.Valid(r.Value) {
			return nil, fmt.Errorf("record %q: value is not JSON", r.Key)
		}
		changes = append(changes, &change{id: r.Key, rec: &r})
	}
	return changes, nil
}

// Records returns the durable records whose keys start with prefix,
// sorted by key.
func (s *Store) Records(prefix string) []Record {
	s.mu.Lock()
	var out []Record
	for k, v := range s.records {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Record{Key: k, Value: v})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// readRecordsFile loads the records snapshot; a missing file is empty.
func readRecordsFile(dir string) (map[string][]byte, error) {
	data, err := readFileIfExists(filepath.Join(dir, RecordsFile))
	if err != nil || data == nil {
		return map[string][]byte{}, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", RecordsFile, err)
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		out[k] = v
	}
	return out, nil
}

func writeRecordsFile(dir string, recs map[string][]byte) error {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return writeFileAtomic(filepath.Join(dir, RecordsFile), func(w io.Writer) error {
		buf := []byte{'{'}
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, "\n"...)
			buf = appendQuoted(buf, k)
			buf = append(buf, ": "...)
			buf = append(buf, recs[k]...)
		}
		buf = append(buf, "\n}\n"...)
		_, err := w.Write(buf)
		return err
	})
}
