package gatehouse_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

func TestRefreshAtExpiry(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.AccessTokenTTL = 5 * time.Minute; k.RotateRefresh = true })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/a"), 200)
	first := up.last(t).Auth

	// Well before expiry: no refresh.
	e.clock.Advance(4 * time.Minute)
	wantStatus(t, b.api("GET", "/api/a"), 200)
	if up.last(t).Auth != first || e.idp.Count("refresh_token") != 0 {
		t.Fatal("refreshed before the lead time")
	}
	// Within the 30 s lead of expiry: refreshed once, the upstream sees the new token.
	e.clock.Advance(40 * time.Second)
	wantStatus(t, b.api("GET", "/api/a"), 200)
	second := up.last(t).Auth
	if second == first || e.idp.Count("refresh_token") != 1 {
		t.Fatalf("no refresh near expiry (refreshes=%d)", e.idp.Count("refresh_token"))
	}
	tokens := e.idp.AccessTokens()
	if second != "Bearer "+tokens[len(tokens)-1] {
		t.Fatal("the upstream did not get the newest token")
	}
	wantStatus(t, b.api("GET", "/api/a"), 200)
	if e.idp.Count("refresh_token") != 1 {
		t.Fatal("refreshed again with a fresh token")
	}
	// Rotation: the next refresh must use the rotated refresh token (the fake revokes
	// each one after use), and keeps working.
	for range 3 {
		e.clock.Advance(5 * time.Minute)
		wantStatus(t, b.api("GET", "/api/a"), 200)
	}
	if e.idp.Count("refresh_token") != 4 {
		t.Fatalf("refreshes = %d, want 4", e.idp.Count("refresh_token"))
	}
	// Sliding: active use kept the session alive past the idle timeout (30 m).
	e.clock.Advance(20 * time.Minute)
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

func TestConcurrentCallsRefreshOnce(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) {
		k.AccessTokenTTL = time.Minute
		k.RotateRefresh = true
		k.TokenDelay = 100 * time.Millisecond // widen the window for a double refresh
	})
	b := e.browser()
	b.login()
	e.clock.Advance(2 * time.Minute)

	const n = 200
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.url+"/api/burst", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("call %d got %d", i, s)
		}
	}
	if got := e.idp.Count("refresh_token"); got != 1 {
		t.Fatalf("%d refresh requests reached the provider, want exactly 1", got)
	}
	tokens := e.idp.AccessTokens()
	newest := "Bearer " + tokens[len(tokens)-1]
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, s := range up.reqs {
		if s.Path == "/api/burst" && s.Auth != newest {
			t.Fatalf("a burst request used %q, not the refreshed token", s.Auth)
		}
	}
}

func TestRefreshRefusedEndsSession(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	e.idp.RevokeAll()
	e.clock.Advance(2 * time.Minute)
	before := up.count()
	wantJSONError(t, b.api("GET", "/api/x"), 401, "unauthenticated", "refresh_failed")
	if up.count() != before {
		t.Fatal("the upstream was called without a valid token")
	}
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "")

	// Dex answers invalid_request (400) rather than invalid_grant: same outcome.
	e2 := routesEnv(t, up)
	b2 := e2.browser()
	b2.login()
	e2.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_request" })
	e2.clock.Advance(2 * time.Minute)
	wantJSONError(t, b2.api("GET", "/api/x"), 401, "unauthenticated", "refresh_failed")
	wantJSONError(t, b2.api("GET", "/bff/user"), 401, "unauthenticated", "refresh_failed")
}

func TestProviderDownDuringRefreshKeepsSession(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	e.clock.Advance(2 * time.Minute)
	for _, status := range []int{500, 503} {
		e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = status, "temporarily_unavailable" })
		wantJSONError(t, b.api("GET", "/api/x"), 503, "unavailable", "provider_unavailable")
	}
	wantStatus(t, b.api("GET", "/bff/user"), 200)
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus = 0 })
	wantStatus(t, b.api("GET", "/api/x"), 200)

	// Unreachable altogether.
	e.idp.Server.CloseClientConnections()
	e.clock.Advance(2 * time.Minute)
	e.idp.Server.Listener.Close()
	wantJSONError(t, b.api("GET", "/api/x"), 503, "unavailable", "provider_unavailable")
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

