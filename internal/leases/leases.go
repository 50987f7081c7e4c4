// Package leases grants exclusive, expiring leases on names within one process: the
// session.Locker of stores whose every user is in this process (memstore, and boltstore,
// whose file lock admits one process).
package leases

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned by Lock after Close.
var ErrClosed = errors.New("leases: closed")

// Table is a set of leases. Safe for concurrent use.
type Table struct {
	now func() time.Time

	mu     sync.Mutex
	leases map[string]*lease
	gen    uint64 // numbers leases table-wide, so a stale release never matches a later lease
	quit   chan struct{}
}

// A lease is held from Lock until its release or its expiry, whichever comes first.
type lease struct {
	gen     uint64
	expires time.Time
	freed   chan struct{} // closed on release; nil while nobody waits
}

// New returns an empty table on the clock now (time.Now when nil).
func New(now func() time.Time) *Table {
	if now == nil {
		now = time.Now
	}
	return &Table{now: now, leases: map[string]*lease{}, quit: make(chan struct{})}
}

// Lock waits until it holds the lease on name, ctx is done, or the table is closed. The
// lease ends when release is called (safe more than once, and never releasing a later
// holder's lease) or after ttl.
func (t *Table) Lock(ctx context.Context, name string, ttl time.Duration) (release func(), err error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		select {
		case <-t.quit:
			return nil, ErrClosed
		default:
		}
		now := t.now()
		t.mu.Lock()
		l := t.leases[name]
		if l == nil || !now.Before(l.expires) {
			if l == nil {
				l = &lease{}
				t.leases[name] = l
			}
			t.gen++
			l.gen, l.expires = t.gen, now.Add(ttl) // waiters on an expired lease keep waiting on this one
			gen := l.gen
			t.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { t.release(name, gen) }) }, nil
		}
		if l.freed == nil {
			l.freed = make(chan struct{})
		}
		freed, wait := l.freed, l.expires.Sub(now)
		t.mu.Unlock()

		timer := time.NewTimer(wait)
		select {
		case <-freed:
		case <-timer.C:
		case <-t.quit:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

func (t *Table) release(name string, gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.leases[name]
	if l == nil || l.gen != gen {
		return // expired and taken by someone else meanwhile
	}
	if l.freed != nil {
		close(l.freed)
	}
	delete(t.leases, name)
}

// Sweep forgets leases that expired without a release, waking their waiters.
func (t *Table) Sweep() {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, l := range t.leases {
		if !now.Before(l.expires) {
			if l.freed != nil {
				close(l.freed)
			}
			delete(t.leases, name)
		}
	}
}

// Close makes every waiting and later Lock return ErrClosed.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.quit:
	default:
		close(t.quit)
	}
}
