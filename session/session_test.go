package session

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// A record leaves out the token type of bearer tokens and restores it when read; any
// other type is kept.
func TestRecordTokenType(t *testing.T) {
	keys, err := NewKeyRing(NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"Bearer", "DPoP"} {
		s := &Session{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), key: NewRandomKey(),
			Token:     Token{AccessToken: "at", TokenType: typ},
			Audiences: map[string]Token{"aud=x": {AccessToken: "at2", TokenType: typ}}}
		b, err := encodeRecord(keys, recordKey("h"), s, recordJSON)
		if err != nil {
			t.Fatal(err)
		}
		_, _, sealed, _ := splitRecord(b)
		plain, err := Open(s.key, secretAAD(recordJSON, recordKey("h")), sealed)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(plain), `"tt"`); got != (typ != "Bearer") {
			t.Errorf("%s: record %s", typ, plain)
		}
		got, err := decodeRecord(keys, recordKey("h"), s.key, b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Token.TokenType != typ || got.Audiences["aud=x"].TokenType != typ {
			t.Errorf("%s: read back as %q and %q", typ, got.Token.TokenType, got.Audiences["aud=x"].TokenType)
		}
		if s.Token.TokenType != typ {
			t.Errorf("encoding changed the session's token type to %q", s.Token.TokenType)
		}
	}
}

