package session

import (
	"crypto/subtle"
	"sync"
)

// decodedCache remembers the last decoded form of each session record, so that the hot
// path (one Load per proxied request) pays for a store read and a comparison, not for a
// decryption and a JSON decode, while the record is unchanged.
//
// An entry is used only for the exact same record bytes (identified by the AES-GCM tag of
// the sealed part, which authenticates them) opened with the exact same key: a cookie with
// the right id but a wrong key never gets a cached session.
type decodedCache struct {
	mu      sync.Mutex
	entries map[string]decodedEntry // by handle
}

type decodedEntry struct {
	tag     [16]byte
	key     [KeySize]byte
	session *Session
}

// maxDecoded bounds the cache; past it, an arbitrary entry makes room (Go's map order).
const maxDecoded = 10000

func recordTag(b []byte) ([16]byte, bool) {
	var t [16]byte
	if len(b) < 16 {
		return t, false
	}
	copy(t[:], b[len(b)-16:])
	return t, true
}

func (c *decodedCache) get(h string, key, record []byte) (*Session, bool) {
	tag, ok := recordTag(record)
	if !ok || len(key) != KeySize {
		return nil, false
	}
	c.mu.Lock()
	e, ok := c.entries[h]
	c.mu.Unlock()
	if !ok || e.tag != tag || subtle.ConstantTimeCompare(e.key[:], key) != 1 {
		return nil, false
	}
	return e.session, true
}

func (c *decodedCache) put(h string, key, record []byte, s *Session) {
	tag, ok := recordTag(record)
	if !ok || len(key) != KeySize {
		return
	}
	e := decodedEntry{tag: tag, session: s}
	copy(e.key[:], key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]decodedEntry{}
	}
	if _, exists := c.entries[h]; !exists && len(c.entries) >= maxDecoded {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[h] = e
}

// drop forgets a session (ended).
func (c *decodedCache) drop(h string) {
	c.mu.Lock()
	delete(c.entries, h)
	c.mu.Unlock()
}

// reset forgets every session.
func (c *decodedCache) reset() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// clone copies s deeply enough that changing the copy's tokens, audiences or LastSeen
// does not change s. Claims are shared: nothing modifies them after login.
func (s *Session) clone() *Session {
	c := *s
	if s.Audiences != nil {
		c.Audiences = make(map[string]Token, len(s.Audiences))
		for k, v := range s.Audiences {
			c.Audiences[k] = v
		}
	}
	return &c
}
