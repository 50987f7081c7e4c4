// Package keylock provides in-process mutual exclusion per string key, with waits that
// respect a context. Entries exist only while someone holds or waits for the key, so the
// map never grows with the number of keys ever used.
package keylock

import (
	"context"
	"sync"
)

// Map is a set of mutexes indexed by string. The zero value is ready to use; a Map must
// not be copied after first use. Safe for concurrent use.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int
}

// Lock waits until it holds key or ctx is done. The returned release must be called
// exactly once.
func (m *Map) Lock(ctx context.Context, key string) (release func(), err error) {
	e := m.acquire(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; m.drop(key, e) }, nil
	case <-ctx.Done():
		m.drop(key, e)
		return nil, ctx.Err()
	}
}

// TryLock takes key only if nobody holds it.
func (m *Map) TryLock(key string) (release func(), ok bool) {
	e := m.acquire(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; m.drop(key, e) }, true
	default:
		m.drop(key, e)
		return nil, false
	}
}

func (m *Map) acquire(key string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]*entry{}
	}
	e := m.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		m.m[key] = e
	}
	e.refs++
	return e
}

func (m *Map) drop(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.m, key)
	}
}

// Len reports how many keys are held or waited for (for tests).
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
