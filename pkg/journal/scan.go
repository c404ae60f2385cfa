package journal

import (
	"errors"
	iofs "io/fs"
	"slices"

	"github.com/secauto/secauto/pkg/fsys"
)

// Entry is one intact change found in a journal.
type Entry struct {
	// Offset is where the change's first frame starts in the file read.
	Offset int64
	// Size is the bytes its frames (a v1 record) take in the file read.
	Size   int64
	Change Change
}

// Damage is a span of a journal that holds no intact change.
type Damage struct {
	Offset, Length int64
	// Torn says the file ends inside the span with nothing intact after
	// it: what an interrupted write leaves, not rot. Only the last Damage
	// of a Scan can be torn.
	Torn   bool
	Reason string
	// Keys are the keys of records the span held, where they could still
	// be read (best effort: a flipped byte in a key names a wrong key, and
	// a v1 job record's key lies in its JSON and is never named).
	Keys []string
}

// Scan is what a journal holds.
type Scan struct {
	// Entries are every intact change in file order, including those
	// after a damaged span.
	Entries []Entry
	// Size is the bytes read.
	Size int64
	// Good is the length the file has once repaired: the header and the
	// intact entries, in the current format. Appends continue there. For a
	// v1 journal it assumes the keys the entries hold now (and may exceed
	// Size, the current format being a little larger); Repair sets it again
	// to the length it wrote.
	Good int64
	// Damage lists the damaged spans in file order.
	Damage []Damage
	// Version is the format version of the header found (1 or 2); 0 for
	// an empty or missing file or one shorter than a header. An unknown
	// header is damage, and what follows it is read as version 2.
	Version int
}

// Torn reports whether the scan's only damage is a torn tail, which
// Repair cuts off without rewriting anything before it.
func (s *Scan) Torn() bool {
	return len(s.Damage) == 1 && s.Damage[0].Torn
}

// Read reads and decodes the journal at path. A missing file is an empty
// Scan; errors are only those of reading.
func Read(fs fsys.FS, path string) (*Scan, error) {
	data, err := fs.ReadFile(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return &Scan{}, nil
	}
	if err != nil {
		return nil, err
	}
	return Decode(data), nil
}

// Decode decodes a journal's bytes (either format). It never fails: what it
// cannot read is reported as Damage. Values in the entries alias data. It is
// pure: no I/O, no state.
func Decode(data []byte) *Scan {
	s := &Scan{Size: int64(len(data))}
	if len(data) == 0 {
		return s
	}
	if len(data) < headerLen {
		s.Damage = []Damage{{Length: int64(len(data)), Torn: true, Reason: "journal header cut short by the end of the file"}}
		return s
	}
	d := &decoder{data: data, s: s, pend: -1}
	switch string(data[:headerLen]) {
	case magicV1:
		s.Version = 1
		d.parse, d.decode, d.keys, d.hdrLen = parseV1, decodeV1, v1Keys, v1HeaderLen
	default:
		// A rotted header is read as the current format: the frames
		// after it carry their own checksums.
		s.Damage = []Damage{{Length: headerLen, Reason: "unknown journal header"}}
		d.badHeader = true
		fallthrough
	case magicV2:
		s.Version = 2
		d.parse, d.decode, d.keys, d.hdrLen = parseFrame, decodePayload, payloadKeys, frameHeaderLen
	}
	d.run()
	s.Good = headerLen
	for i := range s.Entries {
		if s.Version == 1 {
			s.Good += encodedSize(s.Entries[i].Change)
		} else {
			s.Good += s.Entries[i].Size
		}
	}
	return s
}

type decoder struct {
	data      []byte
	s         *Scan
	parse     func(data []byte, off int) (frame, string, bool)
	decode    func(payload []byte) (Change, error)
	keys      func(payload []byte) []string
	hdrLen    int
	badHeader bool

	// pend is where the change being assembled from FIRST..LAST began, or
	// -1; pendBuf its payload so far.
	pend    int
	pendBuf []byte
}

