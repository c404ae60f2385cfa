package main

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// diskPeer is the disk's limit: records of the job's encoded size appended
// to one file, each write made durable by fdatasync before it returns. No
// index, no reading back: what any store on this disk pays at least.
type diskPeer struct {
	group bool
	mu    sync.Mutex
	f     *os.File
	b     *batcher[[]byte]
}

func (p *diskPeer) open(dir string, n int) error {
	f, err := os.OpenFile(filepath.Join(dir, "append.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Now().Add(-48 * time.Hour).UTC()
	for i := range n {
		w.Write(record(encode(prefillJob(i, base))))
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return err
	}
	p.f = f
	if p.group {
		p.b = newBatcher(p.flush)
	}
	return nil
}

// record frames data with its length, as a journal would.
func record(data []byte) []byte {
	b := make([]byte, 8, 8+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(data)))
	return append(b, data...)
}

func (p *diskPeer) flush(recs [][]byte) error {
	var buf []byte
	if len(recs) == 1 {
		buf = recs[0]
	} else {
		for _, r := range recs {
			buf = append(buf, r...)
		}
	}
	if _, err := p.f.Write(buf); err != nil {
		return err
	}
	return syscall.Fdatasync(int(p.f.Fd()))
}

func (p *diskPeer) job(i int, lat *[]time.Duration) error {
	return lifecycle(newIDJob(i), func(j *job.Job, _ bool) error {
		rec := record(encode(j))
		if p.group {
			return p.b.do(rec)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.flush([][]byte{rec})
	}, lat)
}

func (p *diskPeer) close() error {
	if p.b != nil {
		p.b.close()
	}
	if p.f == nil {
		return nil
	}
	return p.f.Close()
}
