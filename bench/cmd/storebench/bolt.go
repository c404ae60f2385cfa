package main

import (
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secauto/secauto/pkg/job"
)

var boltBucket = []byte("jobs")

// boltPeer keeps jobs in one bbolt bucket, id to the job's JSON. bbolt
// fdatasyncs its file at every commit unless NoSync is set, which it is
// only while pre-filling.
type boltPeer struct {
	batch bool // DB.Batch instead of DB.Update
	db    *bolt.DB
}

func (p *boltPeer) open(dir string, n int) error {
	path := filepath.Join(dir, "bbolt.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	base := time.Now().Add(-48 * time.Hour).UTC()
	for start := 0; err == nil && start < n; start += 20_000 {
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(boltBucket)
			b.FillPercent = 0.9 // ids ascend: appends
			for i := start; i < min(n, start+20_000); i++ {
				j := prefillJob(i, base)
				if err := b.Put([]byte(j.ID), encode(j)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	p.db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	return err
}

func (p *boltPeer) job(i int, lat *[]time.Duration) error {
	return lifecycle(newIDJob(i), func(j *job.Job, create bool) error {
		key, val := []byte(j.ID), encode(j)
		put := func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(key, val) }
		if p.batch {
			return p.db.Batch(put)
		}
		return p.db.Update(put)
	}, lat)
}

func (p *boltPeer) close() error {
	if p.db == nil {
		return nil
	}
	return p.db.Close()
}
