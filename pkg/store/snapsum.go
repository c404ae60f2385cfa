package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
)

// jobs.json carries no checksum of its own (its format is fixed), so a
// flipped bit inside a string would load silently. jobs.json.sum records,
// for the jobs.json that secauto last wrote, its size and modification time
// and, for every job in it in the file's order, the CRC-32C of its bytes and
// what the index keeps of it (where its bytes are, their length, status,
// creation and completion time in Unix nanoseconds, the key a sealed job is
// sealed with or "-"); the first line
// also holds the CRC-32C of the lines after it, so the sum file vouches for
// itself:
//
//	{"size":123,"mtime":"…","jobs":2,"lines_crc32c":"1a2b3c4d"}
//	5e6f7a8b 47 1391 completed 1764547200000000000 1764547200500000000 - 0190c3f2-…
//	9c0d1e2f 1483 1422 pending 1764547201000000000 0 0a1b2c3d 0190c3f3-…
//
// A jobs.json that still has that size and time was written by secauto, and
// its jobs are trusted as far as their sums match: those whose bytes rotted
// are the only ones lost (or taken from a backup), not the whole file, and
// opening reads each job's bytes only to check its sum, not to index it; the
// daemon indexes from the sum file alone and checks the sums once it serves
// (see scrub.go).
// One with another size or time was replaced by hand (an operator copying a
// backup over it, say) and is checked job by job against the whole job
// schema instead. Each job's bytes are hashed once, as they are written.
//
// Earlier releases wrote "crc32c" in the first line and "crc id" lines;
// those still read (the jobs are then indexed from their bytes). An earlier
// release finds no "crc32c" in this format, so it takes jobs.json as placed
// by hand and checks every job: slower, never wrong.
const snapshotSumFile = SnapshotFile + ".sum"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type snapshotSum struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Jobs    int       `json:"jobs"`
	// LinesCRC32C covers the per-job lines; CRC32C did in the earlier
	// format, whose lines hold no index fields.
	LinesCRC32C string `json:"lines_crc32c,omitempty"`
	CRC32C      string `json:"crc32c,omitempty"`
}

var (
	// errJobRotted marks a job whose bytes no longer match their sum.
	errJobRotted = errors.New("its bytes changed on disk since secauto wrote them")
	// errJobPhantom marks a job under a key the sum never recorded: its id
	// rotted, and it is dropped (the job is missed under its real id).
	errJobPhantom = fmt.Errorf("not recorded in %s (its id rotted); dropped", snapshotSumFile)
)

// placement says where writeJobsFile put each job: the bytes of items[i]
// are at offs[i] in file, or were left out (-1, listed in skipped).
type placement struct {
	file    *snapFile
	offs    []int64
	crcs    []uint32
	skipped []jobProblem
}

