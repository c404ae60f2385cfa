package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/job"
)

// settle creates n completed jobs, each with a context of pad bytes, by
// eight writers at once.
func settle(t testing.TB, s *FileStore, n, pad int) []string {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				j := newJob(i)
				j.Context["pad"] = strings.Repeat("x", pad)
				c, err := s.Create(j)
				if err == nil {
					_, err = s.Update(c.ID, func(j *job.Job) error {
						j.Status = job.Running
						now := time.Now()
						j.StartedAt = &now
						return nil
					})
				}
				if err == nil {
					_, err = s.Update(c.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) })
				}
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = c.ID
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

func start(t testing.TB, s *FileStore, id string) {
	t.Helper()
	if _, err := s.Update(id, func(j *job.Job) error {
		j.Status = job.Running
		now := time.Now()
		j.StartedAt = &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// inMemory counts the entries whose bytes the index holds in memory.
func inMemory(s *FileStore) (mem, files int) {
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	for _, e := range s.idx.jobs {
		if e.snap == nil {
			mem++
		} else {
			files++
		}
	}
	return mem, files
}

// Once a snapshot holds them, settled jobs are read from jobs.json, not
// kept in memory, and read back the same, before and after a reopen; a
// running job keeps its bytes, and a job changed after the snapshot is in
// memory until the next one.
func TestSettledJobsAreReadFromTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ids := settle(t, s, 50, 100)
	run := mustCreate(t, s, newJob(99))
	start(t, s, run.ID)
	before := map[string]string{}
	for _, id := range append(ids, run.ID) {
		j, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = fmt.Sprint(j)
	}
	if mem, _ := inMemory(s); mem != 51 {
		t.Fatalf("%d jobs in memory before any snapshot, want all 51", mem)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if mem, files := inMemory(s); mem != 1 || files != 50 {
		t.Fatalf("after a snapshot %d jobs in memory and %d in the file, want the running one and 50", mem, files)
	}
	if err := s.Delete(ids[0]); err != nil {
		t.Fatal(err)
	}
	delete(before, ids[0])
	mustCreate(t, s, newJob(100))
	if mem, _ := inMemory(s); mem != 2 {
		t.Fatalf("%d jobs in memory after a create, want 2", mem)
	}
	same := func(s *FileStore) {
		t.Helper()
		for id, want := range before {
			j, err := s.Get(id)
			if err != nil || fmt.Sprint(j) != want {
				t.Fatalf("job %s reads back as %v (%v), want %s", id, j, err, want)
			}
		}
		all, err := s.List(Filter{})
		if err != nil || len(all) != 51 {
			t.Fatalf("list: %d jobs, %v", len(all), err)
		}
	}
	same(s)
	// A second snapshot copies the first one's jobs into the new file.
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	same(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	if mem, files := inMemory(s); mem != 0 || files != 51 {
		t.Fatalf("a reopened store holds %d jobs in memory and %d in the file, want 0 and 51", mem, files)
	}
	same(s)
}

// flipIn changes one byte inside the value of job id in jobs.json, in
// place (the way a disk rots), keeping the file's size and time.
func flipIn(t *testing.T, dir, id string) {
	t.Helper()
	rotAt(t, dir, `"hello `+id, 2, 'j')
}

// rotAt writes b at skip bytes past the first marker in jobs.json, in
// place (the way a disk rots), keeping the file's size and time.
func rotAt(t *testing.T, dir, marker string, skip int, b byte) {
	t.Helper()
	path := filepath.Join(dir, SnapshotFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte(marker))
	if at < 0 {
		t.Fatalf("no marker %q in jobs.json", marker)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b}, int64(at+skip)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chtimes(path, st.ModTime(), st.ModTime())
}

// A job whose bytes rot in jobs.json while the daemon runs is never read
// as another job: reading it is an error naming the file, a listing leaves
// it out, a snapshot leaves it out of the new jobs.json (the sum file still
// names it), and the next open takes it from the newest backup.
func TestRotWhileOpenIsCaughtOnRead(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ids := settle(t, s, 10, 10)
	if _, err := s.Backup(BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, dir, "3\"")
	if _, err := s.Get(ids[3]); !errors.Is(err, errJobRotted) || !strings.Contains(err.Error(), SnapshotFile) {
		t.Fatalf("get of a rotted job: %v", err)
	}
	all, err := s.List(Filter{})
	if err != nil || len(all) != 9 {
		t.Fatalf("list: %d jobs, %v; want the 9 intact ones", len(all), err)
	}
	res, err := s.Backup(BackupOptions{})
	if err != nil || res.Jobs != 9 || len(res.Skipped) != 1 || res.Skipped[0] != ids[3] {
		t.Fatalf("backup beside a rotted job: %+v, %v", res, err)
	}
	if _, err := s.Update(ids[3], func(*job.Job) error { return nil }); !errors.Is(err, errJobRotted) {
		t.Fatalf("update of a rotted job: %v", err)
	}
	mustCreate(t, s, newJob(20))
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), ids[3]) {
		t.Fatalf("the snapshot that left the rotted job out did not name it:\n%s", logs.String())
	}
	if _, err := s.Get(ids[3]); !errors.Is(err, errJobRotted) {
		t.Fatalf("after the snapshot, get of the rotted job: %v", err)
	}
	abandon(s)
	s, err = Open(Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep := s.Report()
	if len(rep.RestoredJobs) != 1 || rep.RestoredJobs[0] != ids[3] {
		t.Fatalf("reopen: %+v", rep)
	}
	j, err := s.Get(ids[3])
	if err != nil || j.Status != job.Completed {
		t.Fatalf("restored job: %v %v", j, err)
	}
	if all, _ := s.List(Filter{}); len(all) != 11 {
		t.Fatalf("%d jobs after the reopen, want 11", len(all))
	}
}

// Opening a store holds its index, not its history: the heap after open
// is a small share of jobs.json however large each job is.
func TestOpenHeapDoesNotHoldTheHistory(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	const n, pad = 2000, 16000
	settle(t, s, n, pad)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	s = openT(t, dir)
	defer s.Close()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	held := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	if held > st.Size()/10 {
		t.Fatalf("an open store of %d bytes holds %d bytes of heap, more than a tenth of it", st.Size(), held)
	}
	if j, err := s.List(Filter{Limit: 1}); err != nil || len(j) != 1 || len(j[0].Context["pad"].(string)) != pad {
		t.Fatalf("list: %v %v", j, err)
	}
}

// jobs.json.sum records each job's index fields, so opening checks a job's
// bytes against its sum without decoding them: the index it builds is the
// one decoding would give. A sum in the earlier format (crc and id only)
// still vouches for the file, and the first line no longer holds the field
// an earlier release checks, so that one checks every job instead of
// misreading the lines.
func TestSumRecordsTheIndexFields(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	settle(t, s, 20, 10)
	start(t, s, mustCreate(t, s, newJob(30)).ID)
	mustCreate(t, s, newJob(31))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sumPath := filepath.Join(dir, snapshotSumFile)
	raw, err := os.ReadFile(sumPath)
	if err != nil {
		t.Fatal(err)
	}
	head, lines, _ := bytes.Cut(raw, []byte{'\n'})
	if bytes.Contains(head, []byte(`"crc32c"`)) || !bytes.Contains(head, []byte(`"lines_crc32c"`)) {
		t.Fatalf("first line %s", head)
	}
	check := func(s *FileStore) {
		t.Helper()
		s.idx.mu.Lock()
		defer s.idx.mu.Unlock()
		if len(s.idx.jobs) != 22 {
			t.Fatalf("%d jobs", len(s.idx.jobs))
		}
		for id, e := range s.idx.jobs {
			_, want, err := decodeEntry(rawOf(t, e), true)
			if err != nil {
				t.Fatal(err)
			}
			if e.status != want.status || e.created != want.created || e.completed != want.completed || e.sealKey() != want.sealKey() {
				t.Fatalf("job %s indexed as %+v, its bytes say %+v", id, e, want)
			}
		}
	}
	s = openT(t, dir)
	check(s)
	if len(s.Report().Problems) != 0 {
		t.Fatalf("problems: %v", s.Report().Problems)
	}
	abandon(s)
	// Indexed from the sum file alone: the same index.
	s, err = Open(Options{Dir: dir, SnapshotInterval: -1, CheckInBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	if len(s.Report().Problems) != 0 {
		t.Fatalf("problems: %v", s.Report().Problems)
	}
	abandon(s)

	// The earlier format: "crc id" lines under "crc32c".
	var old []byte
	for _, l := range bytes.Split(bytes.TrimSuffix(lines, []byte{'\n'}), []byte{'\n'}) {
		f := bytes.Fields(l)
		old = append(old, fmt.Sprintf("%s %s\n", f[0], f[len(f)-1])...)
	}
	var sum snapshotSum
	if err := json.Unmarshal(head, &sum); err != nil {
		t.Fatal(err)
	}
	sum.LinesCRC32C, sum.CRC32C = "", fmt.Sprintf("%08x", crc32.Checksum(old, crcTable))
	oldHead, _ := json.Marshal(sum)
	if err := os.WriteFile(sumPath, append(append(oldHead, '\n'), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	if sums := readSnapshotSums(fsys.OS, dir, st); sums == nil || len(sums.list) != 22 || sums.list[0].meta {
		t.Fatalf("an earlier sum file reads as %+v", sums)
	}
	s = openT(t, dir)
	defer s.Close()
	check(s)
}

// With CheckInBackground the index comes from the sum file alone, the same
// as reading jobs.json gives; a settled job that rotted while the store was
// closed is found by the scrub after Open and taken from the backup, a
// pending one at Open itself, before recovery could act on it, and one no
// backup holds is reported lost and reads as an error.
func TestCheckInBackgroundMendsRot(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ids := settle(t, s, 10, 10)
	waiting := mustCreate(t, s, newJob(11)) // "hello 11"
	if _, err := s.Backup(BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	late := settle(t, s, 1, 10)[0] // "hello 0" again, so marked below by id
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, dir, "3\"")
	flipIn(t, dir, "11\"")
	flipID(t, dir, late)

	var logs syncBuffer
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, CheckInBackground: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rep := s.Report(); len(rep.RestoredJobs) != 1 || rep.RestoredJobs[0] != waiting.ID {
		t.Fatalf("open restored %v, want only the pending job %s", rep.RestoredJobs, waiting.ID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "restored_jobs=1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, ids[3]) || !strings.Contains(out, "restored_jobs=1") || !strings.Contains(out, late) {
		t.Fatalf("the scrub's report:\n%s", out)
	}
	if j, err := s.Get(ids[3]); err != nil || j.Status != job.Completed {
		t.Fatalf("the mended job: %v %v", j, err)
	}
	if _, err := s.Get(late); !errors.Is(err, errJobRotted) {
		t.Fatalf("a rotted job no backup holds: %v", err)
	}
	for _, id := range ids {
		if id == ids[3] {
			continue
		}
		if _, err := s.Get(id); err != nil {
			t.Fatal(err)
		}
	}
}

// flipID rots the job's bytes in jobs.json where its id is written inside
// them, keeping the file's size and time.
func flipID(t *testing.T, dir, id string) {
	t.Helper()
	rotAt(t, dir, `{"id":"`+id, len(`{"id":"`)+len(id)+5, 'Q')
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The scrub alone: nothing recovery reads rotted, so Open repairs nothing
// and the settled job is mended after it.
func TestScrubMendsASettledJob(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ids := settle(t, s, 10, 10)
	if _, err := s.Backup(BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, dir, "5\"")
	var logs syncBuffer
	s, err := Open(Options{Dir: dir, SnapshotInterval: -1, CheckInBackground: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if rep := s.Report(); len(rep.Problems) != 0 {
		t.Fatalf("open found %v before the scrub", rep.Problems)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "restored_jobs=1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if j, err := s.Get(ids[5]); err != nil || j.Status != job.Completed {
		t.Fatalf("the mended job: %v %v\n%s", j, err, logs.String())
	}
	// The mend is a change like any other: durable through the journal.
	abandon(s)
	s = openT(t, dir)
	defer s.Close()
	if j, err := s.Get(ids[5]); err != nil || j.Status != job.Completed {
		t.Fatalf("after a crash, the mended job: %v %v", j, err)
	}
	// jobs.json still holds the rotted bytes until the next snapshot;
	// the journal's newer record is what counts.
	if rep := s.Report(); len(rep.LostJobs) != 0 || len(rep.RestoredJobs) != 0 {
		t.Fatalf("reopened: %+v", rep)
	}
}