func TestLowercaseBearerAndShortTokens(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	// Dex says "bearer"; 10-second tokens must not be refreshed on every request even
	// though the lead time is 30 s.
	e.idp.Set(func(k *idptest.Knobs) { k.TokenType = "bearer"; k.AccessTokenTTL = 10 * time.Second })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	wantStatus(t, b.api("GET", "/api/x"), 200)
	if e.idp.Count("refresh_token") != 0 {
		t.Fatalf("a fresh 10 s token was refreshed %d times", e.idp.Count("refresh_token"))
	}
	e.clock.Advance(6 * time.Second)
	wantStatus(t, b.api("GET", "/api/x"), 200)
	if e.idp.Count("refresh_token") != 1 {
		t.Fatal("a 10 s token past half its life was not refreshed")
	}
}

func TestNoRefreshTokenSessionEndsWithAccessToken(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.NoRefreshToken = true })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	e.clock.Advance(45 * time.Second) // inside the lead, not expired: keep using it
	wantStatus(t, b.api("GET", "/api/x"), 200)
	e.clock.Advance(20 * time.Second)
	wantJSONError(t, b.api("GET", "/api/x"), 401, "unauthenticated", "session_expired")
}

func TestAudienceTokens(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/orders/", Upstream: up.srv.URL, Resource: "https://orders.example"})
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/orders/1"), 200)
	ordersTok := up.last(t).Auth
	wantStatus(t, b.api("GET", "/api/1"), 200)
	mainTok := up.last(t).Auth
	if ordersTok == mainTok || e.idp.Count("refresh_token") != 1 {
		t.Fatalf("the resource route did not get its own token (refreshes=%d)", e.idp.Count("refresh_token"))
	}
	wantStatus(t, b.api("GET", "/orders/2"), 200)
	if up.last(t).Auth != ordersTok || e.idp.Count("refresh_token") != 1 {
		t.Fatal("the resource token was not cached in the session")
	}
}

func TestNoTokenInResponsesOrLogs(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.RotateRefresh = true })
	b := e.browser()
	b.login()
	b.api("GET", "/api/x")
	e.clock.Advance(2 * time.Minute)
	b.api("GET", "/api/x")
	b.api("GET", "/bff/user")
	b.api("GET", "/bff/sessions")
	cookie := b.cookie("__Host-gatehouse").Value
	b.api("POST", "/bff/logout")
	logs := e.logs.String() + e.audit.String()
	secrets := append(e.idp.AccessTokens(), cookie, e.idp.ClientSecret)
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain a secret (%.8s…)", s)
		}
		for _, body := range e.bodies {
			if strings.Contains(body, s) && s != cookie {
				t.Errorf("a response contains a secret (%.8s…)", s)
			}
		}
	}
	if !strings.Contains(logs, `"msg":"login"`) {
		t.Fatal("the log check saw no logs at all")
	}
}

func TestAudienceRefusedKeepsSession(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/orders/", Upstream: up.srv.URL, Resource: "https://orders.example"})
	})
	b := e.browser()
	r := b.get("/bff/login")
	if !strings.Contains(r.Header.Get("Location"), "resource=https%3A%2F%2Forders.example") {
		t.Fatalf("the authorization request does not name the route's resource: %s", r.Header.Get("Location"))
	}
	b.login()
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_target" })
	wantJSONError(t, b.api("GET", "/orders/1"), 502, "bad_gateway", "audience_refused")
	wantStatus(t, b.api("GET", "/bff/user"), 200)
	wantStatus(t, b.api("GET", "/api/1"), 200)
}

// Inside the refresh lead the current token still works: a refresh that fails for a
// passing reason (5xx, 429, a timeout) does not fail the request, which gets the current
// token; once that token has really expired, the failure is the answer.
func TestRefreshFailureInsideLeadUsesCurrentToken(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.AccessTokenTTL = time.Minute })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	first := up.last(t).Auth

	e.clock.Advance(40 * time.Second) // inside the 30 s lead, 20 s before expiry
	for _, status := range []int{500, 503, 429} {
		e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = status, "temporarily_unavailable" })
		wantStatus(t, b.api("GET", "/api/x"), 200)
		if got := up.last(t).Auth; got != first {
			t.Fatalf("refresh failing with %d: the upstream got %q, want the current token", status, got)
		}
	}
	if n := e.idp.Count("refresh_token"); n < 3 {
		t.Fatalf("%d refresh attempts, want one per request inside the lead", n)
	}

	e.clock.Advance(25 * time.Second) // expired now
	before := up.count()
	wantJSONError(t, b.api("GET", "/api/x"), 503, "unavailable", "provider_unavailable")
	if up.count() != before {
		t.Fatal("the upstream was called with an expired token")
	}

	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus = 0 })
	wantStatus(t, b.api("GET", "/api/x"), 200)
	if up.last(t).Auth == first {
		t.Fatal("no refresh once the provider answered again")
	}
}