// writeJobsFile atomically replaces jobs.json with items and jobs.json.sum
// with their checksums; the two share one directory fsync. It returns the
// size of jobs.json and where each job's bytes are in it (file is nil if
// the new jobs.json could not be opened to read them back).
func writeJobsFile(fs fsys.FS, dir string, items []keyed, progress Progress) (int64, *placement, error) {
	path := filepath.Join(dir, SnapshotFile)
	lines := make([]byte, 0, len(items)*112) // a line is about 110 bytes
	p := &placement{offs: make([]int64, len(items)), crcs: make([]uint32, len(items))}
	var n int64
	jobs, err := fsys.WriteTemp(fs, path, fileMode, func(w io.Writer) error {
		cw := &countWriter{w: w}
		var err error
		p.skipped, err = writeSnapshot(cw, items, progress, func(i int, off int64, c uint32) {
			lines = appendSumLine(lines, c, off, items[i].e, items[i].id)
			p.offs[i], p.crcs[i] = off, c
		})
		n = cw.n
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("write %s: %w", path, err)
	}
	head, _ := json.Marshal(snapshotSum{
		Size:        jobs.Info.Size(),
		ModTime:     jobs.Info.ModTime().UTC(),
		Jobs:        len(items),
		LinesCRC32C: fmt.Sprintf("%08x", crc32.Checksum(lines, crcTable)),
	})
	sum, err := fsys.WriteTemp(fs, filepath.Join(dir, snapshotSumFile), fileMode, func(w io.Writer) error {
		if _, err := w.Write(append(head, '\n')); err != nil {
			return err
		}
		_, err := w.Write(lines)
		return err
	})
	if err != nil {
		jobs.Discard()
		return 0, nil, fmt.Errorf("write %s: %w", snapshotSumFile, err)
	}
	// A crash between the renames leaves a sum that does not describe
	// jobs.json (another size and time): the next open checks each job
	// against the schema, as for a file placed by hand.
	if err := fsys.Install(fs, jobs, sum); err != nil {
		return 0, nil, fmt.Errorf("write %s: %w", path, err)
	}
	// The lock keeps any other writer out, so the file under this name is
	// the one just written.
	p.file, _ = openSnapFile(fs, path)
	return n, p, nil
}

// appendSumLine appends the per-job line of jobs.json.sum: e's bytes are at
// off in jobs.json (-1: left out).
func appendSumLine(b []byte, crc uint32, off int64, e *entry, id string) []byte {
	b = appendHex32(b, crc)
	b = append(b, ' ')
	b = strconv.AppendInt(b, off, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(e.bodySize()), 10)
	b = append(b, ' ')
	b = append(b, e.status...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.created, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.completed, 10)
	b = append(b, ' ')
	if k := e.sealKey(); k != "" {
		b = append(b, k...)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = append(b, id...)
	return append(b, '\n')
}

func appendHex32(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

// jobSums are the per-job lines of a jobs.json.sum, in file order. They
// reference the sum file's bytes: opening a large store builds no map of
// them unless jobs.json's order no longer matches (a key rotted).
type jobSums struct {
	list []jobSum
	meta bool // every line holds its job's index fields
	once sync.Once
	byID map[string]int
}

// jobSum is one job's line. With meta, the job's index fields are known
// without reading its bytes.
type jobSum struct {
	crc       uint32
	meta      bool
	off       int64 // -1: left out of jobs.json (its bytes had rotted)
	size      uint32
	status    job.Status
	created   int64
	completed int64
	keyID     string
	id        []byte
}

// readSnapshotSums returns the per-job checksums jobs.json.sum records for
// the jobs.json that stat described, or nil when it describes another file
// (or none), or is damaged itself: then every job is checked against the
// schema instead.
func readSnapshotSums(fs fsys.FS, dir string, st fs.FileInfo) *jobSums {
	raw, err := fs.ReadFile(filepath.Join(dir, snapshotSumFile))
	if err != nil || st == nil {
		return nil
	}
	head, rest, _ := bytes.Cut(raw, []byte{'\n'})
	var sum snapshotSum
	if json.Unmarshal(head, &sum) != nil || sum.Size != st.Size() || !sum.ModTime.Equal(st.ModTime().UTC()) {
		return nil
	}
	want, withMeta := sum.CRC32C, false
	if sum.LinesCRC32C != "" {
		want, withMeta = sum.LinesCRC32C, true
	}
	if fmt.Sprintf("%08x", crc32.Checksum(rest, crcTable)) != want {
		return nil
	}
	return parseJobSums(rest, sum.Jobs, withMeta)
}

// parseJobSums reads the per-job lines; nil when they do not add up. A
// large file is read in pieces on every core.
func parseJobSums(data []byte, want int, withMeta bool) *jobSums {
	if want < 0 || want > len(data)/10 {
		return nil
	}
	pieces := splitAtLines(data, runtime.GOMAXPROCS(0))
	lists := make([][]jobSum, len(pieces))
	bad := make([]bool, len(pieces))
	forEachParallel(len(pieces), func(i int) {
		lists[i], bad[i] = parseSumLines(pieces[i], want/len(pieces)+1, withMeta)
	})
	if slices.Contains(bad, true) {
		return nil
	}
	list := slices.Concat(lists...)
	if len(list) != want {
		return nil
	}
	return &jobSums{list: list, meta: withMeta}
}

// splitAtLines cuts data into about n pieces, each ending with a newline
// (but perhaps the last).
func splitAtLines(data []byte, n int) [][]byte {
	if len(data) < 1<<20 || n < 2 {
		return [][]byte{data}
	}
	var out [][]byte
	for len(data) > 0 {
		cut := min(len(data), len(data)/n+1)
		if nl := bytes.IndexByte(data[cut-1:], '\n'); nl >= 0 {
			cut += nl
		} else {
			cut = len(data)
		}
		out = append(out, data[:cut])
		data = data[cut:]
		n = max(1, n-1)
	}
	return out
}

func parseSumLines(data []byte, capHint int, withMeta bool) ([]jobSum, bool) {
	list := make([]jobSum, 0, capHint)
	for len(data) > 0 {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		data = rest
		if !ok || len(line) < 10 || line[8] != ' ' {
			return nil, true
		}
		crc, ok := parseHex32(line[:8])
		if !ok {
			return nil, true
		}
		js := jobSum{crc: crc, id: line[9:]}
		if withMeta && !js.parseMeta() {
			return nil, true
		}
		list = append(list, js)
	}
	return list, false
}

// parseMeta reads "off size status created completed key id" from js.id.
// Opening a large store parses millions of these lines: no allocation.
func (js *jobSum) parseMeta() bool {
	rest := js.id
	var f [6][]byte
	for i := range f {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return false
		}
		f[i], rest = rest[:sp], rest[sp+1:]
	}
	off, ok0 := parseDec(f[0])
	if len(f[0]) == 2 && string(f[0]) == "-1" {
		off, ok0 = -1, true
	}
	size, ok1 := parseDec(f[1])
	st := job.Status("")
	for _, known := range job.Statuses {
		if string(f[2]) == string(known) {
			st = known
		}
	}
	created, ok2 := parseDec(f[3])
	completed, ok3 := parseDec(f[4])
	if !ok0 || !ok1 || size > math.MaxUint32 || !st.Valid() || !ok2 || !ok3 || len(rest) == 0 {
		return false
	}
	if string(f[5]) != "-" {
		var q [10]byte
		if len(f[5]) != 8 {
			return false
		}
		q[0], q[9] = '"', '"'
		copy(q[1:], f[5])
		k, ok := keyIDs.intern(q[:])
		if !ok {
			return false
		}
		js.keyID = k
	}
	js.meta, js.off, js.size, js.status, js.created, js.completed, js.id = true, off, uint32(size), st, created, completed, rest
	return true
}

// parseDec reads a non-negative decimal that fits an int64.
func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func parseHex32(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// lookup finds the sum recorded for the i-th job of jobs.json, id; safe
// for concurrent use.
func (s *jobSums) lookup(i int, id string) (*jobSum, bool) {
	if i < len(s.list) && string(s.list[i].id) == id {
		return &s.list[i], true
	}
	s.once.Do(func() {
		s.byID = make(map[string]int, len(s.list))
		for k, js := range s.list {
			s.byID[string(js.id)] = k
		}
	})
	k, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return &s.list[k], true
}

// check tells whether the i-th job's bytes match what sums recorded.
func (s *jobSums) check(i int, id string, raw []byte) error {
	js, ok := s.lookup(i, id)
	switch {
	case !ok:
		return errJobPhantom
	case crc32.Checksum(raw, crcTable) != js.crc:
		return errJobRotted
	}
	return nil
}

// missingJobs lists the ids sums recorded that are neither in jobs nor
// among problems: their keys rotted, or the file was cut short.
func missingJobs(sums *jobSums, jobs map[string]*entry, problems []jobProblem) []string {
	if sums == nil || len(problems) == 0 && len(jobs) == len(sums.list) {
		// Every job was found among the sums, once each.
		return nil
	}
	seen := make(map[string]bool, len(problems))
	for _, p := range problems {
		seen[p.id] = true
	}
	var out []string
	for _, js := range sums.list {
		if _, ok := jobs[string(js.id)]; !ok && !seen[string(js.id)] {
			out = append(out, string(js.id))
		}
	}
	slices.Sort(out)
	return out
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
