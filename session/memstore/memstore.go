// Package memstore is the in-memory session store: the default for a single Gatehouse
// process. Sessions end when the process does; use boltstore or redisstore to keep them
// across restarts.
package memstore

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

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

	_ session.ProcessLocal = (*Store)(nil)
)

// Store keeps values in a map. Expired values are never returned and are swept in the
// background. Safe for concurrent use.
//
// Besides its value, a session costs the store one map entry for its record and one per
// index it is in (by subject, by provider session), so those entries are kept small:
// instants are int64 nanoseconds (8 bytes, where a time.Time takes 24), and an index
// with one member, as most are, keeps it inline rather than in a map of its own.
type Store struct {
	now   func() time.Time
	epoch time.Time // instants are nanoseconds since epoch (see at)

	mu     sync.Mutex
	values map[string]entry
	// The members of each index, with the expiry of each membership. An index with one
	// member is in single; from its second member on, in multi. An index is in at most
	// one of the two, and an empty index in neither.
	single map[string]member
	multi  map[string]map[string]int64
	leases *leases.Table

	stop chan struct{}
	done chan struct{}
}

type entry struct {
	value   string // the bytes pack copied, viewed as a string: 8 bytes less than a slice
	expires int64
}

type member struct {
	key     string
	expires int64
}

// Options tune a Store. The zero value is fine.
type Options struct {
	// SweepInterval is how often expired values are removed. Default one minute.
	SweepInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// New returns an empty store that sweeps in the background until Close.
func New(opts Options) *Store {
	s := &Store{
		now:    opts.Now,
		values: map[string]entry{},
		single: map[string]member{},
		multi:  map[string]map[string]int64{},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.epoch = s.now()
	s.leases = leases.New(s.now)
	every := opts.SweepInterval
	if every <= 0 {
		every = time.Minute
	}
	go s.sweepLoop(every)
	return s
}

// at is the current instant: nanoseconds since the store's epoch. time.Time.Sub reads
// the monotonic clock when both times carry it, as time.Now's do, so expiry is immune to
// wall-clock steps, as comparing time.Time values was.
func (s *Store) at() int64 { return int64(s.now().Sub(s.epoch)) }

// expiry is the instant ttl after now, saturating instead of wrapping around.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl > 0 && now > math.MaxInt64-int64(ttl) {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

func (s *Store) Get(_ context.Context, key string) ([]byte, error) {
	now := s.at()
	s.mu.Lock()
	e, ok := s.values[key]
	s.mu.Unlock()
	if !ok || now >= e.expires {
		return nil, session.ErrNotFound
	}
	// Shared and read-only (session.Store): no copy on the hot path.
	return unsafe.Slice(unsafe.StringData(e.value), len(e.value)), nil
}

func (s *Store) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	v, packed := pack(value, key)
	e := entry{value: v, expires: expiry(s.at(), ttl)}
	s.mu.Lock()
	s.values[packed[0]] = e
	s.mu.Unlock()
	return nil
}

func (s *Store) Delete(_ context.Context, key string) (bool, error) {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(key, now), nil
}

func (s *Store) deleteLocked(key string, now int64) bool {
	e, ok := s.values[key]
	delete(s.values, key)
	return ok && now < e.expires
}

func (s *Store) Add(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.values[key]; ok && now < e.expires {
		return false, nil
	}
	v, packed := pack(value, key)
	s.values[packed[0]] = entry{value: v, expires: expiry(now, ttl)}
	return true, nil
}

func (s *Store) SetIndexed(_ context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	expires := expiry(s.at(), ttl)
	v, packed := pack(value, append([]string{key}, indexes...)...)
	key = packed[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range packed[1:] {
		s.addMemberLocked(name, key, expires)
	}
	s.values[key] = entry{value: v, expires: expires}
	return nil
}

func (s *Store) addMemberLocked(name, key string, expires int64) {
	if m, ok := s.multi[name]; ok {
		m[key] = expires
		s.multi[name] = m // re-keys it with this name, which lives as long as key's value
		return
	}
	if one, ok := s.single[name]; ok && one.key != key {
		delete(s.single, name)
		s.multi[name] = map[string]int64{one.key: one.expires, key: expires}
		return
	}
	s.single[name] = member{key: key, expires: expires}
}

func (s *Store) DeleteIndexed(_ context.Context, key string, indexes ...string) (bool, error) {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range indexes {
		if one, ok := s.single[name]; ok {
			if one.key == key {
				delete(s.single, name)
			}
		} else if m, ok := s.multi[name]; ok {
			delete(m, key)
			s.settleLocked(name, m)
			if len(m) > 1 {
				// The index's name may have been packed with the value just deleted.
				delete(s.multi, name)
				s.multi[strings.Clone(name)] = m
			}
		}
	}
	return s.deleteLocked(key, now), nil
}

// settleLocked moves an index of multi that lost members back to single when one member
// is left, and drops it when none is.
func (s *Store) settleLocked(name string, m map[string]int64) {
	switch len(m) {
	case 0:
		delete(s.multi, name)
	case 1:
		delete(s.multi, name)
		for k, exp := range m {
			// A copy of the name: the one in multi may have been packed with another value.
			s.single[strings.Clone(name)] = member{key: k, expires: exp}
		}
	}
}

func (s *Store) Members(_ context.Context, name string) ([]string, error) {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	if one, ok := s.single[name]; ok {
		if now < one.expires {
			out = append(out, one.key)
		}
		return out, nil
	}
	for k, exp := range s.multi[name] {
		if now < exp {
			out = append(out, k)
		}
	}
	return out, nil
}

// ProcessLocal says that only this process reads the store's values.
func (s *Store) ProcessLocal() {}

// Lock grants leases in this process only; that is all a memory store can share.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	return s.leases.Lock(ctx, name, ttl)
}

func (s *Store) Ping(context.Context) error { return nil }

// CountSessions counts the live session records (keys starting with
// session.RecordKeyPrefix). It walks the whole map under the store's lock: about a
// millisecond per hundred thousand values.
func (s *Store) CountSessions(context.Context) (int, error) {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, e := range s.values {
		if strings.HasPrefix(k, session.RecordKeyPrefix) && now < e.expires {
			n++
		}
	}
	return n, nil
}

// Close stops the sweeper. The store stays readable.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
		<-s.done
	}
	return nil
}

