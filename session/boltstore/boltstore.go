// Package boltstore is the embedded, persistent session store: one file, written with
// go.etcd.io/bbolt, for a single Gatehouse process whose sessions must outlive a restart
// or a crash. The binary opens it for session.store: bolt:///var/lib/gatehouse/sessions.db.
//
// Durability: each write (Set, Add, Delete, SetIndexed, DeleteIndexed) is one bolt
// transaction, committed and fsynced before the method returns. A value a call reported
// stored survives kill -9, and a kernel crash or power loss as far as the disk honours
// fsync; a write interrupted half-way is absent, never torn. [Options.InsecureNoSync]
// gives that up for speed. When bolt fails (a full disk, an I/O error), methods return
// an error wrapping session.ErrUnavailable.
//
// Single process: Open takes an exclusive lock on the file, so one process at a time
// uses it; another waits [Options.Timeout] and fails with [ErrLocked]. This is why the
// leases of [Store.Lock] are kept in memory, as in memstore: every caller that could
// contend for a lease is in this process, and a lease needs no disk write. Replicas that
// share sessions need redisstore.
//
// The file holds what the session Manager hands over (store keys and index names, which
// are one-way hashes of session ids, subjects and provider session ids; sealed records;
// the reason word of an ended session) and expiry times, nothing else. Layout, for
// inspection with the bbolt command:
//
//	meta     "format" → "1"
//	values   key → 8-byte big-endian expiry (Unix nanoseconds) ‖ value
//	indexes  index name → (nested bucket) member key → 8-byte expiry
//
// Reads never return an expired value or member; a background sweep deletes them. Bolt
// reuses the pages of deleted records but neither zeroes them nor shrinks the file, so a
// dump can still hold old sealed values until their pages are overwritten.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/gatehouse-bff/gatehouse/internal/leases"
	"github.com/gatehouse-bff/gatehouse/session"
)

var (
	_ session.Store   = (*Store)(nil)
	_ session.Adder   = (*Store)(nil)
	_ session.Locker  = (*Store)(nil)
	_ session.Indexer = (*Store)(nil)
	_ session.Pinger  = (*Store)(nil)
	_ session.Closer  = (*Store)(nil)
	_ session.Counter = (*Store)(nil)
)

var (
	// ErrLocked is returned by Open when another process still holds the file after
	// Options.Timeout. The error names the file.
	ErrLocked = errors.New("boltstore: file is locked by another process")
	// ErrClosed is returned by every method called after Close. It wraps
	// session.ErrUnavailable, so requests still in flight during shutdown fail with 503.
	ErrClosed = fmt.Errorf("boltstore: store is closed: %w", session.ErrUnavailable)

	errCorrupt = errors.New("boltstore: corrupt record")
)

var (
	bucketMeta    = []byte("meta")
	bucketValues  = []byte("values")
	bucketIndexes = []byte("indexes")
	keyFormat     = []byte("format")
	formatV1      = []byte("1")
)

// Options configure Open. Only Path is required.
type Options struct {
	// Path is the database file. Open creates it with mode 0600, and its missing parent
	// directories with mode 0700; it leaves the mode of an existing file alone.
	Path string
	// SweepInterval is how often expired values and index members are deleted from the
	// file. Default one minute.
	SweepInterval time.Duration
	// Timeout is how long Open waits for the file lock while another process holds it,
	// before failing with ErrLocked. Default five seconds.
	Timeout time.Duration
	// InsecureNoSync skips the fsync after each commit. Writes still reach the kernel
	// before a method returns, so they survive kill -9 of this process; but a kernel
	// crash or power loss can lose any write since the last sync and can leave the file
	// corrupt, which ends every session. For tests and throwaway deployments only.
	InsecureNoSync bool
	// Now is the clock for expiry. Default time.Now.
	Now func() time.Time
}

// Store is a session.Store in a bolt file. It is safe for concurrent use by multiple
// goroutines of the one process that opened it. Reads run in parallel; writes are
// serialised by bolt, one fsync each. Methods give up if their context is done before
// they begin; a transaction, once begun, runs to its end.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	leases *leases.Table

	quit      chan struct{} // closed by Close
	sweepDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the store file and starts its sweeper. Close it to release
