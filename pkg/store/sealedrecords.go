package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/secauto/secauto/pkg/seal"
)

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
