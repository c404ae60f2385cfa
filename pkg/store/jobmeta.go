package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// scanJobMeta checks that raw is exactly one valid JSON object and reads the
// fields the store indexes, in one pass. Opening a large store is mostly
// this, and it runs several times faster than encoding/json, which would
// validate the whole value and then decode it. It follows encoding/json's
// rules for what it reads: keys match case-insensitively, the last
// duplicate wins, times are parsed by time.Time's own UnmarshalJSON, and
// null leaves a field unset.
func scanJobMeta(raw []byte) (jobMeta, error) {
	var m jobMeta
	p := jsonScanner{data: raw}
	p.space()
	if p.i >= len(p.data) || p.data[p.i] != '{' {
		return m, errors.New("not a JSON object")
	}
	p.i++
	p.space()
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			p.space()
			kstart := p.i
			if err := p.str(); err != nil {
				return m, err
			}
			key := p.data[kstart+1 : p.i-1]
			p.space()
			if p.peek() != ':' {
				return m, p.fail("expected ':'")
			}
			p.i++
			p.space()
			vstart := p.i
			if err := p.value(1); err != nil {
				return m, err
			}
			if err := m.set(key, p.data[vstart:p.i]); err != nil {
				return m, err
			}
			p.space()
			c := p.peek()
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return m, p.fail("expected ',' or '}'")
			}
		}
	}
	p.space()
	if p.i != len(p.data) {
		return m, p.fail("unexpected data after the object")
	}
	return m, nil
}

func (m *jobMeta) set(key, val []byte) error {
	if strings.IndexByte(string(key), '\\') >= 0 {
		k, err := unquote(append(append([]byte{'"'}, key...), '"'))
		if err != nil {
			return err
		}
		key = []byte(k)
	} else if len(key) > len("completed_at") {
		return nil // no indexed field has a longer name
	}
	k := string(key)
	if k == sealedField {
		return nil // the envelope, the longest string of a sealed job: not indexed
	}
	str := func(dst *string, name string) error {
		if string(val) == "null" {
			return nil
		}
		if val[0] != '"' {
			return fmt.Errorf("%s is not a string", name)
		}
		s, err := unquote(val)
		*dst = s
		return err
	}
	tm := func(dst **time.Time, name string) error {
		if string(val) == "null" {
			*dst = nil
			return nil
		}
		var t time.Time
		if err := t.UnmarshalJSON(val); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*dst = &t
		return nil
	}
	switch {
	case strings.EqualFold(k, "id"):
		return str(&m.ID, "id")
	case strings.EqualFold(k, "status"):
		var s string
		err := str(&s, "status")
		if string(val) != "null" {
			m.Status = job.Status(s)
		}
		return err
	case strings.EqualFold(k, "created_at"):
		if string(val) == "null" {
			return nil
		}
		return m.CreatedAt.UnmarshalJSON(val)
	case strings.EqualFold(k, "started_at"):
		return tm(&m.StartedAt, "started_at")
	case strings.EqualFold(k, "completed_at"):
		return tm(&m.CompletedAt, "completed_at")
	case strings.EqualFold(k, sealedKeyField):
		if string(val) == "null" {
			return nil
		}
		id, ok := keyIDs.intern(val)
		if !ok {
			return fmt.Errorf("%s is not a key id of 8 hex digits", sealedKeyField)
		}
		m.SealedKey = id
	}
	return nil
}

// keyIDs interns the key ids of sealed jobs: a store holds millions of jobs
// sealed with a handful of keys, which then share one string each.
var keyIDs internedIDs

type internedIDs struct {
	mu  sync.Mutex
	ids atomic.Pointer[[]string]
}

// intern returns the key id that the JSON string quoted names, and false
// when it is not 8 lower-case hex digits (escapes included: a key id
// needs none).
func (x *internedIDs) intern(quoted []byte) (string, bool) {
	if len(quoted) != 10 || quoted[0] != '"' || quoted[9] != '"' {
		return "", false
	}
	id := quoted[1:9]
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	if p := x.ids.Load(); p != nil {
		for _, s := range *p {
			if s == string(id) {
				return s, true
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var ids []string
	if p := x.ids.Load(); p != nil {
		ids = *p
	}
	for _, s := range ids {
		if s == string(id) {
			return s, true
		}
	}
	s := string(id)
	if len(ids) < 64 { // a bound, should a file name endless keys
		ids = append(slices.Clip(ids), s)
		x.ids.Store(&ids)
	}
	return s, true
}
