// Package redisstore is the shared state of several Gatehouse replicas that serve the
// same users, in Redis through github.com/redis/rueidis: the session store ([Store]) and
// the rate limits' buckets ([Limiter]). It is the only package of the module that imports
// rueidis, so a program that keeps its sessions and buckets elsewhere does not link it.
//
// # URLs
//
// [Options.URL] names the deployment; its scheme says how to reach it, so nothing is
// guessed from what the server answers:
//
//	redis://[user:password@]host[:6379][/db]                   one server (or a proxy)
//	rediss://…                                                 the same over TLS
//	redis-sentinel://[user:password@]host1[:26379],host2…/master[?db=N]
//	rediss-sentinel://…                                        TLS to the sentinels and the master
//	redis-cluster://[user:password@]host1[:6379],host2…        Redis Cluster (seed nodes; db 0 only)
//	rediss-cluster://…                                         the same over TLS
//
// The user and password are those of the data nodes; sentinels that need their own
// credentials get them from [Options.SentinelUsername] and [Options.SentinelPassword].
// "db" is also accepted as a query parameter; no other parameter is, so a typo is an
// error rather than a silently ignored setting. Hosts may be IPv6 literals in brackets.
//
// # Keys
//
// Every key is [Options.KeyPrefix] (default "gatehouse:") followed by the key the
// session Manager chose: s:{handle} for a record, t:{handle} for its tombstone,
// l:{handle} for its lock, and sorted sets named sub:… and psid:… for the indexes. The
// braces are Redis Cluster hash tags, so a session's keys share a slot; a prefix must
// therefore contain no brace. Several deployments can share one Redis with different
// prefixes.
//
// # Caching and consistency across replicas
//
// Unless [Options.DisableClientCache] is set, Get is served from an in-process cache that
// Redis keeps coherent (server-assisted client-side caching, RESP3 CLIENT TRACKING): the
// first Get of a key reads Redis and asks it to track the key; later Gets cost no round
// trip; when any client writes, deletes or expires the key, Redis pushes an invalidation
// and the entry is dropped. A cached entry lives at most [Options.ClientCacheTTL] and
// never beyond the key's own expiry, and a broken connection drops every entry it
// cached. Redis 6 or later is required for caching.
//
// Invalidations are asynchronous: for a short moment after another replica writes a
// key, Get on this replica may still return the previous value. Writes made through
// this Store are read back by this Store at once (Get goes to Redis for keys this Store
// wrote in the last second, because Redis sends a client its own invalidations after
// the reply). [Store.GetFresh] always reads Redis; the session Manager uses it after
// taking a session's lock, so a decision that must see the latest value — a token
// refresh, which rotates the refresh token — never acts on a cached one.
//
// Writes are single commands (SET PX, SET NX PX, DEL) and so atomic. An indexed write
// adds the index memberships first and then the value, never in one transaction (in a
// cluster they live in different slots): a crash between the two leaves a membership
// without a value, which readers skip. Index scores are expiry times taken from the
// Redis server's clock, so replicas with skewed clocks agree on membership.
//
// # Failures
//
// Open checks the options and starts connecting in the background; it does not fail
// because Redis is unreachable, so Gatehouse can start while Redis is down, report
// not-ready through [Store.Ping], and recover by itself when Redis returns. Every
// operation is bounded by [Options.Timeout]. Within it, rueidis retries the operations
// that are safe to repeat (reads, SET, index updates, taking and releasing a lease) on
// network errors, which hides a restart or a failover shorter than the timeout; DEL and
// SET NX, whose answers would be wrong the second time, are not retried. What is left —
// network errors, timeouts, and the Redis replies that mean "not now" (LOADING,
// CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY, BUSY, OOM, NOREPLICAS, MISCONF) — comes
// back as an error wrapping [session.ErrUnavailable], and Gatehouse answers 503 and
// fails closed. Cached values are dropped with their connection, so they stop being
// served once it is found dead: at once when Redis closes it, within about a second plus
// Timeout when the network goes silent (rueidis pings a quiet connection every second
// and gives up after Timeout). Other Redis error replies (a wrong password: WRONGPASS,
// NOAUTH) are plain errors: configuration, not an outage. Lost connections are
// re-established by rueidis on the next command, and a Store whose first connection
// failed keeps trying on later calls.
//
// A Redis that does not support RESP3 client tracking (before 6.0, or some managed
// services) fails every call while caching is on: set [Options.DisableClientCache].
//
// # Ended sessions
//
// The Store is a session.Broadcaster: [Store.Publish] is PUBLISH on <prefix><channel>, and
// [Store.Subscribe] holds a connection of its own in SUBSCRIBE. The session Manager
// publishes the handle of each session it ends, so that every replica closes the
// WebSockets and streams it proxies for that session. A subscription whose connection
// breaks returns an error rather than resubscribing silently, so that its caller knows
// messages may have been missed.
//
// # Rate limits
//
// [Limiter] is a ratelimit.Limiter whose token buckets live in Redis, so that replicas
// count together: one Lua script per call, on the Redis server's clock, one key
// <prefix>{<key>} per bucket, expiring when the bucket is full again. [NewLimiter] puts
// it on any rueidis client; [Store.Limiter] on the Store's own, taken on each call, so
// that it works from the moment Redis answers however late that is. Its failures are
// returned like the Store's; Gatehouse lets the request through (fails open) and logs.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/session"
)

