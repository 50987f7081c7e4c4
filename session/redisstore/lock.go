package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/session"
)

// acquireScript takes the lease (SET NX PX) or returns how long the holder keeps it.
// It is idempotent, so that rueidis may retry it after a lost reply.
var acquireScript = rueidis.NewLuaScriptRetryable(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return -1 end
local t = redis.call('PTTL', KEYS[1])
if t == -1 then return 2147483647 end
if t < 0 then return 0 end
return t
`)

// releaseScript deletes the lease only if it still holds our token: a holder whose
// lease expired, and passed to someone else, must not free the new holder's.
var releaseScript = rueidis.NewLuaScriptRetryable(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

const (
	lockMinBackoff = 5 * time.Millisecond
	lockMaxBackoff = 100 * time.Millisecond
)

// Lock takes the lease on name: a key holding a random token, set with SET NX PX ttl
// and deleted on release only if it still holds that token. A waiter retries with a
// backoff growing to 100 ms, capped by the holder's remaining ttl, and at once when a
// holder in this process releases. rueidislock does not fit: its leases are renewed
// in the background for as long as the holder's process lives, whereas a lease here
// must end after ttl even if its holder hangs.
//
// If Redis fails or times out while the lease is being taken, Lock returns an error
// wrapping session.ErrUnavailable. Redis may still have run the command (a timeout
// says only that the answer came too late), so Lock then releases the lease it may
// hold, in the background, with the same compare-and-delete as a normal release, and
// tries again until Redis answers: the name is not left locked for ttl by a holder
// that does not know it holds it. Should Redis not answer within ttl, the lease has
// ended by then anyway.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (func(), error) {
	k := s.prefix + name
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	pttl := strconv.FormatInt(ms(ttl), 10)

	backoff := lockMinBackoff
	for {
		woken, done := s.wakes.add(k)
		remaining, err := s.tryLock(ctx, k, token, pttl)
		if err != nil {
			done()
			if !errors.Is(err, errNotSent) {
				go s.releaseOrphan(k, token, time.Now().Add(ttl))
			}
			return nil, err
		}
		if remaining < 0 {
			done()
			var once sync.Once
			// Released in the background: a caller must not wait a whole timeout for a
			// Redis gone silent, and a lease not released ends after ttl anyway.
			return func() { once.Do(func() { go s.unlock(k, token) }) }, nil
		}
		wait := min(backoff, max(time.Millisecond, time.Duration(remaining)*time.Millisecond))
		backoff = min(2*backoff, lockMaxBackoff)
		timer := time.NewTimer(wait)
		select {
		case <-woken:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			done()
			return nil, fmt.Errorf("redisstore: lock: %w", context.Cause(ctx))
		}
		timer.Stop()
		done()
	}
}

// errNotSent marks the tryLock errors that come before the command is sent: there
// is then no lease of ours to release.
var errNotSent = errors.New("not sent")

// tryLock returns -1 when it took the lease, else the holder's remaining ttl in ms
// (0 when the lease just ended).
func (s *Store) tryLock(ctx context.Context, k, token, pttl string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("redisstore: lock: %w (%w)", context.Cause(ctx), errNotSent)
	}
	octx, cancel, c, err := s.op(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w (%w)", err, errNotSent)
	}
	defer cancel()
	n, err := acquireScript.Exec(octx, c, []string{k}, []string{token, pttl}).AsInt64()
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("redisstore: lock: %w", context.Cause(ctx))
		}
		return 0, wrap("lock", err)
	}
	return n, nil
}

func (s *Store) unlock(k, token string) {
	// The caller has nothing to do about a failed release: the lease then ends by
	// its ttl. Release on a fresh context, bounded by the Store's timeout, since the
	// caller's may be done.
	ctx, cancel, c, err := s.op(context.Background())
	if err == nil {
		releaseScript.Exec(ctx, c, []string{k}, []string{token})
		cancel()
	}
	s.wakes.wake(k)
}

// releaseOrphan releases the lease that a failed tryLock may have taken with token,
// trying again with a backoff growing to a second until Redis answers, the Store is
// closed, or until, when the lease would have expired anyway.
func (s *Store) releaseOrphan(k, token string, until time.Time) {
	wait := lockMaxBackoff
	for {
		ctx, cancel, c, err := s.op(context.Background())
		if errors.Is(err, ErrClosed) {
			return
		}
		if err == nil {
			err = releaseScript.Exec(ctx, c, []string{k}, []string{token}).Error()
			cancel()
			if err == nil || !errors.Is(wrap("unlock", err), session.ErrUnavailable) {
				s.wakes.wake(k)
				return
			}
		}
		if time.Now().Add(wait).After(until) {
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

// wakeups lets a release in this process wake the waiters for the same name at once.
// Entries exist only while someone waits.
type wakeups struct {
	mu sync.Mutex
	m  map[string]*waiters
}

type waiters struct {
	ch chan struct{} // closed by wake
	n  int
}

func (w *wakeups) add(name string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]*waiters{}
	}
	x := w.m[name]
	if x == nil {
		x = &waiters{ch: make(chan struct{})}
		w.m[name] = x
	}
	x.n++
	return x.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if x.n--; x.n == 0 && w.m[name] == x {
			delete(w.m, name)
		}
	}
}

func (w *wakeups) wake(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if x := w.m[name]; x != nil {
		close(x.ch)
		delete(w.m, name)
	}
}
