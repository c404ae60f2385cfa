package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// Encryption at rest (Options.Keyring). A sealed job is the job's JSON in
// which the secret-bearing fields — context, submitted_context and every
// result's output — are left out (context reads {"$sealed": true}, so that
// no reader takes it for an empty one; the others read null or, for
// submitted_context, are absent), and which carries two more fields at its
// end:
//
//	"sealed_key": KEYID, "sealed": ENVELOPE
//
// ENVELOPE (package seal) seals, in one AEAD seal, the JSON array
//
//	[CONTEXT, SUBMITTED_CONTEXT, OUTPUT_0, OUTPUT_1, …]
//
// of the values left out (null for an unset one), one output for each
// result. Its additional data binds the job id and the field name "sealed"
// followed by the results' step names (jobAAD): an envelope opens only in
// its own job, and its outputs only beside the results they were sealed
// with. Each value is checked where it is encoded as it would be inside the
// job, so the limits are those of a plain job. Every other field (id,
// status, times, error, playbook, counters, each result's step, status and
// error) stays as it was, so the index, listing filters, cleanup and
// operators' scripts read it without a key. The marker, not the shape of a
// value, says that a job is sealed: a plain job whose context happens to
// look sealed is read as the plain job it is.
//
// Jobs written by earlier releases have no "sealed" field: each of their
// secret-bearing fields is {"$sealed": ENVELOPE} itself, sealed apart and
// bound to the field's name ("context", "submitted_context",
// "results.2.output"). They are read as they are and written in the form
// above when they next change.

const (
	sealedMarker   = "$sealed"
	sealedKeyField = "sealed_key"
	// sealedField holds a job's envelope, and is the field name its
	// additional data binds (no per-field envelope has that name).
	sealedField = "sealed"
)

// sealedStub is what a sealed job's context reads in its plain part. It is
// shared and never changed.
var sealedStub = map[string]any{sealedMarker: true}

// sealedTail is what sealJob writes between the job's other fields and its
// envelope: sealedKeyOpen KEYID sealedEnvOpen ENVELOPE `"}`.
const (
	sealedKeyOpen = `,"` + sealedKeyField + `":"`
	sealedEnvOpen = `","` + sealedField + `":"`
)

// SealedError says why a sealed job (or record) cannot be read: its key is
// not configured, or a sealed field does not authenticate or is malformed.
// It never holds key material or plaintext.
type SealedError struct {
	JobID  string // the job; empty for a record
	Record string // the record's key, for a record
	KeyID  string // the key it is sealed with, when known
	// Field is what does not open: "sealed" (a job's envelope), or
	// "context", "results.2.output", …
	Field string
	// NoKeyring: no jobs.encryption_key_file is configured at all.
	NoKeyring bool
	Err       error // wraps seal.ErrNoKey, seal.ErrAuth or seal.ErrMalformed
}

func (e *SealedError) Error() string {
	what := "job " + e.JobID
	if e.JobID == "" {
		what = "record " + e.Record
	}
	field, does := "its "+e.Field, "does"
	if e.Field == sealedField && e.JobID != "" {
		field, does = `its encrypted fields ("sealed")`, "do"
	}
	switch {
	case errors.Is(e.Err, seal.ErrNoKey) && e.NoKeyring:
		return fmt.Sprintf("%s is encrypted with key id %s and no jobs.encryption_key_file is configured; configure the key file that holds that key", what, e.KeyID)
	case errors.Is(e.Err, seal.ErrNoKey):
		return fmt.Sprintf("%s is encrypted with key id %s, which jobs.encryption_key_file does not hold; add that key to the file (after the first line, which encrypts)", what, e.KeyID)
	case errors.Is(e.Err, seal.ErrAuth):
		return fmt.Sprintf("%s: %s %s not authenticate under key id %s: it was changed on disk or moved from another job or field; restore it from a backup", what, field, does, e.KeyID)
	}
	return fmt.Sprintf("%s: %s cannot be decrypted: %v", what, field, e.Err)
}

func (e *SealedError) Unwrap() error { return e.Err }

// sealCache is the sealed part of a job's newest entry: its plaintext and
// envelope, so that the job's next update keeps the envelope when the
// plaintext is byte for byte the same (a job starting, ending or linked to
// a rerun changes no secret-bearing field). Running entries keep one, as
// they keep their live job; Update gets one for other entries as it
// decrypts them.
type sealCache struct {
	keyID string
	aad   string // the field name it is sealed for (jobAAD)
	pt    []byte
	env   []byte // aliases the entry's raw, which never changes
}

