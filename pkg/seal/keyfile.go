package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxKeyFileBytes bounds what LoadFile reads: a key file is a few lines.
const maxKeyFileBytes = 64 << 10

// Parse reads a key file's content (see the package documentation for its
// format). Its errors name the line and what is wrong with it, never the
// line's content.
func Parse(data []byte) (*Keyring, error) {
	var keys [][]byte
	lines := map[string]int{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimSpace(string(line))
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, err := decodeKey(t)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		id := KeyID(k)
		if prev, ok := lines[id]; ok {
			return nil, fmt.Errorf("line %d: repeats the key of line %d; remove one", i+1, prev)
		}
		lines[id] = i + 1
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("holds no key; write one 256-bit key a line, such as the output of 'openssl rand -hex 32'")
	}
	return New(keys...)
}

// decodeKey reads one key written in hex or base64.
func decodeKey(t string) ([]byte, error) {
	if len(t) == 2*KeySize {
		k, err := hex.DecodeString(t)
		if err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(t)
		if err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("the key is %d bytes, not %d (256 bits); write 64 hex digits or 44 characters of base64", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("not a key: write 64 hex digits or 44 characters of base64 (%d characters found)", len(t))
}

// LoadFile reads a key file. It refuses one that is not a regular file,
// that others than its owner may read or write (mode 0600 or stricter, as
// ssh demands of keys), or that another user owns. A symbolic link is
// followed (secret stores such as Kubernetes mount keys through links);
// the checks apply to the file it leads to, read through the same open
// descriptor, so it cannot be swapped between check and read.
func LoadFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file; give a file of keys, one a line", path)
	}
	if err := checkPrivate(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; a key file holds one key a line", path, maxKeyFileBytes)
	}
	kr, err := Parse(data)
	clear(data)
	if err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	return kr, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
