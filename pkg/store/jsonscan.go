package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

type jsonScanner struct {
	data []byte
	i    int
}

// maxDepth matches encoding/json's nesting limit.
const maxDepth = 10000

func (p *jsonScanner) peek() byte {
	if p.i < len(p.data) {
		return p.data[p.i]
	}
	return 0
}

func (p *jsonScanner) fail(msg string) error {
	if p.i >= len(p.data) {
		return errors.New("unexpected end of JSON")
	}
	return fmt.Errorf("invalid JSON at byte %d: %s", p.i, msg)
}

func (p *jsonScanner) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScanner) value(depth int) error {
	if depth > maxDepth {
		return p.fail("nested too deeply")
	}
	switch c := p.peek(); {
	case c == '"':
		return p.str()
	case c == '{':
		p.i++
		p.space()
		if p.peek() == '}' {
			p.i++
			return nil
		}
		for {
			p.space()
			if err := p.str(); err != nil {
				return err
			}
			p.space()
			if p.peek() != ':' {
				return p.fail("expected ':'")
			}
			p.i++
			p.space()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.space()
			switch p.peek() {
			case ',':
				p.i++
			case '}':
				p.i++
				return nil
			default:
				return p.fail("expected ',' or '}'")
			}
		}
	case c == '[':
		p.i++
		p.space()
		if p.peek() == ']' {
			p.i++
			return nil
		}
		for {
			p.space()
			if err := p.value(depth + 1); err != nil {
				return err
			}
			p.space()
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return nil
			default:
				return p.fail("expected ',' or ']'")
			}
		}
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return p.fail("expected a value")
}

func (p *jsonScanner) literal(s string) error {
	if len(p.data)-p.i < len(s) || string(p.data[p.i:p.i+len(s)]) != s {
		return p.fail("invalid literal")
	}
	p.i += len(s)
	return nil
}

func (p *jsonScanner) digits() int {
	n := 0
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

func (p *jsonScanner) number() error {
	if p.peek() == '-' {
		p.i++
	}
	switch c := p.peek(); {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return p.fail("invalid number")
	}
	if p.peek() == '.' {
		p.i++
		if p.digits() == 0 {
			return p.fail("invalid number")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if p.digits() == 0 {
			return p.fail("invalid number")
		}
	}
	return nil
}

// str moves past a string, checking its escapes and that it holds no raw
// control characters. Like encoding/json, it accepts invalid UTF-8.
func (p *jsonScanner) str() error {
	if p.peek() != '"' {
		return p.fail("expected a string")
	}
	p.i++
	for p.i < len(p.data) {
		// Most bytes of a string need no attention; skip them eight at a
		// time, then one by one up to the next that does (opening a large
		// store spends most of its time here, much of it in the envelopes
		// of sealed jobs).
		for p.i+8 <= len(p.data) && !special8(binary.LittleEndian.Uint64(p.data[p.i:])) {
			p.i += 8
		}
		for p.i < len(p.data) && !strSpecial[p.data[p.i]] {
			p.i++
		}
		if p.i == len(p.data) {
			break
		}
		c := p.data[p.i]
		switch {
		case c == '"':
			p.i++
			return nil
		case c == '\\':
			p.i++
			switch p.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				p.i++
				for range 4 {
					if !isHex(p.peek()) {
						return p.fail("invalid \\u escape")
					}
					p.i++
				}
			default:
				return p.fail("invalid escape")
			}
		case c < 0x20:
			return p.fail("control character in string")
		default:
			p.i++
		}
	}
	return p.fail("unterminated string")
}

// decodeAny decodes one JSON value as encoding/json decodes it into an any
// (objects as map[string]any, arrays as []any, numbers as float64), about
// twice as fast: a sealed job's values are decoded so on every read.
func decodeAny(data []byte) (any, error) {
	p := jsonScanner{data: data}
	p.space()
	v, err := p.decode(1)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.data) {
		return nil, p.fail("unexpected data after the value")
	}
	return v, nil
}

func (p *jsonScanner) decode(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.fail("nested too deeply")
	}
	switch c := p.peek(); {
	case c == '"':
		return p.decodeString()
	case c == '{':
		p.i++
		m := map[string]any{}
		p.space()
		if p.peek() == '}' {
			p.i++
			return m, nil
		}
		for {
			p.space()
			k, err := p.decodeString()
			if err != nil {
				return nil, err
			}
			p.space()
			if p.peek() != ':' {
				return nil, p.fail("expected ':'")
			}
			p.i++
			p.space()
			v, err := p.decode(depth + 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
			p.space()
			switch p.peek() {
			case ',':
				p.i++
			case '}':
				p.i++
				return m, nil
			default:
				return nil, p.fail("expected ',' or '}'")
			}
		}
	case c == '[':
		p.i++
		a := []any{}
		p.space()
		if p.peek() == ']' {
			p.i++
			return a, nil
		}
		for {
			p.space()
			v, err := p.decode(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.space()
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return a, nil
			default:
				return nil, p.fail("expected ',' or ']'")
			}
		}
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		if err := p.number(); err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(p.data[start:p.i]), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s does not fit a float64", p.data[start:p.i])
		}
		return f, nil
	}
	return nil, p.fail("expected a value")
}

func (p *jsonScanner) decodeString() (string, error) {
	start := p.i
	if err := p.str(); err != nil {
		return "", err
	}
	return unquote(p.data[start:p.i])
}

// special8 reports whether any of the eight bytes of w is one strSpecial
// marks: below 0x20, a quote or a backslash. Each test sets the high bit of
// a byte that matches (and may set it in bytes above a match, which does
// not change the answer).
func special8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	ctl := (w - 0x20*ones) &^ w
	q := w ^ ('"' * ones)
	q = (q - ones) &^ q
	bs := w ^ ('\\' * ones)
	bs = (bs - ones) &^ bs
	return (ctl|q|bs)&highs != 0
}

// strSpecial marks the bytes that end a string or need checking inside one.
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