func outputField(i int) string { return "results." + strconv.Itoa(i) + ".output" }

// bufPool holds the buffers a job's plaintext and plain part are built in
// (and decrypted into) before the stored bytes are assembled; larger ones
// than maxPooled are left to the collector.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooled = 1 << 20

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte, used []byte) {
	if cap(used) <= maxPooled {
		*b = used[:0]
		bufPool.Put(b)
	}
}

// appendSealedPart appends the plaintext that a job's envelope seals,
// checking each value as CheckEncoded would check it in the job.
func appendSealedPart(b []byte, j *job.Job) ([]byte, error) {
	value := func(b []byte, v any, depth int) ([]byte, error) {
		at := len(b)
		b, err := job.AppendValue(b, v)
		if err != nil {
			return nil, err
		}
		return b, job.CheckFragment(b[at:], depth)
	}
	var err error
	b = append(b, '[')
	if b, err = value(b, j.Context, 2); err != nil {
		return nil, err
	}
	b = append(b, ',')
	if b, err = value(b, j.SubmittedContext, 2); err != nil {
		return nil, err
	}
	for i := range j.Results {
		b = append(b, ',')
		if b, err = value(b, j.Results[i].Output, 4); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// jobAAD is the field name a job's envelope is sealed for: "sealed", then
// the step name of each result, each after its length.
func jobAAD(j *job.Job) string {
	if len(j.Results) == 0 {
		return sealedField
	}
	n := len(sealedField)
	for i := range j.Results {
		n += binary.MaxVarintLen64 + len(j.Results[i].Step)
	}
	b := make([]byte, 0, n)
	b = append(b, sealedField...)
	for i := range j.Results {
		b = binary.AppendUvarint(b, uint64(len(j.Results[i].Step)))
		b = append(b, j.Results[i].Step...)
	}
	return string(b)
}

// sealJob encodes j with its secret-bearing fields sealed under kr's first
// key, checking it as CheckEncoded would check its plain encoding. prev, if
// set, offers the envelope of the entry it replaces for reuse; with keep,
// the new entry's sealed part is returned for the next update.
func sealJob(j *job.Job, kr *seal.Keyring, prev *sealCache, keep bool, maxBytes int) ([]byte, *sealCache, error) {
	ptBuf := getBuf()
	pt, err := appendSealedPart((*ptBuf)[:0], j)
	if err != nil {
		return nil, nil, err
	}
	defer putBuf(ptBuf, pt)

	sj := *j
	sj.Context = sealedStub
	sj.SubmittedContext = nil
	if len(j.Results) > 0 {
		sj.Results = slices.Clone(j.Results)
		for i := range sj.Results {
			sj.Results[i].Output = nil
		}
	}
	plainBuf := getBuf()
	plain, err := job.AppendJSON((*plainBuf)[:0], &sj)
	if err != nil {
		return nil, nil, err
	}
	defer putBuf(plainBuf, plain)
	if err := job.CheckEncoded(plain, 0); err != nil {
		return nil, nil, err
	}

	// The step names are in the additional data, so an envelope kept is
	// one sealed for the same results.
	aad := jobAAD(j)
	reuse := prev != nil && prev.keyID == kr.Primary() && prev.aad == aad && bytes.Equal(prev.pt, pt)
	envLen := seal.EnvelopeLen(len(pt))
	if reuse {
		envLen = len(prev.env)
	}
	size := len(plain) - 1 + len(sealedKeyOpen) + len(kr.Primary()) + len(sealedEnvOpen) + envLen + len(`"}`)
	if maxBytes > 0 && size > maxBytes {
		return nil, nil, &job.LimitError{Limit: job.LimitJobBytes, Max: int64(maxBytes), Got: int64(size)}
	}
	raw := make([]byte, 0, size)
	raw = append(raw, plain[:len(plain)-1]...)
	raw = append(raw, sealedKeyOpen...)
	raw = append(raw, kr.Primary()...)
	raw = append(raw, sealedEnvOpen...)
	envAt := len(raw)
	if reuse {
		raw = append(raw, prev.env...)
	} else {
		raw = kr.Seal(raw, pt, j.ID, aad)
	}
	env := raw[envAt:len(raw):len(raw)]
	raw = append(raw, `"}`...)
	var c *sealCache
	if keep {
		c = &sealCache{keyID: kr.Primary(), aad: aad, pt: bytes.Clone(pt), env: env}
	}
	return raw, c, nil
}
