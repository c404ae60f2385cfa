package journal

import (
	"bytes"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(magicV2))
	f.Add(encode(job(1, 10), Change{{Kind: DeleteJob, Key: "job-001"}, {Kind: PutRecord, Key: "r", Value: []byte("{}")}}))
	f.Add(v1Journal())
	rot := encode(job(1, 10), job(2, 10), job(3, 10))
	rot[40] ^= 4
	f.Add(rot)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Decode(data)
		if s.Size != int64(len(data)) {
			t.Fatalf("size %d of %d bytes", s.Size, len(data))
		}
		if s.Version == 2 && s.Good > s.Size {
			t.Fatalf("good %d > size %d", s.Good, s.Size)
		}
		end := int64(0)
		for i, d := range s.Damage {
			if d.Offset < end || d.Length <= 0 || d.Offset+d.Length > s.Size {
				t.Fatalf("damage %d out of place: %+v", i, d)
			}
			if d.Torn && (i != len(s.Damage)-1 || d.Offset+d.Length != s.Size) {
				t.Fatalf("torn damage %d not at the end: %+v", i, d)
			}
			end = d.Offset + d.Length
		}
		var again []byte
		for _, e := range s.Entries {
			if e.Offset < headerLen || e.Offset+e.Size > s.Size {
				t.Fatalf("entry out of place: %d+%d", e.Offset, e.Size)
			}
			enc := appendChange(nil, e.Change)
			r := Decode(append([]byte(magicV2), enc...))
			if len(r.Entries) != 1 || len(r.Damage) != 0 || !sameChange(r.Entries[0].Change, e.Change) {
				if s.Version == 2 || e.Change[0].Key != "" {
					t.Fatalf("entry at %d does not round-trip", e.Offset)
				}
			}
			if s.Version == 2 && e.Size == int64(len(enc)) && !bytes.Equal(enc, data[e.Offset:e.Offset+e.Size]) {
				t.Fatalf("entry at %d re-encodes differently", e.Offset)
			}
			again = append(again, enc...)
		}
		if s.Version == 2 && int64(headerLen+len(again)) != s.Good {
			t.Fatalf("good %d, entries re-encode to %d", s.Good, headerLen+len(again))
		}
	})
}
