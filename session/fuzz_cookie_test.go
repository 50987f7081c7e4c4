package session

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// FuzzParseTicket: the session cookie parser accepts exactly the 66-character base64url
// spelling of a version byte, an id and a key, and nothing else: one spelling per
// cookie (strict decoding, so the last character's unused bits must be zero), no line
// breaks (the decoder would skip them; seed crlf-in-cookie); and the handle derived from
// it is a valid handle.
func FuzzParseTicket(f *testing.F) {
	genuine := newTicket().encode()
	for _, s := range []string{
		genuine, "", "A", genuine[:65], genuine + "A", genuine[:65] + "=", genuine[:20] + "\n" + genuine[20:],
		"Ag" + genuine[2:], // version 2
		base64.StdEncoding.EncodeToString(make([]byte, 49)),                  // standard alphabet, padded
		"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ", // 0x01 repeated
		"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAf", // same, unused bits set
		"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB+Q", // '+' is not base64url
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tk, ok := parseTicket(v)
		if ok && strings.ContainsAny(v, "\r\n") {
			t.Fatalf("parseTicket accepts %q, which holds a line break", v)
		}
		if !ok {
			if tk != (ticket{}) {
				t.Fatalf("parseTicket(%q) refused it but returned %v", v, tk)
			}
			return
		}
		if enc := tk.encode(); v != enc {
			t.Fatalf("parseTicket accepted %q, which is not the cookie %q", v, enc)
		}
		enc := v
		if b, _ := base64.RawURLEncoding.DecodeString(enc); len(b) != 1+idSize+KeySize || b[0] != cookieVersion {
			t.Fatalf("ticket %q re-encodes to %d bytes, version %d", v, len(b), b[0])
		}
		if h := tk.handle(); !ValidHandle(h) || h == tk.encode() || HandleMatches(h, v) {
			t.Fatalf("handle %q of %q is invalid or is the cookie", h, v)
		}
		// The round trip from the ticket is exact.
		if back, ok := parseTicket(enc); !ok || back != tk {
			t.Fatalf("re-encoded ticket %q does not parse back", enc)
		}
	})
}

// FuzzOpen: opening sealed bytes (a flow cookie's store value, a record's metadata)
// never panics, opens only what was sealed with the same key and additional data, and
// gives back the plaintext exactly.
func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, KeySize)
	ring, err := NewKeyRing(key)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := Seal(key, []byte("f:state"), []byte(`{"verifier":"v"}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("f:state"), []byte(`{"verifier":"v"}`), sealed, uint16(0))
	f.Add([]byte("gatehouse meta v1\x00s:{h}"), []byte(`{"sub":"alice"}`), ring.Seal([]byte("gatehouse meta v1\x00s:{h}"), []byte(`{"sub":"alice"}`)), uint16(3))
	f.Add([]byte{}, []byte{}, []byte{}, uint16(0xffff))
	f.Add([]byte("aad"), []byte("x"), make([]byte, 40), uint16(12))
	f.Fuzz(func(t *testing.T, aad, plain, fuzzed []byte, flip uint16) {
		// Fuzzed bytes open neither with the per-session key nor with the key ring:
		// forging an AES-GCM tag is out of reach.
		if p, err := Open(key, aad, fuzzed); err == nil {
			if again, err := Seal(key, aad, p); err != nil || len(again) != len(fuzzed) {
				t.Fatalf("fuzzed bytes %x opened as %q", fuzzed, p)
			}
		} else if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open = %v, want ErrDecrypt", err)
		}
		if _, err := ring.Open(aad, fuzzed); err == nil && !bytes.Equal(fuzzed, sealed) && len(fuzzed) < 4+12+16 {
			t.Fatalf("%d fuzzed bytes opened with the key ring", len(fuzzed))
		}
		if _, err := Open(fuzzed, aad, sealed); err == nil && !bytes.Equal(fuzzed, key) {
			t.Fatalf("a fuzzed key %x opened a sealed value", fuzzed)
		}

		// Round trips are exact, and any one flipped bit is refused.
		for _, s := range []struct {
			name string
			seal func() []byte
			open func([]byte, []byte) ([]byte, error)
		}{
			{"Seal", func() []byte { b, _ := Seal(key, aad, plain); return b }, func(a, b []byte) ([]byte, error) { return Open(key, a, b) }},
			{"KeyRing", func() []byte { return ring.Seal(aad, plain) }, ring.Open},
		} {
			b := s.seal()
			got, err := s.open(aad, b)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%s round trip of %q = %q, %v", s.name, plain, got, err)
			}
			bit := int(flip) % (8 * len(b))
			b[bit/8] ^= 1 << (bit % 8)
			if got, err := s.open(aad, b); err == nil {
				t.Fatalf("%s opened a value with bit %d flipped: %q", s.name, bit, got)
			}
			b[bit/8] ^= 1 << (bit % 8)
			if _, err := s.open(append(append([]byte(nil), aad...), 0), b); err == nil {
				t.Fatalf("%s opened a value with other additional data", s.name)
			}
		}
	})
}
