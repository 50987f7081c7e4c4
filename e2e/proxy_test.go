package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// checkUpstreamHygiene asserts what every proxied request must look like.
func checkUpstreamHygiene(t *testing.T, h http.Header) {
	t.Helper()
	if c := h.Get("Cookie"); strings.Contains(c, "gatehouse") {
		t.Errorf("the upstream received a gatehouse cookie: %q", c)
	}
	if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") || strings.Contains(h.Get("Authorization"), "forged") {
		t.Errorf("upstream Authorization = %q", h.Get("Authorization"))
	}
	if xff := h.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("upstream X-Forwarded-For = %q (spoofed?)", xff)
	}
	if h.Get("X-Real-Ip") != "" || h.Get("Forwarded") != "" || h.Get("X-Csrf") != "" {
		t.Errorf("spoofable or internal headers reached the upstream: %v", h)
	}
}

func TestE2ERefreshAndBurst(t *testing.T) {
	// 10 s tokens, refreshed 2 s before expiry: a burst would have to last 8 s for a
	// second, legitimate refresh to happen, even with -race on a busy machine.
	s := startStack(t, stackOpts{accessTTL: 10 * time.Second})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)

	hostile := []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Authorization", "Bearer forged",
		"X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6", "Cookie", "other=1"}
	expect(t, b.do("GET", "/api/a", nil, hostile...), 200)
	first := s.api.last(t)
	checkUpstreamHygiene(t, first)
	if first.Get("Authorization") != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatal("the upstream did not get the session's access token")
	}

	// After expiry calls still succeed, with a new token.
	time.Sleep(8500 * time.Millisecond) // inside the 2 s lead of a 10 s token
	s.idp.Reset(t)
	expect(t, b.do("GET", "/api/b", nil, hostile...), 200)
	second := s.api.last(t)
	checkUpstreamHygiene(t, second)
	if second.Get("Authorization") == first.Get("Authorization") {
		t.Fatal("the token was not refreshed near expiry")
	}
	if second.Get("Authorization") != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatal("the upstream did not get the newest token")
	}
	if n := s.idp.Stats(t).TokenRequests["refresh_token"]; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}

	// 200 concurrent calls at the moment of expiry: one refresh at the provider, 200
	// successes. (oidc-provider revokes the whole grant if a rotated refresh token is
	// used twice, so a double refresh would turn into failures here.)
	time.Sleep(8500 * time.Millisecond)
	s.idp.Reset(t)
	before := len(s.api.all())
	const n = 200
	var wg sync.WaitGroup
	failures := make(chan string, n)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", s.gw.URL+"/api/burst", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.c.Do(req)
			if err != nil {
				failures <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failures <- resp.Status
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(failures)
	for f := range failures {
		t.Errorf("burst call failed: %s", f)
	}
	stats := s.idp.Stats(t)
	if got := stats.TokenRequests["refresh_token"]; got != 1 {
		t.Fatalf("%d refresh requests reached the provider during the burst, want exactly 1", got)
	}
	newest := "Bearer " + latestAccessToken(t, s.idp)
	burst := s.api.all()[before:]
	if len(burst) != n {
		t.Fatalf("%d of %d burst calls reached the upstream", len(burst), n)
	}
	for _, h := range burst {
		if h.Get("Authorization") != newest {
			t.Fatal("a burst call carried a token other than the refreshed one")
		}
	}
	t.Logf("burst: %d concurrent calls at expiry, %d refresh at the provider, all 200, %v", n, stats.TokenRequests["refresh_token"], elapsed)
	assertNoSecretLeak(t, s, b)
}

func TestE2ERefreshFailures(t *testing.T) {
	s := startStack(t, stackOpts{accessTTL: 3 * time.Second})

	t.Run("provider down keeps the session", func(t *testing.T) {
		b := newBrowser(t, s.gw.URL)
		expect(t, b.login("alice", "wonderland", "/"), 200)
		expect(t, b.api("GET", "/api/x"), 200)
		time.Sleep(3*time.Second + 200*time.Millisecond) // expired: within the lead the token would still be used
		for _, mode := range []string{harness.Mode503, harness.ModeReset} {
			s.idp.SetTokenEndpointMode(t, mode, 0)
			r := b.api("GET", "/api/x")
			if r.Status != 503 || jsonBody(t, r)["reason"] != "provider_unavailable" {
				t.Fatalf("refresh with the token endpoint in %s mode: %d %s", mode, r.Status, r.Body)
			}
		}
		s.idp.SetTokenEndpointMode(t, harness.ModeNormal, 0)
		if status, _ := b.user(); status != 200 {
			t.Fatal("a provider outage ended the session")
		}
		expect(t, b.api("GET", "/api/x"), 200)
	})

	t.Run("grant revoked at the provider", func(t *testing.T) {
		b := newBrowser(t, s.gw.URL)
		expect(t, b.login("bob", "builder", "/"), 200)
		expect(t, b.api("GET", "/api/x"), 200)
		if n := s.idp.RevokeGrants(t, "bob"); n == 0 {
			t.Fatal("no grant to revoke")
		}
		time.Sleep(2 * time.Second)
		r := b.api("GET", "/api/x")
		if r.Status != 401 || jsonBody(t, r)["reason"] != "refresh_failed" {
			t.Fatalf("after the grant was revoked: %d %s", r.Status, r.Body)
		}
		if status, m := b.user(); status != 401 || m["reason"] != "refresh_failed" {
			t.Fatalf("/bff/user after refresh_failed = %d %v", status, m)
		}
	})
}

func TestE2ERoutes(t *testing.T) {
	s := startStack(t, stackOpts{})
	anon := newBrowser(t, s.gw.URL)

	// token: client works without a user session.
	expect(t, anon.api("GET", "/client/things"), 200)
	if a := s.api.last(t).Get("Authorization"); !strings.HasPrefix(a, "Bearer ") {
		t.Fatalf("client route Authorization = %q", a)
	}
	if n := s.idp.Stats(t).TokenRequests["client_credentials"]; n != 1 {
		t.Fatalf("%d client credentials requests", n)
	}
	expect(t, anon.api("GET", "/api/x"), 401)

	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	// A resource indicator route gets its own JWT access token for that audience.
	expect(t, b.api("GET", "/orders/1"), 200)
	ordersAuth := s.api.last(t).Get("Authorization")
	if strings.Count(ordersAuth, ".") != 2 {
		t.Fatalf("resource route token is not the provider's JWT for the resource: %q", ordersAuth)
	}
	expect(t, b.api("GET", "/api/1"), 200)
	if s.api.last(t).Get("Authorization") == ordersAuth {
		t.Fatal("the main route reused the resource token")
	}
	// Claim rules: alice is in admin; bob is not.
	expect(t, b.api("GET", "/admin-api/x"), 200)
	bob := newBrowser(t, s.gw.URL)
	expect(t, bob.login("bob", "builder", "/"), 200)
	r := bob.api("GET", "/admin-api/x")
	if r.Status != 403 || jsonBody(t, r)["error"] != "forbidden" {
		t.Fatalf("bob on the admin route: %d %s", r.Status, r.Body)
	}

	// Server-sent events stream through unbuffered.
	req, _ := http.NewRequest("GET", s.gw.URL+"/api/events", nil)
	req.Header.Set("X-CSRF", "1")
	start := time.Now()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(resp.Body, 1)
	resp.Body.Close()
	if len(lines) != 1 || lines[0] != "data: tick 0" || time.Since(start) > 300*time.Millisecond {
		t.Fatalf("first SSE event %v after %v", lines, time.Since(start))
	}
	assertNoSecretLeak(t, s, anon, b, bob)
}
