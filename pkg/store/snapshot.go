package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// decodeSnapshot parses a jobs.json. A structural error (not a JSON object)
// is returned as err; jobs that break invariants are listed in problems and
// left out of the map. With sums (from jobs.json.sum), a job whose bytes
// match its sum is trusted to be as secauto wrote it and one that does not
// is a problem (errJobRotted, errJobPhantom); without, every job is checked
// against the whole job schema. Values alias data.
func decodeSnapshot(data []byte, sums *jobSums) (map[string]*entry, []jobProblem, error) {
	items, raws, ok := splitLines(data)
	if !ok {
		items, raws = nil, nil
		err := scanObject(data, func(key string, raw []byte) error {
			items = append(items, keyed{id: key})
			raws = append(raws, raw)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	errs := make([]error, len(items))
	// Indexing is the cost of opening a large store; use every core.
	workers := min(runtime.GOMAXPROCS(0), max(1, len(items)/1024))
	var wg sync.WaitGroup
	chunk := (len(items) + workers - 1) / max(workers, 1)
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(items))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				if sums != nil {
					if errs[i] = sums.check(i, items[i].id, raws[i]); errs[i] != nil {
						continue
					}
				}
				id, e, err := decodeEntry(raws[i], sums == nil)
				switch {
				case err != nil:
					errs[i] = err
				case id != items[i].id:
					errs[i] = fmt.Errorf("stored under key %q but its id is %q", items[i].id, id)
				default:
					items[i].e = e
				}
			}
		})
	}
	wg.Wait()
	jobs := make(map[string]*entry, len(items))
	var problems []jobProblem
	for i, it := range items {
		if errs[i] != nil {
			problems = append(problems, jobProblem{it.id, errs[i]})
			continue
		}
		if _, dup := jobs[it.id]; dup {
			problems = append(problems, jobProblem{it.id, errors.New("id appears more than once")})
			continue
		}
		jobs[it.id] = it.e
	}
	return jobs, problems, nil
}

// splitLines splits a jobs.json in the layout writeSnapshot produces (the
// opening brace, then one `"id": {...}` per line, then the closing brace)
// by finding newlines, which is much faster than walking every byte. A raw
// newline cannot occur inside compact JSON, so in that layout each line is
// exactly one job; the values are validated when they are decoded. Any
// other layout reports !ok and is parsed by scanObject.
func splitLines(data []byte) ([]keyed, [][]byte, bool) {
	if string(data) == "{\n}\n" {
		return nil, nil, true
	}
	body, ok := bytes.CutPrefix(data, []byte("{\n"))
	if !ok {
		return nil, nil, false
	}
	if body, ok = bytes.CutSuffix(body, []byte("\n}\n")); !ok {
		return nil, nil, false
	}
	n := bytes.Count(body, []byte{'\n'}) + 1
	items := make([]keyed, 0, n)
	raws := make([][]byte, 0, n)
	for len(body) > 0 {
		line, rest, more := bytes.Cut(body, []byte{'\n'})
		body = rest
		if more {
			// A comma needs a job after it: "a": {…},\n\n} is not JSON.
			if line, ok = bytes.CutSuffix(line, []byte(",")); !ok || len(rest) == 0 {
				return nil, nil, false
			}
		}
		if len(line) == 0 || line[0] != '"' {
			return nil, nil, false
		}
		end, err := skipString(line, 0)
		if err != nil {
			return nil, nil, false
		}
		key, err := unquote(line[:end])
		if err != nil {
			return nil, nil, false
		}
		value, ok := bytes.CutPrefix(line[end:], []byte(": "))
		if !ok {
			return nil, nil, false
		}
		items = append(items, keyed{id: key})
		raws = append(raws, value)
	}
	return items, raws, true
}

// scanObject splits a top-level JSON object into keys and raw values without
// decoding the values; they are validated by decodeEntry.
func scanObject(data []byte, fn func(key string, raw []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return syntaxErr(data, i, "expected '{' to open the object of jobs")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return trailing(data, i+1)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return syntaxErr(data, i, "expected a job id string")
		}
		end, err := skipString(data, i)
		if err != nil {
			return err
		}
		key, err := unquote(data[i:end])
		if err != nil {
			return syntaxErr(data, i, "bad job id string")
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return syntaxErr(data, i, "expected ':' after job id")
		}
		i = skipSpace(data, i+1)
		vend, err := skipValue(data, i)
		if err != nil {
			return err
		}
		if err := fn(key, data[i:vend]); err != nil {
			return err
		}
		i = skipSpace(data, vend)
		if i >= len(data) {
			return syntaxErr(data, i, "unexpected end of file")
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return trailing(data, i+1)
		default:
			return syntaxErr(data, i, "expected ',' or '}'")
		}
	}
}

