package store

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// jobs.json carries no checksum of its own (its format is fixed), so a
// flipped bit inside a string would load silently. jobs.json.sum records
// the CRC-32C of the jobs.json that secauto last wrote, with its size and
// modification time. A file that still has that size and time but not that
// checksum has rotted on disk; one with another size or time was replaced
// by hand (an operator copying a backup over it, say) and is taken as it is.
const snapshotSumFile = SnapshotFile + ".sum"

type snapshotSum struct {
	CRC32C  string    `json:"crc32c"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

// writeJobsFile atomically replaces jobs.json with what write produces and
// records its checksum. It returns the file's size.
func writeJobsFile(dir string, write func(w io.Writer) error) (int64, error) {
	path := filepath.Join(dir, SnapshotFile)
	crc := crc32.New(crcTable)
	var n int64
	err := writeFileAtomic(path, func(w io.Writer) error {
		cw := &countWriter{w: io.MultiWriter(w, crc)}
		err := write(cw)
		n = cw.n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	sum, _ := json.Marshal(snapshotSum{
		CRC32C:  fmt.Sprintf("%08x", crc.Sum32()),
		Size:    st.Size(),
		ModTime: st.ModTime().UTC(),
	})
	err = writeFileAtomic(filepath.Join(dir, snapshotSumFile), func(w io.Writer) error {
		_, err := w.Write(append(sum, '\n'))
		return err
	})
	if err != nil {
		// jobs.json is complete and durable; only the rot check is lost.
		return n, fmt.Errorf("write %s: %w", snapshotSumFile, err)
	}
	return n, nil
}

// checkSnapshotSum reports rot in jobs.json: data is its content and st
// what stat said of it when it was read.
func checkSnapshotSum(dir string, data []byte, st os.FileInfo) error {
	raw, err := os.ReadFile(filepath.Join(dir, snapshotSumFile))
	if err != nil || st == nil {
		return nil
	}
	var sum snapshotSum
	if json.Unmarshal(raw, &sum) != nil || sum.Size != st.Size() || !sum.ModTime.Equal(st.ModTime().UTC()) {
		return nil
	}
	if got := fmt.Sprintf("%08x", crc32.Checksum(data, crcTable)); got != sum.CRC32C {
		return fmt.Errorf("checksum mismatch: the file changed on disk since secauto wrote it (CRC-32C %s, recorded %s in %s)", got, sum.CRC32C, snapshotSumFile)
	}
	return nil
}

// readSnapshotFile reads jobs.json and checks it for rot, reported as rot
// rather than err so the caller can still look at the content. A missing
// file is nil data and no error.
func readSnapshotFile(dir string) (data []byte, rot, err error) {
	path := filepath.Join(dir, SnapshotFile)
	st, _ := os.Stat(path)
	data, err = readFileIfExists(path)
	if err != nil || data == nil {
		return data, nil, err
	}
	return data, checkSnapshotSum(dir, data, st), nil
}
