// Package session holds Gatehouse's server-side sessions: the session record, its
// encryption, and the seam every storage backend implements.
//
// A store is deliberately dumb: it keeps opaque bytes under a key, with a time to live.
// Everything a store holds was sealed above it, by a [Manager], so a dump of a store
// (a Redis snapshot, a bolt file) yields no token and no claim:
//
//   - the browser's cookie carries a random session id and a random per-session key;
//   - the store key is derived from the id by a one-way hash (the session's public
//     handle), and the record's tokens and claims are sealed with the per-session key,
//     which exists only in the cookie;
//   - the metadata Gatehouse needs without the cookie (subject, provider session id,
//     times, user agent, address) is sealed with the server's [KeyRing].
//
// Optional capabilities are separate interfaces, checked by type assertion: [Locker]
// (a lease so that only one replica refreshes a session's tokens), [Indexer] (the
// sessions of a subject or of a provider session, for back-channel logout and session
// lists), [Adder] (insert-if-absent, for replay detection), [Pinger] (readiness),
// [Fresher] (a read that bypasses a client-side cache), [Counter] (how many sessions
// there are, for a gauge) and [Broadcaster] (messages between the processes sharing the
// store: which sessions ended, so that each closes the WebSockets it proxies for them).
// Every built-in store implements all of them but Broadcaster, which only the Redis
// store, shared by processes, needs; all pass the conformance suite in package
// sessiontest.
package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Get and Members when nothing is stored under the key.
// Expired values are not found.
var ErrNotFound = errors.New("session: not found")

// ErrUnavailable wraps errors a store returns when its backend cannot answer now
// (network errors, timeouts). Callers fail closed with 503 and retry later.
var ErrUnavailable = errors.New("session: store unavailable")

// Store keeps opaque values under string keys until their time to live ends.
//
// Implementations must be safe for concurrent use by multiple goroutines and, for
// shared backends, by multiple processes. A ttl is always positive; a value must not be
// returned after its ttl has passed.
type Store interface {
	// Get returns the value stored under key, or ErrNotFound.
	//
	// The returned slice may be shared with the store, so that a read need not copy: the
	// caller must not modify it (copy it first). The store, for its part, never writes
	// into a slice it has returned; a later Set replaces the value rather than
	// overwriting it.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key for ttl, replacing any previous value and its ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key. It reports whether the key existed, atomically: when several
	// callers delete the same key at once, exactly one of them sees true.
	Delete(ctx context.Context, key string) (existed bool, err error)
}

// Adder is a Store that can insert a value only when the key is absent.
type Adder interface {
	// Add stores value under key for ttl unless key already holds a live value. It
	// reports whether it stored the value; when several callers add the same key at
	// once, exactly one of them sees true.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) (added bool, err error)
}

// Locker is a Store that grants exclusive, expiring leases on names. It is how replicas
// sharing a store agree that only one of them refreshes a session's tokens.
type Locker interface {
	// Lock waits until it holds the lease on name, or ctx is done. The lease ends when
	// release is called or, if the holder dies, after ttl. Release is safe to call more
	// than once and never releases a lease that has since passed to someone else.
	Lock(ctx context.Context, name string, ttl time.Duration) (release func(), err error)
}

// Indexer is a Store that can keep keys in named sets, so that the sessions of a subject
// or of a provider session can be found without their cookies.
//
// A key stays a member of an index for the ttl of the latest SetIndexed that named that
// index, or until DeleteIndexed removes it.
type Indexer interface {
	// SetIndexed is Set plus adding key to each of the named index sets, or refreshing its
	// membership there with the new ttl. Readers never see the value without the
	// membership: on a backend that cannot do both atomically, the membership is written
	// first.
	SetIndexed(ctx context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error
	// DeleteIndexed is Delete plus removing key from each of the named index sets.
	DeleteIndexed(ctx context.Context, key string, indexes ...string) (existed bool, err error)
	// Members returns the keys whose membership of index is live, in no particular order;
	// an empty or unknown index gives an empty slice and no error. A member whose value
	// was removed by a plain Delete may still be listed: callers Get each member.
	Members(ctx context.Context, index string) ([]string, error)
}

// Pinger is a Store that can tell whether its backend answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Fresher is a Store whose Get may answer from a client-side cache that writes by other
// processes invalidate asynchronously. GetFresh always reads the backend.
type Fresher interface {
	// GetFresh is Get without the cache. As with Get, the returned slice may be shared
	// with the store and must not be modified by the caller.
	GetFresh(ctx context.Context, key string) ([]byte, error)
}

// Counter reports how many sessions the store holds (for the active-sessions gauge); it may
// be approximate and may be slow, callers cache it.
//
// Only session records count: the keys made by [RecordKeyPrefix] ("s:{handle}"), not
// tombstones ("t:"), locks ("l:"), login flows ("f:"), used logout tokens ("j:") or index
// sets ("sub:", "psid:"). An expired record does not count, though a store may count one
// that expires while it is counting.
type Counter interface {
	CountSessions(ctx context.Context) (int, error)
}

// RecordKeyPrefix starts the store key of every session record, and no other key: a
// Counter counts the keys that start with it.
const RecordKeyPrefix = "s:{"

// ProcessLocal is a Store whose values only this process reads, and only while it runs
// (the memory store). The Manager writes such a store the compact record format, which
// releases before it cannot read; to every other store it writes the JSON format.
type ProcessLocal interface {
	ProcessLocal()
}

// Closer is a Store holding resources (connections, files) that Close releases.
type Closer interface {
	Close() error
}
