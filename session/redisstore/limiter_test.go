package redisstore_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/ratelimit/ratelimittest"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// rueidisClient connects to a standalone server (addrs of one) or a cluster, apart from
// any Store.
func rueidisClient(t testing.TB, cluster bool, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: addrs, DisableCache: true, ForceSingleClient: !cluster,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// limiterPrefix returns a key prefix no other limiter in this run uses.
func limiterPrefix() string { return fmt.Sprintf("rl%d:", prefixes.Add(1)) }

// realTime is the conformance Backend of limiters on a real Redis, each subtest under a
// fresh prefix.
func realTime(open func(prefix string) ratelimit.Limiter) ratelimittest.Backend {
	return ratelimittest.Backend{
		Open: func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
			return open(limiterPrefix()), time.Sleep
		},
		// Real time passes between calls, and Redis counts in microseconds.
		Slack: 100 * time.Millisecond,
	}
}

func TestLimiterConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := rueidisClient(t, false, srv.Addr)
	ratelimittest.Run(t, realTime(func(prefix string) ratelimit.Limiter {
		return redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: prefix})
	}))
}

func TestLimiterClusterConformance(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	c := rueidisClient(t, true, cl.Nodes[0].Addr)
	ratelimittest.Run(t, realTime(func(prefix string) ratelimit.Limiter {
		return redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: prefix})
	}))
	// Buckets are spread over the nodes (one hash slot per key, from its hash tag).
	lim := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: "spread:"})
	for i := range 30 {
		ratelimittest.Allow(t, lim, fmt.Sprint("198.51.100.", i), ratelimit.Limit{Rate: 0.01, Burst: 1})
	}
	used := 0
	for _, n := range cl.Nodes {
		for k := range n.Dump(t) {
			if strings.HasPrefix(k, "spread:{") {
				used++
				break
			}
		}
	}
	if used < 2 {
		t.Fatalf("buckets landed on %d of 3 cluster nodes", used)
	}
}

// The limiter the gateway uses, on its session Store's client, meets the same contract.
func TestStoreLimiterConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL})
	client(t, st) // connected: the suite counts every error as a failure
	ratelimittest.Run(t, realTime(func(prefix string) ratelimit.Limiter {
		return st.Limiter(redisstore.LimiterOptions{Prefix: prefix})
	}))
}

