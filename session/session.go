package session

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Why a session is not available. A Manager returns exactly one of these from Load.
var (
	// ErrNoSession: no cookie, or one that is not a Gatehouse session cookie or does not
	// open (tampered, or sealed for another session).
	ErrNoSession = errors.New("session: no session")
	// ErrExpired: the session reached its idle or absolute timeout, or never existed.
	ErrExpired = errors.New("session: expired")
	// ErrRevoked: the session was ended on purpose (logout, back-channel logout, revoke).
	ErrRevoked = errors.New("session: revoked")
	// ErrRefreshFailed: the provider refused to refresh the session's tokens.
	ErrRefreshFailed = errors.New("session: refresh refused by the provider")
)

// Reasons recorded when a session ends on purpose; Load maps them back to errors.
const (
	ReasonRevoked       = "session_revoked"
	ReasonRefreshFailed = "refresh_failed"
)

// Token is an OAuth access token with what Gatehouse needs to use and renew it.
type Token struct {
	AccessToken   string    `json:"at,omitempty"`
	TokenType     string    `json:"tt,omitempty"` // "Bearer" is left out of the stored record
	Expiry        time.Time `json:"exp,omitzero"`
	Issued        time.Time `json:"iat,omitzero"` // when Gatehouse received it: Expiry-Issued is its lifetime
	RefreshToken  string    `json:"rt,omitempty"`
	RefreshExpiry time.Time `json:"rexp,omitzero"` // when the provider says the refresh token ends
	Scope         string    `json:"scope,omitempty"`
}

// Session is one logged-in browser.
//
// The first group of fields is metadata: sealed with the server's KeyRing, so the server
// can list and end sessions without their cookies. The second group is sealed with the
// per-session key that only the browser's cookie carries.
type Session struct {
	// Handle is the session's public identifier, derived from its secret id by a one-way
	// hash. It names the session in session lists, admin calls and the logout link; it
	// cannot be turned into the cookie. Set by the Manager.
	Handle      string
	Subject     string
	Issuer      string
	ProviderSID string // the provider's "sid" claim, for back-channel logout
	// Frontend and Provider name the app the session was made for and the provider it
	// signed in with ("" for a gateway of one app, or of one provider). A session opens
	// only in its own frontend.
	Frontend  string
	Provider  string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute end; the idle timeout may end it sooner
	UserAgent string
	IP        string

	Claims map[string]any
	// ClaimsAt is when Claims were last read from the provider (ID token, userinfo); zero
	// in a record written before it was kept: then CreatedAt.
	ClaimsAt  time.Time
	IDToken   string
	Token     Token
	Audiences map[string]Token // access tokens for other audiences or resources (RFC 8707)
	// DPoPKey is the session's DPoP private key (RFC 9449, SEC 1 DER), when the provider
	// binds its tokens: it never leaves the sealed part of the record.
	DPoPKey []byte

	key []byte // per-session key, from the cookie; nil until created or loaded
}

// AccessTokenFor returns the token kept for an audience ("" is the session's main token).
func (s *Session) AccessTokenFor(audience string) Token {
	if audience == "" {
		return s.Token
	}
	return s.Audiences[audience]
}

type metaJSON struct {
	Subject     string    `json:"sub"`
	Issuer      string    `json:"iss,omitempty"`
	ProviderSID string    `json:"psid,omitempty"`
	Frontend    string    `json:"fe,omitempty"`
	Provider    string    `json:"pv,omitempty"`
	CreatedAt   time.Time `json:"c"`
	LastSeen    time.Time `json:"ls"`
	ExpiresAt   time.Time `json:"x"`
	UserAgent   string    `json:"ua,omitempty"`
	IP          string    `json:"ip,omitempty"`
}

type secretJSON struct {
	Claims    map[string]any   `json:"claims,omitempty"`
	ClaimsAt  time.Time        `json:"cat,omitzero"`
	IDToken   string           `json:"idt,omitempty"`
	Token     Token            `json:"tok"`
	Audiences map[string]Token `json:"aud,omitempty"`
	DPoPKey   []byte           `json:"dpop,omitempty"`
}

const (
	recordJSON    = 1 // the record's parts as JSON: what every release reads
	recordCompact = 2 // the record's parts in a binary layout: see compact.go
	cookieVersion = 1
	idSize        = 16
)

