package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// secRedirectPayloads are return URLs an attacker puts into a login or logout link. exact:
// the documented behaviour is to replace it by "/" (docs/http-api.md); the others must at
// least keep the browser on the gateway's origin.
var secRedirectPayloads = []struct {
	name, value string
	exact       bool
}{
	{"absolute https URL", "https://evil.example/phish", true},
	{"absolute http URL", "http://evil.example", true},
	{"scheme without slashes", "https:evil.example", true},
	{"protocol-relative", "//evil.example/x", true},
	{"triple slash", "///evil.example", true},
	{"slash backslash", `/\evil.example`, true},
	{"double backslash", `\\evil.example`, true},
	{"slash backslash slash", `/\/evil.example`, true},
	{"encoded slashes", "/%2F%2Fevil.example", true},
	{"encoded slashes, no leading slash", "%2f%2fevil.example", true},
	{"double-encoded slashes", "/%252F%252Fevil.example", true},
	{"encoded backslash", "/%5Cevil.example", true},
	{"tab between slashes", "/\t/evil.example", true},
	{"encoded tab between slashes", "/%09/evil.example", true},
	{"newline between slashes", "/\n/evil.example", true},
	{"encoded CR LF", "/%0d%0a/evil.example", true},
	{"leading space", " //evil.example", true},
	{"javascript URL", "javascript:alert(document.domain)", true},
	{"data URL", "data:text/html,<script>alert(1)</script>", true},
	{"unicode: fullwidth solidus", "／／evil.example", false},
	{"unicode: fullwidth reverse solidus", "＼＼evil.example", false},
	{"unicode: division slash", "∕∕evil.example", false},
	{"unicode: ideographic full stop in host", "//evil。example", true},
	{"unicode: encoded fullwidth solidus", "/%EF%BC%8F%EF%BC%8Fevil.example", false},
	{"unicode: right-to-left override", "/\u202e//evil.example", false},
	{"encoded dot segments", "/%2e%2e/%2e%2e//evil.example", false},
}

const secLocalTarget = "/orders?id=1#top" // a legitimate return URL, kept as is

