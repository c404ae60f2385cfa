package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func ring(t *testing.T, keys ...[]byte) *Keyring {
	t.Helper()
	kr, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := ring(t, testKey(1))
	pt := []byte(`{"api_key":"s3cr3t"}`)
	env := string(kr.Seal(nil, pt, "job-1", "context"))
	if !strings.HasPrefix(env, "v1:"+kr.Primary()+":") {
		t.Fatalf("envelope %q does not start with its version and key id", env)
	}
	if strings.Contains(env, "s3cr3t") {
		t.Fatal("plaintext visible in the envelope")
	}
	got, err := kr.Open(env, "job-1", "context")
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Random nonces: the same plaintext seals differently.
	if again := string(kr.Seal(nil, pt, "job-1", "context")); again == env {
		t.Fatal("two seals of the same plaintext are equal: the nonce is not random")
	}
}

func TestKeyIDIsStableAndNamesTheKey(t *testing.T) {
	a, b := KeyID(testKey(1)), KeyID(testKey(2))
	if len(a) != 8 || a == b {
		t.Fatalf("key ids %q %q", a, b)
	}
	if a != KeyID(testKey(1)) {
		t.Fatal("key id is not stable")
	}
	if strings.Contains(hex.EncodeToString(testKey(1)), a) {
		t.Fatal("key id is part of the key")
	}
}

func TestOpenRefuses(t *testing.T) {
	old := ring(t, testKey(1))
	env := string(old.Seal(nil, []byte(`"secret-output"`), "job-1", "results.0.output"))
	rotated := ring(t, testKey(2), testKey(1))
	if _, err := rotated.Open(env, "job-1", "results.0.output"); err != nil {
		t.Fatalf("a later key of the ring does not open: %v", err)
	}
	payload := env[headerLen:]
	raw, _ := b64.DecodeString(payload)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		return env[:headerLen] + b64.EncodeToString(b)
	}
	otherID := KeyID(testKey(2))
	tests := []struct {
		name string
		kr   *Keyring
		env  string
		subj string
		fld  string
		want error
	}{
		{"wrong key", ring(t, testKey(3)), env, "job-1", "results.0.output", ErrNoKey},
		{"no keyring", nil, env, "job-1", "results.0.output", ErrNoKey},
		{"other job", old, env, "job-2", "results.0.output", ErrAuth},
		{"other field", old, env, "job-1", "results.1.output", ErrAuth},
		{"key id edited", rotated, "v1:" + otherID + env[len("v1:")+8:], "job-1", "results.0.output", ErrAuth},
		{"nonce flipped", old, flip(0), "job-1", "results.0.output", ErrAuth},
		{"ciphertext flipped", old, flip(nonceSize + 2), "job-1", "results.0.output", ErrAuth},
		{"tag flipped", old, flip(len(raw) - 1), "job-1", "results.0.output", ErrAuth},
		{"truncated", old, env[:headerLen] + b64.EncodeToString(raw[:len(raw)-5]), "job-1", "results.0.output", ErrAuth},
		{"truncated to the header", old, env[:headerLen+4], "job-1", "results.0.output", ErrMalformed},
		{"header only", old, env[:headerLen], "job-1", "results.0.output", ErrMalformed},
		{"short", old, "v1:12", "job-1", "results.0.output", ErrMalformed},
		{"empty", old, "", "job-1", "results.0.output", ErrMalformed},
		{"bad base64", old, env[:headerLen] + "!!!!" + payload[4:], "job-1", "results.0.output", ErrMalformed},
		{"padded base64", old, env + "==", "job-1", "results.0.output", ErrMalformed},
		{"unknown version", old, "v9" + env[2:], "job-1", "results.0.output", ErrMalformed},
		{"key id not hex", old, "v1:ZZZZZZZZ" + env[len("v1:")+8:], "job-1", "results.0.output", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kr.Open(tt.env, tt.subj, tt.fld)
			if !errors.Is(err, tt.want) {
				t.Fatalf("open: %q, %v; want %v", got, err, tt.want)
			}
			if got != nil {
				t.Fatal("plaintext returned with an error")
			}
			if strings.Contains(err.Error(), payload[:16]) || strings.Contains(err.Error(), "secret-output") {
				t.Fatalf("error quotes the envelope or plaintext: %v", err)
			}
		})
	}
	var ke *KeyError
	if _, err := ring(t, testKey(3)).Open(env, "job-1", "results.0.output"); !errors.As(err, &ke) || ke.ID != old.Primary() {
		t.Fatalf("missing key error does not name the key id %s: %v", old.Primary(), err)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(); err == nil {
		t.Error("empty keyring accepted")
	}
	if _, err := New(make([]byte, 16)); err == nil {
		t.Error("128-bit key accepted")
	}
	if _, err := New(testKey(1), testKey(1)); err == nil {
		t.Error("repeated key accepted")
	}
}

