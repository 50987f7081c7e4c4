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

// aclUser makes a Redis user name with password pw allowed everything, then denied the
// commands of deny (ACL SETUSER), and returns its redis:// URL.
func aclUser(t *testing.T, srv *redistest.Server, name, pw string, deny ...string) string {
	t.Helper()
	args := []string{"ACL", "SETUSER", name, "on", ">" + pw, "~*", "&*", "+@all"}
	for _, c := range deny {
		args = append(args, "-"+c)
	}
	srv.Do(t, args...)
	return "redis://" + name + ":" + pw + "@" + srv.Addr + "/0"
}

// A logout through replica Y whose announcement failed (Redis refused Y's PUBLISH for a
// moment; every subscription stayed healthy, so nothing made X look) still closes the
// WebSocket X holds, once Y can publish again: Y publishes the end again until it goes
// through. Before, the socket stayed open until X's next periodic check (the token's
// expiry or a minute).
func TestTunnelClosesAfterFailedPublish(t *testing.T) {
	srv := redistest.Start(t)
	p := idptest.New(t)
	up := newUpstream(t)
	x := replicaEnv(t, p, up, srv.URL)
	y := replicaEnv(t, p, up, aclUser(t, srv, "replica-y", "y-password", "publish"))

	bx := x.browser()
	bx.login()
	ws := openTunnel(t, x, bx.cookie("__Host-gatehouse").Value)
	by := &browser{e: y, c: bx.c}
	wantStatus(t, by.api("POST", "/bff/logout"), http.StatusOK)
	time.Sleep(time.Second)
	ws.echo("still open: the end was not announced")
	srv.Do(t, "ACL", "SETUSER", "replica-y", "+publish")
	ws.wantClosed(2 * time.Second)
	wantStatus(t, bx.api("GET", "/bff/user"), http.StatusUnauthorized)
}

// X lost its subscription while Y ended a session, and the check of every socket that X
// makes once subscribed again met a store that was not answering yet (here Redis refusing
// X's reads: after a failover, the new primary took the subscription while reads still
// failed). The next check comes a second later, not five: the socket closes within about
// a second of the store answering X again.
func TestTunnelRecheckRetriesSoon(t *testing.T) {
	srv := redistest.Start(t)
	p := idptest.New(t)
	up := newUpstream(t)
	x := replicaEnv(t, p, up, aclUser(t, srv, "replica-x", "x-password"))
	y := replicaEnv(t, p, up, srv.URL)

	bx := x.browser()
	bx.login()
	ws := openTunnel(t, x, bx.cookie("__Host-gatehouse").Value)
	by := &browser{e: y, c: bx.c}
	wantStatus(t, by.api("GET", "/bff/user"), http.StatusOK)

	// X's subscription is cut and cannot be made again; Y's end is lost to X.
	srv.Do(t, "ACL", "SETUSER", "replica-x", "-subscribe")
	srv.Do(t, "CLIENT", "KILL", "USER", "replica-x")
	time.Sleep(300 * time.Millisecond)
	wantStatus(t, by.api("POST", "/bff/logout"), http.StatusOK)
	// X subscribes again (within its 1 s backoff) and checks its sockets: the reads fail.
	srv.Do(t, "ACL", "SETUSER", "replica-x", "+subscribe", "-get")
	time.Sleep(1500 * time.Millisecond)
	ws.echo("still open: X could not read the session")
	srv.Do(t, "ACL", "SETUSER", "replica-x", "+get")
	ws.wantClosed(2 * time.Second)
}
