package gatehouse_test

import (
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// groupsOf reads the groups /bff/user reports.
func groupsOf(t *testing.T, b *browser) []any {
	t.Helper()
	r := b.api("GET", "/bff/user")
	wantStatus(t, r, 200)
	m := decode(t, r)
	claims, _ := m["claims"].(map[string]any)
	if claims == nil {
		claims = m
	}
	g, _ := claims["groups"].([]any)
	return g
}

// Claims are as fresh as the tokens: a refresh that returns an ID token replaces the
// claims (with userinfo read again), so a user demoted at the provider loses a route's
// require: at the next refresh, not at the absolute timeout.
func TestRefreshWithIDTokenReplacesClaims(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.IDTokenOnRefresh = true })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/staff/x"), 200)

	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"guest"}} }) // demoted
	wantStatus(t, b.api("GET", "/staff/x"), 200)                                                 // no refresh yet
	e.clock.Advance(2 * time.Minute)
	before := up.count()
	wantJSONError(t, b.api("GET", "/staff/x"), 403, "forbidden", "claims")
	if up.count() != before {
		t.Fatal("the upstream was called for a demoted user")
	}
	if g := groupsOf(t, b); len(g) != 1 || g[0] != "guest" {
		t.Fatalf("groups after the refresh = %v, want [guest]", g)
	}
	wantStatus(t, b.api("GET", "/api/x"), 200) // the session itself lives on

	// Promoted again: the next refresh lets the user in.
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"admin"}} })
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/admin/x"), 200)
}

// Without an ID token on refresh (Google, Cognito, …), a refresh re-reads userinfo once
// the claims are older than provider.claims_max_age.
func TestRefreshReReadsUserinfoAfterClaimsMaxAge(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) { c.Provider.ClaimsMaxAge = 10 * time.Minute })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/staff/x"), 200)
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"guest"}} })
	asked := e.idp.Count("userinfo")
	for range 4 { // refreshes within the max age do not read userinfo
		e.clock.Advance(2 * time.Minute)
		wantStatus(t, b.api("GET", "/staff/x"), 200)
	}
	if e.idp.Count("userinfo") != asked || e.idp.Count("refresh_token") != 4 {
		t.Fatalf("userinfo read %d times, refreshes %d", e.idp.Count("userinfo")-asked, e.idp.Count("refresh_token"))
	}
	e.clock.Advance(2 * time.Minute) // 10 min: the claims are stale at this refresh
	wantJSONError(t, b.api("GET", "/staff/x"), 403, "forbidden", "claims")
	if e.idp.Count("userinfo") != asked+1 {
		t.Fatal("userinfo was not read at the refresh after claims_max_age")
	}

	// A userinfo failure at that point keeps the tokens (and the previous claims).
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = nil; k.UserinfoStatus = 503 })
	e.clock.Advance(11 * time.Minute)
	wantJSONError(t, b.api("GET", "/staff/x"), 403, "forbidden", "claims")
	e.idp.Set(func(k *idptest.Knobs) { k.UserinfoStatus = 0 })
	e.clock.Advance(2 * time.Minute) // claims still stale: read again at this refresh
	wantStatus(t, b.api("GET", "/staff/x"), 200)
}

// A claim that userinfo stops sending altogether is gone after the re-read: the claims
// are rebuilt from the ID token and userinfo, not patched.
func TestClaimGoneFromUserinfoIsGone(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) { c.Provider.ClaimsMaxAge = 5 * time.Minute })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/staff/x"), 200)
	e.idp.Set(func(k *idptest.Knobs) { k.UserinfoOmit = []string{"groups"} }) // removed from every group
	e.clock.Advance(6 * time.Minute)
	wantJSONError(t, b.api("GET", "/staff/x"), 403, "forbidden", "claims")
	if g := groupsOf(t, b); g != nil {
		t.Fatalf("groups = %v after userinfo stopped sending them", g)
	}
}
