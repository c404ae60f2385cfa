package job

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Decode reads a stored job and checks it against the whole job schema,
// returning an error that names the field (ErrInvalid, or a *LimitError
// for the limits of CheckEncoded other than size).
//
// Every field must have its JSON type: a string where a string is due, an
// RFC 3339 time for the times, an integer for the counters. encoding/json
// alone would let "status": null, "error": null or "ID" (keys match
// case-insensitively) through as zero values or the wrong field; Decode
// does not. What it accepts besides the exact output of AppendJSON:
//
//   - null or an absent key for playbook, context and results (an empty
//     one: AppendJSON writes null for a nil one), for started_at and
//     completed_at (unset, as the job format allows), for a step's params,
//     timeout and continue_on_error, a result's output and completed_at,
//     and for on_interrupt, max_attempts, attempts, submitted_context,
//     rerun_of and reruns (all omitted when unset);
//   - an absent error, on a job or a result (no error);
//   - keys it does not know, which it ignores, as earlier releases did:
//     the job format welcomes extra fields, and a newer release's job must
//     not be refused by an older one;
//   - times with any UTC offset: they name one instant all the same.
//
// A key given twice is an error, since decoders disagree on which wins.
// The decoded job then passes Validate.
func Decode(raw []byte) (*Job, error) {
	if err := scan(raw, MaxDepth); err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		return nil, invalid("not valid JSON: %v", err)
	}
	var j Job
	err := members(raw, "job", func(key string, v []byte) error {
		var err error
		switch key {
		case "id":
			j.ID, err = str(v, key, false)
		case "status":
			var s string
			s, err = str(v, key, false)
			j.Status = Status(s)
		case "playbook":
			j.Playbook, err = decodeSteps(v)
		case "context":
			if v[0] != 'n' {
				if v[0] != '{' {
					return invalid("context must be an object, not %s", kind(v))
				}
				err = json.Unmarshal(v, &j.Context)
			}
		case "results":
			j.Results, err = decodeResults(v)
		case "error":
			j.Error, err = str(v, key, false)
		case "created_at":
			j.CreatedAt, err = timeField(v, key)
		case "started_at":
			j.StartedAt, err = optTime(v, key)
		case "completed_at":
			j.CompletedAt, err = optTime(v, key)
		case "on_interrupt":
			j.OnInterrupt, err = str(v, key, true)
		case "max_attempts":
			j.MaxAttempts, err = integer(v, key)
		case "attempts":
			j.Attempts, err = integer(v, key)
		case "submitted_context":
			if v[0] != 'n' {
				if v[0] != '{' {
					return invalid("submitted_context must be an object, not %s", kind(v))
				}
				err = json.Unmarshal(v, &j.SubmittedContext)
			}
		case "rerun_of":
			j.RerunOf, err = str(v, key, true)
		case "reruns":
			j.Reruns, err = decodeIDs(v, key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return &j, nil
}

// decodeIDs decodes an array of job ids, or null (none).
func decodeIDs(v []byte, path string) ([]string, error) {
	if v[0] == 'n' {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, invalid("%s must be an array of job ids, not %s", path, kind(v))
	}
	var ids []string
	err := elements(v, func(i int, e []byte) error {
		id, err := str(e, path+"["+strconv.Itoa(i)+"]", false)
		ids = append(ids, id)
		return err
	})
	return ids, err
}

func decodeSteps(v []byte) ([]Step, error) {
	if v[0] == 'n' {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, invalid("playbook must be an array of steps, not %s", kind(v))
	}
	steps := []Step{}
	err := elements(v, func(i int, e []byte) error {
		path := "playbook[" + strconv.Itoa(i) + "]"
		var s Step
		err := members(e, path, func(key string, v []byte) error {
			var err error
			switch key {
			case "name":
				s.Name, err = str(v, path+".name", false)
			case "action":
				s.Action, err = str(v, path+".action", false)
			case "params":
				if v[0] != 'n' {
					if v[0] != '{' {
						return invalid("%s.params must be an object, not %s", path, kind(v))
					}
					err = json.Unmarshal(v, &s.Params)
				}
			case "timeout":
				s.Timeout, err = str(v, path+".timeout", true)
			case "continue_on_error":
				switch v[0] {
				case 't':
					s.ContinueOnError = true
				case 'f', 'n':
				default:
					return invalid("%s.continue_on_error must be true or false, not %s", path, kind(v))
				}
			}
			return err
		})
		steps = append(steps, s)
		return err
	})
	return steps, err
}

func decodeResults(v []byte) ([]Result, error) {
	if v[0] == 'n' {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, invalid("results must be an array of step results, not %s", kind(v))
	}
	results := []Result{}
	err := elements(v, func(i int, e []byte) error {
		path := "results[" + strconv.Itoa(i) + "]"
		var r Result
		started := false
		err := members(e, path, func(key string, v []byte) error {
			var err error
			switch key {
			case "step":
				r.Step, err = str(v, path+".step", false)
			case "action":
				r.Action, err = str(v, path+".action", false)
			case "status":
				r.Status, err = str(v, path+".status", false)
			case "output":
				err = json.Unmarshal(v, &r.Output)
			case "error":
				r.Error, err = str(v, path+".error", false)
			case "started_at":
				r.StartedAt, err = timeField(v, path+".started_at")
				started = true
			case "completed_at":
				r.CompletedAt, err = optTime(v, path+".completed_at")
			}
			return err
		})
		if err == nil && !started {
			err = invalid("%s.started_at is missing", path)
		}
		results = append(results, r)
		return err
	})
	return results, err
}

// kind names the JSON type of a value for error messages.
func kind(v []byte) string {
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// str decodes a string value; null is accepted (as "") only when nullable.
func str(v []byte, path string, nullable bool) (string, error) {
	if v[0] == 'n' && nullable {
		return "", nil
	}
	if v[0] != '"' {
		return "", invalid("%s must be a string, not %s", path, kind(v))
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

// timeField decodes a time. time.Time's UnmarshalText insists on RFC 3339
// exactly (time.Parse with time.RFC3339 is laxer); null is not a time.
func timeField(v []byte, path string) (time.Time, error) {
	s, err := str(v, path, false)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if err := t.UnmarshalText([]byte(s)); err != nil {
		return time.Time{}, invalid("%s %q is not an RFC 3339 time", path, s)
	}
	return t, nil
}

func optTime(v []byte, path string) (*time.Time, error) {
	if v[0] == 'n' {
		return nil, nil
	}
	t, err := timeField(v, path)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// integer decodes a counter: a whole number that fits an int, or null (0).
func integer(v []byte, path string) (int, error) {
	if v[0] == 'n' {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, invalid("%s must be a whole number, not %s", path, v)
	}
	return n, nil
}

// members calls fn for each member of the JSON object v, which must be
// valid JSON. It refuses v when it is not an object or repeats a key.
func members(v []byte, path string, fn func(key string, val []byte) error) error {
	i := space(v, 0)
	if i >= len(v) || v[i] != '{' {
		return invalid("%s must be an object, not %s", path, kind(v[i:]))
	}
	var seen []string
	i = space(v, i+1)
	if v[i] == '}' {
		return nil
	}
	for {
		end := stringEnd(v, i)
		key, err := str(v[i:end], path+" key", false)
		if err != nil {
			return err
		}
		for _, k := range seen {
			if k == key {
				return invalid("%s has the key %q twice", path, key)
			}
		}
		seen = append(seen, key)
		i = space(v, end)
		i = space(v, i+1) // past ':'
		vend := valueEnd(v, i)
		if err := fn(key, v[i:vend]); err != nil {
			return err
		}
		i = space(v, vend)
		if v[i] == '}' {
			return nil
		}
		i = space(v, i+1) // past ','
	}
}

// elements calls fn for each element of the JSON array v, valid JSON.
func elements(v []byte, fn func(i int, val []byte) error) error {
	i := space(v, 1)
	if v[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		end := valueEnd(v, i)
		if err := fn(n, v[i:end]); err != nil {
			return err
		}
		i = space(v, end)
		if v[i] == ']' {
			return nil
		}
		i = space(v, i+1)
	}
}

func space(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the value starting at v[i], in
// valid JSON.
func valueEnd(v []byte, i int) int {
	switch v[i] {
	case '"':
		return stringEnd(v, i)
	case '{', '[':
		depth := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '"':
				i = stringEnd(v, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(v) && v[i] != ',' && v[i] != '}' && v[i] != ']' && v[i] != ' ' && v[i] != '\t' && v[i] != '\n' && v[i] != '\r' {
		i++
	}
	return i
}
