package gatehouse_test

import (
	"net/http"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// replicaEnv is a gateway with its sessions in Redis at url, serving p's users: gateways
// made with the same p and Redis are replicas of one deployment.
func replicaEnv(t *testing.T, p *idptest.Provider, up *upstreamRecorder, url string) *env {
	t.Helper()
	st, err := redisstore.Open(t.Context(), redisstore.Options{URL: url, Timeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newEnvProvider(t, p, func(c *gatehouse.Config) {
		c.Session.Store = st
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL}}
	})
}

// A WebSocket open through replica X closes promptly when the user logs out through
// replica Y while X's connections to Redis were silent: the end's message is lost to X,
// but X checks every open tunnel's session again as soon as its subscription is back,
// instead of at the next periodic recheck (a minute).
func TestTunnelClosesAfterLostSubscription(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after time.Duration // silence before and after the logout
		cut           bool          // the silent connections are reset (what they held is lost)
	}{
		{"logout at once, short", 0, time.Second, true},
		{"logout after detection, held", 2 * time.Second, time.Second, false},
		// Long enough for the resubscription backoff to reach its cap; with the former 5 s
		// cap the restore came just after an attempt had started (and is cut), so the
		// socket stayed open for the next attempt, 5 s later.
		{"outage", 3 * time.Second, 14 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			px := redistest.NewProxy(t, srv.Addr)
			p := idptest.New(t)
			up := newUpstream(t)
			x := replicaEnv(t, p, up, px.URL())
			y := replicaEnv(t, p, up, srv.URL)

			bx := x.browser()
			bx.login()
			ws := openTunnel(t, x, bx.cookie("__Host-gatehouse").Value)
			by := &browser{e: y, c: bx.c} // the same browser, its next request reaching Y
			wantStatus(t, by.api("GET", "/bff/user"), http.StatusOK)
			other := x.browser() // another user's session, which stays
			other.login()
			ws2 := openTunnel(t, x, other.cookie("__Host-gatehouse").Value)

			px.Blackhole()
			time.Sleep(tc.before)
			wantStatus(t, by.api("POST", "/bff/logout"), http.StatusOK)
			time.Sleep(tc.after)
			ws.echo("still open: X missed the end")
			if tc.cut {
				px.Cut()
			}
			px.Forward()
			ws.wantClosed(3 * time.Second)
			ws2.echo("the other session's tunnel stays open")
		})
	}
}
