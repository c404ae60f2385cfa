package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/secauto/secauto/pkg/fsys"
	"github.com/secauto/secauto/pkg/store"
)

// A daemon restores only a backup of its own data directory, named by its
// file name (SPEC §8): it never reads a path an API client gives it. So
// "backup restore FILE" with a FILE from elsewhere first copies it in
// beside the other backups, under a backup name of its own.

// backupInDir returns the backup name of path when path is already a
// backup file of dir, so that it need not be copied.
func backupInDir(dir, path string) (string, bool) {
	name := filepath.Base(path)
	if _, ok := store.ParseBackupName(name); !ok {
		return "", false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	parent, err1 := os.Stat(filepath.Dir(path))
	d, err2 := os.Stat(dir)
	if err1 != nil || err2 != nil || !os.SameFile(parent, d) {
		return "", false
	}
	return name, true
}

// importBackup copies the file at src into dir as a backup, with its
// .sha256 checksum (naming the copy) when one is beside src, and returns
// the copy's name. The copy is stamped with src's own backup stamp, else
// its modification time, moved back to a second no file of dir uses: a
// daemon stamps its backups with the present and moves forward, so the
// two never pick the same name. Each file is written to a temp file,
// synced and then linked in, which fails rather than replace a file that
// appeared meanwhile; the checksum goes in first, so a crash leaves either
// nothing of the copy or a backup that verifies (a lone checksum and the
// temp files are removed when the store is next opened).
func importBackup(dir, src string, now time.Time) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("cannot read backup %s: %w", src, unwrapPathError(err))
	}
	defer in.Close()
	var magic [2]byte
	n, _ := io.ReadFull(in, magic[:])
	gz := n == 2 && magic == [2]byte{0x1f, 0x8b}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("cannot read backup %s: %w", src, err)
	}
	var sum string
	if side, err := os.ReadFile(src + ".sha256"); err == nil {
		f := strings.Fields(string(side))
		if len(f) == 0 {
			return "", fmt.Errorf("checksum file %s.sha256 is empty; remove it or restore the file it belongs to", src)
		}
		sum = f[0]
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cannot read checksum file %s.sha256: %w", src, unwrapPathError(err))
	}

	name := freeImportName(dir, importStamp(src, now), gz)
	dst := filepath.Join(dir, name)
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("cannot copy backup %s into data directory %s: %w; nothing was changed", src, dir, err)
	}
	tmp, err := writeTemp(dst, in)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp)
	if sum != "" {
		stmp, err := writeTemp(dst+".sha256", strings.NewReader(fmt.Sprintf("%s  %s\n", sum, name)))
		if err != nil {
			return fail(err)
		}
		defer os.Remove(stmp)
		if err := linkNew(stmp, dst+".sha256"); err != nil {
			return fail(err)
		}
	}
	if err := linkNew(tmp, dst); err != nil {
		if sum != "" {
			os.Remove(dst + ".sha256")
		}
		return fail(err)
	}
	if err := fsys.OS.SyncDir(dir); err != nil {
		return fail(err)
	}
	return name, nil
}

// linkNew gives the file tmp the name path, which must not exist. A file
// system without hard links gets a rename, after a check that path is
// still free.
func linkNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, lerr := os.Lstat(path); !errors.Is(lerr, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, path)
}

// importStamp is the time a copied-in backup is named for.
func importStamp(src string, now time.Time) time.Time {
	if t, ok := store.ParseBackupName(filepath.Base(src)); ok {
		return t
	}
	if fi, err := os.Stat(src); err == nil {
		return fi.ModTime()
	}
	return now
}

// freeImportName is the backup name for t, or for the latest earlier
// second no backup or checksum of dir uses; never the present or later.
func freeImportName(dir string, t time.Time, gz bool) string {
	t = t.UTC().Truncate(time.Second)
	if latest := time.Now().UTC().Truncate(time.Second).Add(-time.Second); t.After(latest) {
		t = latest
	}
	for ; ; t = t.Add(-time.Second) {
		taken := false
		for _, compressed := range []bool{false, true} {
			p := filepath.Join(dir, store.BackupName(t, compressed))
			for _, q := range []string{p, p + ".sha256"} {
				if _, err := os.Lstat(q); !errors.Is(err, fs.ErrNotExist) {
					taken = true
				}
			}
		}
		if !taken {
			return store.BackupName(t, gz)
		}
	}
}

// writeTemp writes r to a new temp file beside path, named as the store's
// temp files are so that a leftover is cleaned up, and syncs it.
func writeTemp(path string, r io.Reader) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	tmp := path + ".tmp-" + hex.EncodeToString(b[:])
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
