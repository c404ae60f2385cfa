package store

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"path/filepath"
	"slices"

	"github.com/secauto/secauto/pkg/fsys"
)

// RecordsFile holds the auxiliary records (see Record) as of the last
// snapshot, checksummed.
const RecordsFile = "secauto.state.json"

// Record is an auxiliary durable value kept beside the jobs and made
// durable through the same journal: the webhook outbox and the maintenance
// schedule live here, so an event is queued in the same write as the job
// change that caused it. Value must be JSON; nil deletes the key.
type Record struct {
	Key   string
	Value json.RawMessage
}

// PutRecords stores records (Value nil deletes) durably, all in one write.
func (s *FileStore) PutRecords(recs ...Record) error {
	changes, err := s.recordChanges(recs)
	if err != nil || len(changes) == 0 {
		return err
	}
	return s.commit(changes, nil)
}

// recordChanges checks records and, with a keyring, seals their values:
// the webhook outbox holds whole jobs, contexts and outputs included.
func (s *FileStore) recordChanges(recs []Record) ([]*change, error) {
	changes := make([]*change, 0, len(recs))
	for i := range recs {
		r := recs[i]
		v, err := s.codec().SealRecord(r.Key, r.Value)
		if err != nil {
			return nil, err
		}
		r.Value = v
		changes = append(changes, &change{id: r.Key, rec: &r})
	}
	return changes, nil
}

// Records returns the durable records whose keys start with prefix,
// sorted by key, their values opened when sealed. A sealed record that
// cannot be opened is left out and logged.
func (s *FileStore) Records(prefix string) []Record {
	recs := s.idx.recordsWithPrefix(prefix)
	out := recs[:0]
	for _, r := range recs {
		v, err := openRecord(s.opts.Keyring, r.Key, r.Value)
		if err != nil {
			s.opts.Logger.Error("record skipped: it cannot be read", "record", r.Key, "err", err.Error())
			continue
		}
		out = append(out, Record{Key: r.Key, Value: v})
	}
	return out
}

// The records file is {"crc32c": "…", "records": {KEY: VALUE, …}}, the
// CRC-32C taken over the exact bytes of the records object, so rot inside a
// value that still parses is caught. A file without the wrapper (written
// before it existed) is read as the records object itself.
type recordsFile struct {
	CRC32C  string          `json:"crc32c"`
	Records json.RawMessage `json:"records"`
}

// readRecordsFile loads the records snapshot; a missing file is empty. An
// error means the file is damaged: its content cannot be trusted.
func readRecordsFile(fs fsys.FS, dir string) (map[string][]byte, error) {
	data, err := fsys.ReadFileIfExists(fs, filepath.Join(dir, RecordsFile))
	if err != nil || data == nil {
		return map[string][]byte{}, err
	}
	var wrap recordsFile
	if err := json.Unmarshal(data, &wrap); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", RecordsFile, err)
	}
	body := []byte(wrap.Records)
	if wrap.CRC32C == "" && wrap.Records == nil {
		body = data
	} else if got := fmt.Sprintf("%08x", crc32.Checksum(body, crcTable)); got != wrap.CRC32C {
		return nil, fmt.Errorf("%s: checksum mismatch (CRC-32C %s, recorded %s): the file changed on disk since secauto wrote it", RecordsFile, got, wrap.CRC32C)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", RecordsFile, err)
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		out[k] = v
	}
	return out, nil
}

func writeRecordsFile(fs fsys.FS, dir string, recs map[string][]byte) error {
	keys := slices.Sorted(maps.Keys(recs))
	body := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, "\n"...)
		body = appendQuoted(body, k)
		body = append(body, ": "...)
		body = append(body, recs[k]...)
	}
	body = append(body, "\n}"...)
	return fsys.WriteFileAtomic(fs, filepath.Join(dir, RecordsFile), fileMode, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "{\"crc32c\": \"%08x\", \"records\": %s}\n", crc32.Checksum(body, crcTable), body)
		return err
	})
}
