package gatehouse_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// BenchmarkProxyStores compares, on the default (fast) upstream path over loopback, the
// hot path with the embedded memory store and with Redis (client-side cache on): what a
// session read from Redis costs per proxied request. It starts a redis-server.
func BenchmarkProxyStores(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	srv := redistest.Start(b)
	st, err := redisstore.Open(b.Context(), redisstore.Options{URL: srv.URL, KeyPrefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	_, memCookie, memPublic := benchGateway(b, nil, up.URL)
	_, redisCookie, redisPublic := benchGatewayWith(b, nil, up.URL, func(c *gatehouse.Config) { c.Session.Store = st })
	run := loopbackLoad()
	b.Run("store=memory", func(b *testing.B) { run(b, memPublic, memCookie) })
	b.Run("store=redis", func(b *testing.B) {
		before := st.Stats()
		run(b, redisPublic, redisCookie)
		after := st.Stats()
		b.Logf("reads %d, hits %d", after.Reads-before.Reads, after.CacheHits-before.CacheHits)
	})
}
