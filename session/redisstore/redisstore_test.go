package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
	"github.com/gatehouse-bff/gatehouse/session/sessiontest"
)

var prefixes atomic.Int64

// open returns a Store on url under a key prefix no other Store in this run uses.
func open(t *testing.T, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = fmt.Sprintf("test%d:", prefixes.Add(1))
	}
	st, err := redisstore.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return open(t, redisstore.Options{URL: srv.URL})
	})
}

func TestConformanceNoClientCache(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return open(t, redisstore.Options{URL: srv.URL, DisableClientCache: true})
	})
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return open(t, redisstore.Options{URL: c.URL})
	})
	// The keys really are spread over the nodes, each under the prefix.
	used := 0
	for _, n := range c.Nodes {
		if len(n.Dump(t)) > 0 {
			used++
		}
	}
	if used < 2 {
		t.Fatalf("keys landed on %d of 3 cluster nodes", used)
	}
}

// getCalls counts the GET commands the server has executed.
func getCalls(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	info := srv.Do(t, "INFO", "commandstats").(string)
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_get:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientCacheAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "shared:"})
	b := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "shared:"})
	ctx := t.Context()

	if err := b.Set(ctx, "s:{h}", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "s:{h}"); err != nil || string(v) != "v1" {
		t.Fatalf("A.Get = %q, %v", v, err)
	}
	before, hits := getCalls(t, srv), a.Stats().CacheHits
	for range 100 {
		if v, err := a.Get(ctx, "s:{h}"); err != nil || string(v) != "v1" {
			t.Fatalf("A.Get = %q, %v", v, err)
		}
	}
	// A cached value is handed out as a copy.
	v, _ := a.Get(ctx, "s:{h}")
	v[0] = 'X'
	if v, _ := a.Get(ctx, "s:{h}"); string(v) != "v1" {
		t.Fatalf("writing to a returned value changed the cached one to %q", v)
	}
	if got := a.Stats().CacheHits - hits; got != 102 {
		t.Fatalf("%d of 102 Gets were cache hits", got)
	}
	if after := getCalls(t, srv); after != before {
		t.Fatalf("cached Gets sent %d GET commands to Redis", after-before)
	}

	// A write on B invalidates A's copy.
	if err := b.Set(ctx, "s:{h}", []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := a.GetFresh(ctx, "s:{h}"); err != nil || string(v) != "v2" {
		t.Fatalf("A.GetFresh right after B.Set = %q, %v", v, err)
	}
	eventually(t, time.Second, "A sees B's write", func() bool {
		v, err := a.Get(ctx, "s:{h}")
		return err == nil && string(v) == "v2"
	})
	// And a delete on B makes it not found on A.
	if existed, err := b.Delete(ctx, "s:{h}"); err != nil || !existed {
		t.Fatalf("B.Delete = %v, %v", existed, err)
	}
	eventually(t, time.Second, "A sees B's delete", func() bool {
		_, err := a.Get(ctx, "s:{h}")
		return errors.Is(err, session.ErrNotFound)
	})
	// A cached "not found" is invalidated by a write too.
	if _, err := a.Get(ctx, "s:{h}"); !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "s:{h}", []byte("v3"), time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "A sees B's write after a cached miss", func() bool {
		v, err := a.Get(ctx, "s:{h}")
		return err == nil && string(v) == "v3"
	})
}

