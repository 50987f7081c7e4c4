package gatehouse_test

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// forwardAuthEnv is routesEnv with loopback as a trusted proxy (the ingress), and a
// forward-auth-only route /fa/.
func forwardAuthEnv(t *testing.T, up *upstreamRecorder, mutate ...func(*gatehouse.Config)) *env {
	return routesEnv(t, up, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/fa/", Methods: []string{"GET", "POST"}})
	}}, mutate...)...)
}

// The headers a browser's SPA call carries, which the ingress passes on.
func spaHeaders(e *env) []string {
	return []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors", "Origin", e.url, "Accept", "application/json"}
}

func with(h []string, more ...string) []string { return append(append([]string(nil), h...), more...) }

// currentToken is the newest access token the fake provider issued.
func currentToken(e *env) string {
	tokens := e.idp.AccessTokens()
	return tokens[len(tokens)-1]
}

func TestForwardAuthRequestShapes(t *testing.T) {
	up := newUpstream(t)
	e := forwardAuthEnv(t, up)
	b := e.browser()
	b.login()
	host := strings.TrimPrefix(e.url, "http://")
	for _, tc := range []struct {
		name, method, target string
		headers              []string
	}{
		{"nginx", "GET", "/bff/auth", []string{"X-Original-Method", "GET", "X-Original-URI", "/api/orders?limit=2"}},
		{"nginx POST original", "GET", "/bff/auth", []string{"X-Original-Method", "POST", "X-Original-URI", "/api/orders"}},
		{"ingress-nginx", "GET", "/bff/auth", []string{"X-Original-Method", "POST", "X-Original-URL", e.url + "/api/orders?x=1"}},
		{"traefik", "GET", "/bff/auth", []string{"X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/api/orders/7",
			"X-Forwarded-Host", host, "X-Forwarded-Proto", "http"}},
		// Caddy: the same convention; its subrequest keeps the browser's Origin only.
		{"caddy", "GET", "/bff/auth", []string{"X-Forwarded-Method", "PUT", "X-Forwarded-Uri", "/api/orders/7?x=%2F",
			"X-Forwarded-Host", host, "X-Forwarded-Proto", "http", "Sec-Fetch-Site", ""}},
		{"envoy", "PATCH", "/bff/auth/api/orders/7?x=1", nil},
		{"forward-auth-only route", "GET", "/bff/auth", []string{"X-Original-Method", "POST", "X-Original-URI", "/fa/thing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := b.do(tc.method, tc.target, nil, with(spaHeaders(e), tc.headers...)...)
			wantStatus(t, r, http.StatusOK)
			if got := r.Header.Get("Authorization"); got != "Bearer "+currentToken(e) {
				t.Fatalf("Authorization = %q, want the session's token", got)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.Header.Get("Cache-Control"))
			}
			if up.count() != before {
				t.Fatal("forward-auth forwarded the request itself")
			}
		})
	}
	// A route without a token: 200 and no Authorization.
	r := b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/open")...)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("Authorization") != "" {
		t.Fatal("a token: none route got a token")
	}
}

