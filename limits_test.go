package gatehouse_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

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
