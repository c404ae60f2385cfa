// Package seal encrypts the secret-bearing fields of stored jobs: it owns
// the keyring read from jobs.encryption_key_file and the authenticated
// encryption (AES-256-GCM) that seals a field into an envelope and opens
// it again. It does no other I/O than reading the key file, and knows
// nothing of jobs beyond the subject (the job id) and field name that each
// envelope is bound to.
//
// # Envelope format
//
// A sealed value is one ASCII string, which needs no escaping in JSON
// (package store keeps a job's in its "sealed" field, a record as
// {"$sealed": ENVELOPE}):
//
//	v1:KEYID:PAYLOAD
//
//	v1       the format version; anything else is refused
//	KEYID    8 lower-case hex digits naming the key that sealed it (see KeyID)
//	PAYLOAD  unpadded standard base64 (RFC 4648 §4, no '=') of
//	         NONCE (12 random bytes) || CIPHERTEXT || TAG (16 bytes)
//
// The cipher is AES-256-GCM. The additional data authenticated with it is
//
//	"secauto-seal\x00v1\x00" KEYID "\x00" SUBJECT "\x00" FIELD
//
// so a ciphertext opens only under its own header, for the job (SUBJECT) and
// the field (FIELD, e.g. "sealed", the field of a job that holds all its
// secret-bearing values, or "record") it was sealed for: moved to another
// job or field, or with its key id edited, it fails to authenticate like
// any tampered byte. The plaintext is JSON; what it holds is the caller's
// (package store documents its own).
//
// # Key file
//
// One 256-bit key a line, written as 64 hex digits or as 44 characters of
// standard base64 (43 without padding; URL-safe base64 is accepted too).
// Blank lines and lines whose first non-blank character is '#' are
// ignored; spaces around a key are ignored. The first key seals, every key
// opens. A key's id is the first 8 hex digits of
// SHA-256("secauto-seal-key-id\x00" || key): stored beside every
// ciphertext, it names the key needed without revealing anything of it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Version is the envelope format version this package writes and reads.
const Version = "v1"

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const (
	nonceSize  = 12
	tagSize    = 16
	keyIDLen   = 8
	headerLen  = len(Version) + 1 + keyIDLen + 1 // "v1:3f2a9c01:"
	keyIDLabel = "secauto-seal-key-id\x00"
	aadLabel   = "secauto-seal\x00" + Version + "\x00"
)

var b64 = base64.RawStdEncoding

// Errors callers tell apart with errors.Is.
var (
	// ErrMalformed: the value is not an envelope of a known version.
	ErrMalformed = errors.New("not a sealed value of a known format")
	// ErrAuth: the envelope does not authenticate: it was changed, or
	// moved from another job or field, or its key is not the one its id
	// names.
	ErrAuth = errors.New("sealed value does not authenticate (changed on disk, or moved from another job or field)")
	// ErrNoKey: the keyring does not hold the key the envelope names.
	ErrNoKey = errors.New("the key it was sealed with is not configured")
)

// KeyError is ErrNoKey for one key id.
type KeyError struct{ ID string }

func (e *KeyError) Error() string {
	return fmt.Sprintf("sealed with key id %s, which is not configured; add that key to jobs.encryption_key_file", e.ID)
}

// Is makes errors.Is(err, ErrNoKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrNoKey }

type key struct {
	id   string
	aead cipher.AEAD
}

// Keyring holds the configured keys; the first seals, all open. It is
// safe for concurrent use and never exposes key material.
type Keyring struct {
	keys []key
}

// KeyID is the id of a key: the first 8 hex digits of SHA-256 of a fixed
// label and the key.
func KeyID(k []byte) string {
	h := sha256.New()
	h.Write([]byte(keyIDLabel))
	h.Write(k)
	return hex.EncodeToString(h.Sum(nil))[:keyIDLen]
}

// New returns a keyring of the given 32-byte keys, the first sealing. It
// refuses an empty list, a key of another length and a key given twice.
func New(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key given")
	}
	kr := &Keyring{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("key %d is %d bytes, not %d", i+1, len(k), KeySize)
		}
		id := KeyID(k)
		for j, o := range kr.keys {
			if o.id == id {
				return nil, fmt.Errorf("key %d repeats key %d", i+1, j+1)
			}
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		kr.keys = append(kr.keys, key{id: id, aead: aead})
	}
	return kr, nil
}

// Primary is the id of the key that seals.
func (kr *Keyring) Primary() string { return kr.keys[0].id }

// IDs lists the key ids, the sealing one first.
func (kr *Keyring) IDs() []string {
	out := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		out[i] = k.id
	}
	return out
}

// Has reports whether the keyring holds the key with this id.
func (kr *Keyring) Has(id string) bool { return kr.find(id) != nil }

