package session

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/keylock"
)

// Manager creates, loads, saves and ends sessions over any Store. It owns the encryption
// (see the package documentation), the expiry rules, the locking that serialises the
// writes to one session, and every key written to the Store: session records, their
// tombstones, locks and indexes, login flows (PutFlow, TakeFlow) and one-time ids
// (AddOnce). Nothing else reads or writes the Store, so Observe sees every operation.
//
// A Manager is safe for concurrent use. Its fields must not change after first use; the
// key ring changes with SetKeys.
type Manager struct {
	Store Store
	// Keys is the server key ring the Manager starts with; SetKeys replaces it.
	Keys *KeyRing
	// IdleTimeout ends a session that has not been used for that long.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session that long after login, however active.
	AbsoluteTimeout time.Duration
	// LockTTL bounds how long a crashed holder of a session's lock blocks the others.
	// It must exceed the longest token request. Default 30 s.
	LockTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observe, when set, is called after every store operation the Manager makes, with
	// the operation's name (one of the Op constants), its duration and its error
	// (ErrNotFound included: a miss is an answer, not a failure). Metrics and traces hang
	// off it. It must be cheap and safe for concurrent use.
	Observe func(op string, d time.Duration, err error)
	// Trace, when set, is called after every store operation as Observe is, with the
	// context the operation ran in and when it started and ended, so that a tracer can
	// record it as a span of the request that made it. It must be cheap and safe for
	// concurrent use. Nil costs nothing.
	Trace func(ctx context.Context, op string, start, end time.Time, err error)

	locks   keylock.Map
	decoded decodedCache
	ends    endListeners
	ring    atomic.Pointer[KeyRing] // set by SetKeys; nil: Keys
}

// SetKeys replaces the server key ring while serving (a configuration reload): values are
// sealed with the new ring's primary key from now on, and opened with any of its keys.
// Operations under way finish with the ring they started with.
func (m *Manager) SetKeys(r *KeyRing) {
	m.ring.Store(r)
	m.decoded.reset() // nothing decoded with a key that is gone stays usable
}

