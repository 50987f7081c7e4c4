package e2e

// The "rate limits and binding" category (RLB) of the security suite: floods of the
// endpoints an attacker can call without a session (login, callback, back-channel logout,
// the admin API), escaping a bucket with X-Forwarded-For, session management per user,
// and stolen session cookies replayed from another browser or network.
//
// The other categories run with relaxed limits (secRelaxRateLimits), so this one starts
// its own fake provider and two gateways of its own, with tight limits and an audit log
// file each, and stops them when it ends:
//
//	rlb    trusted_proxies [127.0.0.1], session binding (User-Agent, IPv4 /24), tight
//	       limits on every endpoint, admin API on
//	rlbNP  no trusted_proxies, a tight login limit: forwarding headers are not believed
//
// Through rlb every case picks its own client addresses with X-Forwarded-For (the suite
// plays the trusted proxy), so that no case spends another's tokens.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

const (
	rlbAdminToken = "rlb-admin-token-5f0c9e1d7a"
	// Two releases of one browser, and another browser.
	rlbChrome156 = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
	rlbChrome157 = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/157.0.7012.45 Safari/537.36"
	rlbFirefox   = "Mozilla/5.0 (X11; Linux x86_64; rv:141.0) Gecko/20100101 Firefox/141.0"

	// The tight limits of rlb: one token back every 10 s.
	rlbPerMinute      = 6
	rlbLoginBurst     = 4
	rlbCallbackBurst  = 3
	rlbBackchanBurst  = 3
	rlbAdminBurst     = 3
	rlbSessionsBurst  = 3
	rlbNPLoginBurst   = 3
	rlbMaxRetryAfterS = 60 / rlbPerMinute
)

// rlbGW is a gateway of this category and its audit log file.
type rlbGW struct {
	*gatehouseProc
	audit string
}

type rlbEnv struct {
	*secEnv
	fake *idptest.Provider
	rlb  *rlbGW // trusted proxy 127.0.0.1, binding, tight limits
	np   *rlbGW // no trusted proxies
}