func TestClientCacheHonoursExpiry(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "exp:"})
	b := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "exp:"})
	ctx := t.Context()
	if err := b.Set(ctx, "k", []byte("short"), 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 300*time.Millisecond {
		if v, err := a.Get(ctx, "k"); err != nil || string(v) != "short" {
			t.Fatalf("Get before expiry = %q, %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.Stats().CacheHits == 0 {
		t.Fatal("no Get was served from the cache")
	}
	time.Sleep(time.Until(start.Add(450 * time.Millisecond)))
	if v, err := a.Get(ctx, "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after the key's ttl = %q, %v; want ErrNotFound", v, err)
	}
}

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := open(t, redisstore.Options{URL: srv.URL})
	ctx := t.Context()
	for i := range 300 {
		want := []byte(strconv.Itoa(i))
		if err := st.Set(ctx, "k", want, time.Minute); err != nil {
			t.Fatal(err)
		}
		for range 3 { // the first read fills the cache; the next write must not be hidden by it
			if v, err := st.Get(ctx, "k"); err != nil || !bytes.Equal(v, want) {
				t.Fatalf("round %d: Get after own Set = %q, %v; want %q", i, v, err, want)
			}
		}
	}
	if err := st.Set(ctx, "gone", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	st.Get(ctx, "gone")
	st.Delete(ctx, "gone")
	if _, err := st.Get(ctx, "gone"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after own Delete: %v", err)
	}
}

func TestRedisDownAndBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const timeout = 500 * time.Millisecond
	st := open(t, redisstore.Options{URL: srv.URL, Timeout: timeout})
	ctx := t.Context()
	if err := st.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the own-write window: Get now caches
	if v, err := st.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}

	srv.Stop()
	// Fail closed: the cached value is dropped with the connection, not served.
	eventually(t, 2*time.Second, "Get fails once Redis is down", func() bool {
		_, err := st.Get(ctx, "k")
		return err != nil
	})
	checks := map[string]func() error{
		"Get":      func() error { _, err := st.Get(ctx, "k"); return err },
		"GetFresh": func() error { _, err := st.GetFresh(ctx, "k"); return err },
		"Set":      func() error { return st.Set(ctx, "k", []byte("v2"), time.Minute) },
		"Add":      func() error { _, err := st.Add(ctx, "j", []byte("1"), time.Minute); return err },
		"Delete":   func() error { _, err := st.Delete(ctx, "k"); return err },
		"Ping":     func() error { return st.Ping(ctx) },
		"Members":  func() error { _, err := st.Members(ctx, "sub:x"); return err },
		"SetIndexed": func() error {
			return st.SetIndexed(ctx, "s:{1}", []byte("v"), time.Minute, "sub:x")
		},
		"Lock": func() error {
			r, err := st.Lock(ctx, "l:{1}", time.Minute)
			if err == nil {
				r()
			}
			return err
		},
	}
	for name, f := range checks {
		start := time.Now()
		err := f()
		if d := time.Since(start); d > timeout+500*time.Millisecond {
			t.Errorf("%s took %v with Redis down (Timeout %v)", name, d, timeout)
		}
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want an error wrapping ErrUnavailable", name, err)
		}
		t.Logf("%s with Redis down, after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
	}

	srv.Restart(t)
	eventually(t, 10*time.Second, "Ping succeeds after Redis is back", func() bool {
		return st.Ping(ctx) == nil
	})
	if err := st.Set(ctx, "k", []byte("back"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, "k"); err != nil || string(v) != "back" {
		t.Fatalf("Get after recovery = %q, %v", v, err)
	}
}

func TestOpenWhileRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	st := open(t, redisstore.Options{URL: srv.URL, Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	if err := st.Ping(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Ping with Redis down: %v", err)
	}
	if _, err := st.Get(ctx, "k"); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get with Redis down: %v", err)
	}
	srv.Restart(t)
	eventually(t, 10*time.Second, "the store connects once Redis is up", func() bool {
		return st.Ping(ctx) == nil
	})
	if err := st.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestClusterDownAndBack(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	for _, n := range c.Nodes {
		n.Stop()
	}
	st := open(t, redisstore.Options{URL: c.URL, Timeout: 500 * time.Millisecond})
	ctx := t.Context()
	if err := st.Ping(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Ping with the cluster down: %v", err)
	}
	for _, n := range c.Nodes {
		n.Restart(t)
	}
	c.WaitOK(t)
	eventually(t, 15*time.Second, "the store connects once the cluster is up", func() bool {
		return st.Ping(ctx) == nil
	})
	for i := range 20 { // keys in every slot range
		if err := st.Set(ctx, fmt.Sprintf("s:{%d}", i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// One node down: the cluster is degraded and the store says so.
	c.Nodes[0].Stop()
	eventually(t, 15*time.Second, "Ping reports a degraded cluster", func() bool {
		return errors.Is(st.Ping(ctx), session.ErrUnavailable)
	})
	c.Nodes[0].Restart(t)
	c.WaitOK(t)
	eventually(t, 15*time.Second, "Ping recovers with the node", func() bool {
		return st.Ping(ctx) == nil
	})
}

func TestPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Persistent())
	st := open(t, redisstore.Options{URL: srv.URL})
	ctx := t.Context()
	if err := st.SetIndexed(ctx, "s:{p}", []byte("kept"), time.Hour, "sub:p"); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	eventually(t, 10*time.Second, "the store reconnects", func() bool { return st.Ping(ctx) == nil })
	if v, err := st.GetFresh(ctx, "s:{p}"); err != nil || string(v) != "kept" {
		t.Fatalf("after restart Get = %q, %v", v, err)
	}
	if m, err := st.Members(ctx, "sub:p"); err != nil || !slices.Equal(m, []string{"s:{p}"}) {
		t.Fatalf("after restart Members = %q, %v", m, err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.TLS())
	if !strings.HasPrefix(srv.URL, "rediss://") {
		t.Fatalf("URL %q", srv.URL)
	}
	ctx := t.Context()
	st := open(t, redisstore.Options{URL: srv.URL, TLSConfig: srv.TLSConfig})
	if err := st.Set(ctx, "k", []byte("over tls"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := st.GetFresh(ctx, "k"); err != nil || string(v) != "over tls" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	// An unknown CA is refused.
	untrusted := open(t, redisstore.Options{URL: srv.URL, Timeout: 500 * time.Millisecond})
	if err := untrusted.Ping(ctx); err == nil {
		t.Fatal("connected to a server whose certificate no trusted CA signed")
	}
	insecure := open(t, redisstore.Options{URL: srv.URL, InsecureSkipTLSVerify: true})
	if err := insecure.Ping(ctx); err != nil {
		t.Fatalf("InsecureSkipTLSVerify: %v", err)
	}
	// Plain redis:// to a TLS port does not work either.
	plain := open(t, redisstore.Options{URL: "redis://" + srv.Addr, Timeout: 500 * time.Millisecond})
	if err := plain.Ping(ctx); err == nil {
		t.Fatal("plain text to a TLS port worked")
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Password("s3cret"))
	ctx := t.Context()
	st := open(t, redisstore.Options{URL: srv.URL})
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("password from the URL: %v", err)
	}
	noPass := strings.Replace(srv.URL, ":s3cret@", "", 1)
	st = open(t, redisstore.Options{URL: noPass, Password: "s3cret"})
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Options.Password: %v", err)
	}
	st = open(t, redisstore.Options{URL: srv.URL, Password: "wrong", Timeout: 500 * time.Millisecond})
	err := st.Ping(ctx)
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	t.Logf("wrong password: %v", err)
	if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error reveals a password: %v", err)
	}
}

func TestKeyPrefixAndDump(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	one := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "one:"})
	two := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "two:"})
	if err := one.SetIndexed(ctx, "s:{a}", []byte("1"), time.Minute, "sub:x"); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Get(ctx, "s:{a}"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("another prefix sees the key: %v", err)
	}
	if m, _ := two.Members(ctx, "sub:x"); len(m) != 0 {
		t.Fatalf("another prefix sees the index: %q", m)
	}

	// A real session through the Manager: the dump holds no secret in clear.
	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	m := &session.Manager{Store: two, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	s := &session.Session{
		Subject: "alice@example.com", Issuer: "https://idp.example", ProviderSID: "psid-secret",
		Claims:  map[string]any{"email": "alice@example.com"},
		IDToken: "eyJ.id-token-secret",
		Token:   session.Token{AccessToken: "access-token-secret", RefreshToken: "refresh-token-secret"},
	}
	if _, err := m.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	dump := srv.Dump(t)
	if string(dump["one:s:{a}"]) != "1" || string(dump["one:sub:x"]) != "s:{a}" {
		t.Fatalf("dump lacks the prefixed keys: %q", dump)
	}
	for k, v := range dump {
		if !strings.HasPrefix(k, "one:") && !strings.HasPrefix(k, "two:") {
			t.Errorf("key %q has no prefix", k)
		}
		for _, secret := range []string{"alice", "psid-secret", "token-secret"} {
			if strings.Contains(k, secret) || strings.Contains(string(v), secret) {
				t.Errorf("key %q holds %q in clear", k, secret)
			}
		}
	}
}

