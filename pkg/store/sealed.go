package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
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

// splitSealed finds the envelope of a sealed job where sealJob writes it,
// last: it returns the job's plain part without the envelope (ending
// where the closing brace belongs) and the envelope. ok is false when raw
// does not end so, as for a job of an earlier release.
func splitSealed(raw []byte) (plain, env []byte, ok bool) {
	n := len(raw)
	if n < 2 || raw[n-1] != '}' || raw[n-2] != '"' {
		return nil, nil, false
	}
	// An envelope holds no quote or backslash, so the quote before the
	// last one opens it; in a valid JSON object (every entry is one) the
	// member before the closing brace is then "sealed" itself.
	q := bytes.LastIndexByte(raw[:n-2], '"')
	const open = `,"` + sealedField + `":"`
	if q < 0 || !bytes.HasSuffix(raw[:q+1], []byte(open)) {
		return nil, nil, false
	}
	env = raw[q+1 : n-2]
	if bytes.IndexByte(env, '\\') >= 0 {
		return nil, nil, false
	}
	return raw[:q+1-len(open)], env, true
}

// openSealed decodes a sealed job, from its entry's raw bytes, marked
// sealed with keyID. With keep, it also returns its sealed part for an
// update to reuse.
func openSealed(raw []byte, keyID string, kr *seal.Keyring, keep bool) (*job.Job, *sealCache, error) {
	plain, env, ok := splitSealed(raw)
	if !ok {
		var w struct {
			job.Job
			Sealed *string `json:"sealed"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, nil, fmt.Errorf("decode stored job: %w", err)
		}
		j := &w.Job
		if w.Sealed == nil {
			return j, nil, unsealFields(j, keyID, kr)
		}
		c, err := unsealPart(j, []byte(*w.Sealed), keyID, kr, keep)
		return j, c, err
	}
	b := getBuf()
	buf := append(append((*b)[:0], plain...), '}')
	j, err := loadJob(buf)
	putBuf(b, buf)
	if err != nil {
		return nil, nil, err
	}
	c, err := unsealPart(j, env, keyID, kr, keep)
	return j, c, err
}

// unsealJob replaces the sealed fields of j, decoded from raw (an entry
// marked sealed with keyID), by their plaintext.
func unsealJob(j *job.Job, raw []byte, keyID string, kr *seal.Keyring) error {
	_, env, ok := splitSealed(raw)
	if !ok {
		var w struct {
			Sealed *string `json:"sealed"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return fmt.Errorf("decode stored job: %w", err)
		}
		if w.Sealed == nil {
			return unsealFields(j, keyID, kr)
		}
		env = []byte(*w.Sealed)
	}
	_, err := unsealPart(j, env, keyID, kr, false)
	return err
}

// isStub reports whether v is what a sealed job's context reads in plain.
func isStub(v map[string]any) bool {
	return len(v) == 1 && v[sealedMarker] == true
}