// Both record formats carry every field of a session, and a part of one format cannot
// be read as the other.
func TestRecordFormats(t *testing.T) {
	keys, err := NewKeyRing(NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Round(0) // no monotonic reading: it does not survive any encoding
	full := &Session{Subject: "alice", Issuer: "https://id.example", ProviderSID: "psid",
		CreatedAt: now, LastSeen: now.Add(time.Minute), ExpiresAt: now.Add(time.Hour),
		UserAgent: "UA/1.0", IP: "192.0.2.1", key: NewRandomKey(),
		Claims:   map[string]any{"sub": "alice", "groups": []any{"a", "b"}, "n": 1.5, "ok": true},
		ClaimsAt: now.Add(2 * time.Minute),
		IDToken:  "id.token.x",
		Token: Token{AccessToken: "at", TokenType: "Bearer", Expiry: now.Add(5 * time.Minute), Issued: now,
			RefreshToken: "rt", RefreshExpiry: now.Add(24 * time.Hour), Scope: "openid email"},
		Audiences: map[string]Token{
			"aud=api":             {AccessToken: "at-api", TokenType: "DPoP", Expiry: now.Add(time.Minute)},
			"resource=https://r/": {AccessToken: "at-r", TokenType: "Bearer"},
		}}
	empty := &Session{Subject: "bob", key: NewRandomKey()} // zero times, no claims, no audiences
	// Instants far from now survive too (a provider may say a refresh token never ends).
	far := &Session{Subject: "carol", key: NewRandomKey(), ExpiresAt: time.Date(3000, 1, 2, 3, 4, 5, 6, time.UTC),
		Token: Token{RefreshExpiry: time.Date(9999, 12, 31, 0, 0, 0, 1, time.UTC)}}
	for _, version := range []byte{recordJSON, recordCompact} {
		for _, in := range []*Session{full, empty, far} {
			b, err := encodeRecord(keys, recordKey("h"), in, version)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != version {
				t.Fatalf("record version %d, want %d", b[0], version)
			}
			got, err := decodeRecord(keys, recordKey("h"), in.key, b)
			if err != nil {
				t.Fatalf("v%d: %v", version, err)
			}
			want := *in
			want.Handle = "h"
			if !reflect.DeepEqual(normal(got), normal(&want)) {
				t.Errorf("v%d read back\n%+v\nwant\n%+v", version, got, &want)
			}
			// The same sealed parts under the other version's byte do not open.
			other := slices.Clone(b)
			other[0] = recordJSON + recordCompact - version
			if _, err := decodeRecord(keys, recordKey("h"), in.key, other); !errors.Is(err, ErrDecrypt) {
				t.Errorf("v%d parts read as the other version: %v", version, err)
			}
		}
	}
	// The compact format is what makes records shorter.
	j, _ := encodeRecord(keys, recordKey("h"), full, recordJSON)
	c, _ := encodeRecord(keys, recordKey("h"), full, recordCompact)
	if len(c) >= len(j) {
		t.Errorf("compact record %d bytes, JSON %d", len(c), len(j))
	}
}

// normal is s with its instants in UTC and its token types as they read back (a token of
// no type is a bearer token), for comparing sessions across encodings.
func normal(s *Session) *Session {
	c := *s
	tok := func(t Token) Token {
		t.Expiry, t.Issued, t.RefreshExpiry = t.Expiry.UTC(), t.Issued.UTC(), t.RefreshExpiry.UTC()
		return t.decoded()
	}
	c.CreatedAt, c.LastSeen, c.ExpiresAt, c.ClaimsAt = s.CreatedAt.UTC(), s.LastSeen.UTC(), s.ExpiresAt.UTC(), s.ClaimsAt.UTC()
	c.Token = tok(s.Token)
	if s.Audiences != nil {
		c.Audiences = map[string]Token{}
		for k, t := range s.Audiences {
			c.Audiences[k] = tok(t)
		}
	}
	return &c
}

// FuzzCompactParts: the compact decoders read any bytes without panicking, and what they
// accept encodes to a form that reads back to the same session.
func FuzzCompactParts(f *testing.F) {
	s := &Session{Subject: "alice", Issuer: "https://id.example", CreatedAt: time.Unix(1, 0),
		Claims: map[string]any{"sub": "alice"}, Token: Token{AccessToken: "at", Expiry: time.Unix(2, 0)},
		Audiences: map[string]Token{"aud=x": {AccessToken: "y"}}}
	meta, secret := encodeCompact(s)
	f.Add(meta, secret)
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0xff, 0xff, 0xff}, []byte{5, 'a'})
	f.Fuzz(func(t *testing.T, meta, secret []byte) {
		got, err := decodeCompactMeta(meta)
		if err != nil {
			return
		}
		if err := decodeCompactSecret(secret, got); err != nil {
			return
		}
		m1, s1 := encodeCompact(got)
		again, err := decodeCompactMeta(m1)
		if err != nil {
			t.Fatalf("re-encoded metadata does not read: %v", err)
		}
		if err := decodeCompactSecret(s1, again); err != nil {
			t.Fatalf("re-encoded secret does not read: %v", err)
		}
		if m2, s2 := encodeCompact(again); !bytes.Equal(m1, m2) || !bytes.Equal(s1, s2) {
			t.Fatalf("%+v encodes differently after a round trip", got)
		}
	})
}

// A DPoP key is kept in the part sealed with the cookie's key, in both record formats,
// and comes back as it went in.
func TestRecordDPoPKey(t *testing.T) {
	keys, err := NewKeyRing(NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	dpopKey := []byte("\x30\x77\x02\x01\x01 a DER private key")
	for _, format := range []byte{recordJSON, recordCompact} {
		s := &Session{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), key: NewRandomKey(), DPoPKey: dpopKey}
		b, err := encodeRecord(keys, recordKey("h"), s, format)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "DER private key") {
			t.Fatalf("format %d: the DPoP key is readable in the stored record", format)
		}
		got, err := decodeRecord(keys, recordKey("h"), s.key, b)
		if err != nil || string(got.DPoPKey) != string(dpopKey) {
			t.Fatalf("format %d: %v, key %q", format, err, got.DPoPKey)
		}
		s.DPoPKey = nil
		b, _ = encodeRecord(keys, recordKey("h"), s, format)
		if got, err := decodeRecord(keys, recordKey("h"), s.key, b); err != nil || got.DPoPKey != nil {
			t.Fatalf("format %d without a key: %v %q", format, err, got.DPoPKey)
		}
	}
}
