package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"runtime"
	"sync"
)

// Opening a large store reads jobs.json a chunk at a time, indexes each job
// and keeps only where its bytes are: memory holds the index, never the
// file. Chunks end at a newline, so each holds whole jobs in the layout
// writeSnapshot produces, and are indexed on every core.
const (
	readChunk = 8 << 20
	// maxLine bounds one job's line; a longer one is not in secauto's
	// layout, and the file is parsed whole instead (its jobs are then
	// checked against the schema).
	maxLine = 1 << 30
)

type lineChunk struct {
	seq  int
	base int64 // file offset of data[0]
	line int   // file order index of its first job
	data []byte
}

type parsedJob struct {
	id  string
	e   *entry
	err error
}

// readSnapshotLines indexes a jobs.json of size bytes in writeSnapshot's
// layout into entries that point into sf, checking each job as
// decodeSnapshot does. ok is false when the file is in another layout (by
// hand, indented): the caller then parses it whole. err is a read error.
func readSnapshotLines(sf *snapFile, size int64, sums *jobSums) (jobs map[string]*entry, problems []jobProblem, ok bool, err error) {
	var head, tail [3]byte
	if size < 4 || sf.readAt(head[:2], 0) != nil || sf.readAt(tail[:], size-3) != nil ||
		string(head[:2]) != "{\n" || string(tail[:]) != "\n}\n" {
		return nil, nil, false, nil
	}
	// The lines are [2, size-2): each ends with a newline, the last one
	// being the newline before the closing brace.
	end := size - 2
	workers := runtime.GOMAXPROCS(0)
	chunks := make(chan lineChunk, workers)
	free := make(chan []byte, 2*workers)
	var (
		mu      sync.Mutex
		results [][]parsedJob
		bad     bool
		wg      sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for c := range chunks {
				out, good := parseLines(sf, c, end, sums)
				mu.Lock()
				for len(results) <= c.seq {
					results = append(results, nil)
				}
				results[c.seq] = out
				bad = bad || !good
				mu.Unlock()
				select {
				case free <- c.data[:0]:
				default:
				}
			}
		})
	}
	pos, seq, line, want := int64(2), 0, 0, int64(readChunk)
	for pos < end && err == nil {
		n := min(want, end-pos)
		var buf []byte
		select {
		case buf = <-free:
		default:
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err = sf.readAt(buf, pos); err != nil {
			break
		}
		cut := bytes.LastIndexByte(buf, '\n')
		if cut < 0 {
			if want *= 2; want > maxLine {
				mu.Lock()
				bad = true
				mu.Unlock()
				break
			}
			continue
		}
		data := buf[:cut+1]
		chunks <- lineChunk{seq: seq, base: pos, line: line, data: data}
		line += bytes.Count(data, []byte{'\n'})
		pos += int64(len(data))
		seq++
		want = readChunk
	}
	close(chunks)
	wg.Wait()
	if err != nil || bad {
		return nil, nil, false, err
	}
	jobs, problems = collectParsed(results, line, nil)
	return jobs, problems, true, nil
}

// collectParsed gathers the jobs indexed in parts, in file order, into the
// index of n jobs: a job that failed, or whose id came earlier, is a
// problem. added, if set, hears each job taken.
func collectParsed(parts [][]parsedJob, n int, added func(keyed)) (map[string]*entry, []jobProblem) {
	jobs := make(map[string]*entry, n)
	var problems []jobProblem
	for _, part := range parts {
		for _, p := range part {
			switch {
			case p.err != nil:
				problems = append(problems, jobProblem{p.id, p.err})
			case jobs[p.id] != nil:
				problems = append(problems, jobProblem{p.id, errors.New("id appears more than once")})
			default:
				jobs[p.id] = p.e
				if added != nil {
					added(keyed{p.id, p.e})
				}
			}
		}
	}
	return jobs, problems
}

// parseLines indexes the jobs of one chunk; !ok when a line is not in
// writeSnapshot's layout.
func parseLines(sf *snapFile, c lineChunk, end int64, sums *jobSums) (out []parsedJob, ok bool) {
	data, at, i := c.data, 0, c.line
	for at < len(data) {
		nl := bytes.IndexByte(data[at:], '\n')
		line := data[at : at+nl]
		off := c.base + int64(at)
		at += nl + 1
		last := c.base+int64(at) == end
		line, comma := bytes.CutSuffix(line, []byte(","))
		if comma == last || len(line) == 0 || line[0] != '"' {
			return nil, false
		}
		kend, err := skipString(line, 0)
		if err != nil {
			return nil, false
		}
		id, err := unquote(line[:kend])
		if err != nil {
			return nil, false
		}
		value, found := bytes.CutPrefix(line[kend:], []byte(": "))
		if !found || len(value) == 0 {
			return nil, false
		}
		out = append(out, indexLine(sf, id, value, off+int64(len(line)-len(value)), i, sums))
		i++
	}
	return out, true
}

// indexLine indexes the i-th job of the file, id, whose bytes are value at
// off.
func indexLine(sf *snapFile, id string, value []byte, off int64, i int, sums *jobSums) parsedJob {
	if len(value) > math.MaxUint32 {
		return parsedJob{id: id, err: fmt.Errorf("%d bytes: larger than a job can be", len(value))}
	}
	crc := crc32.Checksum(value, crcTable)
	if sums != nil {
		js, known := sums.lookup(i, id)
		switch {
		case !known:
			return parsedJob{id: id, err: errJobPhantom}
		case crc != js.crc:
			return parsedJob{id: id, err: errJobRotted}
		case js.meta:
			// Indexed when it was written, from these very bytes.
			e := &entry{status: js.status, created: js.created, completed: js.completed}
			if js.keyID != "" {
				e.extra().keyID = js.keyID
			}
			e.snap, e.off, e.size, e.crc = sf, off, uint32(len(value)), crc
			return parsedJob{id: id, e: e}
		}
	}
	got, e, err := decodeEntry(value, sums == nil)
	switch {
	case err != nil:
		return parsedJob{id: id, err: err}
	case got != id:
		return parsedJob{id: id, err: fmt.Errorf("stored under key %q but its id is %q", id, got)}
	}
	// e is new and shared with no one yet.
	e.raw, e.snap, e.off, e.size, e.crc = nil, sf, off, uint32(len(value)), crc
	return parsedJob{id: id, e: e}
}
