package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// eventually fails the test unless cond holds within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("not %s within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node whose database stops answering says so in Err (so /health
// answers 503) and in Stats, and is healthy again once it answers.
func TestErrWhileTheDatabaseDoesNotAnswer(t *testing.T) {
	const pw = "Hunter2Secret"
	u, p := proxied(t, testURL(t), pw)
	s := openAt(t, u)
	join(t, s, "h", 600*time.Millisecond) // renewed every 200ms
	other := openAt(t, u)                 // has not joined: only its own attempts tell
	if _, err := s.Create(newJob(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil || !s.Stats().Healthy {
		t.Fatalf("before: Err %v, Stats %+v", err, s.Stats())
	}

	p.stop()
	// The first failed connection says so at once; the next renewal says
	// what it costs.
	eventually(t, 5*time.Second, "unhealthy", func() bool { return s.Err() != nil })
	eventually(t, 5*time.Second, "a failed renewal", func() bool {
		return strings.Contains(s.Err().Error(), "the database does not answer, so this node cannot renew its lease")
	})
	msg := s.Err().Error()
	t.Logf("Err: %s", msg)
	if !strings.Contains(msg, "store.node_lease, 600ms") {
		t.Errorf("Err() = %q, want it to name the lease", msg)
	}
	if st := s.Stats(); st.Healthy {
		t.Errorf("Stats().Healthy while Err() = %v", msg)
	}
	for range 3 {
		if _, err := other.Get("x"); err == nil || strings.Contains(err.Error(), pw) {
			t.Fatalf("get while the database does not answer: %v", err)
		}
	}
	if err := other.Err(); err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Errorf("Err() of a store that has not joined, after failed attempts: %v", err)
	}
	for _, err := range []error{s.Err(), other.Err()} {
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("the password is in Err(): %v", err)
		}
	}

	p.start()
	eventually(t, 5*time.Second, "healthy again", func() bool { return s.Err() == nil })
	if st := s.Stats(); !st.Healthy || st.ByStatus[job.Pending] != 1 {
		t.Errorf("Stats once the database answers again: %+v", st)
	}
	if _, err := other.Get("x"); err == nil || other.Err() != nil {
		t.Errorf("once the database answers again: get %v, Err %v", err, other.Err())
	}
}
