package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/secauto/secauto/pkg/job"
	"github.com/secauto/secauto/pkg/store"
)

// secautoPeer is pkg/store in its normal durable mode: the options secauto
// serve opens it with (background snapshots every 30s, the default
// journal limit).
type secautoPeer struct {
	s *store.FileStore
}

func (p *secautoPeer) open(dir string, n int) error {
	dir = filepath.Join(dir, "secauto")
	if n > 0 {
		if err := writeJobsJSON(dir, n); err != nil {
			return err
		}
	}
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		return err
	}
	if got := s.Stats().Jobs; got != n {
		s.Close()
		return fmt.Errorf("pre-filled store holds %d jobs, want %d", got, n)
	}
	if n > 0 {
		// As a long-running daemon leaves it: jobs.json written by
		// secauto, with its jobs.json.sum.
		if err := s.Snapshot(); err != nil {
			s.Close()
			return err
		}
	}
	p.s = s
	return nil
}

// writeJobsJSON bulk-loads n completed jobs: a jobs.json in the layout
// secauto writes (one job a line, in id order), which Open then checks and
// loads; much quicker than n durable creates.
func writeJobsJSON(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, store.SnapshotFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Now().Add(-48 * time.Hour).UTC()
	w.WriteString("{")
	var b []byte
	for i := range n {
		j := prefillJob(i, base) // UUIDv7: ids ascend with i
		if i > 0 {
			w.WriteString(",")
		}
		b = append(b[:0], '\n')
		b = strconv.AppendQuote(b, j.ID)
		b = append(b, ": "...)
		b, err = job.AppendJSON(b, j)
		if err != nil {
			f.Close()
			return err
		}
		w.Write(b)
	}
	w.WriteString("\n}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (p *secautoPeer) job(i int, lat *[]time.Duration) error {
	var id string
	return lifecycle(newJob(i), func(j *job.Job, create bool) error {
		if create {
			nj, err := p.s.Create(j)
			if err != nil {
				return err
			}
			id, j.ID, j.CreatedAt = nj.ID, nj.ID, nj.CreatedAt
			return nil
		}
		_, err := p.s.Update(id, func(cur *job.Job) error {
			*cur = *j
			return nil
		})
		return err
	}, lat)
}

func (p *secautoPeer) close() error {
	if p.s == nil {
		return nil
	}
	return p.s.Close()
}