// A Store's Limiter works once Redis answers, however late, under the prefix it was
// given and not the Store's; until then and after Close it fails at once.
func TestStoreLimiterBeforeAndAfterRedis(t *testing.T) {
	t.Parallel()
	l := ratelimit.Limit{Rate: 0.01, Burst: 2}

	// A cluster that was never reached: no client, so no wait.
	cst := open(t, redisstore.Options{URL: "redis-cluster://127.0.0.1:1", DialTimeout: 2 * time.Second})
	clim := cst.Limiter(redisstore.LimiterOptions{})
	for range 20 {
		start := time.Now()
		r, err := clim.Allow(t.Context(), "192.0.2.1", l)
		if !errors.Is(err, session.ErrUnavailable) || r.Allowed {
			t.Fatalf("Allow on an unreachable cluster = %+v, %v; want ErrUnavailable", r, err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("Allow waited %v with no client; it must not block", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cst.Close()
	if r, err := clim.Allow(t.Context(), "192.0.2.1", l); !errors.Is(err, redisstore.ErrClosed) || r.Allowed {
		t.Fatalf("Allow after Close of a store that never connected = %+v, %v; want ErrClosed", r, err)
	}

	// A server that is down when the gateway starts, then comes up.
	srv := redistest.Start(t, redistest.Password("pw"))
	srv.Stop()
	st := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "sessions:", DialTimeout: 200 * time.Millisecond})
	lim := st.Limiter(redisstore.LimiterOptions{Prefix: "gatehouse:rl:"})
	if r, err := lim.Allow(t.Context(), "192.0.2.1", l); !errors.Is(err, session.ErrUnavailable) || r.Allowed {
		t.Fatalf("Allow with Redis down = %+v, %v; want ErrUnavailable", r, err)
	}
	srv.Restart(t)
	var first ratelimit.Result
	eventually(t, 10*time.Second, "the limiter reaches the restarted server", func() bool {
		r, err := lim.Allow(t.Context(), "192.0.2.1", l)
		first = r
		return err == nil
	})
	if !first.Allowed || first.Remaining != 1 {
		t.Fatalf("first request once Redis is up = %+v; want allowed, 1 remaining", first)
	}
	if r := ratelimittest.Allow(t, lim, "192.0.2.1", l); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("second request = %+v; want allowed, 0 remaining", r)
	}
	if r := ratelimittest.Allow(t, lim, "192.0.2.1", l); r.Allowed {
		t.Fatalf("third request past a burst of 2 allowed: %+v", r)
	}
	dflt := st.Limiter(redisstore.LimiterOptions{})
	ratelimittest.Allow(t, dflt, "192.0.2.1", l)
	dump := srv.Dump(t)
	for _, k := range []string{"gatehouse:rl:{192.0.2.1}", "rl:{192.0.2.1}"} {
		if _, ok := dump[k]; !ok {
			t.Fatalf("Redis holds %q; want the bucket %s", dump, k)
		}
	}
	if len(dump) != 2 {
		t.Fatalf("Redis holds %q; want the two buckets only", dump)
	}
	// Another Store on the same Redis (another replica) shares the bucket.
	st2 := open(t, redisstore.Options{URL: srv.URL})
	client(t, st2)
	if r := ratelimittest.Allow(t, st2.Limiter(redisstore.LimiterOptions{Prefix: "gatehouse:rl:"}), "192.0.2.1", l); r.Allowed {
		t.Fatalf("another replica allowed past the shared burst: %+v", r)
	}
	// Closing the Store ends its limiters.
	st.Close()
	if r, err := lim.Allow(t.Context(), "192.0.2.2", l); !errors.Is(err, redisstore.ErrClosed) || r.Allowed {
		t.Fatalf("Allow after Close = %+v, %v; want ErrClosed", r, err)
	}
}

// Two gateway replicas, each with its own connection, share the buckets of one Redis.
func TestLimiterSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := redisstore.NewLimiter(rueidisClient(t, false, srv.Addr), redisstore.LimiterOptions{})
	b := redisstore.NewLimiter(rueidisClient(t, false, srv.Addr), redisstore.LimiterOptions{})
	other := redisstore.NewLimiter(rueidisClient(t, false, srv.Addr), redisstore.LimiterOptions{Prefix: "other:"})
	l := ratelimit.Limit{Rate: 0.01, Burst: 4}
	for i := range 4 {
		lim := a
		if i%2 == 1 {
			lim = b
		}
		if r := ratelimittest.Allow(t, lim, "203.0.113.7", l); !r.Allowed || r.Remaining != 3-i {
			t.Fatalf("request %d alternating replicas = %+v; want allowed, %d remaining", i+1, r, 3-i)
		}
	}
	for _, lim := range []ratelimit.Limiter{a, b} {
		if r := ratelimittest.Allow(t, lim, "203.0.113.7", l); r.Allowed || r.RetryAfter < 99*time.Second {
			t.Fatalf("a replica allowed past the shared burst: %+v", r)
		}
	}
	if r := ratelimittest.Allow(t, other, "203.0.113.7", l); !r.Allowed || r.Remaining != 3 {
		t.Fatalf("a limiter with another prefix shares the bucket: %+v", r)
	}
}

// A bucket is one key under the prefix, with the key in braces, expiring when full.
func TestLimiterKeyLayout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := redisstore.NewLimiter(rueidisClient(t, false, srv.Addr), redisstore.LimiterOptions{})
	l := ratelimit.Limit{Rate: 5, Burst: 3} // a token per 200 ms
	ratelimittest.Drain(t, lim, "192.0.2.9", l, 2)
	dump := srv.Dump(t)
	if len(dump) != 1 {
		t.Fatalf("Redis holds %q, want one key", dump)
	}
	v, ok := dump["rl:{192.0.2.9}"]
	if !ok {
		t.Fatalf("Redis holds %q, want the key rl:{192.0.2.9}", dump)
	}
	// The value is when the bucket is full, in µs on the server's clock: 400 ms ahead.
	full, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		t.Fatalf("bucket value %q is not an integer", v)
	}
	serverNow := serverTime(t, srv)
	if ahead := time.Duration(full-serverNow) * time.Microsecond; ahead <= 300*time.Millisecond || ahead > 400*time.Millisecond {
		t.Fatalf("bucket full %v after the server's now, want (300ms, 400ms]", ahead)
	}
	pttl := srv.Do(t, "PTTL", "rl:{192.0.2.9}").(int64)
	if pttl <= 300 || pttl > 400 {
		t.Fatalf("PTTL = %d ms, want the time to refill, (300, 400]", pttl)
	}
	time.Sleep(450 * time.Millisecond)
	if n := srv.Do(t, "EXISTS", "rl:{192.0.2.9}").(int64); n != 0 {
		t.Fatal("a refilled bucket still takes a key")
	}
	if r := ratelimittest.Allow(t, lim, "192.0.2.9", l); !r.Allowed || r.Remaining != 2 {
		t.Fatalf("after refilling: %+v; want full", r)
	}
}

