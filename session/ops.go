package session

import (
	"context"
	"errors"
	"time"
)

// The store operations a Manager reports to its Observe hook, by name.
const (
	OpGet           = "get"
	OpGetFresh      = "get_fresh"
	OpSet           = "set"
	OpDelete        = "delete"
	OpAdd           = "add"
	OpLock          = "lock"
	OpSetIndexed    = "set_indexed"
	OpDeleteIndexed = "delete_indexed"
	OpMembers       = "members"
	OpPing          = "ping"
	OpCount         = "count"
	OpPublish       = "publish"
	OpSubscribe     = "subscribe"
)

// Ops lists every operation name Observe may receive, for callers that prepare one
// metric series per operation.
func Ops() []string {
	return []string{OpGet, OpGetFresh, OpSet, OpDelete, OpAdd, OpLock, OpSetIndexed, OpDeleteIndexed, OpMembers, OpPing, OpCount, OpPublish, OpSubscribe}
}

// ErrNoCounter is returned by CountSessions when the store is not a Counter.
var ErrNoCounter = errors.New("session: the store cannot count sessions (not a Counter)")

// Every call from the Manager to its Store goes through the methods below: they report to
// Observe, and they are the only place that checks the optional capabilities. Durations
// are measured on the wall clock (time.Now), not on Manager.Now, which tests may fake.

func (m *Manager) observe(ctx context.Context, op string, start time.Time, err error) {
	if m.Observe == nil && m.Trace == nil {
		return
	}
	end := time.Now()
	if m.Observe != nil {
		m.Observe(op, end.Sub(start), err)
	}
	if m.Trace != nil {
		m.Trace(ctx, op, start, end, err)
	}
}

// start returns the time an operation starts, or the zero time when nobody observes:
// the hot path then pays no clock read.
func (m *Manager) start() time.Time {
	if m.Observe == nil && m.Trace == nil {
		return time.Time{}
	}
	return time.Now()
}

func (m *Manager) storeGet(ctx context.Context, key string) ([]byte, error) {
	t := m.start()
	b, err := m.Store.Get(ctx, key)
	m.observe(ctx, OpGet, t, err)
	return b, err
}

// storeGetFresh bypasses a client-side cache when the store has one.
func (m *Manager) storeGetFresh(ctx context.Context, key string) ([]byte, error) {
	f, ok := m.Store.(Fresher)
	if !ok {
		return m.storeGet(ctx, key)
	}
	t := m.start()
	b, err := f.GetFresh(ctx, key)
	m.observe(ctx, OpGetFresh, t, err)
	return b, err
}

func (m *Manager) storeSet(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	t := m.start()
	err := m.Store.Set(ctx, key, value, ttl)
	m.observe(ctx, OpSet, t, err)
	return err
}

func (m *Manager) storeDelete(ctx context.Context, key string) (bool, error) {
	t := m.start()
	ok, err := m.Store.Delete(ctx, key)
	m.observe(ctx, OpDelete, t, err)
	return ok, err
}

// storeAdd inserts key unless it holds a live value. Without an Adder, an in-process lock
// around a read and a write keeps "exactly one caller sees true" within this process,
// which is all such a store can promise.
func (m *Manager) storeAdd(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	a, ok := m.Store.(Adder)
	if !ok {
		release, err := m.locks.Lock(ctx, key)
		if err != nil {
			return false, err
		}
		defer release()
		if _, err := m.storeGetFresh(ctx, key); err == nil {
			return false, nil
		} else if !errors.Is(err, ErrNotFound) {
			return false, err
		}
		return true, m.storeSet(ctx, key, value, ttl)
	}
	t := m.start()
	added, err := a.Add(ctx, key, value, ttl)
	m.observe(ctx, OpAdd, t, err)
	return added, err
}

// storeLock takes the store's lease on name; without a Locker there is none, and the
// Manager's in-process lock is all there is.
func (m *Manager) storeLock(ctx context.Context, name string) (func(), error) {
	l, ok := m.Store.(Locker)
	if !ok {
		return func() {}, nil
	}
	t := m.start()
	release, err := l.Lock(ctx, name, m.lockTTL())
	m.observe(ctx, OpLock, t, err)
	return release, err
}

// storeSetIndexed writes key and its index memberships; without an Indexer, only key.
func (m *Manager) storeSetIndexed(ctx context.Context, key string, value []byte, ttl time.Duration, indexes ...string) error {
	ix, ok := m.Store.(Indexer)
	if !ok {
		return m.storeSet(ctx, key, value, ttl)
	}
	t := m.start()
	err := ix.SetIndexed(ctx, key, value, ttl, indexes...)
	m.observe(ctx, OpSetIndexed, t, err)
	return err
}

// storeDeleteIndexed deletes key and its index memberships; without an Indexer, only key.
func (m *Manager) storeDeleteIndexed(ctx context.Context, key string, indexes ...string) (bool, error) {
	ix, ok := m.Store.(Indexer)
	if !ok {
		return m.storeDelete(ctx, key)
	}
	t := m.start()
	existed, err := ix.DeleteIndexed(ctx, key, indexes...)
	m.observe(ctx, OpDeleteIndexed, t, err)
	return existed, err
}

func (m *Manager) storeMembers(ctx context.Context, index string) ([]string, error) {
	ix, ok := m.Store.(Indexer)
	if !ok {
		return nil, ErrNoIndex
	}
	t := m.start()
	keys, err := ix.Members(ctx, index)
	m.observe(ctx, OpMembers, t, err)
	return keys, err
}

// Ping reports whether the store answers: nil when it does, or when it is not a Pinger
// (it cannot tell).
func (m *Manager) Ping(ctx context.Context) error {
	p, ok := m.Store.(Pinger)
	if !ok {
		return nil
	}
	t := m.start()
	err := p.Ping(ctx)
	m.observe(ctx, OpPing, t, err)
	return err
}

// CountSessions reports how many sessions the store holds (all processes sharing it), or
// ErrNoCounter. It may be slow: callers cache the answer.
func (m *Manager) CountSessions(ctx context.Context) (int, error) {
	c, ok := m.Store.(Counter)
	if !ok {
		return 0, ErrNoCounter
	}
	t := m.start()
	n, err := c.CountSessions(ctx)
	m.observe(ctx, OpCount, t, err)
	return n, err
}
