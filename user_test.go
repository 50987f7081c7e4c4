package gatehouse_test

import (
	"testing"
	"time"
)

func TestUserSlidesIdleTimeout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	e.clock.Advance(10 * time.Minute)
	idle := func(slide bool) float64 {
		q := ""
		if !slide {
			q = "?slide=false"
		}
		return decode(t, b.api("GET", "/bff/user"+q))["session"].(map[string]any)["idle_expires_in"].(float64)
	}
	if got := idle(false); got != 20*60 {
		t.Fatalf("idle_expires_in without sliding = %v, want 1200", got)
	}
	if got := idle(true); got != 30*60 {
		t.Fatalf("idle_expires_in after sliding = %v, want the full 1800", got)
	}
	if got := idle(false); got != 30*60 {
		t.Fatalf("the slide was not saved: %v", got)
	}
}

func TestUserRefusesOtherOrigins(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login()
	before := decode(t, b.api("GET", "/bff/user?slide=false"))["session"].(map[string]any)["idle_expires_in"]
	e.clock.Advance(5 * time.Minute)
	// A page on a sibling origin of the same site (or another site) cannot slide the
	// session through /bff/user, nor list sessions.
	for _, site := range []string{"same-site", "cross-site"} {
		wantJSONError(t, b.get("/bff/user", "Sec-Fetch-Site", site, "Sec-Fetch-Mode", "cors"), 403, "csrf_rejected", "cross_origin")
		wantJSONError(t, b.get("/bff/sessions", "Sec-Fetch-Site", site, "Sec-Fetch-Mode", "cors"), 403, "csrf_rejected", "cross_origin")
	}
	wantJSONError(t, b.get("/bff/user", "Origin", "http://evil.example"), 403, "csrf_rejected", "cross_origin")
	after := decode(t, b.api("GET", "/bff/user?slide=false"))["session"].(map[string]any)["idle_expires_in"]
	if after.(float64) != before.(float64)-300 {
		t.Fatalf("idle_expires_in went from %v to %v: a refused request slid the session", before, after)
	}
	wantStatus(t, b.get("/bff/user"), 200) // no fetch metadata (curl, old clients): allowed
}
