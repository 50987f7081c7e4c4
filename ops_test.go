package gatehouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// auditEvents parses the audit log.
func (e *env) auditEvents() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("audit line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// wantAudit finds the last event named ev whose fields include want.
func (e *env) wantAudit(ev string, want map[string]any) map[string]any {
	e.t.Helper()
	evs := e.auditEvents()
	for i := len(evs) - 1; i >= 0; i-- {
		m := evs[i]
		if m["event"] != ev || m["msg"] != ev {
			continue
		}
		ok := true
		for k, v := range want {
			if m[k] != v {
				ok = false
			}
		}
		if ok {
			if _, has := m["time"]; !has {
				e.t.Fatalf("audit event %s has no time: %v", ev, m)
			}
			return m
		}
	}
	e.t.Fatalf("no audit event %s with %v; audit log:\n%s", ev, want, e.audit.String())
	return nil
}

func TestAuditLog(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) { c.Admin.Token = "admin-token-123" })
	e.idp.Set(func(k *idptest.Knobs) { k.RotateRefresh = true })
	b := e.browser()
	ua := "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"
	b.get("/bff/login", "User-Agent", ua)
	e.wantAudit("login_started", map[string]any{"ip": "127.0.0.1", "user_agent": ua})

	b.login()
	sid := decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	e.wantAudit("login_succeeded", map[string]any{"subject": "alice", "session": sid, "ip": "127.0.0.1"})

	// A callback whose state no flow knows.
	b.get("/bff/callback?code=x&state=nope")
	e.wantAudit("login_failed", map[string]any{"reason": "login_no_flow"})
	// The provider refuses.
	e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "access_denied" })
	b2 := e.browser()
	b2.get(b2.startLogin("/"))
	e.idp.Set(func(k *idptest.Knobs) { k.AuthorizeError = "" })
	e.wantAudit("login_failed", map[string]any{"reason": "provider_access_denied"})

	// A back-channel logout of another provider session (the fake provider's tokens
	// are dated by the real clock: before the test clock moves).
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "bc-session" })
	e.browser().login()
	e.idp.Set(func(k *idptest.Knobs) { k.SID = "" })
	wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "bc-session", "", nil)), 200)
	e.wantAudit("backchannel_logout", map[string]any{"outcome": "accepted", "subject": "alice", "sessions_ended": float64(1)})
	e.backchannel("not-a-jwt")
	e.wantAudit("backchannel_logout", map[string]any{"outcome": "rejected"})

	b.do("GET", "/api/x", nil) // no CSRF header
	e.wantAudit("csrf_rejected", map[string]any{"route": "/api/", "reason": "missing_header", "subject": "alice", "session": sid})
	b.api("GET", "/api/admin/x")
	e.wantAudit("route_denied", map[string]any{"route": "/api/admin/", "reason": "claims", "subject": "alice"})

	e.clock.Advance(2 * time.Minute) // the access token expired
	wantStatus(t, b.api("GET", "/api/x"), 200)
	e.wantAudit("refresh_succeeded", map[string]any{"subject": "alice", "session": sid, "token": "session"})

	// Another device; the first revokes it.
	other := e.browser()
	other.login()
	otherSID := decode(t, other.api("GET", "/bff/user"))["sid"].(string)
	wantStatus(t, b.api("DELETE", "/bff/sessions/"+otherSID), 204)
	e.wantAudit("session_revoked", map[string]any{"session": otherSID, "by": "user", "subject": "alice"})

	// An admin ends the session of a third device.
	third := e.browser()
	third.login()
	thirdSID := decode(t, third.api("GET", "/bff/user"))["sid"].(string)
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	req, _ := http.NewRequest("DELETE", admin.URL+"/admin/sessions/"+thirdSID, nil)
	req.Header.Set("Authorization", "Bearer admin-token-123")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 204 {
		t.Fatalf("admin delete: %v %v", r, err)
	}
	e.wantAudit("session_revoked", map[string]any{"session": thirdSID, "by": "admin", "subject": "alice"})
	req, _ = http.NewRequest("GET", admin.URL+"/admin/sessions?sub=alice", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	http.DefaultClient.Do(req)
	e.wantAudit("admin_denied", map[string]any{"route": "/admin/sessions"})

	// The provider refuses the refresh: the session ends.
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_grant" })
	e.clock.Advance(2 * time.Minute)
	wantJSONError(t, b.api("GET", "/api/x"), 401, "unauthenticated", "refresh_failed")
	e.wantAudit("refresh_failed", map[string]any{"reason": "refused", "session": sid})
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 0, "" })

	// Logout, back-channel logout, idle expiry.
	b.login()
	sid = decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	e.wantAudit("logout", map[string]any{"session": sid, "subject": "alice"})

	b.login()
	sid = decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	e.clock.Advance(31 * time.Minute)
	wantJSONError(t, b.api("GET", "/bff/user"), 401, "unauthenticated", "session_expired")
	e.wantAudit("session_expired", map[string]any{"session": sid})

	// Nothing secret, ever.
	log := e.audit.String()
	for _, s := range append(e.idp.AccessTokens(), e.idp.ClientSecret, "admin-token-123") {
		if strings.Contains(log, s) {
			t.Errorf("the audit log contains a secret (%.8s…)", s)
		}
	}
	if regexp.MustCompile(`"code"|__Host-gatehouse=|refresh_token"`).MatchString(log) {
		t.Error("the audit log has a code, cookie or token field")
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 6, Burst: 3}
		c.RateLimits.Callback = gatehouse.RateLimit{PerMinute: 60, Burst: 2}
		c.RateLimits.Sessions = gatehouse.RateLimit{PerMinute: 60, Burst: 2}
		c.RateLimits.Admin = gatehouse.RateLimit{PerMinute: 60, Burst: 2}
		c.Admin.Token = "admin-token-123"
	})
	b := e.browser()
	for i := 0; i < 3; i++ {
		wantStatus(t, b.get("/bff/login"), 302)
	}
	r := b.get("/bff/login", "Accept", "application/json")
	wantJSONError(t, r, 429, "rate_limited", "login")
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
		t.Fatalf("Retry-After = %q, want about 10 s (6/min)", r.Header.Get("Retry-After"))
	}
	// A person gets a page, not JSON.
	page := b.get("/bff/login", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
	if page.StatusCode != 429 || !strings.Contains(page.body, "Too many requests") {
		t.Fatalf("page = %d %q", page.StatusCode, page.body)
	}
	// A spoofed X-Forwarded-For from an untrusted peer changes nothing.
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "198.51.100.1"), 429)
	e.wantAudit("rate_limited", map[string]any{"route": "login", "ip": "127.0.0.1"})
	// Refilled after 10 s.
	e.clock.Advance(10 * time.Second)
	wantStatus(t, b.get("/bff/login"), 302)

	// The callback has its own bucket.
	for i := 0; i < 2; i++ {
		wantStatus(t, b.get("/bff/callback?state=x&code=y"), 400)
	}
	wantStatus(t, b.get("/bff/callback?state=x&code=y"), 429)

	// Session management is limited per user, whatever the address.
	e.clock.Advance(time.Minute)
	b.login()
	wantStatus(t, b.api("GET", "/bff/sessions"), 200)
	wantStatus(t, b.api("GET", "/bff/sessions"), 200)
	wantJSONError(t, b.api("GET", "/bff/sessions"), 429, "rate_limited", "sessions")
	e.wantAudit("rate_limited", map[string]any{"route": "sessions", "subject": "alice"})

	// The admin API, before authentication: guessing the token is limited too.
	admin := httptest.NewServer(e.gw.AdminHandler())
	defer admin.Close()
	codes := []int{}
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", admin.URL+"/admin/sessions?sub=alice", nil)
		req.Header.Set("Authorization", "Bearer guess"+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[401 401 429]" {
		t.Fatalf("admin guesses = %v, want [401 401 429]", codes)
	}
	// /healthz is never limited.
	for i := 0; i < 5; i++ {
		resp, _ := http.Get(admin.URL + "/healthz")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz = %d", resp.StatusCode)
		}
	}
	metrics := scrape(t, e)
	for _, want := range []string{`gatehouse_rate_limited_total{endpoint="login"} `, `gatehouse_rate_limited_total{endpoint="admin"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRateLimitsBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 1, Burst: 1}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	b := e.browser()
	// Each client behind the proxy has its own bucket; IPv6 clients count per /64.
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "203.0.113.1"), 302)
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "203.0.113.1"), 429)
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "203.0.113.2"), 302)
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "2001:db8:1:2::1"), 302)
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "2001:db8:1:2::ffff"), 429)
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "2001:db8:1:3::1"), 302)
	// A client cannot pick its bucket by prepending addresses: the proxy appends the real one.
	wantStatus(t, b.get("/bff/login", "X-Forwarded-For", "198.51.100.9, 203.0.113.1"), 429)
}

func TestRateLimitsOff(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 1, Burst: 1}
		c.RateLimits.InsecureDisable = true
	})
	b := e.browser()
	for i := 0; i < 5; i++ {
		wantStatus(t, b.get("/bff/login"), 302)
	}
	if !strings.Contains(e.logs.String(), "rate_limits.insecure_disable") {
		t.Fatal("no startup warning for rate_limits.insecure_disable")
	}
}

func TestSessionBinding(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.Session.BindUserAgent = true
		c.Session.BindIPv4Prefix = 24
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	chrome := func(v string) string { return "Mozilla/5.0 (X11; Linux x86_64) Chrome/" + v + " Safari/537.36" }
	api := func(b *browser, ua, ip string) *resp {
		return b.do("GET", "/api/x", nil, "X-CSRF", "1", "Accept", "application/json", "User-Agent", ua, "X-Forwarded-For", ip)
	}
	b := e.browser()
	b.get(b.startLogin("/"), "User-Agent", chrome("156.0.1"), "X-Forwarded-For", "203.0.113.10")

	wantStatus(t, api(b, chrome("156.0.1"), "203.0.113.10"), 200)
	// A browser update and a new address in the same /24 keep the session.
	wantStatus(t, api(b, chrome("157.0.3"), "203.0.113.99"), 200)
	// Another network ends it.
	wantJSONError(t, api(b, chrome("157.0.3"), "198.51.100.10"), 401, "unauthenticated", "session_revoked")
	e.wantAudit("session_revoked", map[string]any{"by": "gatehouse", "reason": "binding_network", "ip": "198.51.100.10"})
	// And it stays ended from the right network too.
	wantJSONError(t, api(b, chrome("157.0.3"), "203.0.113.10"), 401, "unauthenticated", "")

	b = e.browser()
	b.get(b.startLogin("/"), "User-Agent", chrome("156.0.1"), "X-Forwarded-For", "203.0.113.10")
	wantJSONError(t, api(b, "curl/8.5.0", "203.0.113.10"), 401, "unauthenticated", "session_revoked")
	e.wantAudit("session_revoked", map[string]any{"by": "gatehouse", "reason": "binding_user_agent", "user_agent": "curl/8.5.0"})
}

func scrape(t *testing.T, e *env) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	wantStatus(t, b.api("POST", "/api/x"), 200)
	b.do("GET", "/api/x", nil)
	b.get("/bff/callback?state=nope&code=x")
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/x"), 200)
	m := scrape(t, e)
	for _, want := range []string{
		`gatehouse_proxy_request_seconds_count{code="2xx",method="GET",route="/api/"} 2`,
		`gatehouse_proxy_request_seconds_count{code="2xx",method="POST",route="/api/"} 1`,
		`gatehouse_http_requests_seconds_count{kind="route",method="GET",status="403"} 1`,
		`gatehouse_logins_total{outcome="completed"} 1`,
		`gatehouse_login_failures_total{reason="login_no_flow"} 1`,
		`gatehouse_token_refreshes_total{outcome="ok"} 1`,
		`gatehouse_refresh_lock_wait_seconds_count 1`,
		`gatehouse_active_sessions 1`,
		`gatehouse_ready{component="provider"} 1`,
		`gatehouse_ready{component="store"} 1`,
		`gatehouse_audit_events_total{event="csrf_rejected"} 1`,
		`gatehouse_audit_events_total{event="rate_limited"} 0`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="token"} 2`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="discovery"} 1`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="jwks"}`,
		`gatehouse_store_operation_seconds_count{op="get"}`,
		`gatehouse_store_operation_seconds_count{op="set_indexed"}`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No user data in labels.
	if strings.Contains(m, "alice") || strings.Contains(m, "127.0.0.1") {
		t.Error("a metric label carries a subject or an address")
	}
}