func (d *decoder) run() {
	data := d.data
	off := headerLen
	for off < len(data) {
		f, reason, _ := d.parse(data, off)
		if reason != "" {
			start, keys := off, []string(nil)
			if d.pend >= 0 {
				start, keys = d.pend, d.keys(d.pendBuf)
				d.pend = -1
			}
			next := d.resync(off + 1)
			d.damage(start, next, reason, append(keys, d.regionKeys(off, next)...))
			off = next
			continue
		}
		switch f.typ {
		case typeFull:
			d.interrupted(off)
			d.complete(off, f.end, f.payload)
		case typeFirst:
			d.interrupted(off)
			d.pend = off
			d.pendBuf = append([]byte(nil), f.payload...)
		default:
			if d.pend < 0 {
				d.damage(off, f.end, "part of a change whose first frame is lost", nil)
				break
			}
			d.pendBuf = append(d.pendBuf, f.payload...)
			if f.typ == typeLast {
				start := d.pend
				d.pend = -1
				d.complete(start, f.end, d.pendBuf)
				d.pendBuf = nil
			}
		}
		off = f.end
	}
	if d.pend >= 0 {
		d.damage(d.pend, len(data), "change cut short by the end of the file", d.keys(d.pendBuf))
	}
	if n := len(d.s.Damage); n > 0 {
		last := &d.s.Damage[n-1]
		if last.Offset+last.Length == int64(len(data)) && !(d.badHeader && last.Offset == 0) {
			last.Torn = true
		}
	}
}

// interrupted records a change still being assembled at off as damage: a
// new change began before its LAST frame.
func (d *decoder) interrupted(off int) {
	if d.pend >= 0 {
		d.damage(d.pend, off, "change interrupted before its last frame", d.keys(d.pendBuf))
		d.pend = -1
	}
}

func (d *decoder) complete(start, end int, payload []byte) {
	c, err := d.decode(payload)
	if err != nil {
		d.damage(start, end, "change does not decode: "+err.Error(), d.keys(payload))
		return
	}
	d.s.Entries = append(d.s.Entries, Entry{Offset: int64(start), Size: int64(end - start), Change: c})
}

// damage records [start, end), merged with damage that ends where it
// starts, since the two are one unreadable stretch to whoever reads the
// report.
func (d *decoder) damage(start, end int, reason string, keys []string) {
	s := d.s
	if n := len(s.Damage); n > 0 {
		last := &s.Damage[n-1]
		if last.Offset+last.Length == int64(start) && !(d.badHeader && last.Offset == 0) {
			last.Length = int64(end) - last.Offset
			last.Keys = addKeys(last.Keys, keys)
			return
		}
	}
	s.Damage = append(s.Damage, Damage{Offset: int64(start), Length: int64(end - start), Reason: reason, Keys: addKeys(nil, keys)})
}

func addKeys(dst, keys []string) []string {
	for _, k := range keys {
		if !slices.Contains(dst, k) {
			dst = append(dst, k)
		}
	}
	return dst
}

// resync returns the first offset at or after from where an intact frame
// starts (a whole change must also decode), or the end of the data. A
// frame's CRC must verify, so a false start inside rot needs a 1 in 2^32
// coincidence on top of a plausible type and length.
func (d *decoder) resync(from int) int {
	for p := from; p+d.hdrLen <= len(d.data); p++ {
		if d.hdrLen == frameHeaderLen {
			if t := d.data[p+8]; t < typeFull || t > typeLast {
				continue
			}
		}
		f, reason, _ := d.parse(d.data, p)
		if reason != "" {
			continue
		}
		if f.typ == typeFull {
			if _, err := d.decode(f.payload); err != nil {
				continue
			}
		}
		return p
	}
	return len(d.data)
}

// regionKeys walks the frames of a damaged region as far as their lengths
// allow and returns the keys that the starts of their changes still show.
func (d *decoder) regionKeys(off, end int) []string {
	var keys []string
	for q := off; q+d.hdrLen < end; {
		n := int(uint32(d.data[q]) | uint32(d.data[q+1])<<8 | uint32(d.data[q+2])<<16 | uint32(d.data[q+3])<<24)
		pend := q + d.hdrLen + n
		if n < 1 || pend > end || pend < q {
			pend = end
		}
		if d.hdrLen != frameHeaderLen || d.data[q+8] != typeMiddle && d.data[q+8] != typeLast {
			keys = append(keys, d.keys(d.data[q+d.hdrLen:pend])...)
		}
		q = pend
	}
	return keys
}
