package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// KeySize is the size in bytes of every key Gatehouse encrypts with (AES-256-GCM).
const KeySize = 32

// ErrDecrypt is returned when a sealed value cannot be opened: wrong key, unknown key
// id, or tampered bytes. It never says which.
var ErrDecrypt = errors.New("session: cannot decrypt")

// ErrUnknownKey is the ErrDecrypt of a value sealed with a key the ring does not hold (not
// even as accepted): during a rotation, a sign that a replica made a key primary before
// every replica accepted it.
var ErrUnknownKey = fmt.Errorf("%w: sealed with a server key not in the ring", ErrDecrypt)

// KeyRing holds the server's own keys. It seals what the server must read back without
// a browser's cookie (session metadata, logout state): new values are sealed with the
// primary key, the first, and values sealed with any key of the ring still open.
//
// A ring may also hold accepted keys ([NewKeyRingAccepting]): they open values and are
// looked up in indexes like the others, but never seal. They make a rotation safe on any
// number of replicas: a new key is first accepted by every replica, and only then made
// primary, so no replica ever meets a value sealed with a key it lacks.
//
// A KeyRing is immutable and safe for concurrent use.
type KeyRing struct {
	keys []ringKey
}

type ringKey struct {
	id    uint32
	aead  cipher.AEAD
	index []byte // HMAC key for index names
}

// NewKeyRing returns a key ring over keys, newest first: the first seals. Each key is
// KeySize bytes.
func NewKeyRing(keys ...[]byte) (*KeyRing, error) {
	return NewKeyRingAccepting(keys, nil)
}

// NewKeyRingAccepting returns a key ring over keys (the first seals), which also opens
// values sealed with the accepted keys. A key may appear only once in both lists.
func NewKeyRingAccepting(keys, accepted [][]byte) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("session: key ring needs at least one key")
	}
	n := len(keys)
	keys = append(slices.Clip(keys), accepted...)
	r := &KeyRing{}
	seen := map[uint32]bool{}
	for i, k := range keys {
		name := fmt.Sprintf("key %d", i)
		if i >= n {
			name = fmt.Sprintf("accepted key %d", i-n)
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("session: %s is %d bytes, want %d", name, len(k), KeySize)
		}
		a, err := newAEAD(k)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte("gatehouse key id\x00"), k...))
		id := binary.BigEndian.Uint32(sum[:4])
		if seen[id] {
			return nil, fmt.Errorf("session: %s repeats an earlier key", name)
		}
		seen[id] = true
		idx, err := hkdf.Key(sha256.New, k, nil, "gatehouse index names", KeySize)
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, ringKey{id: id, aead: a, index: idx})
	}
	return r, nil
}

// DeriveKey derives a KeySize key from secret material (a client secret, a private key's
// bytes) for a given purpose. It lets a deployment that configures no explicit keys still
// get stable keys shared by every replica.
func DeriveKey(secret []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, secret, []byte("gatehouse"), purpose, KeySize)
	if err != nil {
		panic(err) // only for lengths hkdf cannot produce; KeySize is fine
	}
	return k
}

// NewRandomKey returns a fresh random KeySize key.
func NewRandomKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

// Seal encrypts and authenticates plaintext with the primary key. aad binds the result to
// its context (a store key, a purpose): opening it under another aad fails.
func (r *KeyRing) Seal(aad, plaintext []byte) []byte {
	k := r.keys[0]
	out := make([]byte, 4, 4+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	binary.BigEndian.PutUint32(out, k.id)
	return sealAppend(k.aead, out, aad, plaintext)
}

// Open reverses Seal with whichever key of the ring sealed the value.
func (r *KeyRing) Open(aad, sealed []byte) ([]byte, error) {
	if len(sealed) < 4 {
		return nil, ErrDecrypt
	}
	id := binary.BigEndian.Uint32(sealed)
	for _, k := range r.keys {
		if k.id == id {
			return openAEAD(k.aead, aad, sealed[4:])
		}
	}
	return nil, ErrUnknownKey
}

// IndexNames returns the index set names for a value of a kind ("sub", "psid"), one per
// key in the ring, the primary key's first, accepted keys' last. Index names are keyed
// hashes: a dump of the store does not reveal subjects, and cannot be searched for a
// guessed one without the keys. Writes use the first name; lookups use all of them, so
// that a replica finds what another replica indexed under a key they both have.
func (r *KeyRing) IndexNames(kind, value string) []string {
	names := make([]string, len(r.keys))
	for i, k := range r.keys {
		m := hmac.New(sha256.New, k.index)
		m.Write([]byte(kind))
		m.Write([]byte{0})
		m.Write([]byte(value))
		names[i] = kind + ":" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
	}
	return names
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealAppend appends nonce || ciphertext to dst.
func sealAppend(a cipher.AEAD, dst, aad, plaintext []byte) []byte {
	n := len(dst)
	dst = dst[:n+a.NonceSize()]
	rand.Read(dst[n:])
	return a.Seal(dst, dst[n:], plaintext, aad)
}

func openAEAD(a cipher.AEAD, aad, sealed []byte) ([]byte, error) {
	ns := a.NonceSize()
	if len(sealed) < ns+a.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := a.Open(nil, sealed[:ns], sealed[ns:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Seal encrypts plaintext with a one-off key (a per-session or per-flow key that the
// browser holds): nonce || AES-256-GCM ciphertext.
func Seal(key, aad, plaintext []byte) ([]byte, error) {
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return sealAppend(a, make([]byte, 0, a.NonceSize()+len(plaintext)+a.Overhead()), aad, plaintext), nil
}

// Open reverses Seal.
func Open(key, aad, sealed []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, ErrDecrypt
	}
	a, err := newAEAD(key)
	if err != nil {
		return nil, ErrDecrypt
	}
	return openAEAD(a, aad, sealed)
}
