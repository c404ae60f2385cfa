package server

import (
	"log/slog"
	"sync"
	"time"

	"github.com/secauto/secauto/pkg/store"
	"github.com/secauto/secauto/pkg/webhook"
)

// maintTask is one kind of upkeep the maintainer runs, on its schedule and
// on request: the cleaner and the backuper. The maintainer decides when a
// task runs, keeps every run (and restores) one at a time, and records each
// outcome in the task's schedule; the task knows what a run does and how
// it is reported.
type maintTask interface {
	// name keys the task's schedule record and its log lines.
	name() string
	// interval is how often the background run falls due; zero turns it
	// off (runs on request still work).
	interval() time.Duration
	// dueAtStart makes a task that never ran due at once rather than one
	// interval after its schedule began.
	dueAtStart() bool
	// doneElsewhere is the newest run made outside this daemon (an offline
	// backup), zero when there is none or it cannot tell.
	doneElsewhere() time.Time
	// run is a background run, started at start with the task's
	// configured options; lastSuccess is zero until a run succeeded.
	run(start, lastSuccess time.Time) runResult
}

// runResult is what one run of a task tells the maintainer.
type runResult struct {
	// err is why the run failed; nil for success.
	err error
	// putOff says the run was not made: it is tried again after a retry
	// delay, and nothing is recorded.
	putOff bool
	// keep adds to the schedule record what it keeps of a successful run.
	keep func(*scheduleRecord)
	// report logs and counts the run, once the schedule knows when the
	// next falls due, and returns the event announcing it (nil for none).
	report func(runReport) *webhook.Event
}

// runReport is what the maintainer knows of a run beyond its result.
type runReport struct {
	trigger  string // "schedule" or "admin"
	dur      time.Duration
	next     time.Time // zero: the background run is off
	failures int       // failed runs since the last success
}

// maintainer runs the maintenance tasks (River's QueueMaintainer, with one
// timer for all of them): each on its schedule, and on request through the
// admin endpoints, one run at a time so that a scheduled backup and an
// admin backup never collide. It also keeps restores apart from job
// submissions: a submission holds admit while it stores and queues its
// job, and a restore takes the jobs lock exclusively while it replaces the
// store, so an acknowledged job is either in the restored store or in the
// safety backup, and queued once.
type maintainer struct {
	st     store.Store
	log    *slog.Logger
	outbox *webhook.Outbox
	notify func()
	now    func() time.Time
	// after waits like time.NewTimer; stop releases the timer. Tests
	// replace it with a fake clock's.
	after func(d time.Duration) (c <-chan time.Time, stop func() bool)

	stopCh chan struct{}
	done   chan struct{}
	// lifeMu guards started and stopped.
	lifeMu  sync.Mutex
	started bool
	stopped bool

	// runMu serialises runs and restores.
	runMu sync.Mutex
	// jobsMu is held shared by submissions and exclusively by a restore.
	jobsMu sync.RWMutex

	tasks []maintTask
	mu    sync.Mutex // guards sched
	sched map[string]*taskSchedule
}

func realAfter(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// newMaintainer loads the tasks' schedules from the store's records.
func newMaintainer(st store.Store, log *slog.Logger, now func() time.Time, outbox *webhook.Outbox, notify func(), tasks ...maintTask) *maintainer {
	m := &maintainer{
		st: st, log: log, outbox: outbox, notify: notify, now: now,
		after:  realAfter,
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		tasks:  tasks,
		sched:  map[string]*taskSchedule{},
	}
	at := now()
	for _, task := range tasks {
		t := &taskSchedule{name: task.name(), interval: max(task.interval(), 0), dueAtStart: task.dueAtStart()}
		if err := t.load(st); err != nil {
			log.Warn("the maintenance schedule record does not decode; starting its schedule afresh", "key", scheduleKeyPrefix+t.name, "error", err)
		}
		if elsewhere := task.doneElsewhere(); elsewhere.After(t.lastSuccess) {
			t.lastSuccess = elsewhere
		}
		t.schedule(at)
		m.sched[t.name] = t
	}
	return m
}

// start launches the maintainer's goroutine, unless it was stopped.
func (m *maintainer) start() {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.started || m.stopped {
		return
	}
	m.started = true
	go m.loop()
}

// stop ends the goroutine, waiting for a run in progress to finish.
func (m *maintainer) stop() {
	m.lifeMu.Lock()
	if !m.stopped {
		m.stopped = true
		close(m.stopCh)
	}
	started := m.started
	m.lifeMu.Unlock()
	if started {
		<-m.done
	}
}

func (m *maintainer) stopping() bool {
	select {
	case <-m.stopCh:
		return true
	default:
		return false
	}
}

func (m *maintainer) loop() {
	defer close(m.done)
	m.anchor()
	for {
		for _, task := range m.tasks {
			if m.stopping() {
				return
			}
			m.runIfDue(task)
		}
		wait := maxSleep
		m.mu.Lock()
		now := m.now()
		for _, t := range m.sched {
			if t.enabled() {
				wait = min(wait, t.next.Sub(now))
			}
		}
		m.mu.Unlock()
		c, stopTimer := m.after(max(wait, 0))
		select {
		case <-m.stopCh:
			stopTimer()
			return
		case <-c:
		}
	}
}

// anchor records when the schedule of an enabled task that has never run
// began, so that its first run falls due one interval after the first
// start, not after every start.
func (m *maintainer) anchor() {
	m.mu.Lock()
	var recs []store.Record
	for _, task := range m.tasks {
		t := m.sched[task.name()]
		if !t.needsAnchor() {
			continue
		}
		now := m.now().UTC()
		t.rec.Since = &now
		t.schedule(now)
		if r, err := t.record(); err == nil {
			recs = append(recs, r)
		}
	}
	m.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if err := m.st.PutRecords(recs...); err != nil {
		m.log.Warn("cannot record the start of the maintenance schedule", "error", err)
	}
}

// runIfDue makes the background run of task if it is due. Whether it is
// due is decided under the maintainer's lock, so a run on request that
// came first (an admin backup) moves the schedule on instead of being
// followed by a second run.
//
// On a shared store the run is made under the cluster-wide lock of
// maintenance, after reading the schedule again: another node may have
// made the run since this one last looked, and then it is not due.
func (m *maintainer) runIfDue(task maintTask) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	cl, shared := m.st.(store.Cluster)
	if !shared {
		m.runDueLocked(task)
		return
	}
	if m.dueLocked(task) {
		ran, err := cl.Exclusive(maintenanceLock, func() error {
			m.reload(task)
			m.runDueLocked(task)
			return nil
		})
		switch {
		case err != nil && ran:
			m.log.Error("the maintenance lock of the shared store was lost while the task ran; another node may have run it too", "task", task.name(), "error", err)
		case err != nil:
			m.log.Error("cannot take the maintenance lock of the shared store; retrying later", "task", task.name(), "error", err)
		}
		if !ran {
			// Another node runs it now; its record moves the schedule on.
			m.reload(task)
		}
	}
}