// ticket is what the session cookie carries: a random id and a random key.
type ticket struct {
	id  [idSize]byte
	key [KeySize]byte
}

func newTicket() ticket {
	var t ticket
	rand.Read(t.id[:])
	rand.Read(t.key[:])
	return t
}

// encode gives the cookie value: base64url(version || id || key).
func (t ticket) encode() string {
	b := make([]byte, 0, 1+idSize+KeySize)
	b = append(b, cookieVersion)
	b = append(b, t.id[:]...)
	b = append(b, t.key[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseTicket(v string) (ticket, bool) {
	var t ticket
	if base64.RawURLEncoding.DecodedLen(len(v)) != 1+idSize+KeySize {
		return t, false
	}
	// Strict: one spelling per cookie (no stray bits in the last character); the decoded
	// length is checked too, as the decoder skips CR and LF.
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) != 1+idSize+KeySize || b[0] != cookieVersion {
		return t, false
	}
	copy(t.id[:], b[1:])
	copy(t.key[:], b[1+idSize:])
	return t, true
}

// handle derives the public handle from the secret id.
func (t ticket) handle() string {
	sum := sha256.Sum256(append([]byte("gatehouse session handle\x00"), t.id[:]...))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// HandleOf returns the handle of the session a cookie value names, without reading the
// store (for logging which session an expired or refused cookie was for).
func HandleOf(cookie string) (string, bool) {
	t, ok := parseTicket(cookie)
	if !ok {
		return "", false
	}
	return t.handle(), true
}

// ValidHandle reports whether h has the shape of a session handle, so that garbage from
// a URL never reaches a store.
func ValidHandle(h string) bool {
	if len(h) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(h)
	return err == nil
}

// HandleMatches compares two handles in constant time.
func HandleMatches(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Store keys. This package is the only one that makes them; docs/architecture.md
// lists the schema. The handle sits in braces so that a Redis Cluster keeps a session's
// record, tombstone and lock in one slot.
func recordKey(h string) string    { return "s:{" + h + "}" }
func tombstoneKey(h string) string { return "t:{" + h + "}" }
func lockName(h string) string     { return "l:{" + h + "}" }

// flowKey is where a login flow waits for its callback: a hash of its state, so that a
// store dump does not reveal states.
func flowKey(state string) string {
	sum := sha256.Sum256([]byte("gatehouse flow\x00" + state))
	return "f:" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// onceKey records a value that may be used only once (a logout token's issuer and jti).
func onceKey(id string) string {
	sum := sha256.Sum256([]byte("gatehouse logout jti\x00" + id))
	return "j:" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// handleFromRecordKey inverts recordKey.
func handleFromRecordKey(k string) (string, bool) {
	h, ok := strings.CutPrefix(k, "s:{")
	if !ok {
		return "", false
	}
	h, ok = strings.CutSuffix(h, "}")
	return h, ok
}

// bearer is the token type a record leaves out: every token but a sender-constrained one
// is a bearer token, and each record is 14 bytes shorter without it.
const bearer = "Bearer"

func (t Token) encoded() Token {
	if t.TokenType == bearer {
		t.TokenType = ""
	}
	return t
}

func (t Token) decoded() Token {
	if t.TokenType == "" {
		t.TokenType = bearer
	}
	return t
}

// encodeRecord seals s for the store: version || uvarint(len(meta)) || meta || secret.
// The version is recordCompact for a store only this process reads (ProcessLocal),
// recordJSON otherwise, which every release reads.
func encodeRecord(keys *KeyRing, storeKey string, s *Session, version byte) ([]byte, error) {
	var meta, secret []byte
	if version == recordCompact {
		meta, secret = encodeCompact(s)
	} else {
		var err error
		if meta, secret, err = encodeJSON(s); err != nil {
			return nil, err
		}
	}
	sealedMeta := keys.Seal(metaAAD(version, storeKey), meta)
	sealedSecret, err := Seal(s.key, secretAAD(version, storeKey), secret)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen32+len(sealedMeta)+len(sealedSecret))
	out = append(out, version)
	out = binary.AppendUvarint(out, uint64(len(sealedMeta)))
	out = append(out, sealedMeta...)
	return append(out, sealedSecret...), nil
}

func encodeJSON(s *Session) (meta, secret []byte, err error) {
	meta, err = json.Marshal(metaJSON{
		Subject: s.Subject, Issuer: s.Issuer, ProviderSID: s.ProviderSID, Frontend: s.Frontend, Provider: s.Provider,
		CreatedAt: s.CreatedAt, LastSeen: s.LastSeen, ExpiresAt: s.ExpiresAt,
		UserAgent: s.UserAgent, IP: s.IP,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("session: encoding metadata: %w", err)
	}
	var audiences map[string]Token
	if s.Audiences != nil {
		audiences = make(map[string]Token, len(s.Audiences))
		for k, t := range s.Audiences {
			audiences[k] = t.encoded()
		}
	}
	secret, err = json.Marshal(secretJSON{Claims: s.Claims, ClaimsAt: s.ClaimsAt, IDToken: s.IDToken, Token: s.Token.encoded(), Audiences: audiences, DPoPKey: s.DPoPKey})
	if err != nil {
		return nil, nil, fmt.Errorf("session: encoding session: %w", err)
	}
	return meta, secret, nil
}

// splitRecord returns the version and the sealed metadata and secret parts of a stored
// record.
func splitRecord(b []byte) (version byte, meta, secret []byte, err error) {
	if len(b) < 2 || b[0] != recordJSON && b[0] != recordCompact {
		return 0, nil, nil, fmt.Errorf("session: unknown record format: %w", ErrDecrypt)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return 0, nil, nil, fmt.Errorf("session: malformed record: %w", ErrDecrypt)
	}
	start := 1 + w
	return b[0], b[start : start+int(n)], b[start+int(n):], nil
}

// decodeMeta opens a record's metadata with the server's keys (no cookie needed).
func decodeMeta(keys *KeyRing, storeKey string, b []byte) (*Session, error) {
	version, sealedMeta, _, err := splitRecord(b)
	if err != nil {
		return nil, err
	}
	meta, err := keys.Open(metaAAD(version, storeKey), sealedMeta)
	if err != nil {
		return nil, err
	}
	var s *Session
	if version == recordCompact {
		s, err = decodeCompactMeta(meta)
	} else {
		s, err = decodeJSONMeta(meta)
	}
	if err != nil {
		return nil, err
	}
	s.Handle, _ = handleFromRecordKey(storeKey)
	return s, nil
}

func decodeJSONMeta(meta []byte) (*Session, error) {
	var m metaJSON
	if err := json.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("session: decoding metadata: %w", err)
	}
	return &Session{
		Subject: m.Subject, Issuer: m.Issuer, ProviderSID: m.ProviderSID, Frontend: m.Frontend, Provider: m.Provider,
		CreatedAt: m.CreatedAt, LastSeen: m.LastSeen, ExpiresAt: m.ExpiresAt,
		UserAgent: m.UserAgent, IP: m.IP,
	}, nil
}

// decodeRecord opens a whole record with the server's keys and the session key.
func decodeRecord(keys *KeyRing, storeKey string, key []byte, b []byte) (*Session, error) {
	s, err := decodeMeta(keys, storeKey, b)
	if err != nil {
		return nil, err
	}
	version, _, sealedSecret, _ := splitRecord(b)
	secret, err := Open(key, secretAAD(version, storeKey), sealedSecret)
	if err != nil {
		return nil, err
	}
	if version == recordCompact {
		err = decodeCompactSecret(secret, s)
	} else {
		err = decodeJSONSecret(secret, s)
	}
	if err != nil {
		return nil, err
	}
	s.key = key
	return s, nil
}

func decodeJSONSecret(secret []byte, s *Session) error {
	var sj secretJSON
	if err := json.Unmarshal(secret, &sj); err != nil {
		return fmt.Errorf("session: decoding session: %w", err)
	}
	for k, t := range sj.Audiences {
		sj.Audiences[k] = t.decoded()
	}
	s.Claims, s.ClaimsAt, s.IDToken, s.Token, s.Audiences = sj.Claims, sj.ClaimsAt, sj.IDToken, sj.Token.decoded(), sj.Audiences
	s.DPoPKey = sj.DPoPKey
	return nil
}

// The associated data binds each sealed part to its key and its format: a part cannot be
// moved to another record, nor read as the other format.
func metaAAD(version byte, storeKey string) []byte {
	return []byte("gatehouse meta v" + string(rune('0'+version)) + "\x00" + storeKey)
}

func secretAAD(version byte, storeKey string) []byte {
	return []byte("gatehouse session v" + string(rune('0'+version)) + "\x00" + storeKey)
}
