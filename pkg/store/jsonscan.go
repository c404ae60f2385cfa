package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

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
