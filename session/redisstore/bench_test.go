package redisstore_test

import (
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// BenchmarkGet measures the hot path: a session read that the client-side cache
// answers, against one that goes to Redis.
func BenchmarkGet(b *testing.B) {
	srv := redistest.Start(b)
	for _, bc := range []struct {
		name  string
		fresh bool
	}{{"Cached", false}, {"Fresh", true}} {
		b.Run(bc.name, func(b *testing.B) {
			st, err := redisstore.Open(b.Context(), redisstore.Options{URL: srv.URL, KeyPrefix: "bench:"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ctx := b.Context()
			if err := st.Set(ctx, "s:{h}", make([]byte, 1500), time.Hour); err != nil {
				b.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // past the own-write window
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if bc.fresh {
					_, err = st.GetFresh(ctx, "s:{h}")
				} else {
					_, err = st.Get(ctx, "s:{h}")
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad is what a proxied request costs the session Manager: the session's
// record and its tombstone, from Redis's client-side cache, beside the memory store in
// the same run.
func BenchmarkLoad(b *testing.B) {
	srv := redistest.Start(b)
	rs, err := redisstore.Open(b.Context(), redisstore.Options{URL: srv.URL, KeyPrefix: "gatehouse:"})
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Close()
	ring, err := session.NewKeyRing(session.NewRandomKey())
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range []struct {
		name  string
		store session.Store
	}{{"store=memory", memstore.New(memstore.Options{})}, {"store=redis", rs}} {
		b.Run(st.name, func(b *testing.B) {
			m := &session.Manager{Store: st.store, Keys: ring, IdleTimeout: time.Hour, AbsoluteTimeout: 12 * time.Hour}
			cookie, err := m.Create(b.Context(), &session.Session{Subject: "alice", Claims: map[string]any{"email": "alice@example.com"}})
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // past Redis's own-write window
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Load(b.Context(), cookie); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
