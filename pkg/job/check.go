package job

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxDepth bounds the JSON nesting of a whole encoded job, the job object
// itself counting as 1. encoding/json refuses to decode anything nested
// more than 10000 deep, and a stored job it refuses is a job lost; 1000 is
// far below that and far above anything a real playbook, context or API
// answer needs.
const MaxDepth = 1000

// MaxValueDepth bounds the nesting of one value inside a job: a context
// value, a step param or a step output. The deepest place a job holds a
// value is inside a step's params (job, playbook, step, params: 4 levels
// around it); the rest of the margin is for wrappers a step adds around
// what it got, such as the http action's output object around a body.
const MaxValueDepth = MaxDepth - 8

// maxExponent is the largest decimal exponent of a finite float64: a JSON
// number beyond it cannot be decoded into an any (encoding/json fails
// with "cannot unmarshal number"), so a job holding one cannot be read.
const maxExponent = 308

// Limit names of the errors of CheckEncoded, CheckDepth and CheckValue.
const (
	LimitJobBytes  = "jobs.max_job_bytes"
	LimitDepth     = "JSON nesting depth"
	LimitNumberExp = "JSON number magnitude (decimal exponent)"
	LimitUTF8      = "JSON text must be valid UTF-8"
)

// CheckEncoded checks an encoded job (what AppendJSON produced) against
// everything that would keep the store from reading it back: at most
// maxBytes long (no bound when maxBytes <= 0), nested at most MaxDepth
// deep, valid UTF-8, no raw control character inside a string, and no
// number too large for a float64. It returns a *LimitError naming the
// limit broken.
//
// It does not check JSON syntax: AppendJSON produces valid JSON for any
// job (its fuzz test holds it to json.Valid), and a second full parse of
// every change costs more than this whole check. It is one pass over raw
// and allocates nothing unless it fails.
func CheckEncoded(raw []byte, maxBytes int) error {
	if maxBytes > 0 && len(raw) > maxBytes {
		return &LimitError{Limit: LimitJobBytes, Max: int64(maxBytes), Got: int64(len(raw))}
	}
	return scan(raw, MaxDepth)
}

// CheckFragment checks a value encoded apart from its job (AppendValue)
// as CheckEncoded would check it inside the job, where it sits at depth
// (the job object being depth 1, its context 2, a step output 4).
func CheckFragment(raw []byte, depth int) error {
	return scan(raw, MaxDepth-depth+1)
}

// CheckDepth reports, as a *LimitError, a JSON document nested more than
// max deep (the outermost object or array counts as 1). It reads raw once
// and checks nothing else, so it is cheap to run on an untrusted document
// before handing it to a decoder.
func CheckDepth(raw []byte, max int) error {
	if d := nesting(raw); d > max {
		return &LimitError{Limit: LimitDepth, Max: int64(max), Got: int64(d)}
	}
	return nil
}

// nesting returns the deepest nesting of objects and arrays in raw.
func nesting(raw []byte) int {
	depth, deepest := 0, 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			i = stringEnd(raw, i) - 1
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// CheckValue encodes v as a job stores it and checks that it fits in one:
// nested at most MaxValueDepth deep and, when maxBytes > 0, at most
// maxBytes long encoded. A value too large is a *LimitError whose Limit is
// limit, so the caller names its own budget.
func CheckValue(v any, limit string, maxBytes int) error {
	b, err := appendValue(nil, v)
	if err != nil {
		return err
	}
	if maxBytes > 0 && len(b) > maxBytes {
		return &LimitError{Limit: limit, Max: int64(maxBytes), Got: int64(len(b))}
	}
	return scan(b, MaxValueDepth)
}

// plainByte marks the bytes a string may hold that need no second look:
// printable ASCII other than the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scan is CheckEncoded without the size check.
func scan(raw []byte, maxDepth int) error {
	depth := 0
	n := len(raw)
	for i := 0; i < n; {
		c := raw[i]
		switch {
		case c == '"':
			i++
			for i < n {
				// Most bytes of a string are plain ASCII: skip them in a
				// tight loop, the rest below.
				for i < n && plainByte[raw[i]] {
					i++
				}
				if i >= n {
					break
				}
				c = raw[i]
				if c == '"' {
					break
				}
				switch {
				case c == '\\':
					i += 2 // every escape's second byte is ASCII
				case c < 0x20:
					return &LimitError{Limit: LimitUTF8, Got: int64(i), Detail: fmt.Sprintf("raw control character in a string at byte %d", i)}
				case c < utf8.RuneSelf:
					i++
				default:
					r, size := utf8.DecodeRune(raw[i:])
					if r == utf8.RuneError && size == 1 {
						return utf8Error(i)
					}
					i += size
				}
			}
			i++
		case c == '{' || c == '[':
			depth++
			if depth > maxDepth {
				// A second pass, on failure only, so the error says how
				// deep the document really is.
				return &LimitError{Limit: LimitDepth, Max: int64(maxDepth), Got: int64(nesting(raw))}
			}
			i++
		case c == '}' || c == ']':
			depth--
			i++
		case c == '-' || (c >= '0' && c <= '9'):
			start := i
			exp := false
			for i < n && isNumberByte(raw[i]) {
				exp = exp || raw[i] == 'e' || raw[i] == 'E'
				i++
			}
			// Only an exponent or more digits than a float64 has
			// decimal places can overflow; other numbers need no parse.
			if exp || i-start > maxExponent {
				if err := checkNumber(raw[start:i]); err != nil {
					return err
				}
			}
		case c >= utf8.RuneSelf:
			// Outside a string only a broken document has such a byte;
			// it is still not UTF-8 the decoder accepts.
			if r, size := utf8.DecodeRune(raw[i:]); r == utf8.RuneError && size == 1 {
				return utf8Error(i)
			}
			i++
		default:
			i++
		}
	}
	return nil
}

func utf8Error(i int) error {
	return &LimitError{Limit: LimitUTF8, Got: int64(i), Detail: fmt.Sprintf("invalid UTF-8 at byte %d", i)}
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// checkNumber refuses a number that overflows a float64, naming roughly
// its decimal exponent.
func checkNumber(num []byte) error {
	if _, err := strconv.ParseFloat(string(num), 64); err == nil {
		return nil
	} else if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
		return fmt.Errorf("%w: %q is not a JSON number", ErrInvalid, num)
	}
	return &LimitError{Limit: LimitNumberExp, Max: maxExponent, Got: decimalExponent(num)}
}

// decimalExponent estimates the power of ten of a JSON number's magnitude:
// its integer digits after leading zeros, minus one, plus its exponent.
func decimalExponent(num []byte) int64 {
	var digits, exp int64
	i := 0
	if i < len(num) && num[i] == '-' {
		i++
	}
	lead := true
	for ; i < len(num) && num[i] >= '0' && num[i] <= '9'; i++ {
		if lead && num[i] == '0' {
			continue
		}
		lead = false
		digits++
	}
	for ; i < len(num) && num[i] != 'e' && num[i] != 'E'; i++ {
	}
	if i < len(num) {
		e, err := strconv.ParseInt(string(num[i+1:]), 10, 64)
		if err != nil {
			// An exponent beyond int64 is the largest magnitude there is.
			return 1<<63 - 1
		}
		exp = e
	}
	return digits - 1 + exp
}

// stringEnd returns the index just past the string that starts with the
// quote at raw[i], or len(raw) when it never ends.
func stringEnd(raw []byte, i int) int {
	for i++; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(raw)
}