func TestForwardAuthRefusals(t *testing.T) {
	up := newUpstream(t)
	e := forwardAuthEnv(t, up)
	b := e.browser()
	b.login()
	nginx := func(method, uri string) []string { return []string{"X-Original-Method", method, "X-Original-URI", uri} }
	for _, tc := range []struct {
		name, method, target string
		headers              []string
		status               int
		code, reason         string
	}{
		{"POST original without X-CSRF", "GET", "/bff/auth", with([]string{"Sec-Fetch-Site", "same-origin"}, nginx("POST", "/api/x")...), 403, "csrf_rejected", "missing_header"},
		{"GET original without X-CSRF", "GET", "/bff/auth", with([]string{"Sec-Fetch-Site", "same-origin"}, nginx("GET", "/api/x")...), 403, "csrf_rejected", "missing_header"},
		{"foreign Origin", "GET", "/bff/auth", with([]string{"X-CSRF", "1", "Origin", "https://evil.example"}, nginx("POST", "/api/x")...), 403, "csrf_rejected", "cross_origin"},
		{"cross-site fetch, traefik", "GET", "/bff/auth", []string{"X-CSRF", "1", "Sec-Fetch-Site", "cross-site", "X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/api/x"}, 403, "csrf_rejected", "cross_origin"},
		{"foreign Origin, envoy", "POST", "/bff/auth/api/x", []string{"X-CSRF", "1", "Origin", "https://evil.example"}, 403, "csrf_rejected", "cross_origin"},
		{"path under no route", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/nowhere")...), 403, "forbidden", "no_route"},
		{"the frontend", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/")...), 403, "forbidden", "no_route"},
		{"gatehouse's own endpoints", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/bff/user")...), 403, "forbidden", "no_route"},
		{"dot segments out of a route", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/api/../nowhere")...), 403, "forbidden", "no_route"},
		{"encoded dot segments", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/api/%2e%2e/nowhere")...), 403, "forbidden", "no_route"},
		{"dot segment with parameters", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/api/..;/nowhere")...), 403, "forbidden", "no_route"},
		{"envoy dot segments", "GET", "/bff/auth/api/../nowhere", spaHeaders(e), 403, "forbidden", "no_route"},
		// Out of /bff/auth itself: not a forward-auth request at all.
		{"envoy dot segments out of /bff/auth", "GET", "/bff/auth/api/../../bff/user", spaHeaders(e), 404, "not_found", ""},
		{"method the route refuses", "GET", "/bff/auth", with(spaHeaders(e), nginx("POST", "/ro/x")...), 405, "method_not_allowed", ""},
		{"claim rule", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "/api/admin/users")...), 403, "forbidden", "claims"},
		{"a browser's X-Original-URI through traefik", "GET", "/bff/auth", with(spaHeaders(e), "X-Original-URI", "/api/x", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/admin/users"), 400, "bad_request", "forward_auth_ambiguous"},
		{"a browser's X-Forwarded-Uri through envoy", "GET", "/bff/auth/api/admin/users", with(spaHeaders(e), "X-Forwarded-Uri", "/api/x"), 400, "bad_request", "forward_auth_ambiguous"},
		{"no original URI", "GET", "/bff/auth", spaHeaders(e), 400, "bad_request", "forward_auth_original_uri"},
		{"no original method", "GET", "/bff/auth", with(spaHeaders(e), "X-Original-URI", "/api/x"), 400, "bad_request", "forward_auth_original_uri"},
		{"absolute original URI", "GET", "/bff/auth", with(spaHeaders(e), nginx("GET", "http://evil.example/api/x")...), 400, "bad_request", "forward_auth_original_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(tc.method, tc.target, nil, tc.headers...)
			wantJSONError(t, r, tc.status, tc.code, tc.reason)
			if r.Header.Get("Authorization") != "" {
				t.Fatal("a refusal carried a token")
			}
		})
	}
	if up.count() != 0 {
		t.Fatal("forward-auth forwarded a request")
	}
	// Same path, proxied directly: the forward-auth-only route is never proxied.
	wantJSONError(t, b.api("GET", "/fa/thing"), 404, "not_found", "forward_auth_only")
}

func TestForwardAuthUntrustedPeerIsIgnored(t *testing.T) {
	up := newUpstream(t)
	e := forwardAuthEnv(t, up, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	b := e.browser()
	b.login()
	for name, h := range map[string][]string{
		"nginx":   {"X-Original-Method", "GET", "X-Original-URI", "/api/x"},
		"traefik": {"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/x", "X-Forwarded-Host", "x", "X-Forwarded-Proto", "https"},
		"envoy":   nil,
	} {
		t.Run(name, func(t *testing.T) {
			target := "/bff/auth"
			if h == nil {
				target = "/bff/auth/api/x"
			}
			r := b.do("GET", target, nil, with(spaHeaders(e), h...)...)
			wantJSONError(t, r, 400, "bad_request", "forward_auth_untrusted")
			if r.Header.Get("Authorization") != "" {
				t.Fatal("an untrusted peer got a token")
			}
		})
	}
}

func TestForwardAuthNoSession(t *testing.T) {
	up := newUpstream(t)
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document", "Sec-Fetch-Site", "none", "Accept", "text/html"}
	t.Run("401 JSON with login_url", func(t *testing.T) {
		e := forwardAuthEnv(t, up)
		b := e.browser()
		r := b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/api/x")...)
		wantJSONError(t, r, 401, "unauthenticated", "no_session")
		if m := decode(t, r); m["login_url"] != "/bff/login" {
			t.Fatalf("body %v: no login_url", m)
		}
		// Without redirect_navigations a navigation gets the same 401 JSON.
		r = b.do("GET", "/bff/auth", nil, with(nav, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/page")...)
		wantJSONError(t, r, 401, "unauthenticated", "no_session")
	})
	t.Run("redirect_navigations", func(t *testing.T) {
		e := forwardAuthEnv(t, up, func(c *gatehouse.Config) { c.ForwardAuth.RedirectNavigations = true })
		b := e.browser()
		want := "/bff/login?returnUrl=" + url.QueryEscape("/api/page?a=1&b=2")
		r := b.do("GET", "/bff/auth", nil, with(nav, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/page?a=1&b=2")...)
		wantStatus(t, r, http.StatusFound)
		if loc := r.Header.Get("Location"); loc != want {
			t.Fatalf("Location = %q, want %q", loc, want)
		}
		// nginx's auth_request cannot pass a redirect on: 401.
		r = b.do("GET", "/bff/auth", nil, with(nav, "X-Original-Method", "GET", "X-Original-URI", "/api/page?a=1&b=2")...)
		wantJSONError(t, r, 401, "unauthenticated", "no_session")
		// The return URL is checked as /bff/login checks it.
		r = b.do("GET", "/bff/auth", nil, with(nav, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "//evil.example/x")...)
		if r.StatusCode == http.StatusOK || strings.Contains(r.Header.Get("Location"), "evil") {
			t.Fatalf("%d Location %q", r.StatusCode, r.Header.Get("Location"))
		}
		// API calls still get 401 JSON; so does nginx without a navigation.
		r = b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/x")...)
		wantJSONError(t, r, 401, "unauthenticated", "no_session")
		r = b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/api/x")...)
		wantJSONError(t, r, 401, "unauthenticated", "no_session")
	})
}

func TestForwardAuthClaimsAndLogout(t *testing.T) {
	up := newUpstream(t)
	e := forwardAuthEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"admin"}} })
	b := e.browser()
	b.login()
	h := with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/api/admin/users")
	wantStatus(t, b.do("GET", "/bff/auth", nil, h...), http.StatusOK)
	wantStatus(t, b.do("POST", "/bff/logout", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin"), http.StatusSeeOther)
	wantJSONError(t, b.do("GET", "/bff/auth", nil, h...), 401, "unauthenticated", "")
}

func TestForwardAuthOnlyRouteConfig(t *testing.T) {
	base := gatehouse.Config{
		PublicURL: "https://app.example.com",
		Provider:  gatehouse.ProviderConfig{Issuer: "https://id.example.com", ClientID: "bff", ClientSecret: "s"},
		Routes:    []gatehouse.Route{{Path: "/api/"}},
	}
	err := base.Validate()
	if err == nil || !strings.Contains(err.Error(), "routes[0].upstream: is required unless trusted_proxies") {
		t.Fatalf("a route without upstream and no trusted proxy: %v", err)
	}
	ok := base
	ok.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a forward-auth-only route: %v", err)
	}
	dpop := ok
	dpop.Routes = []gatehouse.Route{{Path: "/api/", DPoP: true}}
	if err := dpop.Validate(); err == nil || !strings.Contains(err.Error(), "routes[0].dpop: needs an upstream") {
		t.Fatalf("a forward-auth-only dpop route: %v", err)
	}
}

func TestForwardAuthObserved(t *testing.T) {
	up := newUpstream(t)
	access := &testutil.SyncBuffer{}
	e := forwardAuthEnv(t, up, func(c *gatehouse.Config) { c.AccessLogger = slog.New(slog.NewJSONHandler(access, nil)) })
	b := e.browser()
	b.login()
	wantStatus(t, b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/api/orders")...), 200)
	wantStatus(t, b.do("GET", "/bff/auth", nil, "X-Original-Method", "POST", "X-Original-URI", "/api/orders", "Origin", "https://evil.example"), 403)

	lines := jsonLines(t, access.String())
	last := lines[len(lines)-2:]
	for i, want := range []float64{200, 403} {
		m := last[i]
		if m["kind"] != "auth" || m["route"] != "/api/" || m["status"] != want || m["path"] != "/bff/auth" || m["session"] == nil {
			t.Errorf("access line %v, want kind auth, route /api/, status %v, the session", m, want)
		}
	}
	metrics := scrape(t, e)
	for _, want := range []string{
		`gatehouse_http_requests_seconds_count{kind="auth",method="GET",status="200"} 1`,
		`gatehouse_http_requests_seconds_count{kind="auth",method="GET",status="403"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The refusal is audited as the proxy's is, with the route and the original request.
	var found bool
	for _, m := range jsonLines(t, e.audit.String()) {
		if m["event"] == "csrf_rejected" && m["route"] == "/api/" && m["reason"] == "missing_header" {
			found = true
		}
	}
	if !found {
		t.Errorf("no csrf_rejected audit event for the route:\n%s", e.audit.String())
	}
}

// A route's acr rule asks for the step-up through forward-auth as through the proxy, and
// the step-up's login returns to the page that made the call.
func TestForwardAuthStepUp(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "silver"} }, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Routes = []gatehouse.Route{{Path: "/pay/", Require: []gatehouse.Rule{{ACR: []string{"gold"}}}}}
	})
	b := e.browser()
	b.login()
	h := with(spaHeaders(e), "X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/pay/now",
		"X-Forwarded-Host", strings.TrimPrefix(e.url, "http://"), "Referer", e.url+"/checkout?step=2")
	r := b.do("GET", "/bff/auth", nil, h...)
	wantJSONError(t, r, http.StatusUnauthorized, "step_up_required", "insufficient_user_authentication")
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_user_authentication", acr_values="gold"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if m := decode(t, r); !strings.Contains(m["login_url"].(string), "returnUrl="+url.QueryEscape("/checkout?step=2")) {
		t.Fatalf("step-up login_url %v", m["login_url"])
	}
	if r.Header.Get("Authorization") != "" {
		t.Fatal("a step-up answer carried a token")
	}
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"acr": "gold"} })
	b.login()
	wantStatus(t, b.do("GET", "/bff/auth", nil, h...), http.StatusOK)
}

// A token due for refresh is refreshed by /bff/auth, and the ingress gets the new one.
func TestForwardAuthRefreshes(t *testing.T) {
	up := newUpstream(t)
	e := forwardAuthEnv(t, up)
	b := e.browser()
	b.login()
	h := with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/api/x")
	first := b.do("GET", "/bff/auth", nil, h...).Header.Get("Authorization")
	e.clock.Advance(2 * time.Minute)
	r := b.do("GET", "/bff/auth", nil, h...)
	wantStatus(t, r, http.StatusOK)
	if got := r.Header.Get("Authorization"); got == first || got != "Bearer "+currentToken(e) {
		t.Fatalf("after expiry Authorization = %q (before %q), want the refreshed token", got, first)
	}
}

// TestForwardAuthIdentity: /bff/auth answers an identity route's headers and assertion
// beside Authorization, for the ingress to copy upstream; a forward-auth-only route's
// assertion is for public_url + path; without a session none is set.
func TestForwardAuthIdentity(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.Claims = identityClaims }, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Routes = []gatehouse.Route{{Path: "/grafana/", Token: gatehouse.TokenUserOrNone, Identity: &gatehouse.RouteIdentity{
			Headers: map[string]string{"X-User": "preferred_username", "X-Groups": "groups"}, Assertion: true,
		}}}
	})
	ask := func(b *browser) *resp {
		return b.do("GET", "/bff/auth", nil, with(spaHeaders(e), "X-Original-Method", "GET", "X-Original-URI", "/grafana/d/1")...)
	}
	anon := ask(e.browser())
	wantStatus(t, anon, http.StatusOK)
	if anon.Header.Get("X-User") != "" || anon.Header.Get(gatehouse.AssertionHeader) != "" {
		t.Fatalf("identity without a session: %v", anon.Header)
	}
	b := e.browser()
	b.login()
	r := ask(b)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("X-User") != "alice.smith" || r.Header.Get("X-Groups") != "staff,admin" {
		t.Fatalf("identity headers: %v", r.Header)
	}
	set, _ := fetchJWKS(t, e)
	c, _, err := verifyAssertion(t, set, r.Header.Get(gatehouse.AssertionHeader), e.url, e.url+"/grafana/", e.clock.Now())
	if err != nil || c.Subject != "alice" || c.PreferredUsername != "alice.smith" {
		t.Fatalf("assertion: %v %+v", err, c)
	}
}