// unsealPart opens env, the envelope of j, and puts back the fields it
// seals, which j must hold as sealJob leaves them.
func unsealPart(j *job.Job, env []byte, keyID string, kr *seal.Keyring, keep bool) (*sealCache, error) {
	fail := func(field string, err error) error {
		return &SealedError{JobID: j.ID, KeyID: keyID, Field: field, NoKeyring: kr == nil, Err: err}
	}
	notSealed := func(field string) error {
		return fail(field, fmt.Errorf("%w: the job is marked sealed but this field is not", seal.ErrMalformed))
	}
	// What the envelope holds replaces these, so they must hold nothing
	// that would be lost.
	if !isStub(j.Context) {
		return nil, notSealed("context")
	}
	if j.SubmittedContext != nil {
		return nil, notSealed("submitted_context")
	}
	for i := range j.Results {
		if j.Results[i].Output != nil {
			return nil, notSealed(outputField(i))
		}
	}
	b := getBuf()
	buf := *b
	if cap(buf) < len(env) {
		buf = make([]byte, 0, len(env)) // more than the plaintext takes
	}
	defer putBuf(b, buf)
	aad := jobAAD(j)
	pt, err := kr.OpenBytes(buf, env, j.ID, aad)
	if err != nil {
		if id, ierr := seal.EnvelopeKeyID(string(env[:min(len(env), 16)])); ierr == nil {
			keyID = id
		}
		return nil, fail(sealedField, err)
	}
	v, err := decodeAny(pt)
	vals, _ := v.([]any)
	if err != nil || len(vals) != 2+len(j.Results) {
		return nil, fail(sealedField, fmt.Errorf("%w: the plaintext is not the job's encrypted fields", seal.ErrMalformed))
	}
	ctx, ok1 := vals[0].(map[string]any)
	sub, ok2 := vals[1].(map[string]any)
	if !ok1 && vals[0] != nil || !ok2 && vals[1] != nil {
		return nil, fail(sealedField, fmt.Errorf("%w: the plaintext is not the job's encrypted fields", seal.ErrMalformed))
	}
	j.Context, j.SubmittedContext = ctx, sub
	for i := range j.Results {
		j.Results[i].Output = vals[2+i]
	}
	if !keep {
		return nil, nil
	}
	// The key is the one the envelope names (which opened it), whatever
	// sealed_key says.
	id, _ := seal.EnvelopeKeyID(string(env[:min(len(env), 16)]))
	return &sealCache{keyID: id, aad: aad, pt: bytes.Clone(pt), env: env}, nil
}

// unsealFields replaces the sealed fields of j, decoded from an entry of an
// earlier release marked sealed with keyID, each an envelope of its own,
// by their plaintext.
func unsealFields(j *job.Job, keyID string, kr *seal.Keyring) error {
	fail := func(field string, err error) error {
		return &SealedError{JobID: j.ID, KeyID: keyID, Field: field, NoKeyring: kr == nil, Err: err}
	}
	open := func(v any, field string, dst any) error {
		m, ok := v.(map[string]any)
		env, isStr := m[sealedMarker].(string)
		if !ok || !isStr || len(m) != 1 {
			return fail(field, fmt.Errorf("%w: the job is marked sealed but this field is not", seal.ErrMalformed))
		}
		pt, err := kr.Open(env, j.ID, field)
		if err != nil {
			if id, ierr := seal.EnvelopeKeyID(env); ierr == nil {
				return &SealedError{JobID: j.ID, KeyID: id, Field: field, NoKeyring: kr == nil, Err: err}
			}
			return fail(field, err)
		}
		if err := json.Unmarshal(pt, dst); err != nil {
			return fail(field, fmt.Errorf("%w: the plaintext is not JSON", seal.ErrMalformed))
		}
		return nil
	}
	if j.Context != nil {
		var m map[string]any
		if err := open(j.Context, "context", &m); err != nil {
			return err
		}
		j.Context = m
	}
	if j.SubmittedContext != nil {
		var m map[string]any
		if err := open(j.SubmittedContext, "submitted_context", &m); err != nil {
			return err
		}
		if m == nil {
			m = map[string]any{}
		}
		j.SubmittedContext = m
	}
	for i := range j.Results {
		if j.Results[i].Output == nil {
			continue
		}
		var v any
		if err := open(j.Results[i].Output, outputField(i), &v); err != nil {
			return err
		}
		j.Results[i].Output = v
	}
	return nil
}

// readJob decodes the job of an index entry, opening its sealed fields.
func (s *FileStore) readJob(e *entry) (*job.Job, error) {
	j, _, err := s.readEntry(e, false)
	return j, err
}

// readEntry is readJob that, with keep, also returns the sealed part of a
// sealed entry for the update that reads it to reuse.
func (s *FileStore) readEntry(e *entry, keep bool) (*job.Job, *sealCache, error) {
	if e.sealKey() == "" {
		j, err := loadJob(e.raw)
		return j, nil, err
	}
	return openSealed(e.raw, e.sealKey(), s.opts.Keyring, keep)
}

