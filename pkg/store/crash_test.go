package store

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

var crashRounds = flag.Int("crash.rounds", 50, "rounds of the SIGKILL test")

const crashChildEnv = "SECAUTO_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// Stages a job goes through in the crash child, in order.
const (
	stageNone = iota
	stageCreated
	stageStarted
	stageFinished
	stageDeleted
)

var stageOf = map[string]int{"C": stageCreated, "S": stageStarted, "F": stageFinished, "D": stageDeleted}

// crashChild writes jobs from several goroutines until it is killed,
// printing a line for each change only after the store acknowledged it.
// Snapshots are frequent and the journal limit small so that kills land
// in compaction too.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir, SnapshotInterval: 7 * time.Millisecond, JournalLimit: 16 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var out sync.Mutex
	ack := func(kind, id string) {
		out.Lock()
		fmt.Fprintf(os.Stdout, "%s %s\n", kind, id)
		out.Unlock()
	}
	fmt.Fprintln(os.Stdout, "ready")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				j, err := s.Create(newJob(w*1_000_000 + i))
				if err != nil {
					os.Exit(4)
				}
				ack("C", j.ID)
				if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Start(time.Now()) }); err != nil {
					os.Exit(4)
				}
				ack("S", j.ID)
				if _, err := s.Update(j.ID, func(j *job.Job) error { return j.Finish(job.Completed, "", time.Now()) }); err != nil {
					os.Exit(4)
				}
				ack("F", j.ID)
				if i%3 == 0 {
					if err := s.Delete(j.ID); err != nil {
						os.Exit(4)
					}
					ack("D", j.ID)
				}
			}
		})
	}
	wg.Wait()
}

// TestSIGKILLLosesNothingAcknowledged runs a writer in a child process,
// kills it with SIGKILL at a random moment, and checks that every change it
// acknowledged is in the reopened store, which verifies clean.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var dir string
	known := map[string]job.Status{} // jobs of earlier rounds in this directory
	start := time.Now()
	var acked int
	for round := range *crashRounds {
		if round%10 == 0 {
			dir = t.TempDir()
			clear(known)
		}
		acked += crashRound(t, exe, dir, known, round)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds, %d acknowledged changes checked, %s", *crashRounds, acked, time.Since(start).Round(time.Millisecond))
}

func crashRound(t *testing.T, exe, dir string, known map[string]job.Status, round int) int {
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l, ok := <-lines; !ok || l != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("round %d: child did not start (%q)", round, l)
	}
	time.AfterFunc(time.Duration(5+rand.IntN(150))*time.Millisecond, func() {
		cmd.Process.Signal(syscall.SIGKILL)
	})
	stage := map[string]int{}
	n := 0
	for l := range lines {
		kind, id, ok := strings.Cut(l, " ")
		if !ok || stageOf[kind] == 0 {
			continue // a line torn by the kill was never acknowledged whole
		}
		stage[id] = max(stage[id], stageOf[kind])
		n++
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("round %d: child ended by itself: %v", round, err)
	}

	s, err := Open(Options{Dir: dir, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
	}
	all, err := s.List(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]job.Status{}
	for _, j := range all {
		stored[j.ID] = j.Status
	}
	for id, st := range known {
		if stored[id] != st {
			t.Errorf("round %d: job %s of an earlier round is %q, was %q", round, id, stored[id], st)
		}
	}
	for id, want := range stage {
		got := stageNone
		switch st, ok := stored[id]; {
		case !ok:
			got = stageDeleted
		case st == job.Pending:
			got = stageCreated
		case st == job.Running:
			got = stageStarted
		case st == job.Completed:
			got = stageFinished
		}
		// The store may hold the one change in flight at the kill, never less
		// than what was acknowledged.
		if got < want || got > want+1 {
			t.Errorf("round %d: job %s acknowledged at stage %d, stored at stage %d", round, id, want, got)
		}
	}
	for id, st := range stored {
		if _, ok := stage[id]; !ok && known[id] == "" && st != job.Pending {
			t.Errorf("round %d: unacknowledged job %s is %s; only its create can have been in flight", round, id, st)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(dir)
	if err != nil || !v.OK {
		t.Fatalf("round %d: verify after reopen: %+v %v", round, v, err)
	}
	clear(known)
	for id, st := range stored {
		known[id] = st
	}
	return n
}
