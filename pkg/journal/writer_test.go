package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

func readClean(t *testing.T, path string) *Scan {
	t.Helper()
	s, err := Read(fsys.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Damage) != 0 {
		t.Fatalf("damage: %+v", s.Damage)
	}
	return s
}

func TestWriterCreatesAndReopens(t *testing.T) {
	path := journalPath(t)
	w, err := OpenWriter(fsys.OS, path, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != headerLen {
		t.Fatalf("size %d", w.Size())
	}
	for i := range 3 {
		if err := w.Append(job(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	size := w.Size()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Append(job(9, 1)), ErrClosed) {
		t.Fatal("append after close accepted")
	}
	s := readClean(t, path)
	if len(s.Entries) != 3 || s.Good != size {
		t.Fatalf("%d entries, good %d, writer size %d", len(s.Entries), s.Good, size)
	}
	// Bytes past the valid length are cut on open.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("garbage"))
	f.Close()
	w, err = OpenWriter(fsys.OS, path, s.Good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(job(3, 10)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if s := readClean(t, path); len(s.Entries) != 4 {
		t.Fatalf("%d entries after reopen", len(s.Entries))
	}
}

func TestWriterRefuses(t *testing.T) {
	path := journalPath(t)
	w, err := OpenWriter(fsys.OS, path, 0, Options{MaxChangeBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range []Change{
		nil,
		{{Kind: PutJob, Value: []byte("{}")}},
		{{Kind: 'Q', Key: "a"}},
		{{Kind: DeleteJob, Key: "a", Value: []byte("x")}},
	} {
		if _, err := w.Enqueue(c, nil); err == nil {
			t.Errorf("change %+v accepted", c)
		}
	}
	if _, err := w.Enqueue(job(1, 2000), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("large change: %v", err)
	}
	if err := os.WriteFile(path+"1", v1Journal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWriter(fsys.OS, path+"1", 0, Options{}); err == nil {
		t.Error("v1 journal opened for writing")
	}
}

func TestGroupCommit(t *testing.T) {
	path := journalPath(t)
	ffs := newFaultFS()
	ffs.syncDelay = time.Millisecond
	var (
		mu        sync.Mutex
		committed = map[string]bool{}
		order     []string
	)
	w, err := OpenWriter(ffs, path, 0, Options{
		OnCommit: func(users []any, _ int64, err error) {
			if err != nil {
				t.Errorf("batch failed: %v", err)
			}
			if _, written, synced := ffs.counts(); written != synced {
				t.Errorf("OnCommit before fsync: %d bytes written, %d synced", written, synced)
			}
			mu.Lock()
			for _, u := range users {
				committed[u.(string)] = true
				order = append(order, u.(string))
			}
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 64, 20
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("g%02d-%03d", g, i)
				tk, err := w.Enqueue(Change{{Kind: PutJob, Key: id, Value: []byte(`{}`)}}, id)
				if err != nil {
					t.Error(err)
					return
				}
				if err := tk.Wait(); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok := committed[id]
				mu.Unlock()
				if !ok {
					t.Errorf("%s acknowledged before OnCommit", id)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := readClean(t, path)
	if got := keysOf(s.Entries); !slices.Equal(got, order) {
		t.Fatalf("file order differs from OnCommit order (%d vs %d)", len(got), len(order))
	}
	syncs, _, _ := ffs.counts()
	if n := writers * each; len(order) != n || syncs*4 > n {
		t.Fatalf("%d changes took %d fsyncs", len(order), syncs)
	}
	t.Logf("%d changes, %d fsyncs", len(order), syncs)
}

func TestNoSpace(t *testing.T) {
	path := journalPath(t)
	ffs := newFaultFS()
	var commits []error
	w, err := OpenWriter(ffs, path, 0, Options{OnCommit: func(_ []any, _ int64, err error) { commits = append(commits, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(job(1, 100)); err != nil {
		t.Fatal(err)
	}
	before := w.Size()
	ffs.setFailWrite(syscall.ENOSPC)
	err = w.Append(job(2, 100))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != before || w.Size() != before {
		t.Fatalf("file %d bytes, writer %d, want %d", fi.Size(), w.Size(), before)
	}
	if w.Err() != nil {
		t.Fatalf("a full disk failed the writer: %v", w.Err())
	}
	if err := w.Append(job(3, 100)); err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	s := readClean(t, path)
	if got := keysOf(s.Entries); !slices.Equal(got, []string{"job-001", "job-003"}) {
		t.Fatalf("entries %q", got)
	}
	if len(commits) != 3 || commits[0] != nil || !errors.Is(commits[1], ErrNoSpace) || commits[2] != nil {
		t.Fatalf("OnCommit errors %v", commits)
	}
}

func TestFailedSyncPoisons(t *testing.T) {
	path := journalPath(t)
	ffs := newFaultFS()
	var commits []error
	w, err := OpenWriter(ffs, path, 0, Options{OnCommit: func(_ []any, _ int64, err error) { commits = append(commits, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(job(1, 10)); err != nil {
		t.Fatal(err)
	}
	eio := errors.New("input/output error")
	ffs.setFailSync(eio)
	if err := w.Append(job(2, 10)); !errors.Is(err, eio) {
		t.Fatalf("append with a failing fsync: %v", err)
	}
	if !errors.Is(w.Err(), eio) {
		t.Fatalf("Err() = %v", w.Err())
	}
	if err := w.Append(job(3, 10)); !errors.Is(err, eio) {
		t.Fatalf("append after a failed fsync: %v", err)
	}
	if err := w.Cut(headerLen); !errors.Is(err, eio) {
		t.Fatalf("cut after a failed fsync: %v", err)
	}
	if len(commits) != 2 || commits[0] != nil || !errors.Is(commits[1], eio) {
		t.Fatalf("OnCommit errors %v", commits)
	}
}

func TestCut(t *testing.T) {
	path := journalPath(t)
	w, err := OpenWriter(fsys.OS, path, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 10 {
		if err := w.Append(job(i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	mark := w.Position()
	for i := 10; i < 15; i++ {
		if err := w.Append(job(i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.ReadFile(path)
	if err := w.Cut(mark); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(path)
	if want := append([]byte(magicV2), old[mark:]...); !bytes.Equal(now, want) {
		t.Fatalf("after cut: %d bytes, want %d", len(now), len(want))
	}
	if w.Size() != int64(len(now)) {
		t.Fatalf("size %d, file %d", w.Size(), len(now))
	}

	// Appends racing a cut all survive it.
	mark = w.Position()
	var wg sync.WaitGroup
	started := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				if i == 5 && g == 0 {
					close(started)
				}
				if err := w.Append(job(1000+g*100+i, 20)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	<-started
	if err := w.Cut(mark); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s := readClean(t, path)
	got := keysOf(s.Entries)
	if len(got) != 8*40 {
		t.Fatalf("%d changes after the cut, want %d", len(got), 8*40)
	}
	for g := range 8 {
		for i := range 40 {
			if k := fmt.Sprintf("job-%03d", 1000+g*100+i); !slices.Contains(got, k) {
				t.Fatalf("%s lost by the cut", k)
			}
		}
	}
	if s.Good != w.Size() {
		t.Fatalf("file %d bytes, writer %d", s.Good, w.Size())
	}
	if err := w.Cut(w.Position() + 1); err == nil {
		t.Fatal("cut past the end accepted")
	}
}
