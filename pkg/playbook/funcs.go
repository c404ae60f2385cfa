package playbook

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

// templateFuncs are the functions templates may call beyond text/template's
// built-ins. Validation parses with the same set, so a playbook accepted at
// submission never fails to parse at run time. None of them loops over its
// input beyond a single pass, so the checks between template actions bound
// their time too.
var templateFuncs = template.FuncMap{
	"json":        toJSON,
	"optional":    optional,
	"default":     defaultValue,
	optionalKeyFn: optionalKey,
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return string(b), nil
}

// funcs returns the functions of one render that build strings, each
// refusing before it allocates a result its arguments make larger than the
// budget. Without them a template that writes nothing could still double a
// variable until the daemon runs out of memory. They replace the built-ins
// of the same names, which a template's own functions take precedence over.
func (e *renderEnv) funcs(param string) template.FuncMap {
	return template.FuncMap{
		"print":    e.bounded(param, fmt.Sprint),
		"println":  e.bounded(param, fmt.Sprintln),
		"html":     e.bounded(param, template.HTMLEscaper),
		"js":       e.bounded(param, template.JSEscaper),
		"urlquery": e.bounded(param, template.URLQueryEscaper),
		"printf": func(format string, args ...any) (string, error) {
			if err := e.fits(param, len(format)+formatPadding(format, args)+sizeOfAll(args, e.maxBytes)); err != nil {
				return "", err
			}
			return e.result(param, fmt.Sprintf(format, args...))
		},
		"json": func(v any) (string, error) {
			if err := e.fits(param, sizeOf(v, e.maxBytes)); err != nil {
				return "", err
			}
			s, err := toJSON(v)
			if err != nil {
				return "", err
			}
			return e.result(param, s)
		},
	}
}

// bounded wraps f, whose result is a few times the printed size of its
// arguments at most (escaping), so checking them first bounds what it
// allocates.
func (e *renderEnv) bounded(param string, f func(...any) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		if err := e.fits(param, sizeOfAll(args, e.maxBytes)); err != nil {
			return "", err
		}
		return e.result(param, f(args...))
	}
}

// fits checks the context and whether a result of about n bytes fits.
func (e *renderEnv) fits(param string, n int) error {
	if err := e.check(param); err != nil {
		return err
	}
	if n > e.maxBytes {
		return e.overBudget(param)
	}
	return nil
}

// result refuses a function result larger than the budget: it would fail
// the render once written, and kept in a variable it could grow further.
func (e *renderEnv) result(param, s string) (string, error) {
	if len(s) > e.maxBytes {
		return "", e.overBudget(param)
	}
	return s, nil
}

// sizeOfAll estimates the printed size of args, stopping once past limit.
func sizeOfAll(args []any, limit int) int {
	n := 0
	for _, a := range args {
		n += sizeOf(a, limit-n) + 1
		if n > limit {
			break
		}
	}
	return n
}

// sizeOf estimates the printed size of a template value (strings, numbers,
// booleans and the maps and arrays of decoded JSON), stopping once past
// limit so that sizing a huge value costs no more than the budget.
func sizeOf(v any, limit int) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case map[string]any:
		n := 2
		for k, e := range x {
			n += len(k) + 2 + sizeOf(e, limit-n)
			if n > limit {
				break
			}
		}
		return n
	case []any:
		n := 2
		for _, e := range x {
			n += 1 + sizeOf(e, limit-n)
			if n > limit {
				break
			}
		}
		return n
	}
	return 8
}

// formatPadding is how much a format's widths and precisions can add to
// its output; fmt honours up to a million for each. A width or precision
// taken from the arguments (%*d) is counted as the largest integer argument.
func formatPadding(format string, args []any) int {
	pad := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		// The verb's flags, argument indexes, width and precision run up
		// to its letter.
		n := 0
		for i++; i < len(format) && strings.IndexByte("0123456789.*+-# []", format[i]) >= 0; i++ {
			switch c := format[i]; {
			case c >= '0' && c <= '9':
				n = min(n*10+int(c-'0'), maxFmtWidth)
				continue
			case c == '*':
				pad += largestInt(args)
			}
			pad += n
			n = 0
		}
		pad += n
	}
	return pad
}

// maxFmtWidth is the largest width or precision fmt accepts.
const maxFmtWidth = 1e6

func largestInt(args []any) int {
	m := 0
	for _, a := range args {
		var n int64
		switch x := a.(type) {
		case int:
			n = int64(x)
		case int64:
			n = x
		}
		m = max(m, int(min(max(n, -n), maxFmtWidth)))
	}
	return m
}