func trailing(data []byte, i int) error {
	if i = skipSpace(data, i); i != len(data) {
		return syntaxErr(data, i, "unexpected data after the object")
	}
	return nil
}

func syntaxErr(data []byte, off int, msg string) error {
	line := 1 + bytes.Count(data[:min(off, len(data))], []byte{'\n'})
	return fmt.Errorf("line %d, offset %d: %s", line, off, msg)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset just past the string starting at data[i].
// It jumps from quote to quote (an envelope is a long string without
// escapes); a quote after an odd run of backslashes is escaped.
func skipString(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); {
		k := bytes.IndexByte(data[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		odd := false
		for p := q - 1; p > i && data[p] == '\\'; p-- {
			odd = !odd
		}
		if !odd {
			return q + 1, nil
		}
		j = q + 1
	}
	return 0, syntaxErr(data, i, "unterminated string")
}

// skipValue returns the offset just past the value starting at data[i]. It
// only finds the boundary; the value's syntax is checked when it is decoded.
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, syntaxErr(data, i, "unexpected end of file")
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := skipString(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, syntaxErr(data, i, "unterminated object")
	}
	j := i
	for j < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[j])) {
		j++
	}
	if j == i {
		return 0, syntaxErr(data, i, "expected a value")
	}
	return j, nil
}

func unquote(s []byte) (string, error) {
	if plainString(s) {
		return string(s[1 : len(s)-1]), nil
	}
	var out string
	err := json.Unmarshal(s, &out)
	return out, err
}

// plainString reports whether a quoted JSON string needs no decoding: no
// escapes, no control characters (which make it invalid) and valid UTF-8.
func plainString(s []byte) bool {
	ascii := true
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return false
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	return ascii || utf8.Valid(s)
}

// writeSnapshot writes jobs in the jobs.json format, one job per line, in id
// order (ids are time-ordered, so this is creation order for new jobs).
// wrote, when set, hears for each job in file order its index in items, the
// offset of its bytes in w and their CRC-32C, for jobs.json.sum and for the
// index to read them from the new file. A job read back from jobs.json
// whose bytes rotted since they were indexed is left out (wrote hears
// offset -1 and the checksum it should have) and returned: written on, the
// rot would no longer be told from a job secauto wrote.
func writeSnapshot(w io.Writer, items []keyed, progress Progress, wrote func(i int, off int64, crc uint32)) ([]jobProblem, error) {
	sortByID(items)
	if _, err := io.WriteString(w, "{"); err != nil {
		return nil, err
	}
	var (
		key     []byte
		cur     snapCursor
		skipped []jobProblem
		n       = int64(1)
	)
	for i, it := range items {
		if progress != nil && i%1024 == 0 {
			progress(int64(i), int64(len(items)))
		}
		raw, err := cur.bytes(it.e)
		if err != nil {
			skipped = append(skipped, jobProblem{it.id, err})
			if wrote != nil {
				wrote(i, -1, it.e.crc)
			}
			continue
		}
		key = key[:0]
		if n > 1 {
			key = append(key, ',')
		}
		key = append(key, "\n"...)
		key = appendQuoted(key, it.id)
		key = append(key, ": "...)
		if _, err := w.Write(key); err != nil {
			return nil, err
		}
		if _, err := w.Write(raw); err != nil {
			return nil, err
		}
		if wrote != nil {
			crc := it.e.crc
			if it.e.snap == nil {
				crc = crc32.Checksum(raw, crcTable)
			}
			wrote(i, n+int64(len(key)), crc)
		}
		n += int64(len(key) + len(raw))
	}
	if progress != nil {
		progress(int64(len(items)), int64(len(items)))
	}
	_, err := io.WriteString(w, "\n}\n")
	return skipped, err
}

// sortByID sorts items by id. Sorting is a large share of a snapshot's
// CPU time, so a large store is sorted in two halves at once and merged.
func sortByID(items []keyed) {
	byID := func(a, b keyed) int { return strings.Compare(a.id, b.id) }
	if len(items) < 1<<14 || runtime.GOMAXPROCS(0) < 2 {
		slices.SortFunc(items, byID)
		return
	}
	mid := len(items) / 2
	left := slices.Clone(items[:mid])
	var wg sync.WaitGroup
	wg.Go(func() { slices.SortFunc(left, byID) })
	slices.SortFunc(items[mid:], byID)
	wg.Wait()
	// Merge into items from the front: the write index never passes the
	// next unread item of the right half, which is already in place.
	w, i, k := 0, 0, mid
	for i < len(left) {
		if k < len(items) && byID(items[k], left[i]) < 0 {
			items[w] = items[k]
			k++
		} else {
			items[w] = left[i]
			i++
		}
		w++
	}
}

func appendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
