package journal

// Every byte layout of jobs.journal lives in this file.
//
// Version 2 (written by this package):
//
//	file    := header frame*
//	header  := "SAJRNL02"                       8 bytes
//
//	frame:
//	0      1      2      3      4      5      6      7      8      9
//	+------+------+------+------+------+------+------+------+------+----------
//	| Length (uint32 LE)        | CRC-32C (uint32 LE)       | Type | Payload ...
//	+------+------+------+------+------+------+------+------+------+----------
//
//	Length   bytes of Payload, 1 .. maxFramePayload (1 MiB)
//	CRC      CRC-32C (Castagnoli) over Length's 4 bytes, Type and Payload,
//	         so a torn or flipped length is caught instead of trusted
//	Type     0xA1 FULL    a whole change
//	         0xA2 FIRST   first part of a change larger than one frame
//	         0xA3 MIDDLE  an inner part
//	         0xA4 LAST    the final part; the change is complete only here
//	         The fixed high nibble makes zeroed or random bytes rarely look
//	         like a frame start, which keeps resynchronisation after rot
//	         cheap and its false positives rare.
//
//	A change's payload (FULL, or FIRST..LAST concatenated) is one or more
//	records:
//	+------+----------------+-----+------------------+-------+
//	| Kind | uvarint keylen | key | uvarint valuelen | value |
//	+------+----------------+-----+------------------+-------+
//	Kind is one of 'P' 'D' 'R' 'X'; the key is never empty; the deletes
//	('D', 'X') have valuelen 0.
//
// Version 1 (read only; rewritten as version 2 by Repair):
//
//	file    := "SAJRNL01" record*
//	0      1      2      3      4      5      6      7      8
//	+------+------+------+------+------+------+------+------+------+-------
//	| Length (uint32 LE)        | CRC-32C (uint32 LE)       | Kind | Body ...
//	+------+------+------+------+------+------+------+------+------+-------
//	Length   bytes of Kind + Body, 1 .. 64 MiB
//	CRC      over Length's 4 bytes, Kind and Body
//	Body     'P': a job's JSON (its key, the job id, is inside the JSON)
//	         'D': the job id
//	         'R': uvarint keylen, key, value
//	         'X': the record key
//	Each v1 record is a change of its own.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

const (
	magicV1   = "SAJRNL01"
	magicV2   = "SAJRNL02"
	headerLen = 8

	frameHeaderLen = 9
	// maxFramePayload bounds one frame, so a corrupt length never makes the
	// reader trust (or hash) more than this before the CRC speaks.
	maxFramePayload = 1 << 20
	// MaxChange is the largest change payload the format accepts; larger
	// MaxChangeBytes options are lowered to it.
	MaxChange = 256 << 20

	typeFull   byte = 0xA1
	typeFirst  byte = 0xA2
	typeMiddle byte = 0xA3
	typeLast   byte = 0xA4

	v1HeaderLen = 8
	v1MaxRecord = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// payloadSize returns the bytes c's records take in a payload.
func payloadSize(c Change) int {
	n := 0
	for i := range c {
		n += 1 + uvarintLen(len(c[i].Key)) + len(c[i].Key) + uvarintLen(len(c[i].Value)) + len(c[i].Value)
	}
	return n
}

// encodedSize returns the bytes of c's frames on disk.
func encodedSize(c Change) int64 {
	p := payloadSize(c)
	frames := (p + maxFramePayload - 1) / maxFramePayload
	return int64(p) + int64(frames)*frameHeaderLen
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

func appendPayload(buf []byte, c Change) []byte {
	for i := range c {
		r := &c[i]
		buf = append(buf, byte(r.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(r.Key)))
		buf = append(buf, r.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(r.Value)))
		buf = append(buf, r.Value...)
	}
	return buf
}

// appendChange appends c's frames to buf. The payload is built in place
// after room for the first header, then headers are slid in, so a large
// change costs one copy of its values.
func appendChange(buf []byte, c Change) []byte {
	p := payloadSize(c)
	if p <= maxFramePayload {
		start := len(buf)
		buf = append(buf, make([]byte, frameHeaderLen)...)
		buf = appendPayload(buf, c)
		putFrameHeader(buf[start:], typeFull, buf[start+frameHeaderLen:])
		return buf
	}
	payload := appendPayload(make([]byte, 0, p), c)
	for off := 0; off < len(payload); off += maxFramePayload {
		end := min(off+maxFramePayload, len(payload))
		typ := typeMiddle
		switch {
		case off == 0:
			typ = typeFirst
		case end == len(payload):
			typ = typeLast
		}
		start := len(buf)
		buf = append(buf, make([]byte, frameHeaderLen)...)
		buf = append(buf, payload[off:end]...)
		putFrameHeader(buf[start:], typ, buf[start+frameHeaderLen:])
	}
	return buf
}

func putFrameHeader(h []byte, typ byte, payload []byte) {
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	h[8] = typ
	binary.LittleEndian.PutUint32(h[4:8], frameCRC(h, payload))
}

func frameCRC(h, payload []byte) uint32 {
	crc := crc32.Update(0, crcTable, h[0:4])
	crc = crc32.Update(crc, crcTable, h[8:9])
	return crc32.Update(crc, crcTable, payload)
}

// frame is one frame (v2) or record (v1) as found on disk.
type frame struct {
	typ     byte
	payload []byte
	end     int
}

// parseFrame reads the v2 frame at off. A non-empty reason says why no
// frame starts there; torn says the file ends before the frame would.
func parseFrame(data []byte, off int) (f frame, reason string, torn bool) {
	if len(data)-off < frameHeaderLen {
		return f, "frame header cut short by the end of the file", true
	}
	h := data[off : off+frameHeaderLen]
	n := int(binary.LittleEndian.Uint32(h[0:4]))
	typ := h[8]
	if typ < typeFull || typ > typeLast {
		return f, fmt.Sprintf("unknown frame type 0x%02x", typ), false
	}
	if n < 1 || n > maxFramePayload {
		return f, fmt.Sprintf("impossible frame length %d", n), false
	}
	end := off + frameHeaderLen + n
	if end > len(data) {
		return f, "frame cut short by the end of the file", true
	}
	payload := data[off+frameHeaderLen : end]
	if frameCRC(h, payload) != binary.LittleEndian.Uint32(h[4:8]) {
		return f, "checksum mismatch", false
	}
	return frame{typ: typ, payload: payload, end: end}, "", false
}

// decodePayload decodes a v2 change payload. Values alias payload.
func decodePayload(p []byte) (Change, error) {
	var c Change
	for len(p) > 0 {
		kind := Kind(p[0])
		if !kind.valid() {
			return nil, fmt.Errorf("unknown record kind 0x%02x", p[0])
		}
		p = p[1:]
		key, rest, err := lengthPrefixed(p)
		if err != nil {
			return nil, fmt.Errorf("record key: %w", err)
		}
		if len(key) == 0 {
			return nil, errors.New("record without key")
		}
		val, rest, err := lengthPrefixed(rest)
		if err != nil {
			return nil, fmt.Errorf("record %q value: %w", key, err)
		}
		if len(val) == 0 {
			val = nil
		}
		if kind.isDelete() && val != nil {
			return nil, fmt.Errorf("delete of %q carries a value", key)
		}
		c = append(c, Record{Kind: kind, Key: string(key), Value: val})
		p = rest
	}
	if len(c) == 0 {
		return nil, errors.New("change without records")
	}
	return c, nil
}

func lengthPrefixed(p []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, errors.New("length out of range")
	}
	return p[k : k+int(n)], p[k+int(n):], nil
}