var (
	_ session.Store   = (*Store)(nil)
	_ session.Adder   = (*Store)(nil)
	_ session.Locker  = (*Store)(nil)
	_ session.Indexer = (*Store)(nil)
	_ session.Pinger  = (*Store)(nil)
	_ session.Fresher = (*Store)(nil)
	_ session.Closer  = (*Store)(nil)
)

// ErrClosed is wrapped by the errors of a Store's methods called after Close; they
// wrap session.ErrUnavailable too.
var ErrClosed = errors.New("redisstore: store is closed")

var errClosed = fmt.Errorf("%w (%w)", ErrClosed, session.ErrUnavailable)

// Options configure a Store. Only URL is required.
type Options struct {
	// URL names the Redis deployment; see the package documentation for the schemes.
	URL string
	// Username and Password, when set, replace those in the URL.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels of a
	// redis-sentinel:// URL. Default: none.
	SentinelUsername, SentinelPassword string
	// KeyPrefix starts every key and index name. Default "gatehouse:". It must not
	// contain '{' or '}' (they would change Redis Cluster hash slots).
	KeyPrefix string
	// DialTimeout bounds establishing a connection. Default 5 s.
	DialTimeout time.Duration
	// Timeout bounds each operation, retries included, and is how long a connection
	// may stay silent before it is declared dead. Default 2 s.
	Timeout time.Duration
	// DisableClientCache turns off the in-process cache that serves Get (see the package
	// documentation), so that every Get is a round trip. Caching is on by default; turn
	// it off for a Redis that does not support CLIENT TRACKING (some managed services).
	DisableClientCache bool
	// ClientCacheTTL is the longest a cached value is served without asking Redis,
	// should an invalidation be lost. Default 30 s.
	ClientCacheTTL time.Duration
	// ClientCacheSize is the cache's size in bytes per connection (a standalone or
	// sentinel deployment uses up to 4 connections, a cluster one per node). Default
	// 32 MiB.
	ClientCacheSize int
	// TLSConfig configures TLS for rediss URLs. Default: system roots, TLS 1.2 or later,
	// the server name taken from each host of the URL.
	TLSConfig *tls.Config
	// InsecureSkipTLSVerify accepts any certificate the server presents. It exists for
	// tests and lab setups; it makes TLS worthless against an active attacker.
	InsecureSkipTLSVerify bool
}

const (
	defaultPrefix      = "gatehouse:"
	defaultDialTimeout = 5 * time.Second
	defaultTimeout     = 2 * time.Second
	defaultCacheTTL    = 30 * time.Second
	defaultCacheSize   = 32 << 20
	// ownWriteWindow is how long Get bypasses the cache for a key this Store wrote:
	// much longer than an invalidation takes to follow the write's reply.
	ownWriteWindow = time.Second
)