func serverTime(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	tm := srv.Do(t, "TIME").([]any)
	sec, _ := strconv.ParseInt(tm[0].(string), 10, 64)
	usec, _ := strconv.ParseInt(tm[1].(string), 10, 64)
	return sec*1_000_000 + usec
}

// The script is replicated by its effects: a replica holds the master's value, not one
// computed again with its own TIME.
func TestLimiterReplicatesEffects(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, redistest.Args("--repl-diskless-sync-delay", "0"))
	host, port, _ := strings.Cut(master.Addr, ":")
	replica := redistest.Start(t, redistest.Args("--replicaof", host, port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		role := replica.Do(t, "ROLE").([]any)
		if len(role) >= 4 && role[3] == "connected" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync after 10 s: %v", role)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lim := redisstore.NewLimiter(rueidisClient(t, false, master.Addr), redisstore.LimiterOptions{})
	ratelimittest.Allow(t, lim, "k", ratelimit.Limit{Rate: 1, Burst: 10})
	time.Sleep(5 * time.Millisecond) // the replica is now a few ms later than the master
	ratelimittest.Allow(t, lim, "k", ratelimit.Limit{Rate: 1, Burst: 10})
	want := master.Do(t, "GET", "rl:{k}")
	if want == nil {
		t.Fatal("no bucket on the master")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := replica.Do(t, "GET", "rl:{k}")
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s the replica holds %v, the master %v", got, want)
		}
	}
}

// Redis failures are returned, within the timeout, never hidden as allowed or refused.
func TestLimiterErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := rueidisClient(t, false, srv.Addr)
	lim := redisstore.NewLimiter(c, redisstore.LimiterOptions{Timeout: 300 * time.Millisecond})
	l := ratelimit.Limit{Rate: 1, Burst: 1}
	// A key of another type under the prefix: the script's error comes back, and it is
	// not an outage.
	srv.Do(t, "HSET", "rl:{hash}", "f", "v")
	if r, err := lim.Allow(t.Context(), "hash", l); err == nil || r.Allowed || errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Allow on a hash = %+v, %v; want an error, not ErrUnavailable", r, err)
	}
	// The script is loaded again after SCRIPT FLUSH (EVALSHA falls back to EVAL).
	ratelimittest.Allow(t, lim, "a", l)
	srv.Do(t, "SCRIPT", "FLUSH")
	if r := ratelimittest.Allow(t, lim, "b", l); !r.Allowed {
		t.Fatalf("after SCRIPT FLUSH: %+v", r)
	}
	// A server that hangs: the timeout bounds Allow.
	srv.Do(t, "CLIENT", "PAUSE", "1000", "ALL")
	start := time.Now()
	r, err := lim.Allow(t.Context(), "c", l)
	if err == nil || r.Allowed || !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Allow while Redis hangs = %+v, %v; want ErrUnavailable", r, err)
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Fatalf("Allow took %v with a 300ms timeout", d)
	}
	// A server that is gone.
	srv.Stop()
	if r, err := lim.Allow(t.Context(), "d", l); err == nil || r.Allowed || !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Allow with Redis stopped = %+v, %v; want ErrUnavailable", r, err)
	}
	// An invalid Limit is refused before Redis is asked.
	if r, err := lim.Allow(t.Context(), "e", ratelimit.Limit{Rate: 0, Burst: 1}); !errors.Is(err, ratelimit.ErrInvalidLimit) || r.Allowed {
		t.Fatalf("Allow with rate 0 = %+v, %v; want ErrInvalidLimit", r, err)
	}
}

func TestNewLimiterPanics(t *testing.T) {
	srv := redistest.Start(t)
	c := rueidisClient(t, false, srv.Addr)
	st := open(t, redisstore.Options{URL: srv.URL})
	for name, f := range map[string]func(){
		"a nil client":                func() { redisstore.NewLimiter(nil, redisstore.LimiterOptions{}) },
		"a prefix with a brace":       func() { redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: "rl{x}:"}) },
		"a Store prefix with a brace": func() { st.Limiter(redisstore.LimiterOptions{Prefix: "rl}:"}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter accepted %s", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkLimiter(b *testing.B) {
	srv := redistest.Start(b)
	c := rueidisClient(b, false, srv.Addr)
	lim := redisstore.NewLimiter(c, redisstore.LimiterOptions{})
	l := ratelimit.Limit{Rate: 1e6, Burst: 1 << 20}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := lim.Allow(b.Context(), "192.0.2.1", l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		// Many callers at once, as on a busy gateway: rueidis pipelines their scripts.
		b.SetParallelism(16)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			key := fmt.Sprint("192.0.2.", n.Add(1))
			for pb.Next() {
				if _, err := lim.Allow(b.Context(), key, l); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
