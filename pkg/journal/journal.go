// Package journal owns jobs.journal's byte format, its group-commit writer,
// and the reader that tells a torn tail from rot.
//
// The journal holds changes, each a list of records that apply whole or not
// at all. It knows the kinds of records but nothing of what their values
// mean: values are opaque bytes (the store puts JSON there).
//
// Durability: a change is acknowledged (Ticket.Wait returns nil, OnCommit
// sees it) only after the fsync of the write holding it has returned.
// Reading distinguishes an interrupted write at the end of the file (Torn
// damage: cut it) from damage with intact changes after it (rot: keep what
// follows). The byte layout is described in format.go.
package journal

import (
	"errors"
	"fmt"
)

// Kind is the kind of a record.
type Kind byte

// The kinds of records. Values are full state, never deltas, so replaying
// any suffix of a journal over an older state converges on the newest.
const (
	PutJob       Kind = 'P' // Key: job id; Value: the job's full state
	DeleteJob    Kind = 'D' // Key: job id; no Value
	PutRecord    Kind = 'R' // Key: auxiliary record key; Value: its content
	DeleteRecord Kind = 'X' // Key: auxiliary record key; no Value
)

func (k Kind) valid() bool {
	return k == PutJob || k == DeleteJob || k == PutRecord || k == DeleteRecord
}

func (k Kind) isDelete() bool { return k == DeleteJob || k == DeleteRecord }

// String names the kind, for messages and test failures.
func (k Kind) String() string {
	switch k {
	case PutJob:
		return "PutJob"
	case DeleteJob:
		return "DeleteJob"
	case PutRecord:
		return "PutRecord"
	case DeleteRecord:
		return "DeleteRecord"
	}
	return fmt.Sprintf("Kind(0x%02x)", byte(k))
}

// Record is one keyed value (or deletion) in a change.
//
// In a v1 journal a PutJob record's key was inside its JSON; Decode leaves
// Key empty for those and the reader of the JSON fills it in (before
// Repair, which refuses to write a record without a key).
type Record struct {
	Kind  Kind
	Key   string
	Value []byte
}

// A Change is records that apply whole or not at all (a job with its webhook
// event, a cleanup's deletes). Replay never sees part of one.
type Change []Record

var (
	// ErrNoSpace is wrapped by the error of a batch that failed because the
	// disk is full. Nothing of the batch is left in the file and the writer
	// keeps accepting changes, so service resumes once space returns.
	ErrNoSpace = errors.New("no space left on the device holding the journal")
	// ErrTooLarge is wrapped by Enqueue's error for a change larger than
	// Options.MaxChangeBytes.
	ErrTooLarge = errors.New("change too large for the journal")
	// ErrClosed is returned for use of a closed Writer.
	ErrClosed = errors.New("journal closed")
)

// check returns why c cannot be written, or nil.
func (c Change) check() error {
	if len(c) == 0 {
		return errors.New("journal: change without records")
	}
	for i := range c {
		r := &c[i]
		switch {
		case !r.Kind.valid():
			return fmt.Errorf("journal: record %q has unknown kind %v", r.Key, r.Kind)
		case r.Key == "":
			return fmt.Errorf("journal: %v record without key", r.Kind)
		case r.Kind.isDelete() && len(r.Value) > 0:
			return fmt.Errorf("journal: %v of %q carries a value", r.Kind, r.Key)
		}
	}
	return nil
}

// HeaderSize is the length of an empty journal: its header alone.
const HeaderSize = headerLen
