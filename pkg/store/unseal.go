package store

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/seal"
)

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
	raw, err := e.bytes()
	if err != nil {
		return nil, nil, err
	}
	if e.sealKey() == "" {
		j, err := loadJob(raw)
		return j, nil, err
	}
	return openSealed(raw, e.sealKey(), s.opts.Keyring, keep)
}
