package ratelimit

import (
	"container/heap"
	"context"
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
	"time"
)

var _ Limiter = (*Memory)(nil)

// MemoryOptions tune a Memory. The zero value is fine.
type MemoryOptions struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxKeys bounds how many buckets are held at once. Default 100 000. Each costs about
	// 80 bytes plus its key.
	MaxKeys int
}

// Memory is a Limiter for one process. Its buckets are spread over shards, each with its
// own lock, by a hash of the key with a seed chosen at random by NewMemory, so that
// requests under different keys rarely wait for each other and nobody outside the
// process can tell which keys share a shard.
//
// # Bounded memory
//
// A bucket that has refilled completely is the same as no bucket, so it is forgotten:
// each Allow forgets a few such buckets in its shard, and Len forgets them all. Nothing
// runs in the background and there is nothing to close.
//
// Memory never holds more than MaxKeys buckets (split evenly between the shards). When a
// new key arrives at a shard that is full of buckets still refilling, the shard forgets
// the bucket that will be full soonest, which is the bucket that forgetting changes least:
// its owner gets back the few tokens it was still missing, and nobody else gains anything.
//
// The trade-off: under a flood of new keys (many addresses) some legitimate clients get a
// little more than their limit, but an attacker cannot reset his own bucket cheaply by
// flooding. His bucket is forgotten only once every other bucket of its shard would take
// longer to refill than his. While the others are fresh keys that used one token each,
// that is when his bucket is at most one token short of full. To have it forgotten when
// it is d tokens short, every other bucket of its shard must be at least d tokens short:
// he must spend d requests on each of them, and since he cannot tell which keys share
// his shard, on about MaxKeys keys; that is far more requests than the d he would win
// back. Evicting the least recently used bucket instead, as a plain LRU cache would,
// lets anyone with MaxKeys addresses reset any bucket at once.
type Memory struct {
	now    func() time.Time
	origin time.Time
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	byFull  fullHeap // the same buckets, soonest full first
	max     int
	_       [64]byte // keeps neighbouring shards' locks off one cache line
}

// bucket is a bucket still refilling: full is when it will hold Burst tokens again, in
// nanoseconds since the Memory's origin.
type bucket struct {
	key  string
	full int64
	pos  int // index in the shard's heap
}

const (
	defaultMaxKeys = 100_000
	// dropPerAllow bounds how many refilled buckets one Allow forgets, so that no call
	// pays for a large batch of buckets refilling at the same moment; a shard at capacity
	// forgets refilled buckets first anyway.
	dropPerAllow = 8
)

// NewMemory returns an empty in-memory Limiter.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = defaultMaxKeys
	}
	n := 16
	for n < 4*runtime.GOMAXPROCS(0) && n < 256 {
		n <<= 1
	}
	for n > opts.MaxKeys { // every shard holds at least one bucket
		n >>= 1
	}
	return newMemory(opts, n)
}

// newMemory returns a Memory of n shards (a power of two, at most opts.MaxKeys).
func newMemory(opts MemoryOptions, n int) *Memory {
	m := &Memory{now: opts.Now, seed: maphash.MakeSeed()}
	if m.now == nil {
		m.now = time.Now
	}
	m.origin = m.now()
	maxKeys := opts.MaxKeys
	m.mask = uint64(n - 1)
	m.shards = make([]shard, n)
	for i := range m.shards {
		sh := &m.shards[i]
		sh.max = maxKeys / n
		if i < maxKeys%n {
			sh.max++
		}
		sh.buckets = make(map[string]*bucket)
	}
	return m
}

// Allow takes a token from key's bucket if it has one. It returns an error only for an
// invalid Limit; ctx is not used.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Result, error) {
	iv, err := l.interval()
	if err != nil {
		return Result{}, err
	}
	span := iv * int64(l.Burst) // how long an empty bucket takes to refill
	now := int64(m.now().Sub(m.origin))
	sh := &m.shards[maphash.String(m.seed, key)&m.mask]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.dropFull(now, dropPerAllow)
	b := sh.buckets[key]
	from := now
	if b != nil && b.full > now {
		from = b.full
	}
	next := from + iv // when the bucket would be full again after taking a token
	if wait := next - now; wait > span {
		return Result{RetryAfter: time.Duration(wait - span)}, nil
	}
	if b == nil {
		sh.add(key, next)
	} else {
		b.full = next
		heap.Fix(&sh.byFull, b.pos)
	}
	return Result{Allowed: true, Remaining: int((span - (next - now)) / iv)}, nil
}

// Len reports how many buckets are held, after forgetting those that have refilled.
func (m *Memory) Len() int {
	now := int64(m.now().Sub(m.origin))
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		sh.dropFull(now, -1)
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}

// dropFull forgets up to limit (all if negative) buckets that are full at now.
func (sh *shard) dropFull(now int64, limit int) {
	for ; limit != 0 && len(sh.byFull) > 0 && sh.byFull[0].full <= now; limit-- {
		b := heap.Pop(&sh.byFull).(*bucket)
		delete(sh.buckets, b.key)
	}
}

// add holds a new bucket, first forgetting the one that will be full soonest if the shard
// is at capacity.
func (sh *shard) add(key string, full int64) {
	if len(sh.buckets) >= sh.max {
		b := heap.Pop(&sh.byFull).(*bucket)
		delete(sh.buckets, b.key)
	}
	b := &bucket{key: strings.Clone(key), full: full} // not a slice of the caller's memory
	heap.Push(&sh.byFull, b)
	sh.buckets[key] = b
}

// fullHeap is a min-heap of buckets by the instant they are full (container/heap).
type fullHeap []*bucket

func (h fullHeap) Len() int           { return len(h) }
func (h fullHeap) Less(i, j int) bool { return h[i].full < h[j].full }
func (h fullHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *fullHeap) Push(x any) {
	b := x.(*bucket)
	b.pos = len(*h)
	*h = append(*h, b)
}
func (h *fullHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return b
}