func secRateLimits(t *testing.T, s *secSuite, e *secEnv) {
	r := &rlbEnv{secEnv: e, fake: idptest.New(t)}
	fake := r.fake
	registerAuditSource(func() []harness.IssuedSecret {
		var out []harness.IssuedSecret
		for _, v := range fake.IssuedSecrets() {
			out = append(out, harness.IssuedSecret{Kind: "fake provider secret", Value: v})
		}
		return out
	})
	r.rlb = r.start(t, fmt.Sprintf(`
trusted_proxies: [127.0.0.1]
session:
  store: memory
  bind_user_agent: true
  bind_ipv4_prefix: 24
admin:
  listen: {{ADMIN}}
  token: %s
rate_limits:
  login: {per_minute: %d, burst: %d}
  login_per_48: {per_minute: %d, burst: %d}
  callback: {per_minute: %d, burst: %d}
  backchannel: {per_minute: %d, burst: %d}
  admin: {per_minute: %d, burst: %d}
  sessions: {per_minute: %d, burst: %d}
routes:
  - path: /api/
    upstream: %s
`, rlbAdminToken, rlbPerMinute, rlbLoginBurst, rlbPerMinute, rlbLoginPer48Burst, rlbPerMinute, rlbCallbackBurst, rlbPerMinute, rlbBackchanBurst,
		rlbPerMinute, rlbAdminBurst, rlbPerMinute, rlbSessionsBurst, e.up.URL))
	r.np = r.start(t, fmt.Sprintf(`
session:
  store: memory
admin:
  listen: {{ADMIN}}
rate_limits:
  login: {per_minute: %d, burst: %d}
routes:
  - path: /api/
    upstream: %s
`, rlbPerMinute, rlbNPLoginBurst, e.up.URL))

	// Login flood from one client.
	s.run(t, e, "RLB", "login flood from one client",
		fmt.Sprintf("the first %d logins reach the provider; then 429 with Retry-After 1–%d s, JSON {error: rate_limited, reason: login} (a page for a navigation), no flow started and the provider not contacted; one rate_limited audit event naming the client; another client is not affected", rlbLoginBurst, rlbMaxRetryAfterS),
		func(c *secCase) {
			const ip = "203.0.113.10"
			gw := r.rlb
			cl := e.client(gw.URL, true)
			authorize0 := r.fake.Count("authorize")
			for i := range rlbLoginBurst {
				res := cl.do(c, "GET", "/bff/login?returnUrl=/", nil, rlbFrom(ip, rlbChrome156, secNavigate...)...)
				if res.Status != 302 || !strings.HasPrefix(res.Header.Get("Location"), gw.URL+"/bff/callback") {
					c.Fatalf("login %d of %d (within the burst): %d, Location %q; want the provider's redirect to the callback", i+1, rlbLoginBurst, res.Status, res.Header.Get("Location"))
				}
			}
			refused := 0
			check := func(what string, res *response, wantJSON bool) {
				c.Helper()
				if res.Status != 429 {
					c.Errorf("%s: %d, want 429\n%.300s", what, res.Status, res.Body)
					return
				}
				refused++
				rlbRetryAfter(c, what, res)
				if loc := res.Header.Get("Location"); loc != "" {
					c.Errorf("%s: refused, yet Location %q", what, loc)
				}
				for _, line := range res.Header.Values("Set-Cookie") {
					c.Errorf("%s: refused, yet Set-Cookie %q (a login flow was started)", what, rlbCookieName(line))
				}
				if wantJSON {
					rlbJSONError(c, what, res, "rate_limited", "login")
				} else if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					c.Errorf("%s: Content-Type %q, want a page for a person", what, ct)
				}
			}
			check("a fetch past the burst", cl.do(c, "GET", "/bff/login", nil, rlbFrom(ip, rlbChrome156, secSameOrigin...)...), true)
			check("a navigation past the burst", cl.do(c, "GET", "/bff/login?returnUrl=/", nil, rlbFrom(ip, rlbChrome156, secNavigate...)...), false)
			for i := range 10 {
				check(fmt.Sprintf("flood request %d", i+1), cl.do(c, "GET", "/bff/login", nil, rlbFrom(ip, rlbChrome156, secSameOrigin...)...), true)
			}
			if got := r.fake.Count("authorize") - authorize0; got != rlbLoginBurst {
				c.Errorf("the provider's authorization endpoint was visited %d times, want %d (only the allowed logins)", got, rlbLoginBurst)
			}
			if n := len(gw.events(c, "event", "login_started", "ip", ip)); n != rlbLoginBurst {
				c.Errorf("%d login_started audit events for %s, want %d", n, ip, rlbLoginBurst)
			}
			ev := gw.events(c, "event", "rate_limited", "route", "login", "ip", ip)
			if len(ev) != 1 {
				c.Errorf("%d rate_limited audit events for %s after %d refusals, want exactly 1 (one per client and endpoint every 10 s): %v", len(ev), ip, refused, ev)
			} else if ev[0]["user_agent"] != rlbChrome156 {
				c.Errorf("the rate_limited event: %v, want the client's user_agent", ev[0])
			}
			// Another client keeps its own bucket.
			if res := e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, rlbFrom("203.0.113.11", rlbChrome156, secNavigate...)...); res.Status != 302 {
				c.Errorf("a login from another client (203.0.113.11): %d, want 302", res.Status)
			}
		})

	secLoginFlows(t, s, e, r)

	s.run(t, e, "RLB", "X-Forwarded-For: prepended addresses do not escape the bucket (trusted proxy)",
		"with trusted_proxies [127.0.0.1], once 203.0.113.1 is out of login tokens, \"198.51.100.9, 203.0.113.1\", two header lines, junk or 127.0.0.1 around it, an IPv4-mapped form, X-Real-IP and Forwarded all count as 203.0.113.1: 429; audit names 203.0.113.1, never the spoofed address; another real client is allowed",
		func(c *secCase) {
			gw := r.rlb
			cl := e.client(gw.URL, false)
			const real, spoofed = "203.0.113.1", "198.51.100.9"
			for i := range rlbLoginBurst {
				if res := cl.do(c, "GET", "/bff/login", nil, rlbFrom(real, rlbChrome156, secNavigate...)...); res.Status != 302 {
					c.Fatalf("login %d from %s within the burst: %d, want 302", i+1, real, res.Status)
				}
			}
			// What the proxy forwards: whatever the client sent, then the address it saw.
			for _, v := range []struct {
				name string
				hdr  []string
			}{
				{"prepended address", []string{"X-Forwarded-For", spoofed + ", " + real}},
				{"prepended list", []string{"X-Forwarded-For", "10.0.0.1, " + spoofed + ",192.0.2.1, " + real}},
				{"two header lines", []string{"X-Forwarded-For", spoofed, "X-Forwarded-For", real}},
				{"junk in front", []string{"X-Forwarded-For", "unknown, " + real}},
				{"the proxy's own address in front", []string{"X-Forwarded-For", "127.0.0.1, " + real}},
				{"the proxy's own address appended by the client", []string{"X-Forwarded-For", spoofed + ", " + real + ", 127.0.0.1"}},
				{"IPv4-mapped IPv6 form", []string{"X-Forwarded-For", spoofed + ", ::ffff:" + real}},
				{"X-Real-IP and Forwarded", []string{"X-Forwarded-For", real, "X-Real-IP", spoofed, "Forwarded", "for=" + spoofed}},
			} {
				hdr := append(append([]string{"User-Agent", rlbChrome156}, secSameOrigin...), v.hdr...)
				res := cl.do(c, "GET", "/bff/login", nil, hdr...)
				if res.Status != 429 {
					c.Errorf("%s (%q): %d, want 429: the client escaped its bucket", v.name, v.hdr, res.Status)
					continue
				}
				rlbJSONError(c, v.name, res, "rate_limited", "login")
			}
			// Control: the proxy's header is believed, so a really different client is allowed.
			if res := cl.do(c, "GET", "/bff/login", nil, rlbFrom("203.0.113.2", rlbChrome156, secNavigate...)...); res.Status != 302 {
				c.Errorf("control: a login from 203.0.113.2 through the proxy: %d, want 302", res.Status)
			}
			if ev := gw.events(c, "event", "rate_limited", "route", "login", "ip", real); len(ev) != 1 {
				c.Errorf("%d rate_limited events for %s, want 1", len(ev), real)
			}
			for _, ev := range gw.events(c) {
				if ip, _ := ev["ip"].(string); ip == spoofed || ip == "10.0.0.1" || ip == "192.0.2.1" || ip == "unknown" {
					c.Errorf("an audit event names a spoofed address: %v", ev)
				}
			}
		})

	s.run(t, e, "RLB", "X-Forwarded-For is not believed without trusted_proxies",
		fmt.Sprintf("on a gateway without trusted_proxies, %d logins each with another spoofed X-Forwarded-For use up 127.0.0.1's bucket; the next (spoofed X-Forwarded-For, X-Real-IP, Forwarded) gets 429; every audit event names 127.0.0.1", rlbNPLoginBurst),
		func(c *secCase) {
			gw := r.np
			cl := e.client(gw.URL, false)
			for i := range rlbNPLoginBurst {
				spoofed := fmt.Sprintf("198.51.100.%d", 200+i)
				if res := cl.do(c, "GET", "/bff/login", nil, rlbFrom(spoofed, rlbChrome156, secNavigate...)...); res.Status != 302 {
					c.Fatalf("login %d within the burst: %d, want 302", i+1, res.Status)
				}
			}
			for _, hdr := range [][]string{
				{"X-Forwarded-For", "198.51.100.250"},
				{"X-Forwarded-For", "198.51.100.251, 203.0.113.251"},
				{"X-Real-IP", "198.51.100.252", "Forwarded", "for=198.51.100.252", "True-Client-IP", "198.51.100.252", "CF-Connecting-IP", "198.51.100.252"},
			} {
				res := cl.do(c, "GET", "/bff/login", nil, append(append([]string{"User-Agent", rlbChrome156}, secSameOrigin...), hdr...)...)
				if res.Status != 429 {
					c.Errorf("spoofed %q: %d, want 429: a forwarding header from an untrusted peer gave a new bucket", hdr, res.Status)
					continue
				}
				rlbJSONError(c, fmt.Sprint(hdr), res, "rate_limited", "login")
				rlbRetryAfter(c, fmt.Sprint(hdr), res)
			}
			if n := len(gw.events(c, "event", "login_started", "ip", "127.0.0.1")); n != rlbNPLoginBurst {
				c.Errorf("%d login_started events for 127.0.0.1, want %d", n, rlbNPLoginBurst)
			}
			if n := len(gw.events(c, "event", "rate_limited", "route", "login", "ip", "127.0.0.1")); n != 1 {
				c.Errorf("%d rate_limited events for 127.0.0.1, want 1", n)
			}
			for _, ev := range gw.events(c) {
				if ev["ip"] != "127.0.0.1" {
					c.Errorf("an audit event names %v, not the peer 127.0.0.1: %v", ev["ip"], ev)
				}
			}
		})

	s.run(t, e, "RLB", "X-Request-Id is chosen by trusted proxies only",
		"on rlb (trusted proxy) a valid X-Request-Id is kept: in the response and the login_started audit event; two lines, 129 characters, or a space are replaced by a fresh 32-hex id; on rlbNP a browser's X-Request-Id is replaced, in the response header and in the JSON error body",
		func(c *secCase) {
			fresh := regexp.MustCompile(`^[0-9a-f]{32}$`)
			gw := r.rlb
			cl := e.client(gw.URL, false)
			res := cl.do(c, "GET", "/bff/login", nil, rlbFrom("203.0.113.120", rlbChrome156, append([]string{"X-Request-Id", "edge-7c1e-41"}, secNavigate...)...)...)
			if res.Status != 302 || res.Header.Get("X-Request-Id") != "edge-7c1e-41" {
				c.Errorf("a trusted proxy's X-Request-Id: %d, X-Request-Id %q, want 302 and edge-7c1e-41", res.Status, res.Header.Get("X-Request-Id"))
			}
			if ev := gw.events(c, "event", "login_started", "request_id", "edge-7c1e-41"); len(ev) != 1 {
				c.Errorf("%d login_started events with request_id edge-7c1e-41, want 1", len(ev))
			}
			for _, bad := range [][]string{
				{"X-Request-Id", "edge-1", "X-Request-Id", "edge-2"},
				{"X-Request-Id", strings.Repeat("r", 129)},
				{"X-Request-Id", "edge 3"},
			} {
				res := cl.do(c, "GET", "/bff/user", nil, append(rlbFrom("203.0.113.121", rlbChrome156, secSameOrigin...), bad...)...)
				if id := res.Header.Get("X-Request-Id"); !fresh.MatchString(id) || res.Header.Values("X-Request-Id")[0] != id {
					c.Errorf("X-Request-Id %.40q from a trusted proxy: answered with %q, want a fresh id", bad, res.Header.Values("X-Request-Id"))
				}
			}
			np := e.client(r.np.URL, false)
			res = np.do(c, "GET", "/bff/user", nil, append([]string{"X-Request-Id", "forged-by-the-browser"}, secSameOrigin...)...)
			id := res.Header.Get("X-Request-Id")
			var body map[string]any
			json.Unmarshal([]byte(res.Body), &body)
			if res.Status != 401 || !fresh.MatchString(id) || body["request_id"] != id {
				c.Errorf("a browser's X-Request-Id on a gateway without trusted_proxies: %d, X-Request-Id %q, body %s; want 401 with a fresh id in both", res.Status, id, res.Body)
			}
		})

	s.run(t, e, "RLB", "callback flood limited separately from login",
		fmt.Sprintf("with its login bucket empty a client still completes callbacks; %d callbacks succeed, then 429 (reason callback) before the code is redeemed: the provider's token endpoint is not called, no session is set, and the refused login can still complete from elsewhere", rlbCallbackBurst),
		func(c *secCase) {
			gw := r.rlb
			const ip = "203.0.113.30"
			r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "rlb-callback", "rlb-callback-sid" })
			// Logins started elsewhere: the callbacks arrive from ip.
			const flows = rlbCallbackBurst + 2
			var clients []*secClient
			var callbacks []string
			for i := range flows {
				cl := e.client(gw.URL, true)
				clients = append(clients, cl)
				callbacks = append(callbacks, r.startLogin(c, cl, fmt.Sprintf("198.51.100.%d", 100+i), rlbChrome156))
			}
			// ip uses up its login tokens.
			for i := range rlbLoginBurst + 1 {
				res := e.client(gw.URL, false).do(c, "GET", "/bff/login", nil, rlbFrom(ip, rlbChrome156, secNavigate...)...)
				if want := map[bool]int{true: 302, false: 429}[i < rlbLoginBurst]; res.Status != want {
					c.Fatalf("login %d from %s: %d, want %d", i+1, ip, res.Status, want)
				}
			}
			codes0 := r.fake.Count("authorization_code")
			for i, cb := range callbacks {
				res := clients[i].do(c, "GET", cb, nil, rlbFrom(ip, rlbChrome156, secCallbackNav...)...)
				cookie, set := setCookieValue(res, secCookie)
				if i < rlbCallbackBurst {
					if res.Status != 200 || !set || cookie == "" {
						c.Errorf("callback %d (within the callback burst, login bucket empty): %d, session cookie set %v; want 200 and a session", i+1, res.Status, set)
					}
					continue
				}
				if res.Status != 429 {
					c.Errorf("callback %d (past the burst): %d, want 429", i+1, res.Status)
					continue
				}
				rlbRetryAfter(c, fmt.Sprintf("callback %d", i+1), res)
				if set {
					c.Errorf("callback %d: refused, yet it sets a session cookie", i+1)
				}
			}
			if got := r.fake.Count("authorization_code") - codes0; got != rlbCallbackBurst {
				c.Errorf("the provider's token endpoint redeemed %d codes, want %d (refused callbacks must not reach it)", got, rlbCallbackBurst)
			}
			res := e.client(gw.URL, false).do(c, "GET", "/bff/callback?code=x&state=y", nil, rlbFrom(ip, rlbChrome156, secSameOrigin...)...)
			if res.Status != 429 {
				c.Errorf("a made-up callback past the burst: %d, want 429", res.Status)
			} else {
				rlbJSONError(c, "a made-up callback", res, "rate_limited", "callback")
			}
			if n := len(gw.events(c, "event", "rate_limited", "route", "callback", "ip", ip)); n != 1 {
				c.Errorf("%d rate_limited callback events for %s, want 1", n, ip)
			}
			if n := len(gw.events(c, "event", "login_succeeded", "ip", ip)); n != rlbCallbackBurst {
				c.Errorf("%d login_succeeded events for %s, want %d", n, ip, rlbCallbackBurst)
			}
			// The refusal consumed nothing: the same flow completes from another address.
			res = clients[rlbCallbackBurst].do(c, "GET", callbacks[rlbCallbackBurst], nil, rlbFrom("203.0.113.31", rlbChrome156, secCallbackNav...)...)
			if _, set := setCookieValue(res, secCookie); res.Status != 200 || !set {
				c.Errorf("the refused login, completed from another address: %d, session cookie set %v; want 200 and a session", res.Status, set)
			}
		})

	s.run(t, e, "RLB", "back-channel logout endpoint limits failures only",
		fmt.Sprintf("%d bad logout tokens from one address get 400, the next bad one 429 (reason backchannel, not verified further, no event); a valid logout token from the same address is still accepted and ends the session (only failures are limited)", rlbBackchanBurst),
		func(c *secCase) {
			gw := r.rlb
			const flood, home = "203.0.113.90", "198.51.100.80"
			r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "rlb-bc", "rlb-bc-sid" })
			cookie := r.login(c, e.client(gw.URL, true), home, rlbChrome156)
			r.expectUser(c, cookie, home, rlbChrome156, 200, "rlb-bc")
			post := func(ip, body string) *response {
				return e.client(gw.URL, false).do(c, "POST", "/bff/backchannel", strings.NewReader(body),
					"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", ip)
			}
			for i := range rlbBackchanBurst {
				if res := post(flood, "logout_token=not-a-jwt-"+strconv.Itoa(i)); res.Status != 400 {
					c.Errorf("bad logout token %d within the burst: %d, want 400", i+1, res.Status)
				}
			}
			res := post(flood, "logout_token=not-a-jwt-past-the-burst")
			if res.Status != 429 {
				c.Errorf("a bad logout token past the burst: %d, want 429", res.Status)
			} else {
				rlbRetryAfter(c, "back-channel past the burst", res)
				rlbJSONError(c, "back-channel past the burst", res, "rate_limited", "backchannel")
			}
			r.expectUser(c, cookie, home, rlbChrome156, 200, "rlb-bc")
			if n := len(gw.events(c, "event", "backchannel_logout", "ip", flood)); n != rlbBackchanBurst {
				c.Errorf("%d backchannel_logout events from %s, want %d (the limited one is not audited as a logout)", n, flood, rlbBackchanBurst)
			}
			if n := len(gw.events(c, "event", "rate_limited", "route", "backchannel", "ip", flood)); n != 1 {
				c.Errorf("%d rate_limited backchannel events for %s, want 1", n, flood)
			}
			// A valid token from the same, exhausted address is not limited.
			tok := r.fake.LogoutToken("rlb-bc", "rlb-bc-sid", "logout+jwt", nil)
			e.addSensitive("fake provider logout token", tok)
			if res := post(flood, "logout_token="+url.QueryEscape(tok)); res.Status != 200 {
				c.Errorf("a valid logout token from the exhausted address: %d, want 200\n%.300s", res.Status, res.Body)
			}
			r.expectUser(c, cookie, home, rlbChrome156, 401, "")
		})

	s.run(t, e, "RLB", "admin API guessing limited before authentication; /healthz never limited",
		fmt.Sprintf("%d wrong bearer tokens get 401; then 429 (reason admin, Retry-After) for wrong, missing and even the right token; only the %d guesses produce admin_denied events; /healthz, /readyz and /metrics keep answering 200", rlbAdminBurst, rlbAdminBurst),
		func(c *secCase) {
			gw := r.rlb
			cl := e.client(gw.AdminURL, false)
			for i := range rlbAdminBurst {
				guess := fmt.Sprintf("rlb-guess-%d-%s", i, secRandom())
				e.addSensitive("guessed admin token", guess)
				res := cl.do(c, "GET", gw.AdminURL+"/admin/sessions?sub=rlb-bc", nil, "Authorization", "Bearer "+guess)
				if res.Status != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
					c.Errorf("wrong token %d within the burst: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", i+1, res.Status, res.Header.Get("WWW-Authenticate"))
				}
			}
			guess := "rlb-guess-late-" + secRandom()
			e.addSensitive("guessed admin token", guess)
			for _, v := range []struct{ name, auth string }{
				{"a wrong token", "Bearer " + guess},
				{"no token", ""},
				{"the right token", "Bearer " + rlbAdminToken},
			} {
				var hdr []string
				if v.auth != "" {
					hdr = []string{"Authorization", v.auth}
				}
				res := cl.do(c, "GET", gw.AdminURL+"/admin/sessions?sub=rlb-bc", nil, hdr...)
				if res.Status != 429 {
					c.Errorf("%s past the burst: %d, want 429 (limited before the token is checked)", v.name, res.Status)
					continue
				}
				rlbRetryAfter(c, v.name, res)
				rlbJSONError(c, v.name, res, "rate_limited", "admin")
			}
			for i := range 3 * rlbAdminBurst * 3 {
				path := []string{"/healthz", "/readyz", "/metrics"}[i%3]
				if res := cl.do(c, "GET", gw.AdminURL+path, nil); res.Status != 200 {
					c.Errorf("%s (request %d) with the admin bucket empty: %d, want 200", path, i+1, res.Status)
				}
			}
			metrics := cl.do(c, "GET", gw.AdminURL+"/metrics", nil).Body
			if !rlbMetric(metrics, `gatehouse_rate_limited_total{endpoint="admin"}`, 3) {
				c.Errorf("gatehouse_rate_limited_total{endpoint=\"admin\"} is not 3 in /metrics")
			}
			if n := len(gw.events(c, "event", "admin_denied", "ip", "127.0.0.1")); n != rlbAdminBurst {
				c.Errorf("%d admin_denied events, want %d: refused requests must not reach the token check", n, rlbAdminBurst)
			}
			if n := len(gw.events(c, "event", "rate_limited", "route", "admin", "ip", "127.0.0.1")); n != 1 {
				c.Errorf("%d rate_limited admin events, want 1", n)
			}
		})

	s.run(t, e, "RLB", "session management limited per user, not per address",
		fmt.Sprintf("one user signed in from 198.51.100.70 and 192.0.2.70 shares one sessions bucket: %d calls in all, then 429 (reason sessions) from both addresses, DELETE included (the other session lives on); another user at the same address is not affected; /bff/user stays open", rlbSessionsBurst),
		func(c *secCase) {
			gw := r.rlb
			const ip1, ip2 = "198.51.100.70", "192.0.2.70"
			r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "rlb-sessions", "rlb-sessions-sid-1" })
			a := r.login(c, e.client(gw.URL, true), ip1, rlbChrome156)
			r.fake.Set(func(k *idptest.Knobs) { k.SID = "rlb-sessions-sid-2" })
			b := r.login(c, e.client(gw.URL, true), ip2, rlbFirefox)
			r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "rlb-sessions-other", "rlb-sessions-sid-3" })
			other := r.login(c, e.client(gw.URL, true), ip1, rlbChrome156)
			sidB := r.sid(c, b, ip2, rlbFirefox)
			list := func(cookie, ip, ua string) *response {
				return e.client(gw.URL, false).do(c, "GET", "/bff/sessions", nil, withCookie(cookie, rlbFrom(ip, ua, secSameOrigin...)...)...)
			}
			res := list(a, ip1, rlbChrome156)
			var body struct {
				Sessions []struct {
					SID string `json:"sid"`
					IP  string `json:"ip"`
				} `json:"sessions"`
			}
			json.Unmarshal([]byte(res.Body), &body)
			if res.Status != 200 || len(body.Sessions) != 2 {
				c.Fatalf("GET /bff/sessions (1st call): %d, %d sessions, want 200 and 2\n%.300s", res.Status, len(body.Sessions), res.Body)
			}
			for i, call := range []struct{ cookie, ip, ua string }{{b, ip2, rlbFirefox}, {a, ip1, rlbChrome156}}[:rlbSessionsBurst-1] {
				if res := list(call.cookie, call.ip, call.ua); res.Status != 200 {
					c.Errorf("GET /bff/sessions (call %d of %d, from %s): %d, want 200", i+2, rlbSessionsBurst, call.ip, res.Status)
				}
			}
			for _, call := range []struct{ name, cookie, ip, ua string }{{"from " + ip2, b, ip2, rlbFirefox}, {"from " + ip1, a, ip1, rlbChrome156}} {
				res := list(call.cookie, call.ip, call.ua)
				if res.Status != 429 {
					c.Errorf("GET /bff/sessions %s past the user's burst: %d, want 429", call.name, res.Status)
					continue
				}
				rlbRetryAfter(c, "GET /bff/sessions "+call.name, res)
				rlbJSONError(c, "GET /bff/sessions "+call.name, res, "rate_limited", "sessions")
			}
			res = e.client(gw.URL, false).do(c, "DELETE", "/bff/sessions/"+sidB, nil, withCookie(a, rlbFrom(ip1, rlbChrome156, secAPI...)...)...)
			if res.Status != 429 {
				c.Errorf("DELETE /bff/sessions/{sid} past the user's burst: %d, want 429", res.Status)
			} else {
				rlbJSONError(c, "DELETE /bff/sessions/{sid}", res, "rate_limited", "sessions")
			}
			r.expectUser(c, b, ip2, rlbFirefox, 200, "rlb-sessions")
			r.expectUser(c, a, ip1, rlbChrome156, 200, "rlb-sessions")
			if res := list(other, ip1, rlbChrome156); res.Status != 200 {
				c.Errorf("GET /bff/sessions of another user from %s (the same address): %d, want 200: the bucket is per address", ip1, res.Status)
			}
			ev := gw.events(c, "event", "rate_limited", "route", "sessions")
			if len(ev) != 1 || ev[0]["subject"] != "rlb-sessions" {
				c.Errorf("rate_limited sessions events: %v, want one naming subject rlb-sessions", ev)
			}
		})

	s.run(t, e, "RLB", "stolen cookie replayed with another User-Agent",
		"the cookie from Chrome replayed by Firefox at the same address: 401 session_revoked, nothing forwarded; the victim's own browser is signed out too; audit session_revoked with by gatehouse, reason binding_user_agent, the session's handle",
		func(c *secCase) {
			r.bindingCase(c, "rlb-ua", "198.51.100.40", rlbChrome156, "198.51.100.40", rlbFirefox, "binding_user_agent")
		})

	s.run(t, e, "RLB", "stolen cookie replayed from another /24 network",
		"the cookie from 198.51.100.50 replayed by the same browser from 192.0.2.50: 401 session_revoked, nothing forwarded; the victim is signed out too; audit session_revoked with by gatehouse, reason binding_network",
		func(c *secCase) {
			r.bindingCase(c, "rlb-net", "198.51.100.50", rlbChrome156, "192.0.2.50", rlbChrome156, "binding_network")
		})

	s.run(t, e, "RLB", "the same browser after an update, from the same /24, keeps its session",
		"Chrome/156 at 198.51.100.60, then Chrome/157 at 198.51.100.61: /bff/user and a route answer 200, the old version too; no session_revoked event",
		func(c *secCase) {
			gw := r.rlb
			const ip, ip2 = "198.51.100.60", "198.51.100.61"
			r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = "rlb-update", "rlb-update-sid" })
			cookie := r.login(c, e.client(gw.URL, true), ip, rlbChrome156)
			sid := r.sid(c, cookie, ip, rlbChrome156)
			mark := e.up.count()
			for _, v := range []struct{ ip, ua string }{{ip2, rlbChrome157}, {ip, rlbChrome157}, {ip2, rlbChrome156}, {ip, rlbChrome156}} {
				r.expectUser(c, cookie, v.ip, v.ua, 200, "rlb-update")
				res := e.client(gw.URL, false).do(c, "GET", "/api/rlb-update", nil, withCookie(cookie, rlbFrom(v.ip, v.ua, secAPI...)...)...)
				if res.Status != 200 {
					c.Errorf("a route call from %s with %s: %d, want 200", v.ip, rlbVersion(v.ua), res.Status)
				}
			}
			if n := len(e.up.since(mark)); n != 4 {
				c.Errorf("%d route calls reached the upstream, want 4", n)
			}
			if ev := gw.events(c, "event", "session_revoked", "session", sid); len(ev) != 0 {
				c.Errorf("the session was revoked: %v", ev)
			}
		})

	s.run(t, e, "RLB", "audit logs of the category hold no cookie value or token",
		"the audit log files of both gateways are JSON lines marked log=audit, hold the events of the cases above, and none of the session/flow cookies set, codes and tokens of the fake provider, logout tokens, guessed and real admin tokens, client secret",
		func(c *secCase) {
			secrets := auditSecrets(c)
			kinds := map[string]int{}
			for _, sec := range secrets {
				kinds[sec.Kind]++
			}
			for _, want := range []string{"session cookie", "flow cookie", "fake provider secret", "fake provider logout token", "guessed admin token"} {
				if kinds[want] == 0 {
					c.Errorf("nothing of kind %q to look for: the check would prove little", want)
				}
			}
			// Values of this category in particular: the fake's codes and tokens.
			if len(r.fake.IssuedSecrets()) < 10 {
				c.Errorf("the category's fake provider issued only %d codes and tokens", len(r.fake.IssuedSecrets()))
			}
			for _, v := range []struct {
				gw        *rlbGW
				minEvents int
			}{{r.rlb, 40}, {r.np, rlbNPLoginBurst + 1}} {
				gw := v.gw
				cfg, err := os.ReadFile(gw.cfgPath)
				if err != nil {
					c.Fatal(err)
				}
				all := append(append([]harness.IssuedSecret(nil), secrets...), configSecrets(string(cfg))...)
				data, err := os.ReadFile(gw.audit)
				if err != nil {
					c.Fatalf("the audit log of %s: %v", gw.URL, err)
				}
				for _, leak := range logLeaks(string(data), all) {
					c.Errorf("audit log of %s: %s", gw.URL, leak)
				}
				for _, leak := range logLeaks(gw.Logs(), all) {
					c.Errorf("log of %s: %s", gw.URL, leak)
				}
				events := gw.events(c)
				if len(events) < v.minEvents {
					c.Errorf("the audit log of %s holds only %d events", gw.URL, len(events))
				}
				for _, ev := range events {
					if ev["log"] != "audit" || ev["event"] == nil || ev["event"] != ev["msg"] {
						c.Errorf("audit log of %s: a line without log=audit or event: %v", gw.URL, ev)
						break
					}
				}
			}
			seen := map[string]bool{}
			for _, ev := range r.rlb.events(c) {
				seen[fmt.Sprint(ev["event"])] = true
			}
			for _, want := range []string{"login_started", "login_succeeded", "rate_limited", "admin_denied", "backchannel_logout", "session_revoked"} {
				if !seen[want] {
					c.Errorf("no %s event in rlb's audit log", want)
				}
			}
			// The logs category checks responses against the shared fake's secrets; this
			// category's fake is checked here.
			e.mu.Lock()
			responses := append([]string(nil), e.responses...)
			e.mu.Unlock()
			for _, v := range r.fake.IssuedSecrets() {
				for _, resp := range responses {
					if strings.Contains(resp, v) {
						first, _, _ := strings.Cut(resp, "\n")
						c.Errorf("a response to %s contains a code or token of the fake provider", first)
						break
					}
				}
			}
		})
}

