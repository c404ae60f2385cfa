package journal

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
)

// Repair makes the file at path hold only its intact entries, as scan (from
// Read of the same file) describes them. A torn tail is cut (truncate and
// fsync); rot anywhere else is removed by rewriting the file atomically
// (temp file, fsync, rename, fsync of the directory) with every intact
// entry, including those after the rot. A v1 journal is rewritten in the
// current format. The rewrite writes scan.Entries as they are now, so the
// keys of v1 PutJob records (empty, see Record) must be filled in first;
// Repair refuses a record without key before touching anything.
//
// Every damaged byte is first kept, durably, in
// path+".corrupt-YYYYMMDD-HHMMSS" (now in UTC; the next free second when
// the name is taken): the damaged spans in file order, back to back.
// Repair returns that name, or "" when nothing was damaged.
//
// On success scan describes the file as it now is: no Damage, Version 2
// (unless the file is empty), Size and Good its length (for OpenWriter),
// and the entries' offsets where they now lie. A file that changed size
// since it was read is refused.
func Repair(fs fsys.FS, path string, scan *Scan, now time.Time) (aside string, err error) {
	if len(scan.Damage) == 0 && scan.Version != 1 {
		return "", nil
	}
	// Cutting is enough only when everything before the tear is intact.
	truncate := scan.Torn() && scan.Version != 1 && scan.Damage[0].Offset == scan.Good
	if !truncate {
		for _, e := range scan.Entries {
			if err := e.Change.check(); err != nil {
				return "", fmt.Errorf("journal: cannot rewrite %s: change at offset %d: %w", path, e.Offset, err)
			}
		}
	}
	if len(scan.Damage) > 0 {
		data, err := fs.ReadFile(path)
		if err != nil {
			return "", err
		}
		if int64(len(data)) != scan.Size {
			return "", fmt.Errorf("journal: %s is %d bytes, not the %d read before; read it again", path, len(data), scan.Size)
		}
		var bad []byte
		for _, d := range scan.Damage {
			bad = append(bad, data[d.Offset:d.Offset+d.Length]...)
		}
		if aside, err = writeAside(fs, path, bad, now); err != nil {
			return "", err
		}
	}
	if truncate {
		if err := truncateFile(fs, path, scan.Good); err != nil {
			return aside, err
		}
		scan.Size, scan.Damage = scan.Good, nil
		return aside, nil
	}
	entries := make([]Entry, len(scan.Entries))
	size := int64(headerLen)
	err = fsys.WriteFileAtomic(fs, path, 0o600, func(w io.Writer) error {
		if _, err := io.WriteString(w, magicV2); err != nil {
			return err
		}
		var buf []byte
		for i, e := range scan.Entries {
			buf = appendChange(buf[:0], e.Change)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			entries[i] = Entry{Offset: size, Size: int64(len(buf)), Change: e.Change}
			size += int64(len(buf))
		}
		return nil
	})
	if err != nil {
		return aside, fmt.Errorf("journal: rewrite %s: %w", path, err)
	}
	scan.Entries, scan.Damage = entries, nil
	scan.Size, scan.Good, scan.Version = size, size, 2
	return aside, nil
}

func truncateFile(fs fsys.FS, path string, size int64) error {
	f, err := fs.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: cut %s at %d: %w", path, size, err)
	}
	return nil
}

// writeAside keeps data durably in a new path.corrupt-<time> file.
func writeAside(fs fsys.FS, path string, data []byte, now time.Time) (string, error) {
	t := now.UTC()
	for try := 0; ; try++ {
		name := path + ".corrupt-" + t.Format("20060102-150405")
		err := fsys.WriteNewFile(fs, name, 0o600, data)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, iofs.ErrExist) || try == 3600 {
			return "", fmt.Errorf("journal: keep damaged bytes of %s aside: %w", path, err)
		}
		t = t.Add(time.Second)
	}
}
