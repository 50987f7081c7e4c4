package gatehouse_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// When Redis goes silent (connections accepted, nothing answered), a request with a
// session fails fast with 503 store_unavailable rather than hanging: every store call on
// its path is bounded by the store's timeout, whatever step it is at (reading the session,
// the refresh lease, saving).
func TestRedisBlackholeFailsFast(t *testing.T) {
	const timeout = 500 * time.Millisecond
	const bound = 3*timeout + time.Second
	for _, tc := range []struct {
		name    string
		advance time.Duration // how far the clock moves before the request
		cached  bool          // wait until the session is read from the client-side cache
		midway  bool          // Redis goes silent during the provider's refresh, not before
	}{
		{name: "fresh token"},
		{name: "fresh token, cached", cached: true},
		{name: "token expired", advance: 2 * time.Minute}, // the request must refresh: lease, reload, save
		{name: "token expired, cached", advance: 2 * time.Minute, cached: true},
		{name: "token expired, during the refresh", advance: 2 * time.Minute, cached: true, midway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			p := redistest.NewProxy(t, srv.Addr)
			up := newUpstream(t)
			e := redisEnv(t, up, p, timeout)
			b := e.browser()
			b.login()
			wantStatus(t, b.api("GET", "/api/x"), 200)
			e.clock.Advance(tc.advance)
			if tc.cached {
				time.Sleep(1200 * time.Millisecond) // past the read-your-writes window
				wantStatus(t, b.api("GET", "/bff/user"), 200)
			}

			defer p.Forward()
			if tc.midway {
				e.idp.Set(func(k *idptest.Knobs) { k.TokenDelay = time.Second })
				go func() { time.Sleep(300 * time.Millisecond); p.Blackhole() }()
			} else {
				p.Blackhole()
			}
			start := time.Now()
			r := b.api("GET", "/api/x")
			d := time.Since(start)
			t.Logf("answered %d in %v", r.StatusCode, d)
			if d > bound {
				t.Errorf("the request took %v with Redis silent, want under %v (store timeout %v)", d, bound, timeout)
			}
			if tc.cached && tc.advance == 0 && r.StatusCode == http.StatusOK {
				return // served from the client-side cache, which Redis's silence does not reach yet
			}
			wantJSONError(t, r, http.StatusServiceUnavailable, "unavailable", "store_unavailable")
			wantRetryAfter(t, r)
		})
	}
}
