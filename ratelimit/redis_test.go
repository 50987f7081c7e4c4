package ratelimit_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

var prefixes atomic.Int64

// client connects to a standalone server (addrs of one) or a cluster.
func client(t testing.TB, cluster bool, addrs ...string) rueidis.Client {
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

// redisBackend runs the conformance suite with a fresh prefix per subtest over c.
func redisBackend(c rueidis.Client) backend {
	return backend{
		open: func(t *testing.T) (ratelimit.Limiter, func(time.Duration)) {
			prefix := fmt.Sprintf("rl%d:", prefixes.Add(1))
			return ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: prefix}), time.Sleep
		},
		// Real time passes between calls, and Redis counts in microseconds.
		slack: 100 * time.Millisecond,
	}
}

func TestRedisConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	runConformance(t, redisBackend(client(t, false, srv.Addr)))
}

func TestRedisClusterConformance(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	c := client(t, true, cl.Nodes[0].Addr)
	runConformance(t, redisBackend(c))
	// Buckets are spread over the nodes (one hash slot per key, from its hash tag).
	lim := ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: "spread:"})
	for i := range 30 {
		allow(t, lim, fmt.Sprint("198.51.100.", i), ratelimit.Limit{Rate: 0.01, Burst: 1})
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

// Two gateway replicas, each with its own connection, share the buckets of one Redis.
func TestRedisSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := ratelimit.NewRedis(client(t, false, srv.Addr), ratelimit.RedisOptions{})
	b := ratelimit.NewRedis(client(t, false, srv.Addr), ratelimit.RedisOptions{})
	other := ratelimit.NewRedis(client(t, false, srv.Addr), ratelimit.RedisOptions{Prefix: "other:"})
	l := ratelimit.Limit{Rate: 0.01, Burst: 4}
	for i := range 4 {
		lim := a
		if i%2 == 1 {
			lim = b
		}
		if r := allow(t, lim, "203.0.113.7", l); !r.Allowed || r.Remaining != 3-i {
			t.Fatalf("request %d alternating replicas = %+v; want allowed, %d remaining", i+1, r, 3-i)
		}
	}
	for _, lim := range []ratelimit.Limiter{a, b} {
		if r := allow(t, lim, "203.0.113.7", l); r.Allowed || r.RetryAfter < 99*time.Second {
			t.Fatalf("a replica allowed past the shared burst: %+v", r)
		}
	}
	if r := allow(t, other, "203.0.113.7", l); !r.Allowed || r.Remaining != 3 {
		t.Fatalf("a limiter with another prefix shares the bucket: %+v", r)
	}
}

// A bucket is one key under the prefix, with the key in braces, expiring when full.
func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := ratelimit.NewRedis(client(t, false, srv.Addr), ratelimit.RedisOptions{})
	l := ratelimit.Limit{Rate: 5, Burst: 3} // a token per 200 ms
	drain(t, lim, "192.0.2.9", l, 2)
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
	if r := allow(t, lim, "192.0.2.9", l); !r.Allowed || r.Remaining != 2 {
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
func TestRedisReplicatesEffects(t *testing.T) {
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
	lim := ratelimit.NewRedis(client(t, false, master.Addr), ratelimit.RedisOptions{})
	allow(t, lim, "k", ratelimit.Limit{Rate: 1, Burst: 10})
	time.Sleep(5 * time.Millisecond) // the replica is now a few ms later than the master
	allow(t, lim, "k", ratelimit.Limit{Rate: 1, Burst: 10})
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
func TestRedisErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := client(t, false, srv.Addr)
	lim := ratelimit.NewRedis(c, ratelimit.RedisOptions{Timeout: 300 * time.Millisecond})
	l := ratelimit.Limit{Rate: 1, Burst: 1}
	// A key of another type under the prefix: the script's error comes back.
	srv.Do(t, "HSET", "rl:{hash}", "f", "v")
	if r, err := lim.Allow(t.Context(), "hash", l); err == nil || r.Allowed {
		t.Fatalf("Allow on a hash = %+v, %v; want an error", r, err)
	}
	// The script is loaded again after SCRIPT FLUSH (EVALSHA falls back to EVAL).
	allow(t, lim, "a", l)
	srv.Do(t, "SCRIPT", "FLUSH")
	if r := allow(t, lim, "b", l); !r.Allowed {
		t.Fatalf("after SCRIPT FLUSH: %+v", r)
	}
	// A server that hangs: the timeout bounds Allow.
	srv.Do(t, "CLIENT", "PAUSE", "1000", "ALL")
	start := time.Now()
	r, err := lim.Allow(t.Context(), "c", l)
	if err == nil || r.Allowed {
		t.Fatalf("Allow while Redis hangs = %+v, %v; want an error", r, err)
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Fatalf("Allow took %v with a 300ms timeout", d)
	}
	// A server that is gone.
	srv.Stop()
	if r, err := lim.Allow(t.Context(), "d", l); err == nil || r.Allowed {
		t.Fatalf("Allow with Redis stopped = %+v, %v; want an error", r, err)
	}
}

func TestNewRedisRejectsBadPrefix(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, false, srv.Addr)
	defer func() {
		if recover() == nil {
			t.Fatal("NewRedis accepted a prefix with a brace")
		}
	}()
	ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: "rl{x}:"})
}

func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b)
	c := client(b, false, srv.Addr)
	lim := ratelimit.NewRedis(c, ratelimit.RedisOptions{})
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