func secOpenRedirect(t *testing.T, s *secSuite, e *secEnv) {
	// returnUrl at login: the callback page navigates on to it (meta refresh and link).
	browser := e.client(e.gw1.URL, true)
	login := func(c *secCase, value string) (refresh, link string) {
		c.Helper()
		r := browser.callback(c, browser.authorize(c, "alice", "wonderland", value))
		if r.Status != 200 {
			c.Fatalf("callback: %d\n%.500s", r.Status, r.Body)
		}
		return pageTargets(c, r.Body)
	}
	s.run(t, e, "RED", "login returnUrl: a local path is kept (control)",
		"the callback page navigates to the local path given, unchanged", func(c *secCase) {
			refresh, link := login(c, secLocalTarget)
			checkSameOrigin(c, e.gw1.URL, "meta refresh", refresh, secLocalTarget, true)
			checkSameOrigin(c, e.gw1.URL, "link", link, secLocalTarget, true)
		})
	for _, p := range secRedirectPayloads {
		expect := "the callback page stays on the gateway's origin"
		if p.exact {
			expect = "the callback page navigates to / (returnUrl replaced)"
		}
		s.run(t, e, "RED", "login returnUrl: "+p.name, expect, func(c *secCase) {
			refresh, link := login(c, p.value)
			checkSameOrigin(c, e.gw1.URL, "meta refresh", refresh, "/", p.exact)
			checkSameOrigin(c, e.gw1.URL, "link", link, "/", p.exact)
		})
	}

	// returnUrl at logout, without a session: the answer goes straight to it.
	anon := e.client(e.gw1.URL, false)
	logout := func(c *secCase, value string) (jsonTarget, location string) {
		c.Helper()
		q := "/bff/logout?returnUrl=" + url.QueryEscape(value)
		r := anon.do(c, "POST", q, nil, secAPI...)
		if r.Status != 200 {
			c.Fatalf("POST /bff/logout (JSON): %d %s", r.Status, r.Body)
		}
		jsonTarget, _ = jsonBody(c, r)["redirect_url"].(string)
		r = anon.do(c, "POST", q, strings.NewReader("x=1"), "X-CSRF", "1", "Content-Type", "application/x-www-form-urlencoded",
			"Origin", e.gw1.URL, "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
		if r.Status != http.StatusSeeOther {
			c.Fatalf("POST /bff/logout (form): %d %s", r.Status, r.Body)
		}
		return jsonTarget, r.Header.Get("Location")
	}
	s.run(t, e, "RED", "logout returnUrl: a local path is kept (control)",
		"the logout answer redirects to the local path given", func(c *secCase) {
			j, loc := logout(c, secLocalTarget)
			checkSameOrigin(c, e.gw1.URL, "redirect_url", j, secLocalTarget, true)
			checkSameOrigin(c, e.gw1.URL, "Location", loc, secLocalTarget, false)
		})
	for _, p := range secRedirectPayloads {
		expect := "the logout redirect stays on the gateway's origin"
		if p.exact {
			expect = "the logout redirect goes to / (returnUrl replaced)"
		}
		s.run(t, e, "RED", "logout returnUrl: "+p.name, expect, func(c *secCase) {
			j, loc := logout(c, p.value)
			checkSameOrigin(c, e.gw1.URL, "redirect_url", j, "/", p.exact)
			checkSameOrigin(c, e.gw1.URL, "Location", loc, "/", p.exact)
		})
	}

	// The whole RP-initiated logout with a session: the gateway names its own
	// post_logout_redirect_uri whatever the request says about its host, and the logout
	// callback lands on the returnUrl only when it is local.
	for _, p := range []struct{ name, value string }{{"protocol-relative", "//evil.example"}, {"absolute URL", "https://evil.example"}} {
		s.run(t, e, "RED", "logout round trip with a session, returnUrl "+p.name+", spoofed Host",
			"post_logout_redirect_uri is the gateway's own callback; after the provider, the browser lands on /", func(c *secCase) {
				b := e.client(e.gw1.URL, true)
				cookie := b.login(c, "alice", "wonderland")
				r := b.do(c, "POST", "/bff/logout?returnUrl="+url.QueryEscape(p.value), nil,
					withCookie(cookie, secHeaders(secAPI, "Host", "evil.example", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")...)...)
				if r.Status != 200 {
					c.Fatalf("logout: %d %s", r.Status, r.Body)
				}
				end, _ := url.Parse(jsonBody(c, r)["redirect_url"].(string))
				if end == nil || !strings.HasPrefix(end.String(), e.idp.Issuer()) {
					c.Fatalf("logout redirect_url %v is not the provider's end-session endpoint", end)
				}
				if got := end.Query().Get("post_logout_redirect_uri"); got != e.gw1.URL+"/bff/logout/callback" {
					c.Errorf("post_logout_redirect_uri = %q, want %q", got, e.gw1.URL+"/bff/logout/callback")
				}
				e.addSensitive("id_token_hint", end.Query().Get("id_token_hint"))
				done := harness.ConfirmLogout(c, b.c, end.String())
				done.Body.Close()
				back := done.Header.Get("Location")
				if !strings.HasPrefix(back, e.gw1.URL+"/bff/logout/callback") {
					c.Fatalf("the provider sent the browser to %q", back)
				}
				r = b.noFollow(c, "GET", back, secNavigate...)
				if r.Status != http.StatusFound {
					c.Fatalf("logout callback: %d", r.Status)
				}
				checkSameOrigin(c, e.gw1.URL, "logout callback Location", r.Header.Get("Location"), "/", true)
			})
	}
	s.run(t, e, "RED", "logout callback without the browser's logout cookie",
		"a crafted /bff/logout/callback link (any state, forged cookie) redirects to /", func(c *secCase) {
			for _, cookie := range []string{"", secCookie + "-logout=" + secRandom(), secCookie + "-logout=%2F%2Fevil.example"} {
				hdr := secNavigate
				if cookie != "" {
					hdr = secHeaders(secNavigate, "Cookie", cookie)
				}
				r := anon.do(c, "GET", "/bff/logout/callback?state="+secRandom()+"&returnUrl=//evil.example", nil, hdr...)
				if r.Status != http.StatusFound || r.Header.Get("Location") != "/" {
					c.Errorf("cookie %q: %d Location %q, want 302 to /", cookie, r.Status, r.Header.Get("Location"))
				}
			}
		})
	s.run(t, e, "RED", "post_logout_redirect_uri not registered, sent to the provider directly",
		"oidc-provider refuses the end-session request (no redirect to the attacker's URI)", func(c *secCase) {
			end := endSessionURL(c.T, e.idp)
			for _, target := range []string{"https://evil.example/", e.gw1.URL + "/bff/logout/callbackx", e.gw1.URL + "/bff/logout/callback/../../evil"} {
				q := url.Values{"client_id": {"bff"}, "post_logout_redirect_uri": {target}, "state": {"s"}}
				r := anon.do(c, "GET", end+"?"+q.Encode(), nil, "Accept", "text/html")
				if r.Status != 400 || r.Header.Get("Location") != "" {
					c.Errorf("%s: provider answered %d Location %q, want 400", target, r.Status, r.Header.Get("Location"))
				}
			}
		})
}

func secLogin(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw1
	stats := func(c *secCase) int { return e.idp.Stats(c).TokenRequests["authorization_code"] }

	// --- login CSRF ---------------------------------------------------------------------
	s.run(t, e, "LGN", "login CSRF: the attacker's callback (code and state) in the victim's browser",
		"400; the victim stays signed in as herself, never as the attacker", func(c *secCase) {
			attacker := e.client(gw.URL, true)
			evil := attacker.authorize(c, "mallory", "attacker-pw", "/")
			victim := e.client(gw.URL, true)
			cookie := victim.login(c, "alice", "wonderland")
			if r := victim.callback(c, evil); r.Status != 400 {
				c.Errorf("the victim's browser completed the attacker's login: %d", r.Status)
			}
			e.alive(c, gw, victim.session(c), "alice", "after the attacker's callback")
			if victim.session(c) != cookie {
				c.Errorf("the victim's session cookie was replaced")
			}
		})
	s.run(t, e, "LGN", "code injection: the attacker's code with the victim's own state",
		"400 (the victim's PKCE verifier does not match the attacker's code); no session", func(c *secCase) {
			attacker := e.client(gw.URL, true)
			evil, _ := url.Parse(attacker.authorize(c, "mallory", "attacker-pw", "/"))
			victim := e.client(gw.URL, true)
			auth, _ := url.Parse(victim.start(c, ""))
			q := evil.Query()
			q.Set("state", auth.Query().Get("state"))
			evil.RawQuery = q.Encode()
			if r := victim.callback(c, evil.String()); r.Status != 400 {
				c.Errorf("callback with an injected code: %d, want 400", r.Status)
			}
			if v := victim.session(c); v != "" {
				c.Errorf("the victim got a session cookie")
				e.dead(c, gw, v, "the injected login")
			}
		})
	s.run(t, e, "LGN", "forged state", "400 and no session", func(c *secCase) {
		b := e.client(gw.URL, true)
		u, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
		q := u.Query()
		q.Set("state", secRandom())
		u.RawQuery = q.Encode()
		if r := b.callback(c, u.String()); r.Status != 400 {
			c.Errorf("forged state: %d", r.Status)
		}
		if b.session(c) != "" {
			c.Errorf("a forged state created a session")
		}
	})
	s.run(t, e, "LGN", "missing, empty or oversized state", "400 for each, no session", func(c *secCase) {
		b := e.client(gw.URL, true)
		u, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
		for _, state := range []*string{nil, new(string), ptr(strings.Repeat("A", 200))} {
			q := u.Query()
			q.Del("state")
			if state != nil {
				q.Set("state", *state)
			}
			v := *u
			v.RawQuery = q.Encode()
			if r := b.callback(c, v.String()); r.Status != 400 {
				c.Errorf("state %v: %d", state != nil, r.Status)
			}
		}
		if b.session(c) != "" {
			c.Errorf("a session was created")
		}
	})

	// --- replay -------------------------------------------------------------------------
	s.run(t, e, "LGN", "authorization code replay: the completed callback again, same browser",
		"400; the first session is untouched", func(c *secCase) {
			b := e.client(gw.URL, true)
			cb := b.authorize(c, "alice", "wonderland", "/")
			if r := b.callback(c, cb); r.Status != 200 {
				c.Fatalf("first callback: %d", r.Status)
			}
			first := b.session(c)
			before := stats(c)
			if r := b.callback(c, cb); r.Status != 400 {
				c.Errorf("replayed callback: %d", r.Status)
			}
			if n := stats(c) - before; n != 0 {
				c.Errorf("the replay reached the provider's token endpoint %d time(s)", n)
			}
			e.alive(c, gw, first, "alice", "after the replay")
		})
	s.run(t, e, "LGN", "authorization code replay: the completed callback in another browser",
		"400; no session in the other browser", func(c *secCase) {
			b := e.client(gw.URL, true)
			cb := b.authorize(c, "alice", "wonderland", "/")
			if r := b.callback(c, cb); r.Status != 200 {
				c.Fatalf("first callback: %d", r.Status)
			}
			thief := e.client(gw.URL, true)
			if r := thief.callback(c, cb); r.Status != 400 {
				c.Errorf("replay in another browser: %d", r.Status)
			}
			if thief.session(c) != "" {
				c.Errorf("the other browser got a session")
			}
		})
	s.run(t, e, "LGN", "authorization code replay: the same callback twice at once",
		"exactly one 200 and one 400; the code reaches the token endpoint once", func(c *secCase) {
			b := e.client(gw.URL, true)
			cb := b.authorize(c, "alice", "wonderland", "/")
			before := stats(c)
			var wg sync.WaitGroup
			statuses := make([]int, 2)
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest("GET", cb, nil)
					req.Header.Set("Sec-Fetch-Mode", "navigate")
					resp, err := b.c.Do(req)
					if err != nil {
						return
					}
					resp.Body.Close()
					statuses[i] = resp.StatusCode
				}()
			}
			wg.Wait()
			ok, refused := 0, 0
			for _, st := range statuses {
				switch st {
				case 200:
					ok++
				case 400:
					refused++
				}
			}
			if ok != 1 || refused != 1 {
				c.Errorf("two concurrent callbacks: statuses %v, want one 200 and one 400", statuses)
			}
			if n := stats(c) - before; n != 1 {
				c.Errorf("%d authorization_code requests at the provider, want 1", n)
			}
		})
	s.run(t, e, "LGN", "state replay: a used state with a fresh code",
		"400; the genuine callback of the fresh login still works", func(c *secCase) {
			b := e.client(gw.URL, true)
			first, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
			if r := b.callback(c, first.String()); r.Status != 200 {
				c.Fatalf("first callback: %d", r.Status)
			}
			second, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
			replay := *second
			q := replay.Query()
			q.Set("state", first.Query().Get("state"))
			replay.RawQuery = q.Encode()
			if r := b.callback(c, replay.String()); r.Status != 400 {
				c.Errorf("used state with a fresh code: %d", r.Status)
			}
			if r := b.callback(c, second.String()); r.Status != 200 {
				c.Errorf("the genuine second callback: %d, want 200", r.Status)
			}
		})
	s.run(t, e, "LGN", "authorization code replay: a used code in the attacker's own fresh flow",
		"400; the attacker gets no session", func(c *secCase) {
			victim := e.client(gw.URL, true)
			used, _ := url.Parse(victim.authorize(c, "alice", "wonderland", "/"))
			if r := victim.callback(c, used.String()); r.Status != 200 {
				c.Fatalf("victim's callback: %d", r.Status)
			}
			attacker := e.client(gw.URL, true)
			auth, _ := url.Parse(attacker.start(c, ""))
			q := used.Query()
			q.Set("state", auth.Query().Get("state"))
			inj := *used
			inj.RawQuery = q.Encode()
			if r := attacker.callback(c, inj.String()); r.Status != 400 {
				c.Errorf("a used code in a fresh flow: %d", r.Status)
			}
			if attacker.session(c) != "" {
				c.Errorf("the attacker got a session")
			}
		})

	// --- session fixation ---------------------------------------------------------------
	s.run(t, e, "LGN", "session fixation: the attacker's valid session cookie planted before login",
		"login issues a new cookie; the planted one never opens the victim's session (it is ended)", func(c *secCase) {
			attacker := e.client(gw.URL, true)
			planted := attacker.login(c, "mallory", "attacker-pw")
			victim := e.client(gw.URL, true)
			victim.plant(secCookie, planted)
			r := victim.callback(c, victim.authorize(c, "alice", "wonderland", "/"))
			if r.Status != 200 {
				c.Fatalf("callback: %d", r.Status)
			}
			fresh, set := setCookieValue(r, secCookie)
			if !set || fresh == "" || fresh == planted {
				c.Errorf("the callback did not issue a fresh session cookie (set %v, same as planted %v)", set, fresh == planted)
			}
			e.alive(c, gw, victim.session(c), "alice", "the victim after login")
			status, m := e.user(c, gw, planted)
			if claims, _ := m["claims"].(map[string]any); claims["sub"] == "alice" {
				c.Errorf("the planted cookie opens the victim's session")
			}
			if status != 401 {
				c.Errorf("the planted session survived the victim's login: /bff/user %d %v", status, m)
			}
		})
	s.run(t, e, "LGN", "session fixation: an unknown session id planted before login",
		"login issues a new cookie; the planted value opens nothing", func(c *secCase) {
			raw := make([]byte, 49)
			rand.Read(raw)
			raw[0] = 1
			planted := base64.RawURLEncoding.EncodeToString(raw)
			victim := e.client(gw.URL, true)
			victim.plant(secCookie, planted)
			r := victim.callback(c, victim.authorize(c, "alice", "wonderland", "/"))
			fresh, _ := setCookieValue(r, secCookie)
			if r.Status != 200 || fresh == "" || fresh == planted {
				c.Errorf("callback %d, fresh cookie %v", r.Status, fresh != "" && fresh != planted)
			}
			e.dead(c, gw, planted, "the planted id")
		})
	s.run(t, e, "LGN", "a second login in the same browser",
		"a new session id; the previous cookie is ended", func(c *secCase) {
			b := e.client(gw.URL, true)
			first := b.login(c, "alice", "wonderland")
			second := b.login(c, "alice", "wonderland")
			if first == second {
				c.Errorf("the second login kept the session cookie")
			}
			if reason := e.dead(c, gw, first, "the first session"); reason != "session_revoked" {
				c.Errorf("the first session: reason %q, want session_revoked", reason)
			}
			e.alive(c, gw, second, "alice", "the second session")
		})
	s.run(t, e, "LGN", "a second login whose callback carries no session cookie (the provider on another site)",
		"the first session ends anyway (recorded in the flow at /bff/login, which carried the cookie): its cookie gets 401 session_revoked", func(c *secCase) {
			b := e.client(gw.URL, true)
			first := b.login(c, "alice", "wonderland")
			cb := b.authorize(c, "alice", "wonderland", "/") // /bff/login carries the cookie
			// A browser sends no SameSite=Strict cookie after a cross-site redirect.
			u, _ := url.Parse(gw.URL)
			b.c.Jar.SetCookies(u, []*http.Cookie{{Name: secCookie, Path: "/", MaxAge: -1}})
			if b.session(c) != "" {
				c.Fatalf("the session cookie could not be dropped from the jar")
			}
			if r := b.callback(c, cb); r.Status != 200 {
				c.Fatalf("callback: %d", r.Status)
			}
			second := b.session(c)
			if second == "" || second == first {
				c.Errorf("the second login issued no new session cookie")
			}
			if reason := e.dead(c, gw, first, "the first session"); reason != "session_revoked" {
				c.Errorf("the first session: reason %q, want session_revoked", reason)
			}
			e.alive(c, gw, second, "alice", "the second session")
		})

	// --- mix-up (RFC 9207) ------------------------------------------------------------------
	for _, v := range []struct{ name, iss string }{
		{"iss of another issuer", "http://127.0.0.1:1/evil"},
		{"iss missing (the provider advertises it)", ""},
		{"iss with a trailing slash", e.idp.Issuer() + "/"},
		{"iss differing in case", strings.ToUpper(e.idp.Issuer())},
	} {
		s.run(t, e, "LGN", "mix-up: "+v.name, "400 login_issuer_mismatch; the code never reaches a token endpoint", func(c *secCase) {
			b := e.client(gw.URL, true)
			u, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
			q := u.Query()
			if q.Get("iss") != e.idp.Issuer() {
				c.Fatalf("the provider's authorization response has iss %q, want %q", q.Get("iss"), e.idp.Issuer())
			}
			q.Del("iss")
			if v.iss != "" {
				q.Set("iss", v.iss)
			}
			u.RawQuery = q.Encode()
			before := stats(c)
			r := b.callback(c, u.String())
			if r.Status != 400 || !strings.Contains(r.Body, "login_issuer_mismatch") {
				c.Errorf("callback: %d, want 400 login_issuer_mismatch\n%.300s", r.Status, r.Body)
			}
			if n := stats(c) - before; n != 0 {
				c.Errorf("the code was sent to the token endpoint %d time(s)", n)
			}
			if b.session(c) != "" {
				c.Errorf("a session was created")
			}
		})
	}

	// --- PKCE ---------------------------------------------------------------------------
	s.run(t, e, "LGN", "PKCE downgrade: the gateway's authorization requests",
		"every request carries code_challenge_method=S256 and a fresh 43-character challenge, also when /bff/login is given PKCE parameters", func(c *secCase) {
			b := e.client(gw.URL, true)
			seen := map[string]bool{}
			for _, query := range []string{"", "?code_challenge=attacker&code_challenge_method=plain",
				"?code_challenge_method=plain&prompt=none&login_hint=x&redirect_uri=https://evil.example/cb"} {
				u, err := url.Parse(b.start(c, query))
				if err != nil {
					c.Fatal(err)
				}
				q := u.Query()
				if m := q["code_challenge_method"]; len(m) != 1 || m[0] != "S256" {
					c.Errorf("login%s: code_challenge_method %v, want [S256]", query, m)
				}
				ch := q["code_challenge"]
				if len(ch) != 1 || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(ch[0]) || seen[ch[0]] {
					c.Errorf("login%s: code_challenge %v is not one fresh S256 challenge", query, ch)
				} else {
					seen[ch[0]] = true
				}
				if r := q["redirect_uri"]; len(r) != 1 || r[0] != gw.URL+"/bff/callback" {
					c.Errorf("login%s: redirect_uri %v", query, r)
				}
			}
		})
	s.run(t, e, "LGN", "PKCE downgrade: configuration cannot remove PKCE",
		"`gatehouse check` refuses auth_params that set code_challenge or code_challenge_method", func(c *secCase) {
			for _, param := range []string{"code_challenge_method: plain", "code_challenge: x"} {
				cfg := fmt.Sprintf("public_url: http://127.0.0.1:1\nprovider:\n  issuer: %s\n  client_id: bff\n  client_secret: s3cret\n  auth_params: {%s}\n", e.idp.Issuer(), param)
				path := filepath.Join(c.TempDir(), "pkce.yaml")
				os.WriteFile(path, []byte(cfg), 0o600)
				out, err := exec.Command(binary, "check", "--config", path).CombinedOutput()
				if err == nil || !strings.Contains(string(out), "auth_params") {
					c.Errorf("gatehouse check did not refuse auth_params {%s} (%v):\n%s", param, err, out)
				}
			}
		})
	s.run(t, e, "LGN", "PKCE downgrade: an authorization request without code_challenge, to oidc-provider",
		"the provider refuses it for the gateway's client (no code is issued)", func(c *secCase) {
			for _, extra := range []url.Values{{}, {"code_challenge": {"x"}, "code_challenge_method": {"plain"}}} {
				q := url.Values{"client_id": {"bff"}, "response_type": {"code"}, "scope": {"openid"},
					"redirect_uri": {gw.URL + "/bff/callback"}, "state": {"s"}, "nonce": {"n"}}
				for k, v := range extra {
					q[k] = v
				}
				r := e.client(gw.URL, false).do(c, "GET", e.idp.Issuer()+"/auth?"+q.Encode(), nil)
				loc, _ := url.Parse(r.Header.Get("Location"))
				if loc != nil && loc.Query().Get("code") != "" {
					c.Errorf("%v: the provider issued a code without S256 PKCE", extra)
				}
				if loc == nil || loc.Query().Get("error") == "" {
					c.Errorf("%v: the provider did not answer with an error: %d %s", extra, r.Status, r.Header.Get("Location"))
				}
			}
		})
	s.run(t, e, "LGN", "PKCE downgrade: redeeming the gateway's code without its verifier",
		"the token endpoint refuses the code without, or with a wrong, code_verifier, even with the client secret", func(c *secCase) {
			b := e.client(gw.URL, true)
			u, _ := url.Parse(b.authorize(c, "alice", "wonderland", "/"))
			for _, verifier := range []string{"", "wrong-verifier-wrong-verifier-wrong-verifier-0123"} {
				form := url.Values{"grant_type": {"authorization_code"}, "code": {u.Query().Get("code")}, "redirect_uri": {gw.URL + "/bff/callback"}}
				if verifier != "" {
					form.Set("code_verifier", verifier)
				}
				req, _ := http.NewRequest("POST", e.idp.Issuer()+"/token", strings.NewReader(form.Encode()))
				req.SetBasicAuth("bff", "s3cret")
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					c.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 400 {
					c.Errorf("verifier %q: the token endpoint answered %d, want 400", verifier, resp.StatusCode)
				}
			}
		})
}

func ptr[T any](v T) *T { return &v }

// secIDTokens: ID tokens an attacker (or a broken provider) could hand the gateway, from
// the fake provider (a real one does not sign bad tokens on demand).
func secIDTokens(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw3
	reset := func() { e.fake.Set(func(k *idptest.Knobs) { *k = idptest.Knobs{AdvertiseIss: true} }) }
	attempt := func(c *secCase, knobs func(k *idptest.Knobs)) (*response, *secClient) {
		c.Helper()
		reset()
		defer reset()
		e.fake.Set(knobs)
		b := e.client(gw.URL, true)
		r := b.callback(c, b.authorize(c, "", "", "/"))
		return r, b
	}
	s.run(t, e, "IDT", "a correct ID token (control)", "200 and a session: the fake provider and the harness work", func(c *secCase) {
		r, b := attempt(c, func(k *idptest.Knobs) {})
		if r.Status != 200 {
			c.Fatalf("callback: %d\n%.300s", r.Status, r.Body)
		}
		e.alive(c, gw, b.session(c), "alice", "the control login")
	})
	now := time.Now()
	for _, v := range []struct {
		name  string
		knobs func(k *idptest.Knobs)
		alg   string // the alg the ID token that was handed out must have
	}{
		{"alg none", func(k *idptest.Knobs) { k.SignWith = "none" }, "none"},
		{"HS256 signed with the client secret (RS256 expected)", func(k *idptest.Knobs) { k.SignWith = "HS256" }, "HS256"},
		{"HS256 signed with the provider's RSA public key", func(k *idptest.Knobs) { k.SignWith = "HS256-publickey" }, "HS256"},
		{"RS256 signed with a key the provider does not publish", func(k *idptest.Knobs) { k.SignWith = "forged" }, "RS256"},
		{"wrong aud", func(k *idptest.Knobs) { k.IDTokenMutate = func(m map[string]any) { m["aud"] = "another-client" } }, ""},
		{"aud with an untrusted audience besides ours", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) { m["aud"] = []string{"another-client", m["aud"].(string)} }
		}, ""},
		{"azp of another client", func(k *idptest.Knobs) { k.IDTokenMutate = func(m map[string]any) { m["azp"] = "another-client" } }, ""},
		{"wrong iss", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) { m["iss"] = "https://evil.example" }
		}, ""},
		{"expired", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) {
				m["iat"], m["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
			}
		}, ""},
		{"iat in the future", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) { m["iat"], m["exp"] = now.Add(time.Hour).Unix(), now.Add(2*time.Hour).Unix() }
		}, ""},
		{"nbf in the future", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) { m["nbf"] = now.Add(time.Hour).Unix() }
		}, ""},
		{"wrong nonce", func(k *idptest.Knobs) { k.IDTokenMutate = func(m map[string]any) { m["nonce"] = "attacker-nonce" } }, ""},
		{"no nonce", func(k *idptest.Knobs) { k.IDTokenMutate = func(m map[string]any) { delete(m, "nonce") } }, ""},
		{"at_hash of another access token", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(m map[string]any) { m["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }
		}, ""},
		{"no sub", func(k *idptest.Knobs) { k.IDTokenMutate = func(m map[string]any) { delete(m, "sub") } }, ""},
		{"userinfo about another subject", func(k *idptest.Knobs) { k.UserinfoSubject = "mallory" }, ""},
	} {
		s.run(t, e, "IDT", "ID token: "+v.name, "400, no session cookie, /bff/user 401", func(c *secCase) {
			r, b := attempt(c, v.knobs)
			if r.Status != 400 {
				c.Errorf("callback: %d, want 400\n%.300s", r.Status, r.Body)
			}
			// The token really was what the case says (a broken forgery would pass vacuously).
			var idt string
			for _, sec := range e.fake.IssuedSecrets() {
				if strings.Count(sec, ".") == 2 && jwtHeader(sec) != nil {
					idt = sec
				}
			}
			if h := jwtHeader(idt); idt == "" || v.alg != "" && h["alg"] != v.alg {
				c.Errorf("the fake provider handed out %v, not a token with alg %s", h, v.alg)
			}
			if val, set := setCookieValue(r, secCookie); set && val != "" {
				c.Errorf("the callback set a session cookie")
			}
			if u := b.do(c, "GET", "/bff/user", nil, secSameOrigin...); u.Status != 401 {
				c.Errorf("/bff/user after the refused login: %d %s", u.Status, u.Body)
			}
		})
	}
}
