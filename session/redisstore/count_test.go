package redisstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// fill stores n session records and as many other keys, through the Store's own client
// in one pipeline, and returns the prefixed record keys.
func fill(t *testing.T, st *redisstore.Store, prefix string, n int) {
	t.Helper()
	c := st.Client()
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
	for _, m := range cl.Masters(t) {
		if n := m.Do(t, "WAIT", "1", "5000").(int64); n != 1 {
			t.Fatalf("master %s: %d replicas acknowledged", m.Addr, n)
		}
	}
	if nodes := len(st.Client().Nodes()); nodes != 6 {
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
	c := st.Client()
	if c == nil {
		t.Fatal("Client() = nil with Redis up")
	}
	if st.Client() != c {
		t.Fatal("Client() returned another client the second time")
	}
	lim := ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: "gatehouse:rl:"})
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
	// A standalone URL gives a client that redials by itself.
	st := open(t, redisstore.Options{URL: "redis://" + addr, DialTimeout: 200 * time.Millisecond})
	if st.Client() == nil {
		t.Fatal("Client() = nil for a standalone URL")
	}
	// A cluster that was never reached gives nil, within about the dial timeout.
	cst := open(t, redisstore.Options{URL: "redis-cluster://" + addr, DialTimeout: 200 * time.Millisecond})
	start := time.Now()
	if c := cst.Client(); c != nil {
		t.Fatalf("Client() = %v for an unreachable cluster", c)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Client() took %v", d)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("redistest listens on %s", addr)
	}
}
