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

// TestPendingFlowCap: session.max_pending_flows bounds the logins in progress from every
// client together. Clients that each stay within their own limit (one login from each of
// many addresses) are refused with 503 and Retry-After once half the cap started at once,
// and in any flow_timeout at most the cap start (so at most that many are pending).
func TestPendingFlowCap(t *testing.T) {
	const maxFlows = 10
	e := newEnv(t, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Session.MaxPendingFlows = maxFlows
	})
	ip := 0
	login := func(headers ...string) *resp {
		ip++
		return e.browser().get("/bff/login", append([]string{"X-Forwarded-For", fmt.Sprintf("198.51.%d.%d", ip/250, ip%250+1)}, headers...)...)
	}
	// At once: half the cap (the other half comes back over a flow_timeout, so that no
	// more than the cap are ever pending).
	for i := 0; i < maxFlows/2; i++ {
		wantStatus(t, login(), 302)
	}
	r := login("Accept", "application/json")
	wantJSONError(t, r, 503, "unavailable", "login_capacity")
	// One token back every flow_timeout / (max_pending_flows/2) = 10 min / 5 = 120 s.
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 120 {
		t.Fatalf("Retry-After = %q, want 1–120 s", r.Header.Get("Retry-After"))
	}
	if len(r.Header.Values("Set-Cookie")) != 0 || r.Header.Get("Location") != "" {
		t.Fatalf("a refused login started a flow: %v", r.Header)
	}
	page := login("Sec-Fetch-Mode", "navigate", "Accept", "text/html")
	if page.StatusCode != 503 || !strings.Contains(page.body, "Too many sign-ins") || page.Header.Get("Retry-After") == "" {
		t.Fatalf("page = %d %v %q", page.StatusCode, page.Header, page.body)
	}
	e.wantAudit("rate_limited", map[string]any{"route": "login_flows"})
	if m := scrape(t, e); !strings.Contains(m, `gatehouse_rate_limited_total{endpoint="login_flows"} 2`) {
		t.Fatalf("metrics lack the refusals:\n%s", m)
	}

	// Knocking every 10 s for three flow timeouts: never more than max_pending_flows
	// started in any span of flow_timeout (the flows a store holds at once).
	starts := []time.Time{}
	for i := 0; i < 3*60; i++ {
		e.clock.Advance(10 * time.Second)
		if login().StatusCode == 302 {
			starts = append(starts, e.clock.Now())
		}
	}
	if len(starts) < 3*maxFlows/2-1 {
		t.Fatalf("only %d logins in 30 minutes: the cap refuses more than it must", len(starts))
	}
	for i := range starts {
		n := 0
		for _, s := range starts[i:] {
			if s.Sub(starts[i]) < 10*time.Minute {
				n++
			}
		}
		if n > maxFlows {
			t.Fatalf("%d flows started within 10 minutes from %v; max_pending_flows is %d", n, starts[i], maxFlows)
		}
	}
}

// TestLoginLimitPer48: IPv6 clients are counted per /64 and, for logins, also per /48: 400
// /64s of one /48 (each within its own limit) get rate_limits.login_per_48 logins between
// them; another /48 is not affected.
func TestLoginLimitPer48(t *testing.T) {
	e := newEnv(t, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	allowed := 0
	for i := 0; i < 400; i++ {
		r := e.browser().get("/bff/login", "X-Forwarded-For", fmt.Sprintf("2001:db8:48:%x::1", i), "Accept", "application/json")
		switch r.StatusCode {
		case 302:
			allowed++
		case 429:
			wantJSONError(t, r, 429, "rate_limited", "login")
		default:
			t.Fatalf("login %d: %d %s", i, r.StatusCode, r.body)
		}
	}
	if allowed != 120 {
		t.Fatalf("400 /64s of one /48 started %d logins, want 120 (rate_limits.login_per_48 burst)", allowed)
	}
	wantStatus(t, e.browser().get("/bff/login", "X-Forwarded-For", "2001:db8:49::1"), 302)
	// IPv4 clients have no /48 bucket.
	for i := 0; i < 130; i++ {
		wantStatus(t, e.browser().get("/bff/login", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1)), 302)
	}
}
