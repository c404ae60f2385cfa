package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The journal is a header followed by records, each
//
//	length  uint32 LE   bytes of payload
//	crc     uint32 LE   CRC-32C over the length bytes and the payload
//	payload             kind byte, then the body
//
// A record carries full state (the whole job, or the id of a deleted job),
// never a delta, so replaying any suffix of the journal over any older
// state converges on the newest state. The CRC covers the length, so a torn
// or flipped length is caught instead of being trusted.
const (
	journalMagic  = "SAJRNL01"
	recHeaderSize = 8
	// maxRecordSize bounds what a corrupt length field can make us read.
	maxRecordSize = 64 << 20

	recPut    byte = 'P'
	recDelete byte = 'D'
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends one encoded record to buf.
func appendRecord(buf []byte, kind byte, body []byte) []byte {
	n := len(body) + 1
	var hdr [recHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(n))
	crc := crc32.Update(0, crcTable, hdr[0:4])
	crc = crc32.Update(crc, crcTable, []byte{kind})
	crc = crc32.Update(crc, crcTable, body)
	binary.LittleEndian.PutUint32(hdr[4:8], crc)
	buf = append(buf, hdr[:]...)
	buf = append(buf, kind)
	return append(buf, body...)
}

// journalError locates the first bad byte of a journal.
type journalError struct {
	Offset int64
	Reason string
}

func (e *journalError) Error() string {
	return fmt.Sprintf("bad record at offset %d: %s", e.Offset, e.Reason)
}

// scanJournal walks the records of data and calls fn for each. It returns
// the offset just past the last good record and, when the journal does not
// end there, a *journalError saying why. A record that fn rejects counts as
// bad. Payloads passed to fn alias data.
func scanJournal(data []byte, fn func(kind byte, body []byte) error) (int64, *journalError) {
	if len(data) == 0 {
		return 0, nil
	}
	if len(data) < len(journalMagic) || string(data[:len(journalMagic)]) != journalMagic {
		return 0, &journalError{0, "missing journal header"}
	}
	off := len(journalMagic)
	for off < len(data) {
		if len(data)-off < recHeaderSize {
			return int64(off), &journalError{int64(off), "torn record header"}
		}
		n := int(binary.LittleEndian.Uint32(data[off : off+4]))
		want := binary.LittleEndian.Uint32(data[off+4 : off+8])
		if n < 1 || n > maxRecordSize {
			return int64(off), &journalError{int64(off), fmt.Sprintf("impossible record length %d", n)}
		}
		end := off + recHeaderSize + n
		if end > len(data) {
			return int64(off), &journalError{int64(off), "torn record (journal ends inside it)"}
		}
		crc := crc32.Update(0, crcTable, data[off:off+4])
		crc = crc32.Update(crc, crcTable, data[off+recHeaderSize:end])
		if crc != want {
			return int64(off), &journalError{int64(off), "checksum mismatch"}
		}
		payload := data[off+recHeaderSize : end]
		if err := fn(payload[0], payload[1:]); err != nil {
			return int64(off), &journalError{int64(off), err.Error()}
		}
		off = end
	}
	return int64(off), nil
}
