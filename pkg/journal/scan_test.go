package journal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var cs []Change
	for i := range 200 {
		cs = append(cs, job(i, i*7))
	}
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	cs = append(cs, Change{
		{Kind: PutJob, Key: "big", Value: big},
		{Kind: PutRecord, Key: "outbox/1", Value: []byte(`{"event":"job.done"}`)},
	})
	cs = append(cs, Change{{Kind: DeleteJob, Key: "job-001"}, {Kind: DeleteRecord, Key: "outbox/0"}}, job(999, 3))
	data := encode(cs...)
	s := Decode(data)
	if len(s.Damage) != 0 {
		t.Fatalf("damage in a clean journal: %+v", s.Damage)
	}
	if s.Version != 2 || s.Size != int64(len(data)) || s.Good != s.Size {
		t.Fatalf("version %d size %d good %d, file %d", s.Version, s.Size, s.Good, len(data))
	}
	if len(s.Entries) != len(cs) {
		t.Fatalf("%d entries, want %d", len(s.Entries), len(cs))
	}
	off := int64(headerLen)
	for i, e := range s.Entries {
		if !sameChange(e.Change, cs[i]) {
			t.Fatalf("entry %d differs", i)
		}
		if e.Offset != off || e.Size != encodedSize(cs[i]) {
			t.Fatalf("entry %d at %d size %d, want %d size %d", i, e.Offset, e.Size, off, encodedSize(cs[i]))
		}
		off += e.Size
	}
	if n := s.Entries[200].Size / maxFramePayload; n < 5 {
		t.Fatalf("5 MiB change took %d bytes, not several frames", s.Entries[200].Size)
	}
}

func TestFlippedByteInTheMiddle(t *testing.T) {
	var cs []Change
	for i := range 100 {
		cs = append(cs, job(i, 40))
	}
	data := encode(cs...)
	clean := Decode(data)
	mid := clean.Entries[50]
	for pos := mid.Offset; pos < mid.Offset+mid.Size; pos++ {
		bad := bytes.Clone(data)
		bad[pos] ^= 0x10
		s := Decode(bad)
		if len(s.Entries) != 99 || len(s.Damage) != 1 {
			t.Fatalf("flip at %d: %d entries, damage %+v", pos, len(s.Entries), s.Damage)
		}
		d := s.Damage[0]
		if d.Offset != mid.Offset || d.Length != mid.Size || d.Torn {
			t.Fatalf("flip at %d: damage %+v, want offset %d length %d, not torn", pos, d, mid.Offset, mid.Size)
		}
		if slices.Contains(keysOf(s.Entries), "job-050") {
			t.Fatalf("flip at %d: the damaged change was read", pos)
		}
		// Past the key, the key still reads.
		if pos > mid.Offset+frameHeaderLen+2+7 && !slices.Equal(d.Keys, []string{"job-050"}) {
			t.Fatalf("flip at %d: damage names %q, want job-050", pos, d.Keys)
		}
		if s.Good != clean.Good-mid.Size {
			t.Fatalf("flip at %d: good %d, want %d", pos, s.Good, clean.Good-mid.Size)
		}
	}
}

// A journal cut at any byte loses at most the change being written, and
// is reported as torn, never as rot.
func TestTruncatedAnywhere(t *testing.T) {
	cs := []Change{job(1, 10), job(2, 20), {{Kind: DeleteJob, Key: "job-1"}, {Kind: PutRecord, Key: "k", Value: []byte("{}")}}}
	data := encode(cs...)
	ends := []int{headerLen}
	for _, c := range cs {
		ends = append(ends, ends[len(ends)-1]+int(encodedSize(c)))
	}
	for n := 0; n <= len(data); n++ {
		checkTruncated(t, data, n, cs, ends)
	}
}

func TestTruncatedMultiFrameChange(t *testing.T) {
	big := Change{{Kind: PutJob, Key: "big", Value: bytes.Repeat([]byte("y"), 3*maxFramePayload+100)}}
	cs := []Change{job(1, 10), big, job(3, 10)}
	data := encode(cs...)
	ends := []int{headerLen}
	for _, c := range cs {
		ends = append(ends, ends[len(ends)-1]+int(encodedSize(c)))
	}
	var cuts []int
	for f := ends[1]; f < ends[2]; f += frameHeaderLen + maxFramePayload {
		for d := -12; d <= 12; d++ {
			cuts = append(cuts, f+d)
		}
	}
	for n := ends[1]; n < len(data); n += 65537 {
		cuts = append(cuts, n)
	}
	cuts = append(cuts, ends[2]-1, ends[2], ends[2]+1, len(data)-1, len(data))
	for _, n := range cuts {
		checkTruncated(t, data, n, cs, ends)
	}
}

func checkTruncated(t *testing.T, data []byte, n int, cs []Change, ends []int) {
	t.Helper()
	s := Decode(data[:n])
	whole := 0
	for whole < len(cs) && ends[whole+1] <= n {
		whole++
	}
	if len(s.Entries) != whole {
		t.Fatalf("cut at %d: %d entries, want %d", n, len(s.Entries), whole)
	}
	for i, e := range s.Entries {
		if !sameChange(e.Change, cs[i]) {
			t.Fatalf("cut at %d: entry %d differs", n, i)
		}
	}
	atBoundary := n == 0 || slices.Contains(ends, n)
	switch {
	case atBoundary && len(s.Damage) != 0:
		t.Fatalf("cut at %d (a boundary): damage %+v", n, s.Damage)
	case !atBoundary && (len(s.Damage) != 1 || !s.Damage[0].Torn || !s.Torn()):
		t.Fatalf("cut at %d: damage %+v, want one torn span", n, s.Damage)
	}
	want := int64(ends[whole])
	if n < headerLen {
		want = 0
	}
	if s.Good != want || s.Good > s.Size {
		t.Fatalf("cut at %d: good %d, want %d", n, s.Good, want)
	}
	if len(s.Damage) == 1 && s.Damage[0].Offset+s.Damage[0].Length != int64(n) {
		t.Fatalf("cut at %d: torn span %+v does not reach the end", n, s.Damage[0])
	}
}