// payloadKeys returns the keys of the records at the start of a damaged
// payload, for as long as they still parse.
func payloadKeys(p []byte) []string {
	var keys []string
	for len(p) > 0 && Kind(p[0]).valid() {
		key, rest, err := lengthPrefixed(p[1:])
		if err != nil || len(key) == 0 {
			break
		}
		keys = append(keys, string(key))
		_, rest, err = lengthPrefixed(rest)
		if err != nil {
			break
		}
		p = rest
	}
	return keys
}

// parseV1 reads the v1 record at off, as a FULL frame.
func parseV1(data []byte, off int) (f frame, reason string, torn bool) {
	if len(data)-off < v1HeaderLen {
		return f, "record header cut short by the end of the file", true
	}
	n := int(binary.LittleEndian.Uint32(data[off : off+4]))
	if n < 1 || n > v1MaxRecord {
		return f, fmt.Sprintf("impossible record length %d", n), false
	}
	end := off + v1HeaderLen + n
	if end > len(data) {
		return f, "record cut short by the end of the file", true
	}
	crc := crc32.Update(0, crcTable, data[off:off+4])
	crc = crc32.Update(crc, crcTable, data[off+v1HeaderLen:end])
	if crc != binary.LittleEndian.Uint32(data[off+4:off+8]) {
		return f, "checksum mismatch", false
	}
	return frame{typ: typeFull, payload: data[off+v1HeaderLen : end], end: end}, "", false
}

// decodeV1 decodes a v1 record (kind + body) as a one-record change. A
// PutJob's Key is left empty: it lives inside the JSON, which this package
// does not read.
func decodeV1(p []byte) (Change, error) {
	kind, body := Kind(p[0]), p[1:]
	var r Record
	switch kind {
	case PutJob:
		if len(body) == 0 {
			return nil, errors.New("job record without a job")
		}
		r = Record{Kind: PutJob, Value: body}
	case DeleteJob, DeleteRecord:
		if len(body) == 0 {
			return nil, errors.New("delete record without key")
		}
		r = Record{Kind: kind, Key: string(body)}
	case PutRecord:
		key, val, err := lengthPrefixed(body)
		if err != nil || len(key) == 0 {
			return nil, errors.New("record key length out of range")
		}
		r = Record{Kind: PutRecord, Key: string(key), Value: val}
	default:
		return nil, fmt.Errorf("unknown record kind %q", byte(kind))
	}
	return Change{r}, nil
}

// v1Keys returns the key of a damaged v1 record body, where it can be read.
func v1Keys(p []byte) []string {
	if len(p) < 2 {
		return nil
	}
	switch Kind(p[0]) {
	case DeleteJob, DeleteRecord:
		return []string{string(p[1:])}
	case PutRecord:
		if key, _, err := lengthPrefixed(p[1:]); err == nil && len(key) > 0 {
			return []string{string(key)}
		}
	}
	return nil
}
