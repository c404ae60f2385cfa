package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// A peer is one store under the same workload. Every peer acknowledges a
// change only once it is on stable storage (see durability, printed in the
// output's footnote).
type peer interface {
	// open creates the store in dir and pre-fills it with n completed
	// jobs through a bulk path that is not measured.
	open(dir string, n int) error
	// job runs job i's lifecycle (created pending, then running, then
	// completed: three durable changes) and appends the latency of each
	// change the caller waits for.
	job(i int, lat *[]time.Duration) error
	// close releases the store; its files stay for the caller to remove.
	close() error
}

// asyncPeer is a peer whose jobs end after job returns (River works them
// in the background): drain waits for every job to end and returns the
// latencies from each job's start to its end.
type asyncPeer interface {
	peer
	drain() ([]time.Duration, error)
}

// peerInfo describes a peer for the footnote and builds it.
type peerInfo struct {
	name string
	// durability says how every acknowledged change is made durable.
	durability string
	make       func(cfg childConfig) peer
	// otherPIDs lists processes besides this one that write for the peer
	// (PostgreSQL's), counted in its write figures.
	otherPIDs func() []int
}

// peers lists every peer in the order of the output; secauto first, the
// disk's limit last.
var peers = []peerInfo{
	{name: "secauto", durability: "pkg/store as secauto serve opens it: every change appended to jobs.journal and fdatasynced before Create/Update return; concurrent writers share one write and one fsync (group commit)",
		make: func(childConfig) peer { return &secautoPeer{} }},
	{name: "secauto-pg", durability: "secauto's postgres driver (pgx, synchronous_commit=on on every connection): concurrent creates share one transaction (application group commit), a job is taken with Claim (FOR UPDATE SKIP LOCKED) and completed with Update, each acknowledged after its COMMIT; same database as river",
		make: func(c childConfig) peer { return &secautoPGPeer{url: c.PostgresURL} }, otherPIDs: postgresPIDs},
	{name: "sqlite", durability: "modernc.org/sqlite, journal_mode=WAL, synchronous=FULL (the WAL is fsynced at every commit); one transaction per change, writers take turns on one connection",
		make: func(childConfig) peer { return &sqlitePeer{} }},
	{name: "sqlite-group", durability: "as sqlite, but concurrent writers' changes are collected by an application group commit into one transaction (one WAL fsync), each acknowledged after its COMMIT",
		make: func(childConfig) peer { return &sqlitePeer{group: true} }},
	{name: "bbolt", durability: "go.etcd.io/bbolt with NoSync false: DB.Update per change, fdatasync of the data file at every commit",
		make: func(childConfig) peer { return &boltPeer{} }},
	{name: "bbolt-batch", durability: "as bbolt, through DB.Batch (default MaxBatchSize 1000, MaxBatchDelay 10ms): concurrent changes share one commit; each returns after its commit's fdatasync",
		make: func(childConfig) peer { return &boltPeer{batch: true} }},
	{name: "river", durability: "github.com/riverqueue/river with riverpgxv5 on PostgreSQL (fsync=on, synchronous_commit=on set on every connection): writers insert jobs (Insert returns after its commit is flushed), River's fetcher makes them running and its batched completer completed; a level lasts until River has reported every inserted job completed",
		make: func(c childConfig) peer { return &riverPeer{url: c.PostgresURL, maxWorkers: c.maxWriters()} }, otherPIDs: postgresPIDs},
	{name: "disk", durability: "the disk's limit: a file appended with a record of the job's encoded size, one fdatasync per write, writers taking turns",
		make: func(childConfig) peer { return &diskPeer{} }},
	{name: "disk-group", durability: "the disk's limit with group commit: concurrent writers' records appended in one write and made durable by one fdatasync",
		make: func(childConfig) peer { return &diskPeer{group: true} }},
}

func peerByName(name string) (peerInfo, bool) {
	for _, p := range peers {
		if p.name == name {
			return p, true
		}
	}
	return peerInfo{}, false
}

// parsePeers reads -peers: "all" or a comma-separated subset.
func parsePeers(s string) ([]peerInfo, error) {
	if s == "" || s == "all" {
		return peers, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if _, ok := peerByName(n); !ok {
			names := make([]string, len(peers))
			for i, p := range peers {
				names[i] = p.name
			}
			return nil, fmt.Errorf("-peers: unknown peer %q; choose from %s", n, strings.Join(names, ", "))
		}
		want[n] = true
	}
	var out []peerInfo
	for _, p := range peers {
		if want[p.name] {
			out = append(out, p)
		}
	}
	return out, nil
}

// skipError is a peer that cannot run here, with the reason.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// percentiles of sorted durations.
type percentiles struct {
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func percentilesOf(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
	return percentiles{P50: at(.50), P90: at(.90), P99: at(.99), Max: d[len(d)-1]}
}
