package boltstore

import (
	"context"
	"sync"
	"time"
)

// A lease is held from Lock until release or expires, whichever comes first.
type lease struct {
	gen     uint64 // store-wide, never reused: a stale release cannot match a later lease
	expires time.Time
	freed   chan struct{} // closed on release; nil while nobody waits
}

// Lock grants leases from a table in memory, not in the file. Open's exclusive file lock
// means every caller that could contend for a lease is in this process, so the table is
// exact; it also costs no fsync, and a restart, which ends every holder, rightly ends
// every lease.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		select {
		case <-s.quit:
			return nil, ErrClosed
		default:
		}
		now := s.now()
		s.mu.Lock()
		l := s.leases[name]
		if l == nil || !now.Before(l.expires) {
			if l == nil {
				l = &lease{}
				s.leases[name] = l
			}
			s.leaseGen++
			l.gen, l.expires = s.leaseGen, now.Add(ttl) // waiters on an expired lease keep waiting on this one
			gen := l.gen
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { s.release(name, gen) }) }, nil
		}
		if l.freed == nil {
			l.freed = make(chan struct{})
		}
		freed, wait := l.freed, l.expires.Sub(now)
		s.mu.Unlock()

		timer := time.NewTimer(wait)
		select {
		case <-freed:
		case <-timer.C:
		case <-s.quit:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

func (s *Store) release(name string, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[name]
	if l == nil || l.gen != gen {
		return // expired and taken by someone else meanwhile
	}
	if l.freed != nil {
		close(l.freed)
	}
	delete(s.leases, name)
}

// sweepLeases forgets leases that expired without a release, waking their waiters.
func (s *Store) sweepLeases(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, l := range s.leases {
		if !now.Before(l.expires) {
			if l.freed != nil {
				close(l.freed)
			}
			delete(s.leases, name)
		}
	}
}