func TestReloadRoutesAndLimits(t *testing.T) {
	up := newUpstream(t)
	var cfg gatehouse.Config
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL}}
		c.RateLimits.Login = gatehouse.RateLimit{PerMinute: 1, Burst: 1}
		cfg = *c
	})
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	wantStatus(t, b.api("GET", "/v2/x"), 404)

	next := cfg
	next.Routes = []gatehouse.Route{{Path: "/v2/", Upstream: up.srv.URL, StripPrefix: true}}
	next.RateLimits.Login = gatehouse.RateLimit{PerMinute: 600, Burst: 100}
	next.Cookie.Name = "__Host-other"
	restart, err := e.gw.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(restart) != "[cookie]" {
		t.Fatalf("needs restart = %v, want [cookie]", restart)
	}
	// The session survived; the new route works, the old one is gone.
	wantStatus(t, b.api("GET", "/v2/x"), 200)
	if got := up.last(t).Path; got != "/x" {
		t.Fatalf("upstream path = %q", got)
	}
	wantStatus(t, b.api("GET", "/api/x"), 404)
	for i := 0; i < 5; i++ {
		wantStatus(t, e.browser().get("/bff/login"), 302)
	}

	// An invalid configuration changes nothing.
	bad := next
	bad.Routes = []gatehouse.Route{{Path: "nope", Upstream: "ftp://x"}}
	if _, err := e.gw.Reload(bad); err == nil || !strings.Contains(err.Error(), "routes[0].path") {
		t.Fatalf("Reload(bad) = %v", err)
	}
	wantStatus(t, b.api("GET", "/v2/x"), 200)
}