func TestKeyringPrintsNoKeyMaterial(t *testing.T) {
	k := testKey(0xab)
	kr := ring(t, k)
	for _, s := range []string{kr.String(), kr.GoString()} {
		if strings.Contains(s, "abab") || !strings.Contains(s, kr.Primary()) {
			t.Fatalf("keyring prints %q", s)
		}
	}
}

func TestParse(t *testing.T) {
	k1, k2, k3 := testKey(1), testKey(2), testKey(3)
	file := "# secauto keys\n\n  " + hex.EncodeToString(k1) + "  \n# old:\n" +
		base64.StdEncoding.EncodeToString(k2) + "\r\n" + base64.RawURLEncoding.EncodeToString(k3) + "\n"
	kr, err := Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{KeyID(k1), KeyID(k2), KeyID(k3)}
	if got := kr.IDs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ids %v, want %v", got, want)
	}
	secretLine := "not a key, but a secret value: 0123456789"
	bad := []struct {
		name, file, want string
	}{
		{"empty", "", "holds no key"},
		{"comments only", "# a\n\n", "holds no key"},
		{"bad line", hex.EncodeToString(k1) + "\n" + secretLine + "\n", "line 2: not a key"},
		{"short hex", hex.EncodeToString(k1[:16]) + "\n", "line 1: the key is"},
		{"long base64", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 48)) + "\n", "line 1: the key is 48 bytes"},
		{"repeated", hex.EncodeToString(k1) + "\n" + base64.StdEncoding.EncodeToString(k1) + "\n", "line 2: repeats the key of line 1"},
		{"trailing comment", hex.EncodeToString(k1) + " # main\n", "line 1: not a key"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secretLine) || strings.Contains(err.Error(), hex.EncodeToString(k1)[:16]) {
				t.Fatalf("error quotes the file: %v", err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	line := hex.EncodeToString(testKey(7)) + "\n"
	if err := os.WriteFile(good, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadFile(good)
	if err != nil || kr.Primary() != KeyID(testKey(7)) {
		t.Fatalf("load: %v %v", kr, err)
	}
	// A link is followed; the file it leads to is what is checked.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(link); err != nil {
		t.Fatalf("link to a private key file: %v", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o640)
	openLink := filepath.Join(dir, "open-link")
	os.Symlink(open, openLink)
	for _, p := range []string{open, openLink} {
		if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "mode 0640") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%s: group-readable key file: %v", p, err)
		}
	}
	if _, err := LoadFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing: %v", err)
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "gone"), dangling)
	if _, err := LoadFile(dangling); err == nil {
		t.Error("dangling link accepted")
	}
	badLine := filepath.Join(dir, "bad")
	os.WriteFile(badLine, []byte(line+"zzzz\n"), 0o600)
	if _, err := LoadFile(badLine); err == nil || !strings.HasPrefix(err.Error(), badLine+" line 2: ") || strings.Contains(err.Error(), line[:16]) {
		t.Errorf("bad line: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	kr, _ := New(testKey(1))
	f.Add(string(kr.Seal(nil, []byte(`{}`), "j", "context")))
	f.Add("v1:00000000:")
	f.Fuzz(func(t *testing.T, env string) {
		pt, err := kr.Open(env, "j", "context")
		if err == nil && string(pt) != "{}" {
			t.Fatalf("forged envelope opened to %q", pt)
		}
	})
}