// Store is a session.Store on Redis. It is safe for concurrent use, and any number of
// Stores, in any number of processes, may share one Redis.
type Store struct {
	prefix   string
	timeout  time.Duration
	cache    bool
	cacheTTL time.Duration
	cluster  bool
	opt      rueidis.ClientOption

	client atomic.Pointer[clientRef] // nil until the first connection is made

	mu      sync.Mutex
	dialing chan struct{} // closed when the dial under way ends; nil when none is
	dialErr error         // why the last dial failed
	closed  atomic.Bool
	closing chan struct{} // closed by Close: ends the subscriptions

	written     sync.Map // prefixed key → time.Time until which Get bypasses the cache
	writtenN    atomic.Int64
	lastSweep   atomic.Int64 // unix nanoseconds
	wakes       wakeups
	hits, reads atomic.Uint64
}

type clientRef struct{ rueidis.Client }

// Open checks opts and returns a Store that connects in the background. It fails only
// when opts are invalid (listing every problem); an unreachable Redis is reported by
// Ping and by each operation, as an error wrapping session.ErrUnavailable. Open does
// not wait for Redis, and keeps nothing of ctx.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s, err := newStore(opts)
	if err != nil {
		return nil, err
	}
	s.startDial()
	return s, nil
}

func newStore(opts Options) (*Store, error) {
	var problems []error
	t, err := parseURL(opts.URL)
	if err != nil {
		problems = append(problems, err)
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = defaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		problems = append(problems, errors.New("redisstore: KeyPrefix must not contain '{' or '}'"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", opts.DialTimeout}, {"Timeout", opts.Timeout}, {"ClientCacheTTL", opts.ClientCacheTTL}} {
		if d.v < 0 {
			problems = append(problems, fmt.Errorf("redisstore: %s must not be negative", d.name))
		}
	}
	if opts.ClientCacheSize < 0 {
		problems = append(problems, errors.New("redisstore: ClientCacheSize must not be negative"))
	}
	if t != nil && !t.tls && (opts.InsecureSkipTLSVerify || opts.TLSConfig != nil) {
		problems = append(problems, errors.New("redisstore: TLSConfig and InsecureSkipTLSVerify need a rediss URL"))
	}
	if t != nil && t.mode != modeSentinel && (opts.SentinelUsername != "" || opts.SentinelPassword != "") {
		problems = append(problems, errors.New("redisstore: SentinelUsername and SentinelPassword need a redis-sentinel URL"))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}

	s := &Store{
		closing:  make(chan struct{}),
		prefix:   prefix,
		timeout:  orDefault(opts.Timeout, defaultTimeout),
		cache:    !opts.DisableClientCache,
		cacheTTL: orDefault(opts.ClientCacheTTL, defaultCacheTTL),
		cluster:  t.mode == modeCluster,
	}
	o := rueidis.ClientOption{
		InitAddress:       t.addrs,
		Username:          t.username,
		Password:          t.password,
		SelectDB:          t.db,
		DisableCache:      !s.cache,
		CacheSizeEachConn: opts.ClientCacheSize,
		// A connection that stays silent this long is dead: rueidis closes it, which
		// fails the commands waiting on it and flushes what it cached.
		ConnWriteTimeout: s.timeout,
		ClientName:       "gatehouse",
	}
	if o.CacheSizeEachConn == 0 {
		o.CacheSizeEachConn = defaultCacheSize
	}
	if opts.Username != "" {
		o.Username = opts.Username
	}
	if opts.Password != "" {
		o.Password = opts.Password
	}
	o.Dialer.Timeout = orDefault(opts.DialTimeout, defaultDialTimeout)
	if t.tls {
		var c *tls.Config
		if opts.TLSConfig != nil {
			c = opts.TLSConfig.Clone()
		} else {
			c = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if opts.InsecureSkipTLSVerify {
			c.InsecureSkipVerify = true
		}
		o.TLSConfig = c
	}
	switch t.mode {
	case modeStandalone:
		// Never probe for a cluster: the URL said what this is. A single client also
		// survives a failed first dial and redials on its own.
		o.ForceSingleClient = true
	case modeSentinel:
		o.Sentinel = rueidis.SentinelOption{
			MasterSet: t.masterSet,
			Username:  opts.SentinelUsername,
			Password:  opts.SentinelPassword,
			TLSConfig: o.TLSConfig,
			Dialer:    o.Dialer,
			// Catch a missed +switch-master event.
			TopologyRefreshInterval: 5 * time.Second,
		}
	case modeCluster:
		o.ClusterOption.ShardsRefreshInterval = 30 * time.Second
	}
	s.opt = o
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// startDial begins a connection attempt unless one is under way, and returns the channel
// closed when it ends.
func (s *Store) startDial() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dialing != nil {
		return s.dialing
	}
	done := make(chan struct{})
	if s.closed.Load() || s.client.Load() != nil {
		close(done)
		return done
	}
	s.dialing = done
	go func() {
		c, err := rueidis.NewClient(s.opt)
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case c != nil && s.closed.Load():
			c.Close()
		case c != nil:
			// A standalone client comes back even when its first dial failed; it
			// redials by itself, so keep it.
			s.client.Store(&clientRef{c})
		default:
			s.dialErr = err
		}
		s.dialing = nil
		close(done)
	}()
	return done
}

// conn returns the client, waiting for a connection attempt (bounded by ctx) when there
// is none yet.
func (s *Store) conn(ctx context.Context) (rueidis.Client, error) {
	if c := s.client.Load(); c != nil {
		return c.Client, nil
	}
	select {
	case <-s.startDial():
	case <-ctx.Done():
		return nil, fmt.Errorf("redisstore: connecting: %w: %w", session.ErrUnavailable, context.Cause(ctx))
	}
	if c := s.client.Load(); c != nil {
		return c.Client, nil
	}
	if s.closed.Load() {
		return nil, errClosed
	}
	s.mu.Lock()
	err := s.dialErr
	s.mu.Unlock()
	return nil, fmt.Errorf("redisstore: connecting: %w: %w", session.ErrUnavailable, err)
}

// op bounds ctx by the Store's timeout and returns the client to use within it.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc, rueidis.Client, error) {
	if s.closed.Load() {
		return nil, nil, nil, errClosed
	}
	cancel := context.CancelFunc(func() {})
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > s.timeout {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
	}
	c, err := s.conn(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, cancel, c, nil
}

// Get returns the value under key, from the client-side cache when it holds it.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	k := s.prefix + key
	if !s.cache || s.recentlyWritten(k) {
		return s.getFresh(ctx, k)
	}
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	r := c.DoCache(ctx, c.B().Get().Key(k).Cache(), s.cacheTTL)
	s.reads.Add(1)
	if r.IsCacheHit() {
		s.hits.Add(1)
	}
	return value(r)
}

// GetFresh returns the value under key as Redis has it now, bypassing the cache.
func (s *Store) GetFresh(ctx context.Context, key string) ([]byte, error) {
	return s.getFresh(ctx, s.prefix+key)
}

func (s *Store) getFresh(ctx context.Context, k string) ([]byte, error) {
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	return value(c.Do(ctx, c.B().Get().Key(k).Build()))
}

func value(r rueidis.RedisResult) ([]byte, error) {
	// Not AsBytes: it aliases the message's memory, which for a cache hit is the cached
	// entry itself, and a caller writing to it would corrupt the cache.
	v, err := r.ToString()
	if rueidis.IsRedisNil(err) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, wrap("get", err)
	}
	return []byte(v), nil
}