// the file lock.
func Open(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("boltstore: Options.Path is empty")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	every := opts.SweepInterval
	if every <= 0 {
		every = time.Minute
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", opts.Path, err)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout: timeout,
		NoSync:  opts.InsecureNoSync,
		// Sessions churn: the hashmap freelist keeps allocation fast when many pages are free.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, opts.Path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", opts.Path, err)
	}
	if err := db.Update(initLayout); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", opts.Path, err)
	}
	s := &Store{
		db:        db,
		now:       opts.Now,
		quit:      make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.leases = leases.New(s.now)
	go s.sweepLoop(every)
	return s, nil
}

// initLayout creates the buckets of a new file and refuses a file of another layout or
// of another program, rather than write into it.
func initLayout(tx *bolt.Tx) error {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if f := meta.Get(keyFormat); !bytes.Equal(f, formatV1) {
			return fmt.Errorf("boltstore: file has layout %q, this version reads %q", f, formatV1)
		}
	} else {
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error {
			return errors.New("boltstore: file is a bolt database of another program")
		}); err != nil {
			return err
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, formatV1); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketValues, bucketIndexes} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketValues).Get([]byte(key))
		if rec == nil {
			return session.ErrNotFound
		}
		exp, ok := expiryOf(rec)
		if !ok {
			return fmt.Errorf("%w under %q", errCorrupt, key)
		}
		if exp <= now {
			return session.ErrNotFound
		}
		out = bytes.Clone(rec[8:]) // bolt's memory is only valid inside the transaction
		return nil
	})
	if err != nil {
		return nil, s.fail("get", err)
	}
	return out, nil
}

func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := checkName("key", key); err != nil {
		return err
	}
	return s.update(ctx, "set", func(tx *bolt.Tx, now time.Time) error {
		return tx.Bucket(bucketValues).Put([]byte(key), record(expiry(now, ttl), value))
	})
}

func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	var existed bool
	err := s.update(ctx, "delete", func(tx *bolt.Tx, now time.Time) error {
		var err error
		existed, err = deleteValue(tx, []byte(key), now.UnixNano())
		return err
	})
	return existed && err == nil, err
}

func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := checkName("key", key); err != nil {
		return false, err
	}
	var added bool
	err := s.update(ctx, "add", func(tx *bolt.Tx, now time.Time) error {
		b, k := tx.Bucket(bucketValues), []byte(key)
		if exp, ok := expiryOf(b.Get(k)); ok && exp > now.UnixNano() {
			return nil
		}
		added = true
		return b.Put(k, record(expiry(now, ttl), value))
	})
	return added && err == nil, err
}

// SetIndexed writes the value and every membership in one transaction.
func (s *Store) SetIndexed(ctx context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	if err := checkName("key", key); err != nil {
		return err
	}
	for _, ix := range indexes {
		if err := checkName("index name", ix); err != nil {
			return err
		}
	}
	return s.update(ctx, "set indexed", func(tx *bolt.Tx, now time.Time) error {
		exp := expiry(now, ttl)
		k, member := []byte(key), record(exp, nil)
		root := tx.Bucket(bucketIndexes)
		for _, ix := range indexes {
			b, err := root.CreateBucketIfNotExists([]byte(ix))
			if err != nil {
				return err
			}
			if err := b.Put(k, member); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketValues).Put(k, record(exp, value))
	})
}

// DeleteIndexed removes the value and the memberships in one transaction, and index
// sets it leaves empty.
func (s *Store) DeleteIndexed(ctx context.Context, key string, indexes ...string) (bool, error) {
	var existed bool
	err := s.update(ctx, "delete indexed", func(tx *bolt.Tx, now time.Time) error {
		k, root := []byte(key), tx.Bucket(bucketIndexes)
		for _, ix := range indexes {
			name := []byte(ix)
			b := root.Bucket(name)
			if b == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := deleteIfEmpty(root, name); err != nil {
				return err
			}
		}
		var err error
		existed, err = deleteValue(tx, k, now.UnixNano())
		return err
	})
	return existed && err == nil, err
}