// KeyRing returns the key ring in use now.
func (m *Manager) KeyRing() *KeyRing {
	if r := m.ring.Load(); r != nil {
		return r
	}
	return m.Keys
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Create stores a new session and returns the cookie value that opens it. It fills in
// Handle, CreatedAt, LastSeen, and caps ExpiresAt (when set) by the absolute timeout.
func (m *Manager) Create(ctx context.Context, s *Session) (cookie string, err error) {
	t := newTicket()
	now := m.now()
	s.Handle = t.handle()
	s.key = append([]byte(nil), t.key[:]...)
	s.CreatedAt, s.LastSeen = now, now
	abs := now.Add(m.AbsoluteTimeout)
	if s.ExpiresAt.IsZero() || s.ExpiresAt.After(abs) {
		s.ExpiresAt = abs
	}
	if err := m.write(ctx, s); err != nil {
		return "", err
	}
	return t.encode(), nil
}

// Load returns the session that cookie opens, or ErrNoSession, ErrExpired, ErrRevoked,
// ErrRefreshFailed, or an error wrapping ErrUnavailable when the store cannot answer. An
// ErrNoSession for a record sealed with a server key the ring lacks also wraps
// ErrUnknownKey.
//
// The store is read on every call (the record, and its tombstone: a record restored
// after its session ended stays ended), so an ended session is seen at once; decrypting and
// decoding an unchanged record is done once and cached. The returned Session may be
// shared with other callers: treat it as read-only, and Reload it to change it.
func (m *Manager) Load(ctx context.Context, cookie string) (*Session, error) {
	t, ok := parseTicket(cookie)
	if !ok {
		return nil, ErrNoSession
	}
	return m.load(ctx, t.handle(), t.key[:], false)
}

// Reload reads s again from the store, bypassing any client-side cache: the step after
// taking a session's lock, before deciding whether work is still needed. The result is
// the caller's own copy, free to modify and Save.
func (m *Manager) Reload(ctx context.Context, s *Session) (*Session, error) {
	return m.load(ctx, s.Handle, s.key, true)
}

func (m *Manager) load(ctx context.Context, h string, key []byte, fresh bool) (*Session, error) {
	var b []byte
	var err error
	if fresh {
		b, err = m.storeGetFresh(ctx, recordKey(h))
	} else {
		b, err = m.storeGet(ctx, recordKey(h))
	}
	if errors.Is(err, ErrNotFound) {
		return nil, m.whyGone(ctx, h)
	}
	if err != nil {
		return nil, err
	}
	// A record under a tombstone was restored by someone (a backup, a stale writer): the
	// session ended, and stays ended. On Redis the tombstone's absence is served by the
	// client-side cache, which caches misses too; in memory it is a map lookup.
	if err := m.tombstoned(ctx, h, fresh); err != nil {
		return nil, err
	}
	var s *Session
	if cached, ok := m.decoded.get(h, key, b); ok && !fresh {
		s = cached
	} else {
		s, err = decodeRecord(m.KeyRing(), recordKey(h), key, b)
		if errors.Is(err, ErrUnknownKey) {
			return nil, errUnknownKeySession
		}
		if err != nil {
			// A cookie for this handle whose key does not open the record was not made by us.
			return nil, ErrNoSession
		}
		m.decoded.put(h, key, b, s)
		if fresh {
			// The caller is about to modify it: hand out a copy the cache does not share.
			s = s.clone()
		}
	}
	if m.expired(s) {
		return nil, ErrExpired
	}
	return s, nil
}

// errUnknownKeySession is ErrNoSession for a record sealed with a server key this
// Manager's ring lacks: the caller can tell the operator.
var errUnknownKeySession = fmt.Errorf("%w (%w)", ErrNoSession, ErrUnknownKey)

// Peek returns a session's metadata by handle, without its cookie: no claims, no tokens.
func (m *Manager) Peek(ctx context.Context, h string) (*Session, error) {
	if !ValidHandle(h) {
		return nil, ErrNotFound
	}
	b, err := m.storeGet(ctx, recordKey(h))
	if err != nil {
		return nil, err
	}
	s, err := decodeMeta(m.KeyRing(), recordKey(h), b)
	if err != nil {
		return nil, err
	}
	if m.expired(s) {
		return nil, ErrNotFound
	}
	if err := m.tombstoned(ctx, h, false); errors.Is(err, ErrRevoked) || errors.Is(err, ErrRefreshFailed) {
		return nil, ErrNotFound // ended: a restored record is not a session
	} else if err != nil {
		return nil, err
	}
	return s, nil
}

// tombstoned returns the reason the session with handle h ended, when it has a
// tombstone, or nil when it has none.
func (m *Manager) tombstoned(ctx context.Context, h string, fresh bool) error {
	var b []byte
	var err error
	if fresh {
		b, err = m.storeGetFresh(ctx, tombstoneKey(h))
	} else {
		b, err = m.storeGet(ctx, tombstoneKey(h))
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return endReason(b)
}

func endReason(b []byte) error {
	if string(b) == ReasonRefreshFailed {
		return ErrRefreshFailed
	}
	return ErrRevoked
}

// whyGone tells an ended session from an expired one by its tombstone.
func (m *Manager) whyGone(ctx context.Context, h string) error {
	b, err := m.storeGet(ctx, tombstoneKey(h))
	switch {
	case errors.Is(err, ErrNotFound):
		return ErrExpired
	case err != nil:
		return err
	default:
		return endReason(b)
	}
}

func (m *Manager) expired(s *Session) bool {
	now := m.now()
	return !now.Before(s.ExpiresAt) || !now.Before(s.LastSeen.Add(m.IdleTimeout))
}

// IdleExpiry is when s ends if it is not used again.
func (m *Manager) IdleExpiry(s *Session) time.Time {
	idle := s.LastSeen.Add(m.IdleTimeout)
	if idle.After(s.ExpiresAt) {
		return s.ExpiresAt
	}
	return idle
}

// Save writes s back (new tokens, a later LastSeen). Call it while holding s's lock. A
// session ended meanwhile (logout on another replica, back-channel logout) stays ended:
// Save then returns the reason, as Load would.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	if s.key == nil {
		return errors.New("session: Save of a session that was not created or loaded")
	}
	if m.expired(s) {
		return ErrExpired
	}
	if err := m.write(ctx, s); err != nil {
		return err
	}
	// The tombstone is written before a session is deleted, so a save that raced with an
	// ending sees it here and undoes itself.
	if _, err := m.storeGetFresh(ctx, tombstoneKey(s.Handle)); err == nil {
		if _, err := m.storeDelete(ctx, recordKey(s.Handle)); err != nil {
			return err
		}
		return m.whyGone(ctx, s.Handle)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// Touch records use of s, extending its idle timeout, and returns the session as it now
// is (s itself when nothing was written). To keep the hot path free of writes it only
// writes when the last recorded use is older than interval, and it skips the write when
// another request holds the session's lock (that one will save anyway). s is not
// modified: it may be shared (see Load).
func (m *Manager) Touch(ctx context.Context, s *Session, interval time.Duration) (*Session, error) {
	if m.now().Sub(s.LastSeen) < interval {
		return s, nil
	}
	release, ok := m.locks.TryLock(s.Handle)
	if !ok {
		return s, nil
	}
	defer release()
	// Another replica may be refreshing: wait briefly rather than overwrite its tokens.
	lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	remote, err := m.storeLock(lctx, lockName(s.Handle))
	cancel()
	if err != nil {
		return s, nil
	}
	defer remote()
	cur, err := m.Reload(ctx, s)
	if err != nil {
		return nil, err
	}
	cur.LastSeen = m.now()
	if err := m.Save(ctx, cur); err != nil {
		return nil, err
	}
	return cur, nil
}

// Lock serialises writers of one session: in this process, and across processes when
// the store is a Locker. After Lock returns, Reload before deciding anything.
func (m *Manager) Lock(ctx context.Context, s *Session) (release func(), err error) {
	local, err := m.locks.Lock(ctx, s.Handle)
	if err != nil {
		return nil, err
	}
	remote, err := m.storeLock(ctx, lockName(s.Handle))
	if err != nil {
		local()
		return nil, err
	}
	return func() { remote(); local() }, nil
}

func (m *Manager) lockTTL() time.Duration {
	if m.LockTTL > 0 {
		return m.LockTTL
	}
	return 30 * time.Second
}

// End deletes the session with handle h and remembers why, so that its cookie, if used
// again, gets reason instead of a bare "expired". It reports whether a live session was
// ended.
func (m *Manager) End(ctx context.Context, h, reason string) (bool, error) {
	if !ValidHandle(h) {
		return false, nil
	}
	b, err := m.storeGet(ctx, recordKey(h))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s, err := decodeMeta(m.KeyRing(), recordKey(h), b)
	if err != nil {
		// Unreadable metadata (keys rotated away): delete without its index entries,
		// which then point at nothing and are skipped.
		s = &Session{Handle: h, ExpiresAt: m.now().Add(m.AbsoluteTimeout)}
	}
	ttl := s.ExpiresAt.Sub(m.now())
	if ttl <= 0 {
		ttl = time.Second
	}
	m.decoded.drop(h)
	if err := m.storeSet(ctx, tombstoneKey(h), []byte(reason), ttl); err != nil {
		return false, err
	}
	existed, err := m.storeDeleteIndexed(ctx, recordKey(h), m.indexes(s)...)
	if err == nil {
		m.ended(ctx, h)
	}
	return existed, err
}

// ListSubject returns the metadata of the live sessions of a subject.
func (m *Manager) ListSubject(ctx context.Context, subject string) ([]*Session, error) {
	return m.list(ctx, m.KeyRing().IndexNames("sub", subject))
}

// ListProviderSession returns the metadata of the live sessions created under a
// provider's session id ("sid") at issuer.
func (m *Manager) ListProviderSession(ctx context.Context, issuer, sid string) ([]*Session, error) {
	return m.list(ctx, m.KeyRing().IndexNames("psid", issuer+"\x00"+sid))
}

// ErrNoIndex is returned by the list methods when the store is not an Indexer.
var ErrNoIndex = errors.New("session: the store cannot list sessions (not an Indexer)")

func (m *Manager) list(ctx context.Context, indexes []string) ([]*Session, error) {
	seen := map[string]bool{}
	var out []*Session
	for _, name := range indexes {
		keys, err := m.storeMembers(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			h, ok := handleFromRecordKey(k)
			if !ok || seen[h] {
				continue
			}
			seen[h] = true
			s, err := m.Peek(ctx, h)
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDecrypt) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// indexes are the index sets a session belongs to, under the newest key.
func (m *Manager) indexes(s *Session) []string {
	var ix []string
	if s.Subject != "" {
		ix = append(ix, m.KeyRing().IndexNames("sub", s.Subject)...)
	}
	if s.ProviderSID != "" {
		ix = append(ix, m.KeyRing().IndexNames("psid", s.Issuer+"\x00"+s.ProviderSID)...)
	}
	return ix
}

// write stores s with a ttl of its idle expiry. Every write refreshes the index entries
// too, so that they live exactly as long as the record.
func (m *Manager) write(ctx context.Context, s *Session) error {
	key := recordKey(s.Handle)
	b, err := encodeRecord(m.KeyRing(), key, s, m.recordVersion())
	if err != nil {
		return err
	}
	ttl := m.IdleExpiry(s).Sub(m.now())
	if ttl <= 0 {
		return ErrExpired
	}
	if err := m.storeSetIndexed(ctx, key, b, ttl, m.newestIndexes(s)...); err != nil {
		return fmt.Errorf("session: saving: %w", err)
	}
	return nil
}

// newestIndexes are the index sets a new session is added to (newest key only).
func (m *Manager) newestIndexes(s *Session) []string {
	var ix []string
	if s.Subject != "" {
		ix = append(ix, m.KeyRing().IndexNames("sub", s.Subject)[0])
	}
	if s.ProviderSID != "" {
		ix = append(ix, m.KeyRing().IndexNames("psid", s.Issuer+"\x00"+s.ProviderSID)[0])
	}
	return ix
}

// recordVersion is the format the Manager writes: compact for a store no other process
// reads, JSON, which every release reads, for the others.
func (m *Manager) recordVersion() byte {
	if _, ok := m.Store.(ProcessLocal); ok {
		return recordCompact
	}
	return recordJSON
}
