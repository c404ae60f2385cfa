package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

// Encryption at rest (Options.Keyring). A sealed job is the job's JSON in
// which each secret-bearing field group — context, submitted_context and
// every result's output — is replaced by {"$sealed": ENVELOPE} (package
// seal), one AEAD seal per field bound to the job id and the field's name,
// and which carries "sealed_key": KEYID beside its other fields. Every other
// field (id, status, times, error, playbook, counters) stays as it was, so
// the index, listing filters, cleanup and operators' scripts read it
// without a key. The marker, not the shape of a value, says that a job is
// sealed: a plain job whose context happens to look like an envelope is
// read as the plain job it is.

const (
	sealedMarker   = "$sealed"
	sealedKeyField = "sealed_key"
)

// SealedError says why a sealed job (or record) cannot be read: its key is
// not configured, or a sealed field does not authenticate or is malformed.
// It never holds key material or plaintext.
type SealedError struct {
	JobID  string // the job; empty for a record
	Record string // the record's key, for a record
	KeyID  string // the key it is sealed with, when known
	Field  string // "context", "results.2.output", …
	// NoKeyring: no jobs.encryption_key_file is configured at all.
	NoKeyring bool
	Err       error // wraps seal.ErrNoKey, seal.ErrAuth or seal.ErrMalformed
}

func (e *SealedError) Error() string {
	what := "job " + e.JobID
	if e.JobID == "" {
		what = "record " + e.Record
	}
	switch {
	case errors.Is(e.Err, seal.ErrNoKey) && e.NoKeyring:
		return fmt.Sprintf("%s is encrypted with key id %s and no jobs.encryption_key_file is configured; configure the key file that holds that key", what, e.KeyID)
	case errors.Is(e.Err, seal.ErrNoKey):
		return fmt.Sprintf("%s is encrypted with key id %s, which jobs.encryption_key_file does not hold; add that key to the file (after the first line, which encrypts)", what, e.KeyID)
	case errors.Is(e.Err, seal.ErrAuth):
		return fmt.Sprintf("%s: its %s does not authenticate under key id %s: it was changed on disk or moved from another job or field; restore it from a backup", what, e.Field, e.KeyID)
	}
	return fmt.Sprintf("%s: its %s cannot be decrypted: %v", what, e.Field, e.Err)
}

func (e *SealedError) Unwrap() error { return e.Err }

// fieldSeal is one sealed field: the plaintext it seals and its envelope.
type fieldSeal struct {
	pt  []byte
	env string
}

// sealCache remembers the sealed fields of a running job's newest entry,
// so that its next update (one more result, typically) seals only what
// changed: a field whose plaintext is byte for byte the same keeps its
// envelope.
type sealCache struct {
	ctx, sub fieldSeal
	outs     []fieldSeal
}

func outputField(i int) string { return "results." + strconv.Itoa(i) + ".output" }

// sealJob encodes j with its secret-bearing fields sealed under kr's first
// key, checking each plaintext field as CheckEncoded would check it inside
// the job. prev, if set, offers envelopes to reuse.
func sealJob(j *job.Job, kr *seal.Keyring, prev *sealCache, maxBytes int) ([]byte, *sealCache, error) {
	c := &sealCache{}
	sealOne := func(dst *fieldSeal, old *fieldSeal, v any, field string, depth int) (map[string]any, error) {
		pt, err := job.AppendValue(nil, v)
		if err != nil {
			return nil, err
		}
		if err := job.CheckFragment(pt, depth); err != nil {
			return nil, err
		}
		if old != nil && old.env != "" && bytes.Equal(old.pt, pt) {
			*dst = *old
		} else {
			*dst = fieldSeal{pt: pt, env: kr.SealString(pt, j.ID, field)}
		}
		return map[string]any{sealedMarker: dst.env}, nil
	}
	sj := *j
	var err error
	var oldCtx, oldSub *fieldSeal
	if prev != nil {
		oldCtx, oldSub = &prev.ctx, &prev.sub
	}
	if j.Context != nil {
		if sj.Context, err = sealOne(&c.ctx, oldCtx, j.Context, "context", 2); err != nil {
			return nil, nil, err
		}
	}
	if j.SubmittedContext != nil {
		if sj.SubmittedContext, err = sealOne(&c.sub, oldSub, j.SubmittedContext, "submitted_context", 2); err != nil {
			return nil, nil, err
		}
	}
	if j.Results != nil {
		sj.Results = slices.Clone(j.Results)
		c.outs = make([]fieldSeal, len(j.Results))
		for i := range sj.Results {
			if sj.Results[i].Output == nil {
				continue
			}
			var old *fieldSeal
			if prev != nil && i < len(prev.outs) {
				old = &prev.outs[i]
			}
			if sj.Results[i].Output, err = sealOne(&c.outs[i], old, j.Results[i].Output, outputField(i), 4); err != nil {
				return nil, nil, err
			}
		}
	}
	raw, err := job.AppendJSON(nil, &sj)
	if err != nil {
		return nil, nil, err
	}
	raw = append(raw[:len(raw)-1], `,"`+sealedKeyField+`":"`...)
	raw = append(raw, kr.Primary()...)
	raw = append(raw, `"}`...)
	// The stored bytes, envelopes and all, are what must fit and read
	// back; the fields they seal were checked above.
	if err := job.CheckEncoded(raw, maxBytes); err != nil {
		return nil, nil, err
	}
	return raw, c, nil
}

// unsealJob replaces the sealed fields of j, decoded from an entry marked
// sealed with keyID, by their plaintext.
func unsealJob(j *job.Job, keyID string, kr *seal.Keyring) error {
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
	j, err := loadJob(e.raw)
	if err != nil || e.sealKey() == "" {
		return j, err
	}
	if err := unsealJob(j, e.sealKey(), s.opts.Keyring); err != nil {
		return nil, err
	}
	return j, nil
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