// ---------------------------------------------------------------------------------------------
// helpers

// start runs a gateway of this category on the category's fake provider; cfg adds its
// own sections. Its audit log goes to a file of its own.
func (r *rlbEnv) start(t *testing.T, cfg string) *rlbGW {
	t.Helper()
	port := freePort(t)
	audit := filepath.Join(t.TempDir(), "audit.log")
	g := startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: http://127.0.0.1:%d
provider:
  issuer: %s
  client_id: %s
  client_secret: %s
log:
  level: debug
audit_log:
  output: %s
`, port, port, r.fake.Issuer, r.fake.ClientID, r.fake.ClientSecret, audit)+cfg)
	// The suite's clients record this gateway's responses and cookies, and stop at its
	// /bff/ redirects, as for the shared gateways.
	secGatewayHosts.Store(strings.TrimPrefix(g.URL, "http://"), true)
	return &rlbGW{gatehouseProc: g, audit: audit}
}

// events returns the audit events of the gateway whose fields equal the given name,
// value pairs.
func (g *rlbGW) events(t testing.TB, match ...string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(g.audit)
	if err != nil {
		t.Fatalf("audit log of %s: %v", g.URL, err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("audit log of %s: not a JSON line: %.200s", g.URL, sc.Text())
			continue
		}
		ok := true
		for i := 0; i+1 < len(match); i += 2 {
			if v, has := ev[match[i]]; !has || fmt.Sprint(v) != match[i+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, ev)
		}
	}
	return out
}

// rlbFrom returns base with the client address (as the trusted proxy forwards it) and the
// browser's User-Agent added; "" leaves either out.
func rlbFrom(ip, ua string, base ...string) []string {
	out := append([]string(nil), base...)
	if ip != "" {
		out = append(out, "X-Forwarded-For", ip)
	}
	if ua != "" {
		out = append(out, "User-Agent", ua)
	}
	return out
}

// secCallbackNav are the headers of a browser arriving at the callback from the provider.
var secCallbackNav = []string{"Accept", "text/html", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}

// startLogin starts a login at rlb from ip and returns the callback URL the fake provider
// redirected to (not visited); the flow cookie is in cl's jar.
func (r *rlbEnv) startLogin(t testing.TB, cl *secClient, ip, ua string) string {
	t.Helper()
	res := cl.do(t, "GET", "/bff/login?returnUrl=/", nil, rlbFrom(ip, ua, secNavigate...)...)
	loc := res.Header.Get("Location")
	if res.Status != 302 || !strings.HasPrefix(loc, r.rlb.URL+"/bff/callback?") {
		t.Fatalf("login from %s: %d, Location %q; want the provider's redirect to the callback", ip, res.Status, loc)
	}
	return loc
}

// login signs the fake provider's current subject in at rlb from ip with ua and returns
// the session cookie.
func (r *rlbEnv) login(t testing.TB, cl *secClient, ip, ua string) string {
	t.Helper()
	res := cl.do(t, "GET", r.startLogin(t, cl, ip, ua), nil, rlbFrom(ip, ua, secCallbackNav...)...)
	cookie := cl.session(t)
	if res.Status != 200 || cookie == "" {
		t.Fatalf("login from %s: callback %d, session cookie %v\n%.300s", ip, res.Status, cookie != "", res.Body)
	}
	return cookie
}

// user calls /bff/user at rlb with cookie from ip with ua.
func (r *rlbEnv) user(t testing.TB, cookie, ip, ua string) (*response, map[string]any) {
	t.Helper()
	res := r.client(r.rlb.URL, false).do(t, "GET", "/bff/user", nil, withCookie(cookie, rlbFrom(ip, ua, secSameOrigin...)...)...)
	var m map[string]any
	json.Unmarshal([]byte(res.Body), &m)
	return res, m
}

// expectUser fails t unless /bff/user answers status (and, for 200, the session of sub).
func (r *rlbEnv) expectUser(t testing.TB, cookie, ip, ua string, status int, sub string) {
	t.Helper()
	res, m := r.user(t, cookie, ip, ua)
	claims, _ := m["claims"].(map[string]any)
	if res.Status != status || (status == 200 && claims["sub"] != sub) {
		t.Errorf("/bff/user from %s with %s: %d %v, want %d %s", ip, rlbVersion(ua), res.Status, m, status, sub)
	}
}

// sid is the public handle of the session of cookie.
func (r *rlbEnv) sid(t testing.TB, cookie, ip, ua string) string {
	t.Helper()
	res, m := r.user(t, cookie, ip, ua)
	sid, _ := m["sid"].(string)
	if res.Status != 200 || sid == "" {
		t.Fatalf("/bff/user from %s: %d %v", ip, res.Status, m)
	}
	return sid
}

// bindingCase: sub signs in from ip with ua; an attacker replays the cookie from aip with
// aua. The replay must end the session with reason why.
func (r *rlbEnv) bindingCase(c *secCase, sub, ip, ua, aip, aua, why string) {
	c.Helper()
	r.fake.Set(func(k *idptest.Knobs) { k.Subject, k.SID = sub, sub+"-sid" })
	cookie := r.login(c, r.client(r.rlb.URL, true), ip, ua)
	sid := r.sid(c, cookie, ip, ua) // the victim's own browser: the binding holds
	mark := r.up.count()
	res := r.client(r.rlb.URL, false).do(c, "GET", "/api/"+sub, nil, withCookie(cookie, rlbFrom(aip, aua, secAPI...)...)...)
	if res.Status != 401 {
		c.Errorf("the replay through a route from %s with %s: %d, want 401", aip, rlbVersion(aua), res.Status)
	} else {
		rlbJSONError(c, "the replay", res, "unauthenticated", "session_revoked")
	}
	r.up.untouched(c, mark, "the replay")
	// The session is over for everyone, the victim included (and the attacker again).
	r.expectUser(c, cookie, ip, ua, 401, "")
	r.expectUser(c, cookie, aip, aua, 401, "")
	ev := r.rlb.events(c, "event", "session_revoked", "session", sid)
	switch {
	case len(ev) != 1:
		c.Errorf("%d session_revoked events for the session, want 1: %v", len(ev), ev)
	case ev[0]["by"] != "gatehouse" || ev[0]["reason"] != why || ev[0]["subject"] != sub || ev[0]["ip"] != aip || ev[0]["user_agent"] != aua:
		c.Errorf("session_revoked event %v; want by gatehouse, reason %s, subject %s, the replay's ip %s and user_agent", ev[0], why, sub, aip)
	}
}

// rlbRetryAfter fails t unless res has a Retry-After of whole seconds between 1 and the
// time one token takes to come back.
func rlbRetryAfter(t testing.TB, what string, res *response) {
	t.Helper()
	v := res.Header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > rlbMaxRetryAfterS {
		t.Errorf("%s: Retry-After %q, want whole seconds from 1 to %d", what, v, rlbMaxRetryAfterS)
	}
}

// rlbJSONError fails t unless res's body is exactly {"error": code, "reason": reason}.
func rlbJSONError(t testing.TB, what string, res *response, code, reason string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(res.Body), &m); err != nil {
		t.Errorf("%s: body is not JSON (%v): %.200s", what, err, res.Body)
		return
	}
	if m["error"] != code || m["reason"] != reason {
		t.Errorf("%s: %v, want error %q, reason %q", what, m, code, reason)
	}
}

// rlbCookieName is the name of a Set-Cookie line (its value is a secret).
func rlbCookieName(line string) string {
	name, _, _ := strings.Cut(line, "=")
	return name
}

// rlbVersion names a User-Agent of this file briefly.
func rlbVersion(ua string) string {
	for _, p := range []string{"Chrome/", "Firefox/"} {
		if i := strings.Index(ua, p); i >= 0 {
			v, _, _ := strings.Cut(ua[i:], " ")
			return v
		}
	}
	return ua
}

// rlbMetric reports whether the Prometheus text exposition has series with value want.
func rlbMetric(exposition, series string, want float64) bool {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return err == nil && v == want
		}
	}
	return false
}
