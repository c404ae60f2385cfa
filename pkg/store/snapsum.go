package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

// jobs.json carries no checksum of its own (its format is fixed), so a
// flipped bit inside a string would load silently. jobs.json.sum records
// the CRC-32C of the jobs.json that secauto last wrote, with its size and
// modification time, and then the CRC-32C of every job in it:
//
//	{"crc32c":"1a2b3c4d","size":123,"mtime":"…","jobs":2}
//	5e6f7a8b 0190c3f2-…
//	9c0d1e2f 0190c3f3-…
//
// A file that still has that size and time but not that checksum has
// rotted on disk, and the per-job sums say which jobs: only those are lost
// (or taken from a backup), not the whole file. One with another size or
// time was replaced by hand (an operator copying a backup over it, say) and
// is checked job by job against the whole job schema instead.
const snapshotSumFile = SnapshotFile + ".sum"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type snapshotSum struct {
	CRC32C  string    `json:"crc32c"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Jobs    int       `json:"jobs"`
}

// sumCheck is what jobs.json.sum says of the jobs.json that was read.
type sumCheck struct {
	// trusted: secauto wrote this file and it is unchanged.
	trusted bool
	// rot is set when the file changed on disk since secauto wrote it;
	// jobs then holds each job's recorded CRC (nil if the sum has none).
	rot  error
	jobs map[string]uint32
}

// writeJobsFile atomically replaces jobs.json with items and records its
// checksums. It returns the file's size.
func writeJobsFile(fs fsys.FS, dir string, items []keyed, progress Progress) (int64, error) {
	path := filepath.Join(dir, SnapshotFile)
	crc := crc32.New(crcTable)
	lines := make([]byte, 0, len(items)*46)
	var n int64
	err := fsys.WriteFileAtomic(fs, path, fileMode, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, crc)}
		err := writeSnapshot(cw, items, progress, func(id string, c uint32) {
			lines = appendSumLine(lines, c, id)
		})
		n = cw.n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	st, err := fs.Stat(path)
	if err != nil {
		return 0, err
	}
	head, _ := json.Marshal(snapshotSum{
		CRC32C:  fmt.Sprintf("%08x", crc.Sum32()),
		Size:    st.Size(),
		ModTime: st.ModTime().UTC(),
		Jobs:    len(items),
	})
	err = fsys.WriteFileAtomic(fs, filepath.Join(dir, snapshotSumFile), fileMode, func(w io.Writer) error {
		if _, err := w.Write(append(head, '\n')); err != nil {
			return err
		}
		_, err := w.Write(lines)
		return err
	})
	if err != nil {
		// jobs.json is complete and durable; only the rot check is lost.
		return n, fmt.Errorf("write %s: %w", snapshotSumFile, err)
	}
	return n, nil
}

// appendSumLine appends "crc32c id\n", the per-job line of jobs.json.sum.
func appendSumLine(b []byte, crc uint32, id string) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[crc>>uint(shift)&0xf])
	}
	b = append(b, ' ')
	b = append(b, id...)
	return append(b, '\n')
}

// checkSnapshotSum compares jobs.json (data, and what stat said of it when
// it was read) with jobs.json.sum.
func checkSnapshotSum(fs fsys.FS, dir string, data []byte, st fs.FileInfo) sumCheck {
	raw, err := fs.ReadFile(filepath.Join(dir, snapshotSumFile))
	if err != nil || st == nil {
		return sumCheck{}
	}
	head, rest, _ := bytes.Cut(raw, []byte{'\n'})
	var sum snapshotSum
	if json.Unmarshal(head, &sum) != nil || sum.Size != st.Size() || !sum.ModTime.Equal(st.ModTime().UTC()) {
		return sumCheck{}
	}
	got := fmt.Sprintf("%08x", crc32.Checksum(data, crcTable))
	if got == sum.CRC32C {
		return sumCheck{trusted: true}
	}
	c := sumCheck{rot: fmt.Errorf("checksum mismatch: the file changed on disk since secauto wrote it (CRC-32C %s, recorded %s in %s)", got, sum.CRC32C, snapshotSumFile)}
	c.jobs = parseJobSums(rest, sum.Jobs)
	return c
}

// parseJobSums reads the per-job lines; nil when they are missing or
// damaged themselves (then every job is checked against the schema only).
func parseJobSums(data []byte, want int) map[string]uint32 {
	out := make(map[string]uint32, want)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		hexsum, id, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		if !ok || len(hexsum) != 8 {
			return nil
		}
		v, err := strconv.ParseUint(string(hexsum), 16, 32)
		if err != nil {
			return nil
		}
		out[string(id)] = uint32(v)
	}
	if sc.Err() != nil || len(out) != want {
		return nil
	}
	return out
}

// damagedJobs lists the ids whose bytes in jobs.json no longer match their
// recorded checksum, and those recorded but no longer found (their key
// rotted); phantom lists keys found but never recorded.
func (c sumCheck) damagedJobs(jobs map[string]*entry) (damaged, phantom []string) {
	for id, e := range jobs {
		want, ok := c.jobs[id]
		switch {
		case !ok:
			phantom = append(phantom, id)
		case crc32.Checksum(e.raw, crcTable) != want:
			damaged = append(damaged, id)
		}
	}
	for id := range c.jobs {
		if _, ok := jobs[id]; !ok {
			damaged = append(damaged, id)
		}
	}
	return damaged, phantom
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