func TestDrainWaitsForWebSockets(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	cookie := b.cookie("__Host-gatehouse").Value

	conn, br, resp := openWebSocket(t, e, "/api/ws", e.url, cookie, 10*time.Second)
	defer conn.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}

	// Drain waits while the WebSocket is open…
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.gw.Drain(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Drain with an open WebSocket = %v, want DeadlineExceeded", err)
	}
	if err := e.gw.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("Ready while draining = %v", err)
	}
	// …which still works…
	fmt.Fprint(conn, "still here\n")
	if echo, _ := br.ReadString('\n'); echo != "echo:still here\n" {
		t.Fatalf("echo during drain = %q", echo)
	}
	// …and returns once it closes.
	done := make(chan error, 1)
	go func() { done <- e.gw.Drain(context.Background()) }()
	conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the WebSocket closed")
	}
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "draining") {
		t.Fatalf("/readyz while shutting down = %d %s", rec.Code, rec.Body.String())
	}
}

func TestDiagnostics(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) { c.InsecureDiagnostics = true })
	b := e.browser()
	b.login()
	r := b.api("GET", "/bff/diagnostics")
	wantStatus(t, r, 200)
	d := decode(t, r)
	s := d["session"].(map[string]any)
	if s["subject"] != "alice" || s["refresh_token"] != true {
		t.Fatalf("session = %v", s)
	}
	if d["provider"].(map[string]any)["metadata"] == nil {
		t.Fatalf("provider = %v", d["provider"])
	}
	for _, secret := range append(e.idp.AccessTokens(), e.idp.ClientSecret, b.cookie("__Host-gatehouse").Value) {
		if strings.Contains(r.body, secret) {
			t.Fatalf("diagnostics show a secret (%.8s…)", secret)
		}
	}
	if !strings.Contains(e.logs.String(), "insecure_diagnostics") {
		t.Fatal("no startup warning")
	}

	// Off by default, and refused on a public origin.
	off := newEnv(t)
	wantStatus(t, off.browser().api("GET", "/bff/diagnostics"), 404)
	err := gatehouse.Config{PublicURL: "https://app.example.com", InsecureDiagnostics: true,
		Provider: gatehouse.ProviderConfig{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "insecure_diagnostics: is only allowed when public_url is a loopback") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestNewConfigFieldsValidate(t *testing.T) {
	err := gatehouse.Config{PublicURL: "http://127.0.0.1:1",
		Provider:   gatehouse.ProviderConfig{Issuer: "http://127.0.0.1:2", ClientID: "c", ClientSecret: "s"},
		Session:    gatehouse.SessionConfig{BindIPv4Prefix: 33, BindIPv6Prefix: -1},
		RateLimits: gatehouse.RateLimitConfig{Login: gatehouse.RateLimit{PerMinute: -1}, Admin: gatehouse.RateLimit{Burst: -2}},
	}.Validate()
	for _, want := range []string{"session.bind_ipv4_prefix", "session.bind_ipv6_prefix", "rate_limits.login.per_minute", "rate_limits.admin.burst"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want a problem with %s", err, want)
		}
	}
}