// A sealed record's value is {"$sealed": ENVELOPE}, bound to the record's
// key with the field name "record" (no job field has that name).
const (
	recordField  = "record"
	sealedPrefix = `{"` + sealedMarker + `":"` + seal.Version + ":"
)

func sealRecord(kr *seal.Keyring, key string, v []byte) []byte {
	b := append([]byte(nil), `{"`+sealedMarker+`":"`...)
	b = kr.Seal(b, v, key, recordField)
	return append(b, `"}`...)
}

// recordKeyID is the key id a sealed record value names, "" for a plain
// one.
func recordKeyID(v []byte) string {
	if !bytes.HasPrefix(v, []byte(sealedPrefix)) {
		return ""
	}
	id, err := seal.EnvelopeKeyID(string(v[len(sealedPrefix)-len(seal.Version)-1:]))
	if err != nil {
		return ""
	}
	return id
}

// openRecord returns a record's plain value: v itself unless sealed.
func openRecord(kr *seal.Keyring, key string, v []byte) ([]byte, error) {
	if !bytes.HasPrefix(v, []byte(sealedPrefix)) {
		return v, nil
	}
	var m map[string]string
	if err := json.Unmarshal(v, &m); err != nil || len(m) != 1 {
		return nil, &SealedError{Record: key, Field: recordField, NoKeyring: kr == nil, Err: fmt.Errorf("%w: not a sealed record", seal.ErrMalformed)}
	}
	env := m[sealedMarker]
	id, _ := seal.EnvelopeKeyID(env)
	pt, err := kr.Open(env, key, recordField)
	if err != nil {
		return nil, &SealedError{Record: key, KeyID: id, Field: recordField, NoKeyring: kr == nil, Err: err}
	}
	return pt, nil
}

// keyIDsOf lists the distinct keys that entries are sealed with, sorted.
func keyIDsOf(entries iter.Seq[*entry]) []string {
	var ids []string
	for e := range entries {
		if k := e.sealKey(); k != "" && !slices.Contains(ids, k) {
			ids = append(ids, k)
		}
	}
	slices.Sort(ids)
	return ids
}

// entriesOf yields the entries of items.
func entriesOf(items []keyed) iter.Seq[*entry] {
	return func(yield func(*entry) bool) {
		for _, it := range items {
			if !yield(it.e) {
				return
			}
		}
	}
}

// noteSealed counts the sealed jobs Open found and those it cannot read
// for want of their key, for the OpenReport.
func (s *FileStore) noteSealed() {
	kr := s.opts.Keyring
	for _, e := range s.idx.jobs {
		if e.sealKey() == "" {
			continue
		}
		s.report.SealedJobs++
		if kr == nil || !kr.Has(e.sealKey()) {
			s.report.UnreadableJobs++
			if !slices.Contains(s.report.MissingKeyIDs, e.sealKey()) {
				s.report.MissingKeyIDs = append(s.report.MissingKeyIDs, e.sealKey())
			}
		}
	}
	slices.Sort(s.report.MissingKeyIDs)
	if s.report.UnreadableJobs > 0 {
		s.opts.Logger.Error(MissingKeysMessage(s.report, kr != nil), "missing_key_ids", s.report.MissingKeyIDs, "jobs", s.report.UnreadableJobs)
	}
}

// MissingKeysMessage is the sentence that tells an operator the store holds
// jobs it cannot read for want of their keys (an OpenReport with
// UnreadableJobs), and what to do.
func MissingKeysMessage(r OpenReport, keyring bool) string {
	ids := strings.Join(r.MissingKeyIDs, ", ")
	if !keyring {
		return fmt.Sprintf("%d jobs are encrypted (key id %s) and no jobs.encryption_key_file is configured; their contexts and outputs cannot be read until the key file that holds those keys is configured", r.UnreadableJobs, ids)
	}
	return fmt.Sprintf("%d jobs are encrypted with key id %s, which jobs.encryption_key_file does not hold; their contexts and outputs cannot be read until those keys are added to it", r.UnreadableJobs, ids)
}
