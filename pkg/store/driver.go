package store

import (
	"time"

	"github.com/secauto/secauto/pkg/job"
)

// Store is the job store as the rest of secauto sees it: the command line,
// the API, maintenance and webhooks hold a Store and never a driver. The
// file driver (FileStore, this package) keeps a data directory; the
// postgres driver (package store/postgres) keeps one database shared by
// several serve processes, and adds Cluster.
//
// Every method is safe for concurrent use. A change returns once it is
// durable, and what it returns (or what Get and List return) is the
// driver's newest state: a driver never acknowledges what it could not read
// back.
type Store interface {
	// Dir is the data directory: the store's files for the file driver,
	// where backups are written for the others.
	Dir() string
	// Report says what opening repaired (SPEC §5 steps 1 and 2).
	Report() OpenReport
	// Err is non-nil once the store has stopped accepting writes.
	Err() error
	Stats() Stats
	// SetOwner records who holds the store, for other processes to find.
	SetOwner(Owner) error
	Close() error

	Get(idOrPrefix string) (*job.Job, error)
	List(Filter) ([]*job.Job, error)
	Create(*job.Job) (*job.Job, error)
	// Update applies fn to a copy of the job's newest state and stores the
	// result; fn may run more than once when another writer changed the
	// job meanwhile, so it must only edit the job.
	Update(id string, fn func(*job.Job) error) (*job.Job, error)
	// UpdateWith is Update that stores also's records in the same change.
	UpdateWith(id string, fn func(*job.Job) error, also func(*job.Job) []Record) (*job.Job, error)
	Delete(id string) error
	// Rerun stores the job next makes from the original and links the two
	// in one change.
	Rerun(id string, next func(orig *job.Job) (*job.Job, error)) (*job.Job, error)

	// PutRecords stores auxiliary records (webhook outbox, maintenance
	// schedule); a record with a nil Value is deleted.
	PutRecords(recs ...Record) error
	Records(prefix string) []Record

	Backup(BackupOptions) (*BackupResult, error)
	Restore(path string, o BackupOptions) (*RestoreResult, error)
	Cleanup(CleanupOptions) (*CleanupResult, error)
	Recover(RecoverOptions) (*RecoverResult, error)
	Verify(VerifyOptions) (*VerifyResult, error)
	RotateKeys(RotateOptions) (*RotateResult, error)
	// Snapshot makes the newest state the store's compact form now (the
	// file driver writes jobs.json); drivers without one do nothing.
	Snapshot() error
}

var _ Store = (*FileStore)(nil)

// Cluster is what a store shared by several serve processes (nodes) adds
// to Store (SPEC §11). A store that is not a Cluster has one node, the
// process that holds it, and the server queues its pending jobs itself.
type Cluster interface {
	// Join registers this node and keeps its lease renewed (every third of
	// lease) until Close. A node whose lease lapses is dead to the others.
	Join(n Node, lease time.Duration) error
	// Claim starts up to max pending jobs, oldest first, that no other
	// node is starting: each goes pending → running through start (which
	// calls job.Start), recorded as this node's, in one transaction. A job
	// that cannot be read or started stays pending, is named to the
	// store's OnUnreadable, and the next one is tried instead.
	Claim(max int, start func(*job.Job) error) ([]*job.Job, error)
	// Wake receives (coalesced) whenever a job may have become pending on
	// any node.
	Wake() <-chan struct{}
	// Settled receives the id of a job that this node runs when another
	// node ended it (a cancel, a delete, a restore): the run must stop.
	Settled() <-chan string
	// Ended receives the id of every job that ended, or was deleted, on
	// any node (dropped when the reader falls behind): what a client
	// waiting on this node for a job another runs needs.
	Ended() <-chan string
	// RescueDead applies SPEC §5 step 3 to the running jobs of every node
	// whose lease has lapsed, with also's records in the same change, and
	// returns the jobs it changed. Each dead node is rescued once, by one
	// node.
	RescueDead(now time.Time, also func(*job.Job) []Record) ([]*job.Job, error)
	// Exclusive runs fn while this node holds the cluster-wide lock name,
	// and reports false without running it when another node holds it.
	Exclusive(name string, fn func() error) (bool, error)
	// ClaimRecord reserves the record key for this node for ttl (a
	// webhook delivery), and reports false when another node holds it or
	// no such record exists.
	ClaimRecord(key string, ttl time.Duration) (bool, error)
}

// Node names one serve process of a cluster.
type Node struct {
	ID        string    `json:"id"`
	Host      string    `json:"host,omitempty"`
	PID       int       `json:"pid,omitempty"`
	Address   string    `json:"address,omitempty"`
	StartedAt time.Time `json:"started_at"`
}
