package crashfs

import (
	"bytes"
	"maps"
	"math"
	"math/rand/v2"
)

// crashLocked turns c off and returns the image of what survives. c.mu is
// held.
func (c *FS) crashLocked(opts CrashOptions) *FS {
	if c.crashed {
		return c.image
	}
	c.crashed = true
	c.image = c.survivors(opts)
	// The old tree is unreachable from now on but for open files, which
	// fail; drop what only the crash needed.
	c.pending = nil
	return c.image
}

// survivors builds the FS a reboot finds: durable entries (plus, with torn
// writes, an in-order prefix of the unsynced entry changes) reachable from
// the root, each file with its durable bytes (or a torn version).
func (c *FS) survivors(opts CrashOptions) *FS {
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(uint64(c.ops), 0x6372617368))
	}
	entries := map[*inode]map[string]*inode{}
	durable := func(d *inode) map[string]*inode {
		m, ok := entries[d]
		if !ok {
			m = d.durEntries
			entries[d] = m
		}
		return m
	}
	if opts.TornWrites && len(c.pending) > 0 {
		owned := map[*inode]bool{}
		for _, op := range c.pending[:rnd.IntN(len(c.pending)+1)] {
			for _, s := range op.sets {
				m := durable(s.dir)
				if !owned[s.dir] {
					m = maps.Clone(m)
					entries[s.dir] = m
					owned[s.dir] = true
				}
				if s.ino == nil {
					delete(m, s.name)
				} else {
					m[s.name] = s.ino
				}
			}
		}
	}

	n := newFS(c.clock)
	copied := map[*inode]*inode{}
	var copyDir func(from, to *inode)
	copyDir = func(from, to *inode) {
		for name, o := range durable(from) {
			if x, ok := copied[o]; ok {
				// A file with a second durable name; a directory met
				// twice (a rename synced in one directory only) keeps its
				// first name, since directories have one.
				if !x.dir {
					to.entries[name] = x
					x.nlink++
				}
				continue
			}
			var x *inode
			if o.dir {
				x = &inode{dir: true, perm: o.perm, mtime: o.mtime, entries: map[string]*inode{}}
				copied[o] = x
				copyDir(o, x)
				x.durEntries = maps.Clone(x.entries)
			} else {
				data, mtime := o.durable, o.durMtime
				if opts.TornWrites {
					if torn := tear(rnd, o, opts.ZeroFill); !bytes.Equal(torn, data) {
						data, mtime = torn, o.mtime
					}
				}
				x = &inode{perm: o.perm, mtime: mtime, durMtime: mtime, dirtyFrom: math.MaxInt64,
					data: bytes.Clone(data), durable: bytes.Clone(data)}
				copied[o] = x
				n.used += int64(len(data))
			}
			x.nlink = 1
			to.entries[name] = x
		}
	}
	copied[c.root] = n.root
	copyDir(c.root, n.root)
	n.root.durEntries = maps.Clone(n.root.entries)
	n.root.mtime = c.root.mtime
	return n
}

// tear returns what a disk may hold of a file whose current bytes were not
// all synced: its durable bytes plus a random prefix of those appended
// since, or where older bytes were overwritten or cut, old or new length
// with each sector old or new at random. With zeroFill the new bytes kept
// may all be zeros.
func tear(rnd *rand.Rand, o *inode, zeroFill bool) []byte {
	dur, cur := o.durable, o.data
	if o.dirtyFrom == math.MaxInt64 && len(dur) == len(cur) {
		return dur
	}
	if zeroFill && rnd.IntN(2) == 0 {
		cur = make([]byte, len(cur))
		copy(cur, dur[:min(len(dur), int(o.dirtyFrom))])
	}
	if o.dirtyFrom >= int64(len(dur)) && len(cur) >= len(dur) {
		return cur[:len(dur)+rnd.IntN(len(cur)-len(dur)+1)]
	}
	size := len(dur)
	if rnd.IntN(2) == 0 {
		size = len(cur)
	}
	out := make([]byte, size)
	for off := 0; off < size; off += sectorSize {
		src := cur
		if rnd.IntN(2) == 0 {
			src = dur
		}
		if off < len(src) {
			copy(out[off:min(off+sectorSize, size)], src[off:])
		}
	}
	return out
}
