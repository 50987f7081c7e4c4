// Package memstore is the in-memory session store: the default for a single Gatehouse
// process. Sessions end when the process does; use boltstore or redisstore to keep them
// across restarts.
package memstore

import (
	"context"
	"strings"
	"sync"
	"time"

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

// Store keeps values in a map. Expired values are never returned and are swept in the
// background. Safe for concurrent use.
type Store struct {
	now func() time.Time

	mu      sync.Mutex
	values  map[string]entry
	indexes map[string]map[string]time.Time // index -> member -> expiry
	leases  *leases.Table

	stop chan struct{}
	done chan struct{}
}

type entry struct {
	value   []byte
	expires time.Time
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
		now:     opts.Now,
		values:  map[string]entry{},
		indexes: map[string]map[string]time.Time{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.leases = leases.New(s.now)
	every := opts.SweepInterval
	if every <= 0 {
		every = time.Minute
	}
	go s.sweepLoop(every)
	return s
}

func (s *Store) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	e, ok := s.values[key]
	s.mu.Unlock()
	if !ok || !s.now().Before(e.expires) {
		return nil, session.ErrNotFound
	}
	return append([]byte(nil), e.value...), nil
}

func (s *Store) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	e := entry{value: append([]byte(nil), value...), expires: s.now().Add(ttl)}
	s.mu.Lock()
	s.values[key] = e
	s.mu.Unlock()
	return nil
}

func (s *Store) Delete(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(key), nil
}

func (s *Store) deleteLocked(key string) bool {
	e, ok := s.values[key]
	delete(s.values, key)
	return ok && s.now().Before(e.expires)
}

func (s *Store) Add(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.values[key]; ok && now.Before(e.expires) {
		return false, nil
	}
	s.values[key] = entry{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	return true, nil
}

func (s *Store) SetIndexed(_ context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	expires := s.now().Add(ttl)
	v := append([]byte(nil), value...)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ix := range indexes {
		m := s.indexes[ix]
		if m == nil {
			m = map[string]time.Time{}
			s.indexes[ix] = m
		}
		m[key] = expires
	}
	s.values[key] = entry{value: v, expires: expires}
	return nil
}

func (s *Store) DeleteIndexed(_ context.Context, key string, indexes ...string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ix := range indexes {
		if m := s.indexes[ix]; m != nil {
			delete(m, key)
			if len(m) == 0 {
				delete(s.indexes, ix)
			}
		}
	}
	return s.deleteLocked(key), nil
}

func (s *Store) Members(_ context.Context, index string) ([]string, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for k, exp := range s.indexes[index] {
		if now.Before(exp) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Lock grants leases in this process only; that is all a memory store can share.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	return s.leases.Lock(ctx, name, ttl)
}

func (s *Store) Ping(context.Context) error { return nil }

// CountSessions counts the live session records (keys starting with
// session.RecordKeyPrefix). It walks the whole map under the store's lock: about a
// millisecond per hundred thousand values.
func (s *Store) CountSessions(context.Context) (int, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, e := range s.values {
		if strings.HasPrefix(k, session.RecordKeyPrefix) && now.Before(e.expires) {
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
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.values {
		if !now.Before(e.expires) {
			delete(s.values, k)
		}
	}
	for ix, m := range s.indexes {
		for k, exp := range m {
			if !now.Before(exp) {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(s.indexes, ix)
		}
	}
	s.leases.Sweep()
}
