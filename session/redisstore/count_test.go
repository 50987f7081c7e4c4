package redisstore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// client waits for the Store's client.
func client(t *testing.T, st *redisstore.Store) rueidis.Client {
	t.Helper()
	var c rueidis.Client
	eventually(t, 5*time.Second, "the store has a client", func() bool {
		c = st.Client()
		return c != nil
	})
	return c
}

// fill stores n session records and n tombstones through the Store's own client, in
// one pipeline.
func fill(t *testing.T, st *redisstore.Store, prefix string, n int) {
	t.Helper()
	c := client(t, st)
	var cmds rueidis.Commands
	for i := range n {
		for _, k := range []string{"s:{h" + fmt.Sprint(i) + "}", "t:{h" + fmt.Sprint(i) + "}"} {
			cmds = append(cmds, c.B().Set().Key(prefix+k).Value("v").Px(time.Minute).Build())
		}
	}
	for _, r := range c.DoMulti(t.Context(), cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

func count(t *testing.T, st *redisstore.Store) int {
	t.Helper()
	n, err := st.CountSessions(t.Context())
	if err != nil {
		t.Fatalf("CountSessions: %v", err)
	}
	return n
}

// More records than one SCAN call returns; other deployments' prefixes are not counted,
// even when the prefix holds glob characters.
func TestCountSessionsScans(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "a*[b]?\\:"})
	other := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "aXbY\\:"}) // what the unescaped glob would match
	fill(t, st, "a*[b]?\\:", 2500)
	fill(t, other, "aXbY\\:", 700)
	if n := count(t, st); n != 2500 {
		t.Fatalf("CountSessions = %d, want 2500", n)
	}
	if n := count(t, other); n != 700 {
		t.Fatalf("other deployment's CountSessions = %d, want 700", n)
	}
}

// In a cluster with replicas, each master is scanned once and no replica is: the
// replicas hold copies of the same keys.
func TestCountSessionsClusterWithReplicas(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3, redistest.ClusterReplicas(1))
	st := open(t, redisstore.Options{URL: cl.URL, KeyPrefix: "gh:"})
	fill(t, st, "gh:", 300)
	// Wait until the replicas hold copies, so that counting them would show.
	// fill wrote 600 keys (300 records, 300 tombstones).
	eventually(t, 10*time.Second, "every key on a master and its replica", func() bool {
		var n int64
		for _, node := range cl.Nodes {
			n += node.Do(t, "DBSIZE").(int64)
		}
		return n == 2*600
	})
	if nodes := len(client(t, st).Nodes()); nodes != 6 {
		t.Fatalf("the client knows %d nodes, want 3 masters and 3 replicas", nodes)
	}
	if n := count(t, st); n != 300 {
		t.Fatalf("CountSessions = %d, want 300", n)
	}
	// A master that is down makes the count fail, rather than come out short.
	m := cl.Masters(t)[0]
	m.Stop()
	if n, err := st.CountSessions(t.Context()); err == nil {
		t.Fatalf("CountSessions with a master down = %d, nil; want an error", n)
	}
}

func TestCountSessionsUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL, Timeout: 300 * time.Millisecond})
	fill(t, st, "x", 1)
	srv.Stop()
	if _, err := st.CountSessions(t.Context()); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("CountSessions with Redis down: %v; want ErrUnavailable", err)
	}
	st.Close()
	if _, err := st.CountSessions(t.Context()); !errors.Is(err, redisstore.ErrClosed) {
		t.Fatalf("CountSessions after Close: %v; want ErrClosed", err)
	}
}

// The Store's client is what the gateway builds its Redis rate limiter on.
func TestClientForRateLimiter(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Password("pw"))
	st := open(t, redisstore.Options{URL: srv.URL})
	c := client(t, st)
	if st.Client() != c {
		t.Fatal("Client() returned another client the second time")
	}
	lim := redisstore.NewLimiter(c, redisstore.LimiterOptions{Prefix: "gatehouse:rl:"})
	l := ratelimit.Limit{Rate: 0.01, Burst: 2}
	for i, want := range []bool{true, true, false} {
		r, err := lim.Allow(t.Context(), "192.0.2.1", l)
		if err != nil || r.Allowed != want {
			t.Fatalf("request %d = %+v, %v; want allowed %v", i+1, r, err, want)
		}
	}
	if _, ok := srv.Dump(t)["gatehouse:rl:{192.0.2.1}"]; !ok {
		t.Fatalf("no bucket in Redis: %q", srv.Dump(t))
	}
	// The store keeps working alongside, and closing it closes the shared client.
	if err := st.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := lim.Allow(t.Context(), "192.0.2.2", l); err == nil {
		t.Fatal("the limiter still works after the store closed its client")
	}
}

func TestClientWhileUnreachable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	addr := srv.Addr
	srv.Stop()
	// A standalone URL gives a client that redials by itself, and works once Redis is back.
	st := open(t, redisstore.Options{URL: "redis://" + addr, DialTimeout: 200 * time.Millisecond})
	c := client(t, st)
	if err := c.Do(t.Context(), c.B().Ping().Build()).Error(); err == nil {
		t.Fatal("PING succeeded with Redis stopped")
	}
	srv.Restart(t)
	eventually(t, 5*time.Second, "the client reaches the restarted server", func() bool {
		return c.Do(t.Context(), c.B().Ping().Build()).Error() == nil
	})
	// A cluster that was never reached gives nil, at once, every time.
	cst := open(t, redisstore.Options{URL: "redis-cluster://127.0.0.1:1", DialTimeout: 2 * time.Second})
	for range 20 {
		start := time.Now()
		if c := cst.Client(); c != nil {
			t.Fatalf("Client() = %v for an unreachable cluster", c)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("Client() waited %v; it must not block", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cst.Close()
	if c := cst.Client(); c != nil {
		t.Fatal("Client() after Close of a store that never connected is not nil")
	}
}