// maintenanceLock is the cluster-wide lock maintenance runs under.
const maintenanceLock = "secauto.maintenance"

func (m *maintainer) dueLocked(task maintTask) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sched[task.name()]
	return t.enabled() && !m.now().Before(t.next)
}

func (m *maintainer) runDueLocked(task maintTask) {
	m.mu.Lock()
	t := m.sched[task.name()]
	due, last := t.enabled() && !m.now().Before(t.next), t.lastSuccess
	m.mu.Unlock()
	if due {
		m.runLocked(task, "schedule", func(start time.Time) runResult { return task.run(start, last) })
	}
}

// reload reads task's schedule record again, as another node may have
// written it.
func (m *maintainer) reload(task maintTask) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sched[task.name()]
	if err := t.load(m.st); err != nil {
		m.log.Warn("the maintenance schedule record does not decode", "key", scheduleKeyPrefix+t.name, "error", err)
		return
	}
	t.schedule(m.now())
}

// do makes one run of task, started by trigger, under the maintainer's
// lock, and records its outcome (see runLocked).
func (m *maintainer) do(task maintTask, trigger string, run func(start time.Time) runResult) {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	m.runLocked(task, trigger, run)
}

// runLocked makes one run and records its outcome: the schedule record
// and the event that announces the run go to the store in one durable
// write. The caller holds runMu.
func (m *maintainer) runLocked(task maintTask, trigger string, run func(start time.Time) runResult) {
	start := m.now()
	res := run(start)
	dur := m.now().Sub(start)

	m.mu.Lock()
	t := m.sched[task.name()]
	if res.putOff {
		t.next = m.now().Add(t.retryDelay())
		m.mu.Unlock()
		return
	}
	t.ran(trigger, start, dur, res.err, res.keep, m.now())
	rec, recErr := t.record()
	rep := runReport{trigger: trigger, dur: dur, next: t.next, failures: t.rec.Failures}
	m.mu.Unlock()

	var ev *webhook.Event
	if res.report != nil {
		ev = res.report(rep)
	}
	m.commit(rec, recErr, ev)
}

// exclusive runs fn while no maintenance run or other restore does.
func (m *maintainer) exclusive(fn func() error) error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	return fn()
}

// admit holds off restores while a job is stored and queued; call the
// function it returns once the job is queued.
func (m *maintainer) admit() (done func()) {
	m.jobsMu.RLock()
	return m.jobsMu.RUnlock
}

// lockJobs holds off submissions until the function it returns is called;
// a restore holds it while it replaces the store and the queue.
func (m *maintainer) lockJobs() (unlock func()) {
	m.jobsMu.Lock()
	return m.jobsMu.Unlock
}

// commit stores a run's schedule record together with the event that
// reports it, in one durable write, and wakes the webhook dispatcher.
func (m *maintainer) commit(rec store.Record, recErr error, ev *webhook.Event) {
	var recs []store.Record
	if recErr == nil {
		recs = append(recs, rec)
	} else {
		m.log.Error("cannot encode the maintenance schedule record", "key", rec.Key, "error", recErr)
	}
	if ev != nil {
		evRecs, err := m.outbox.Records(*ev)
		if err != nil {
			m.log.Error("cannot queue webhook event", "event", ev.Event, "error", err)
		}
		recs = append(recs, evRecs...)
	}
	if len(recs) == 0 {
		return
	}
	if err := m.st.PutRecords(recs...); err != nil {
		m.log.Error("cannot record the maintenance run; the schedule and its event may be lost if the daemon stops now", "error", err)
		return
	}
	if ev != nil {
		m.notify()
	}
}

// maintStatus is a task's state for /stats and the metrics.
type maintStatus struct {
	LastSuccess time.Time // zero: never
	Next        time.Time // zero: the background run is off
	Error       string    // the last run's error, if it failed
}

func (m *maintainer) status(name string) maintStatus {
	if m == nil {
		return maintStatus{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.sched[name]
	if t == nil {
		return maintStatus{}
	}
	st := maintStatus{LastSuccess: t.lastSuccess, Next: t.next}
	if t.rec.LastResult == resultFailed {
		st.Error = t.rec.Error
	}
	return st
}
