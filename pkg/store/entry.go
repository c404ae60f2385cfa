package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// entry is a stored job: where its JSON is, exactly as it is written to
// jobs.json and the journal, plus the few fields that listing and cleanup
// need. Keeping the encoded form means a snapshot never re-encodes a job
// that did not change.
//
// The JSON is in memory (raw) for a job changed since the last snapshot,
// and otherwise only in jobs.json (snap, off, size, crc), read back when
// the job is shown or changed, as Bitcask keeps a key directory and reads
// values from its files. Memory then grows with what changed recently and
// with the number of jobs, not with the bytes of the history kept.
type entry struct {
	raw       []byte
	status    job.Status
	created   int64 // unix nanoseconds
	completed int64 // unix nanoseconds; 0 when unset
	// more is nil for a plain job that is not running, which is most of a
	// large store.
	more *entryMore
	snap *snapFile
	off  int64
	size uint32
	crc  uint32 // CRC-32C of the bytes at off, as jobs.json.sum records it
}

// entryMore is what only running and sealed jobs need.
type entryMore struct {
	// live is the decoded job of a running entry written by Update, kept
	// so the job's next updates (its step results and its end) copy it
	// instead of decoding raw again. It is never modified.
	live *job.Job
	// keyID is the key a sealed job's fields are sealed with ("" for a
	// plain job); seals, for a live entry, its sealed part to reuse.
	keyID string
	seals *sealCache
}

// bytes returns the job's JSON, from memory or read back from jobs.json
// and checked against its checksum: a job whose bytes changed on disk
// since secauto wrote them is an error naming the file, never a wrong job.
// The result must not be modified.
func (e *entry) bytes() ([]byte, error) {
	if e.snap == nil {
		return e.raw, nil
	}
	return e.snap.read(e.off, e.size, e.crc)
}

// bodySize is the length of the job's JSON.
func (e *entry) bodySize() int {
	if e.snap == nil {
		return len(e.raw)
	}
	return int(e.size)
}

// inFile is e with its JSON at off in sf instead of in memory.
func (e *entry) inFile(sf *snapFile, off int64, size int, crc uint32) *entry {
	n := *e
	n.raw, n.snap, n.off, n.size, n.crc = nil, sf, off, uint32(size), crc
	return &n
}

func (e *entry) extra() *entryMore {
	if e.more == nil {
		e.more = &entryMore{}
	}
	return e.more
}

// The accessors of more's fields; each is the zero value when more is nil.
func (e *entry) liveJob() *job.Job {
	if e.more == nil {
		return nil
	}
	return e.more.live
}

func (e *entry) sealKey() string {
	if e.more == nil {
		return ""
	}
	return e.more.keyID
}

func (e *entry) sealCache() *sealCache {
	if e.more == nil {
		return nil
	}
	return e.more.seals
}

type keyed struct {
	id string
	e  *entry
}

// jobMeta is the part of a job that the store indexes.
type jobMeta struct {
	ID          string     `json:"id"`
	Status      job.Status `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	SealedKey   string     `json:"sealed_key"`
}

// decodeEntry indexes one job's JSON and checks its invariants. A job that
// secauto wrote and whose checksum still holds was checked in full when it
// was written, so only what the index needs is read (opening a large store
// is mostly this). A strict decode checks the whole job schema: for files
// written by hand, and for any whose checksum no longer vouches for them.
func decodeEntry(raw []byte, strict bool) (string, *entry, error) {
	m, err := scanJobMeta(raw)
	if err != nil {
		return "", nil, fmt.Errorf("not a valid job: %w", err)
	}
	if err := job.CheckInvariants(m.ID, m.Status, m.CreatedAt, m.StartedAt, m.CompletedAt); err != nil {
		return m.ID, nil, err
	}
	if strict {
		if _, err := decodeJob(raw); err != nil {
			return m.ID, nil, err
		}
	}
	if bytes.IndexByte(raw, '\n') >= 0 {
		// Hand-written or indented files: keep one job per line in jobs.json.
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return m.ID, nil, err
		}
		raw = buf.Bytes()
	}
	e := newEntry(raw, m.Status, m.CreatedAt, m.CompletedAt)
	if m.SealedKey != "" {
		e.extra().keyID = m.SealedKey
	}
	return m.ID, e, nil
}

// decodeJob decodes a stored job, checking it against the whole job schema.
func decodeJob(raw []byte) (*job.Job, error) {
	return job.Decode(raw)
}

// loadJob decodes a job of the index. Every entry there was checked
// against the whole schema when it was loaded or written, so reads and
// updates skip the check (it costs twice the decoding); verify does not.
func loadJob(raw []byte) (*job.Job, error) {
	var j job.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	return &j, nil
}

func newEntry(raw []byte, st job.Status, created time.Time, completed *time.Time) *entry {
	e := &entry{raw: raw, status: internStatus(st), created: created.UnixNano()}
	if completed != nil {
		e.completed = completed.UnixNano()
	}
	return e
}

func internStatus(st job.Status) job.Status {
	for _, s := range job.Statuses {
		if s == st {
			return s
		}
	}
	return st
}

// jobProblem is a job in a snapshot that breaks an invariant.
type jobProblem struct {
	id  string
	err error
}