func TestLockAcrossStores(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	a := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "lk:"})
	b := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "lk:"})
	ra, err := a.Lock(ctx, "l:{x}", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(short, "l:{x}", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B took A's lease: %v", err)
	}
	got := make(chan time.Duration)
	go func() {
		start := time.Now()
		rb, err := b.Lock(ctx, "l:{x}", time.Minute)
		if err != nil {
			t.Error(err)
		} else {
			rb()
		}
		got <- time.Since(start)
	}()
	time.Sleep(50 * time.Millisecond)
	ra()
	if d := <-got; d > time.Second {
		t.Fatalf("B waited %v after A released", d)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	_, err := redisstore.Open(t.Context(), redisstore.Options{
		URL:       "redis://user:hunter2@host:99999",
		KeyPrefix: "{gh}",
		Timeout:   -time.Second,
	})
	if err == nil {
		t.Fatal("bad options accepted")
	}
	msg := err.Error()
	for _, want := range []string{"port", "KeyPrefix", "Timeout"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %s", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error reveals the password: %q", msg)
	}
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "gatehouse-master")
	if !strings.HasPrefix(sentinel.URL, "redis-sentinel://") {
		t.Fatalf("URL %q", sentinel.URL)
	}
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return open(t, redisstore.Options{URL: sentinel.URL})
	})
	// The data is on the master the sentinel named.
	if len(master.Dump(t)) == 0 {
		t.Fatal("nothing was written to the master")
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	st, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = st.Get(ctx, "k")
	if !errors.Is(err, redisstore.ErrClosed) || !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := st.Lock(ctx, "l:{x}", time.Second); !errors.Is(err, redisstore.ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}

	// Closing a store that never connected.
	srv.Stop()
	st, err = redisstore.Open(ctx, redisstore.Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := st.Ping(ctx); !errors.Is(err, redisstore.ErrClosed) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

func TestClusterWithPassword(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3, redistest.Password("pw"))
	st := open(t, redisstore.Options{URL: c.URL})
	ctx := t.Context()
	for i := range 10 {
		k := fmt.Sprintf("s:{%d}", i)
		if err := st.SetIndexed(ctx, k, []byte(k), time.Minute, "sub:all"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := st.Members(ctx, "sub:all")
	if err != nil || len(m) != 10 {
		t.Fatalf("Members = %q, %v", m, err)
	}
	if n := len(c.Dump(t)); n != 11 {
		t.Fatalf("the cluster holds %d keys, want 11", n)
	}
}

// TestTombstoneCheckIsCached: Load reads a session's tombstone on every call (a restored
// record must not revive an ended session), and on a replica that has read it once the
// answer — no tombstone — comes from the client-side cache: repeated Loads send no GET to
// Redis at all. When another replica ends the session, the cached miss is invalidated.
func TestTombstoneCheckIsCached(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		t.Fatal(err)
	}
	manager := func() *session.Manager {
		st := open(t, redisstore.Options{URL: srv.URL, KeyPrefix: "tomb:"})
		return &session.Manager{Store: st, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}
	}
	a, b := manager(), manager()
	ctx := t.Context()
	s := &session.Session{Subject: "sam", Token: session.Token{AccessToken: "at"}}
	cookie, err := a.Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	record, err := a.Store.Get(ctx, session.RecordKeyPrefix+s.Handle+"}")
	if err != nil {
		t.Fatal(err)
	}
	record = bytes.Clone(record)
	if _, err := b.Load(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	before := getCalls(t, srv)
	for range 50 {
		if _, err := b.Load(ctx, cookie); err != nil {
			t.Fatal(err)
		}
	}
	if n := getCalls(t, srv) - before; n != 0 {
		t.Fatalf("50 Loads of a live session sent %d GETs to Redis: the tombstone check is not cached", n)
	}

	if _, err := a.End(ctx, s.Handle, session.ReasonRevoked); err != nil {
		t.Fatal(err)
	}
	// A backup restore puts the old record back, straight into Redis.
	if err := a.Store.Set(ctx, session.RecordKeyPrefix+s.Handle+"}", record, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "replica B sees the session ended despite the restored record", func() bool {
		_, err := b.Load(ctx, cookie)
		return errors.Is(err, session.ErrRevoked)
	})
	if _, err := a.Load(ctx, cookie); !errors.Is(err, session.ErrRevoked) {
		t.Fatalf("replica A loads a restored record: %v", err)
	}
}
