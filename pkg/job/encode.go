package job

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the job's JSON to b. The bytes are exactly those
// json.Marshal produces, several times faster: every durable change
// encodes a job, so this is on the hot path of every write. Values of
// types other than those JSON decodes into (maps, slices, strings,
// float64, bool, nil, json.Number) and a few common ones go through
// encoding/json.
func AppendJSON(b []byte, j *Job) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendString(b, j.ID)
	b = append(b, `,"status":`...)
	b = appendString(b, string(j.Status))
	b = append(b, `,"playbook":`...)
	if j.Playbook == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range j.Playbook {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendStep(b, &j.Playbook[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"context":`...)
	if b, err = appendMap(b, j.Context); err != nil {
		return nil, err
	}
	b = append(b, `,"results":`...)
	if j.Results == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range j.Results {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendResult(b, &j.Results[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"error":`...)
	b = appendString(b, j.Error)
	b = append(b, `,"created_at":`...)
	if b, err = appendTime(b, j.CreatedAt); err != nil {
		return nil, err
	}
	if j.StartedAt != nil {
		b = append(b, `,"started_at":`...)
		if b, err = appendTime(b, *j.StartedAt); err != nil {
			return nil, err
		}
	}
	if j.CompletedAt != nil {
		b = append(b, `,"completed_at":`...)
		if b, err = appendTime(b, *j.CompletedAt); err != nil {
			return nil, err
		}
	}
	if j.OnInterrupt != "" {
		b = append(b, `,"on_interrupt":`...)
		b = appendString(b, j.OnInterrupt)
	}
	if j.MaxAttempts != 0 {
		b = append(b, `,"max_attempts":`...)
		b = strconv.AppendInt(b, int64(j.MaxAttempts), 10)
	}
	if j.Attempts != 0 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(j.Attempts), 10)
	}
	if j.SubmittedContext != nil {
		b = append(b, `,"submitted_context":`...)
		if b, err = appendMap(b, j.SubmittedContext); err != nil {
			return nil, err
		}
	}
	if j.RerunOf != "" {
		b = append(b, `,"rerun_of":`...)
		b = appendString(b, j.RerunOf)
	}
	if len(j.Reruns) > 0 {
		b = append(b, `,"reruns":[`...)
		for i, id := range j.Reruns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func appendStep(b []byte, s *Step) ([]byte, error) {
	var err error
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"action":`...)
	b = appendString(b, s.Action)
	if len(s.Params) > 0 {
		b = append(b, `,"params":`...)
		if b, err = appendMap(b, s.Params); err != nil {
			return nil, err
		}
	}
	if s.Timeout != "" {
		b = append(b, `,"timeout":`...)
		b = appendString(b, s.Timeout)
	}
	if s.ContinueOnError {
		b = append(b, `,"continue_on_error":true`...)
	}
	return append(b, '}'), nil
}

func appendResult(b []byte, r *Result) ([]byte, error) {
	var err error
	b = append(b, `{"step":`...)
	b = appendString(b, r.Step)
	b = append(b, `,"action":`...)
	b = appendString(b, r.Action)
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	b = append(b, `,"output":`...)
	if b, err = appendValue(b, r.Output); err != nil {
		return nil, err
	}
	b = append(b, `,"error":`...)
	b = appendString(b, r.Error)
	b = append(b, `,"started_at":`...)
	if b, err = appendTime(b, r.StartedAt); err != nil {
		return nil, err
	}
	if r.CompletedAt != nil {
		b = append(b, `,"completed_at":`...)
		if b, err = appendTime(b, *r.CompletedAt); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("time %v cannot be written as RFC 3339", t)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

func appendMap(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		if b, err = appendValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case float64:
		return appendFloat(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case json.Number:
		if v == "" {
			return append(b, '0'), nil
		}
	case map[string]any:
		return appendMap(b, v)
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		var err error
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

// appendFloat formats like encoding/json: shortest representation, with
// an exponent only for very small or very large magnitudes.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("unsupported value: %v", f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if m := len(b) - n; m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does, HTML-safe.
// plainASCII marks the bytes appendString copies as they are.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most bytes need no escaping; pass over them in a tight loop
		// (sealed values are kilobytes of base64).
		for i < len(s) && plainASCII[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendValue appends the JSON of one value held inside a job (a context,
// a step output) exactly as AppendJSON encodes it there.
func AppendValue(b []byte, v any) ([]byte, error) { return appendValue(b, v) }