func (kr *Keyring) find(id string) *key {
	for i := range kr.keys {
		if kr.keys[i].id == id {
			return &kr.keys[i]
		}
	}
	return nil
}

// String names the key ids only, so a keyring printed by mistake reveals
// nothing.
func (kr *Keyring) String() string {
	return "keyring[" + strings.Join(kr.IDs(), ",") + "]"
}

// GoString is String, for %#v.
func (kr *Keyring) GoString() string { return kr.String() }

func appendAAD(b []byte, id, subject, field string) []byte {
	b = append(b, aadLabel...)
	b = append(b, id...)
	b = append(b, 0)
	b = append(b, subject...)
	b = append(b, 0)
	return append(b, field...)
}

// Seal appends to dst the envelope of plaintext under the primary key,
// bound to subject and field, with a fresh random nonce.
func (kr *Keyring) Seal(dst, plaintext []byte, subject, field string) []byte {
	k := &kr.keys[0]
	var buf [nonceSize + 256]byte
	nonce := buf[:nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		panic("seal: no randomness: " + err.Error()) // crypto/rand never fails on supported systems
	}
	aad := appendAAD(buf[nonceSize:nonceSize], k.id, subject, field)
	scratch := scratchPool.Get().(*[]byte)
	ct := append((*scratch)[:0], nonce...)
	ct = k.aead.Seal(ct, nonce, plaintext, aad)
	dst = slices.Grow(dst, headerLen+b64.EncodedLen(len(ct)))
	dst = append(dst, Version...)
	dst = append(dst, ':')
	dst = append(dst, k.id...)
	dst = append(dst, ':')
	dst = b64.AppendEncode(dst, ct)
	if cap(ct) <= maxScratch {
		*scratch = ct
		scratchPool.Put(scratch)
	}
	return dst
}

// SealString is Seal returning the envelope as a string.
func (kr *Keyring) SealString(plaintext []byte, subject, field string) string {
	return string(kr.Seal(nil, plaintext, subject, field))
}

// scratchPool holds the buffers ciphertexts are built in before they are
// encoded; larger ones than maxScratch are left to the collector.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxScratch = 1 << 20

// EnvelopeKeyID returns the key id an envelope names, checking only its
// header.
func EnvelopeKeyID(env string) (string, error) {
	if len(env) < headerLen || env[:len(Version)] != Version || env[len(Version)] != ':' || env[headerLen-1] != ':' {
		return "", fmt.Errorf("%w: %s", ErrMalformed, describeHeader(env))
	}
	id := env[len(Version)+1 : headerLen-1]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("%w: the key id is not 8 hex digits", ErrMalformed)
		}
	}
	return id, nil
}

// describeHeader says what is wrong with the start of a value that is not
// an envelope, without quoting it (it may be a secret written in plain).
func describeHeader(env string) string {
	if v, _, ok := strings.Cut(env, ":"); ok && len(v) == 2 && v[0] == 'v' && v != Version {
		return fmt.Sprintf("unknown format version (this release reads %s)", Version)
	}
	return fmt.Sprintf("it does not start with %q, a key id and ':'", Version+":")
}

// EnvelopeLen is the length of the envelope Seal makes of n bytes of
// plaintext.
func EnvelopeLen(n int) int { return headerLen + b64.EncodedLen(nonceSize+n+tagSize) }

// Open authenticates and decrypts an envelope sealed for subject and
// field, with whichever configured key its id names. Its errors wrap
// ErrMalformed, ErrNoKey (a *KeyError) or ErrAuth and never quote the
// envelope.
func (kr *Keyring) Open(env string, subject, field string) ([]byte, error) {
	return kr.OpenBytes(nil, []byte(env), subject, field)
}

// OpenBytes is Open for an envelope held in a byte slice. It decrypts in
// buf when buf has the capacity (the plaintext then aliases buf), and
// never keeps or changes env.
func (kr *Keyring) OpenBytes(buf, env []byte, subject, field string) ([]byte, error) {
	id, err := EnvelopeKeyID(string(env[:min(len(env), headerLen)]))
	if err != nil {
		return nil, err
	}
	if kr == nil {
		return nil, &KeyError{ID: id}
	}
	k := kr.find(id)
	if k == nil {
		return nil, &KeyError{ID: id}
	}
	payload := env[headerLen:]
	n := b64.DecodedLen(len(payload))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	ct := buf[:n]
	n, err = b64.Decode(ct, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: the payload is not valid base64", ErrMalformed)
	}
	ct = ct[:n]
	if len(ct) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: the payload is %d bytes, shorter than a nonce and tag (truncated)", ErrMalformed, len(ct))
	}
	var aadBuf [256]byte
	aad := appendAAD(aadBuf[:0], id, subject, field)
	pt, err := k.aead.Open(ct[nonceSize:nonceSize], ct[:nonceSize], ct[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w (key id %s)", ErrAuth, id)
	}
	return pt, nil
}