// Len reports how many values are stored, expired or not (for tests and metrics).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

func (s *Store) sweepLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep removes expired values and index members now.
func (s *Store) Sweep() {
	now := s.at()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.values {
		if now >= e.expires {
			delete(s.values, k)
		}
	}
	for name, one := range s.single {
		if now >= one.expires {
			delete(s.single, name)
		}
	}
	for name, m := range s.multi {
		n := len(m)
		for k, exp := range m {
			if now >= exp {
				delete(m, k)
			}
		}
		if len(m) != n {
			s.settleLocked(name, m)
		}
	}
	s.leases.Sweep()
}

// pack copies value into a new allocation of its own and, as far as they fit in the room
// the allocator gives that allocation anyway (its size class), the strings too, in order.
// A session record, its key and its index names then cost one allocation, not four. It
// returns the copy, and strs with the strings it packed replaced by their packed form
// (every caller passes a slice of its own).
//
// The copy and the packed strings are strings over the allocation (unsafe.String). That
// is sound because no one writes to the allocation after pack: Get hands the value out
// read-only (session.Store), with no capacity beyond it. The allocation lives as long as
// any of them: a map entry whose key is overwritten takes the new key (Go maps re-key
// string keys on assignment), and an index whose name may have been packed with a
// deleted value is given a copy of its name.
func pack(value []byte, strs ...string) (string, []string) {
	buf := slices.Grow([]byte(nil), len(value))
	buf = append(buf, value...)
	n := len(buf)
	for i, str := range strs {
		if len(str) == 0 || cap(buf)-len(buf) < len(str) {
			break
		}
		at := len(buf)
		buf = append(buf, str...)
		strs[i] = unsafe.String(&buf[at], len(str))
	}
	if n == 0 {
		return "", strs
	}
	return unsafe.String(&buf[0], n), strs
}