// Set stores value under key for ttl (SET PX).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k := s.prefix + key
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return s.set(ctx, c, k, value, ttl)
}

func (s *Store) set(ctx context.Context, c rueidis.Client, k string, value []byte, ttl time.Duration) error {
	s.wrote(k)
	// string(value) copies: a command abandoned at its deadline may still be queued,
	// and must not see the caller reuse its buffer. SET is idempotent, so rueidis may
	// resend it after a broken connection.
	cmd := c.B().Set().Key(k).Value(string(value)).PxMilliseconds(ms(ttl)).Build().ToRetryable()
	return wrap("set", c.Do(ctx, cmd).Error())
}

// Add stores value under key for ttl unless key holds a live value (SET NX PX).
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	k := s.prefix + key
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	s.wrote(k)
	err = c.Do(ctx, c.B().Set().Key(k).Value(string(value)).Nx().PxMilliseconds(ms(ttl)).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap("add", err)
	}
	return true, nil
}

// Delete removes key (DEL) and reports whether it held a live value.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	k := s.prefix + key
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	s.wrote(k)
	n, err := c.Do(ctx, c.B().Del().Key(k).Build()).AsInt64()
	if err != nil {
		return false, wrap("delete", err)
	}
	return n > 0, nil
}

// Ping reports whether Redis answers: PING, or in a cluster CLUSTER INFO, which must
// report every slot served (cluster_state:ok).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, c, err := s.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if !s.cluster {
		return wrap("ping", c.Do(ctx, c.B().Ping().Build()).Error())
	}
	info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
	if err != nil {
		return wrap("ping", err)
	}
	info = strings.TrimPrefix(info, "txt:") // a RESP3 verbatim string
	for line := range strings.Lines(info) {
		if state, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_state:"); ok {
			if state == "ok" {
				return nil
			}
			return fmt.Errorf("redisstore: ping: %w: cluster_state is %s", session.ErrUnavailable, state)
		}
	}
	return fmt.Errorf("redisstore: ping: %w: CLUSTER INFO without cluster_state", session.ErrUnavailable)
}

