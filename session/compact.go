package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The compact record format (version 2) holds the same fields as the JSON one in a
// binary layout, which makes a record with the development provider's tokens about 300
// bytes shorter. Releases before it cannot read it, so the Manager writes it only to a
// store that no other process reads (ProcessLocal: the memory store), and JSON to the
// others; it reads both.
//
// Strings are uvarint(len) || bytes, instants varint(Unix seconds) || uvarint(nanoseconds),
// and every part is read to its end exactly:
//
//	meta:   sub iss psid created last_seen expires user_agent ip frontend provider
//	secret: claims(JSON) claims_at id_token token uvarint(n) n×(audience token) dpop_key
//	token:  access_token type expiry issued refresh_token refresh_expiry scope
//
// A bearer token's type is left out, as in JSON.

func encodeCompact(s *Session) (meta, secret []byte) {
	meta = appendString(nil, s.Subject)
	meta = appendString(meta, s.Issuer)
	meta = appendString(meta, s.ProviderSID)
	meta = appendTime(meta, s.CreatedAt)
	meta = appendTime(meta, s.LastSeen)
	meta = appendTime(meta, s.ExpiresAt)
	meta = appendString(meta, s.UserAgent)
	meta = appendString(meta, s.IP)
	meta = appendString(meta, s.Frontend)
	meta = appendString(meta, s.Provider)

	var claims []byte
	if s.Claims != nil {
		// Claims come from JSON (the ID token, userinfo), so they encode as JSON again.
		claims, _ = json.Marshal(s.Claims)
	}
	secret = appendString(nil, string(claims))
	secret = appendTime(secret, s.ClaimsAt)
	secret = appendString(secret, s.IDToken)
	secret = appendToken(secret, s.Token)
	secret = binary.AppendUvarint(secret, uint64(len(s.Audiences)))
	for _, k := range slices.Sorted(maps.Keys(s.Audiences)) {
		secret = appendString(secret, k)
		secret = appendToken(secret, s.Audiences[k])
	}
	secret = appendString(secret, string(s.DPoPKey))
	return meta, secret
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendTime writes an instant exactly, whatever its year: Unix seconds and nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendToken(b []byte, t Token) []byte {
	t = t.encoded()
	b = appendString(b, t.AccessToken)
	b = appendString(b, t.TokenType)
	b = appendTime(b, t.Expiry)
	b = appendTime(b, t.Issued)
	b = appendString(b, t.RefreshToken)
	b = appendTime(b, t.RefreshExpiry)
	return appendString(b, t.Scope)
}

var errCompact = errors.New("session: malformed compact record")

// reader reads a compact part; the first problem sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCompact
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errCompact
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	sec, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCompact
		return time.Time{}
	}
	r.b = r.b[n:]
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.err = errCompact
	}
	if r.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if t.IsZero() {
		return time.Time{}
	}
	return t
}

func (r *reader) token() Token {
	t := Token{AccessToken: r.string(), TokenType: r.string(), Expiry: r.time(), Issued: r.time(),
		RefreshToken: r.string(), RefreshExpiry: r.time(), Scope: r.string()}
	return t.decoded()
}

// end reports the first problem, or trailing bytes.
func (r *reader) end(part string) error {
	if r.err == nil && len(r.b) > 0 {
		r.err = errCompact
	}
	if r.err != nil {
		return fmt.Errorf("session: decoding %s: %w", part, r.err)
	}
	return nil
}

func decodeCompactMeta(meta []byte) (*Session, error) {
	r := &reader{b: meta}
	s := &Session{Subject: r.string(), Issuer: r.string(), ProviderSID: r.string(),
		CreatedAt: r.time(), LastSeen: r.time(), ExpiresAt: r.time(), UserAgent: r.string(), IP: r.string(),
		Frontend: r.string(), Provider: r.string()}
	if err := r.end("metadata"); err != nil {
		return nil, err
	}
	return s, nil
}

func decodeCompactSecret(secret []byte, s *Session) error {
	r := &reader{b: secret}
	claims := r.string()
	claimsAt := r.time()
	idToken := r.string()
	tok := r.token()
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each audience takes at least a byte
		r.err = errCompact
	}
	var audiences map[string]Token
	for i := uint64(0); i < n && r.err == nil; i++ {
		if audiences == nil {
			audiences = make(map[string]Token, n)
		}
		k := r.string()
		audiences[k] = r.token()
	}
	dpopKey := r.string()
	if err := r.end("session"); err != nil {
		return err
	}
	var c map[string]any
	if claims != "" {
		if err := json.Unmarshal([]byte(claims), &c); err != nil {
			return fmt.Errorf("session: decoding claims: %w", err)
		}
	}
	s.Claims, s.ClaimsAt, s.IDToken, s.Token, s.Audiences = c, claimsAt, idToken, tok, audiences
	if dpopKey != "" {
		s.DPoPKey = []byte(dpopKey)
	}
	return nil
}