func (s *Store) Members(ctx context.Context, index string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	out := []string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIndexes).Bucket([]byte(index))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			exp, ok := expiryOf(v)
			if !ok {
				return fmt.Errorf("%w: member %q of index %q", errCorrupt, k, index)
			}
			if exp > now {
				out = append(out, string(k)) // string() copies out of bolt's memory
			}
			return nil
		})
	})
	if err != nil {
		return nil, s.fail("members", err)
	}
	return out, nil
}

// CountSessions counts the live session records: the keys of the values bucket that start
// with session.RecordKeyPrefix, which bolt keeps together in key order, so the other keys
// are not read. It is one read transaction, which does not block writers.
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now().UnixNano()
	prefix := []byte(session.RecordKeyPrefix)
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketValues).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if exp, ok := expiryOf(v); ok && exp > now {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, s.fail("count", err)
	}
	return n, nil
}

// Ping reports whether the file is open and readable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.fail("ping", s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketValues) == nil || tx.Bucket(bucketIndexes) == nil {
			return fmt.Errorf("%w: buckets missing", errCorrupt)
		}
		return nil
	}))
}

// Close stops the sweeper, ends waits for leases with ErrClosed and closes the file,
// releasing its lock. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.leases.Close()
		<-s.sweepDone
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// update runs fn in one write transaction that is committed, and unless InsecureNoSync
// fsynced, before it returns. fn gets the time at which the transaction began, so that
// expiry checks are not made stale by the wait for bolt's writer lock.
func (s *Store) update(ctx context.Context, op string, fn func(tx *bolt.Tx, now time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.fail(op, s.db.Update(func(tx *bolt.Tx) error { return fn(tx, s.now()) }))
}

// fail turns an error from a transaction into the error a method returns.
func (s *Store) fail(op string, err error) error {
	switch {
	case err == nil, errors.Is(err, session.ErrNotFound), errors.Is(err, errCorrupt):
		return err
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return ErrClosed
	default:
		return fmt.Errorf("boltstore: %s: %w: %w", op, session.ErrUnavailable, err)
	}
}

// deleteValue deletes key from the values bucket and reports whether it held a live value.
func deleteValue(tx *bolt.Tx, key []byte, now int64) (bool, error) {
	b := tx.Bucket(bucketValues)
	rec := b.Get(key)
	if rec == nil {
		return false, nil
	}
	exp, ok := expiryOf(rec)
	return ok && exp > now, b.Delete(key)
}

// deleteIfEmpty removes the index set name from root when it has no members left.
func deleteIfEmpty(root *bolt.Bucket, name []byte) error {
	b := root.Bucket(name)
	if b == nil {
		return nil
	}
	if k, _ := b.Cursor().First(); k != nil {
		return nil
	}
	return root.DeleteBucket(name)
}

// record encodes an expiry and a value. An index member is a record with no value.
func record(exp int64, value []byte) []byte {
	b := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(exp))
	copy(b[8:], value)
	return b
}

// expiryOf decodes the expiry of a record; ok is false for nil or a short record.
func expiryOf(rec []byte) (exp int64, ok bool) {
	if len(rec) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(rec)), true
}

// expiry is now+ttl in Unix nanoseconds, saturating instead of wrapping around.
func expiry(now time.Time, ttl time.Duration) int64 {
	n := now.UnixNano()
	if ttl > 0 && n > math.MaxInt64-int64(ttl) {
		return math.MaxInt64
	}
	return n + int64(ttl)
}

// checkName rejects what bolt cannot store as a key or bucket name.
func checkName(what, name string) error {
	if name == "" || len(name) > bolt.MaxKeySize {
		return fmt.Errorf("boltstore: %s must be 1 to %d bytes, not %d", what, bolt.MaxKeySize, len(name))
	}
	return nil
}