// Findings of the end-to-end security suite, pinned here too.
func TestProxyHardening(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/small/", Upstream: up.srv.URL, MaxBody: 1000})
	})
	b := e.browser()
	b.login()
	cookie := b.cookie("__Host-gatehouse").Value
	raw := func(req string) string {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(conn, strings.ReplaceAll(req, "COOKIE", cookie))
		all, _ := io.ReadAll(conn) // until the gateway closes the connection
		return string(all)
	}
	host := strings.TrimPrefix(e.url, "http://")

	// Bodies: a declared size over the limit never reaches the upstream; a chunked one is cut off.
	before := up.count()
	r := b.do("POST", "/small/x", strings.NewReader(strings.Repeat("a", 1001)), "X-CSRF", "1", "Accept", "application/json")
	wantJSONError(t, r, 413, "payload_too_large", "max_body")
	if up.count() != before {
		t.Fatal("an oversized body reached the upstream")
	}
	wantStatus(t, b.do("POST", "/small/x", strings.NewReader(strings.Repeat("a", 1000)), "X-CSRF", "1"), 200)
	if up.last(t).BodyLen != 1000 {
		t.Fatalf("upstream body = %d bytes", up.last(t).BodyLen)
	}
	chunked := raw("POST /small/x HTTP/1.1\r\nHost: " + host + "\r\nCookie: __Host-gatehouse=COOKIE\r\nX-CSRF: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"7d0\r\n" + strings.Repeat("b", 2000) + "\r\n0\r\n\r\n")
	if !strings.HasPrefix(chunked, "HTTP/1.1 413") {
		t.Fatalf("chunked oversized body: %.200q", chunked)
	}
	// The default limit applies to routes without one.
	if got := (gatehouse.Route{}); got.MaxBody != 0 || gatehouse.DefaultMaxBody != 10<<20 {
		t.Fatal("default max_body changed: update the docs")
	}

	// A chunked request never keeps its connection: bytes after its body are not a request.
	smuggle := raw("POST /api/outer HTTP/1.1\r\nHost: " + host + "\r\nCookie: __Host-gatehouse=COOKIE\r\nX-CSRF: 1\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	if !strings.Contains(smuggle, "Connection: close") || strings.Count(smuggle, "HTTP/1.1 ") != 1 {
		t.Fatalf("smuggling attempt answered: %.400q", smuggle)
	}
	time.Sleep(100 * time.Millisecond)
	var paths []string
	up.mu.Lock()
	for _, r := range up.reqs {
		paths = append(paths, r.Path)
	}
	up.mu.Unlock()
	if !slices.Contains(paths, "/api/outer") || slices.Contains(paths, "/api/smuggled") {
		t.Fatalf("upstream saw %v", paths)
	}

	// Only WebSockets are tunnelled; spoofed forwarding headers are dropped.
	b.do("GET", "/api/x", nil, "X-CSRF", "1", "Upgrade", "h2c", "Connection", "Upgrade, HTTP2-Settings", "HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA",
		"X-Forwarded-Uri", "/api/admin/x")
	if s := up.last(t); s.Upgrade != "" || s.XFUri != "" {
		t.Fatalf("upstream saw Upgrade %q, X-Forwarded-Uri %q", s.Upgrade, s.XFUri)
	}
}

func TestIDTokenIssuedInTheFuture(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) {
		k.IDTokenMutate = func(c map[string]any) {
			c["iat"] = time.Now().Add(time.Hour).Unix()
			c["exp"] = time.Now().Add(2 * time.Hour).Unix()
		}
	})
	b := e.browser()
	r := b.get(b.startLogin("/"), "Accept", "application/json")
	wantJSONError(t, r, 400, "login_failed", "token_exchange")
}