// A change interrupted by the start of another, in the middle of the
// file, is damage (rot), not a torn tail.
func TestInterruptedChangeIsRot(t *testing.T) {
	big := Change{{Kind: PutJob, Key: "big", Value: bytes.Repeat([]byte("z"), 2*maxFramePayload+5)}}
	enc := appendChange(nil, big)
	// Keep FIRST and MIDDLE, drop LAST.
	partial := enc[:2*(frameHeaderLen+maxFramePayload)]
	data := append([]byte(magicV2), appendChange(nil, job(1, 5))...)
	at := len(data)
	data = append(data, partial...)
	data = appendChange(data, job(2, 5))
	s := Decode(data)
	if got := keysOf(s.Entries); !slices.Equal(got, []string{"job-001", "job-002"}) {
		t.Fatalf("entries %q", got)
	}
	if len(s.Damage) != 1 || s.Damage[0].Torn || s.Damage[0].Offset != int64(at) || s.Damage[0].Length != int64(len(partial)) {
		t.Fatalf("damage %+v, want rot at %d length %d", s.Damage, at, len(partial))
	}
	if !slices.Equal(s.Damage[0].Keys, []string{"big"}) {
		t.Fatalf("damage keys %q", s.Damage[0].Keys)
	}
	// An orphan LAST after rot is part of the damage too.
	data2 := append([]byte(magicV2), appendChange(nil, job(1, 5))...)
	data2 = append(data2, enc[frameHeaderLen+maxFramePayload:]...)
	data2 = appendChange(data2, job(2, 5))
	s = Decode(data2)
	if len(s.Entries) != 2 || len(s.Damage) != 1 || s.Damage[0].Torn {
		t.Fatalf("orphans: %d entries, damage %+v", len(s.Entries), s.Damage)
	}
}

func TestZeroTailIsTorn(t *testing.T) {
	data := encode(job(1, 5), job(2, 5))
	data = append(data, make([]byte, 4096)...)
	s := Decode(data)
	if len(s.Entries) != 2 || !s.Torn() {
		t.Fatalf("%d entries, damage %+v", len(s.Entries), s.Damage)
	}
}

func TestBadHeader(t *testing.T) {
	data := encode(job(1, 5), job(2, 5))
	copy(data, "NOTAJRNL")
	s := Decode(data)
	if len(s.Entries) != 2 || len(s.Damage) != 1 || s.Damage[0].Torn || s.Damage[0].Offset != 0 || s.Damage[0].Length != headerLen {
		t.Fatalf("%d entries, damage %+v", len(s.Entries), s.Damage)
	}
}

// appendV1 writes a record the way the v1 store did.
func appendV1(buf []byte, kind byte, body []byte) []byte {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(body)+1))
	crc := crc32.Update(0, crcTable, hdr[0:4])
	crc = crc32.Update(crc, crcTable, []byte{kind})
	crc = crc32.Update(crc, crcTable, body)
	binary.LittleEndian.PutUint32(hdr[4:8], crc)
	buf = append(buf, hdr[:]...)
	buf = append(buf, kind)
	return append(buf, body...)
}

func v1Journal() []byte {
	data := []byte(magicV1)
	data = appendV1(data, 'P', []byte(`{"id":"a","status":"pending"}`))
	data = appendV1(data, 'R', append(binary.AppendUvarint(nil, 8), `outbox/1{"e":1}`...))
	data = appendV1(data, 'D', []byte("a"))
	data = appendV1(data, 'X', []byte("outbox/1"))
	return data
}

func TestV1(t *testing.T) {
	data := v1Journal()
	s := Decode(data)
	if s.Version != 1 || len(s.Damage) != 0 || len(s.Entries) != 4 {
		t.Fatalf("version %d, %d entries, damage %+v", s.Version, len(s.Entries), s.Damage)
	}
	want := []Record{
		{Kind: PutJob, Value: []byte(`{"id":"a","status":"pending"}`)},
		{Kind: PutRecord, Key: "outbox/1", Value: []byte(`{"e":1}`)},
		{Kind: DeleteJob, Key: "a"},
		{Kind: DeleteRecord, Key: "outbox/1"},
	}
	for i, e := range s.Entries {
		if !sameChange(e.Change, Change{want[i]}) {
			t.Fatalf("entry %d: %+v, want %+v", i, e.Change, want[i])
		}
	}
	// A torn v1 tail and v1 rot are told apart as in the current format.
	s = Decode(data[:len(data)-3])
	if len(s.Entries) != 3 || !s.Torn() {
		t.Fatalf("torn v1: %d entries, damage %+v", len(s.Entries), s.Damage)
	}
	bad := bytes.Clone(data)
	bad[s.Entries[1].Offset+19] ^= 1
	s = Decode(bad)
	if len(s.Entries) != 3 || len(s.Damage) != 1 || s.Damage[0].Torn || !strings.Contains(s.Damage[0].Reason, "checksum") {
		t.Fatalf("v1 rot: %d entries, damage %+v", len(s.Entries), s.Damage)
	}
	if !slices.Equal(s.Damage[0].Keys, []string{"outbox/1"}) {
		t.Fatalf("v1 rot names %q", s.Damage[0].Keys)
	}
}