// Close releases the connections. Later calls fail with errors wrapping ErrClosed and
// session.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	c := s.client.Load()
	close(s.closing)
	s.mu.Unlock()
	if c != nil {
		c.Close() // waits for calls in flight; later ones get rueidis.ErrClosing
	}
	return nil
}

// Stats are counters since Open, for metrics.
type Stats struct {
	// Reads is how many Gets used the client-side cache path; CacheHits how many of
	// them were answered without a round trip.
	Reads, CacheHits uint64
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{Reads: s.reads.Load(), CacheHits: s.hits.Load()}
}

// wrote records that this Store is writing k, so that its own Gets bypass a cached
// copy until Redis's invalidation has surely arrived.
func (s *Store) wrote(k string) {
	if !s.cache {
		return
	}
	now := time.Now()
	if _, loaded := s.written.Swap(k, now.Add(ownWriteWindow)); !loaded {
		if s.writtenN.Add(1) > 1024 && now.UnixNano()-s.lastSweep.Load() > int64(ownWriteWindow) {
			s.lastSweep.Store(now.UnixNano())
			s.written.Range(func(k, v any) bool {
				if now.After(v.(time.Time)) && s.written.CompareAndDelete(k, v) {
					s.writtenN.Add(-1)
				}
				return true
			})
		}
	}
}

func (s *Store) recentlyWritten(k string) bool {
	if s.writtenN.Load() == 0 {
		return false
	}
	v, ok := s.written.Load(k)
	return ok && time.Now().Before(v.(time.Time))
}

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// wrap turns a rueidis error into one of ours: network errors, timeouts and the Redis
// replies that mean "try again later" wrap session.ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if re, ok := rueidis.IsRedisErr(err); ok && !transient(re) {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, session.ErrUnavailable, err)
}

// transient reports whether a Redis error reply means the server cannot serve the
// command now but will later. An error reply starts with its code (RESP).
func transient(re *rueidis.RedisError) bool {
	if re.IsLoading() || re.IsClusterDown() || re.IsTryAgain() {
		return true
	}
	code, _, _ := strings.Cut(re.Error(), " ")
	switch code {
	case "MASTERDOWN", "READONLY", "BUSY", "OOM", "NOREPLICAS", "MISCONF":
		return true
	}
	return false
}
