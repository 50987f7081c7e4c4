package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// secRefused fails t unless r is a 403 csrf_rejected.
func secRefused(t testing.TB, r *response, what string) {
	t.Helper()
	if r.Status != 403 {
		t.Errorf("%s: status %d, want 403\n%.300s", what, r.Status, r.Body)
		return
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && !strings.Contains(r.Body, "csrf_rejected") {
		t.Errorf("%s: 403 but not csrf_rejected: %s", what, r.Body)
	}
}

func secCSRF(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw1
	var laptop, phone string // two sessions of alice
	var phoneSID string
	ensure := func(c *secCase) {
		c.Helper()
		if st, _ := e.user(c, gw, laptop); laptop == "" || st != 200 {
			laptop = e.client(gw.URL, true).login(c, "alice", "wonderland")
		}
		if st, _ := e.user(c, gw, phone); phone == "" || st != 200 {
			phone = e.client(gw.URL, true).login(c, "alice", "wonderland")
			phoneSID = e.sid(c, gw, phone)
		}
	}
	anyClient := e.client(gw.URL, false)
	type attempt struct {
		name, method, path, body string
		hdr                      []string
		want                     int
	}
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	textPlain := []string{"Content-Type", "text/plain"}
	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "empty"}
	run := func(list []attempt) {
		for _, a := range list {
			want := a.want
			if want == 0 {
				want = 403
			}
			expect := fmt.Sprintf("%d, the session lives on, nothing reaches the upstream or the provider", want)
			s.run(t, e, "CSRF", a.name, expect, func(c *secCase) {
				ensure(c)
				path := strings.ReplaceAll(a.path, "{sid}", phoneSID)
				mark := e.up.count()
				before := e.idp.Stats(c).Revocations
				var body io.Reader
				if a.body != "" {
					body = strings.NewReader(a.body)
				}
				r := anyClient.do(c, a.method, path, body, withCookie(laptop, a.hdr...)...)
				if want == 403 {
					secRefused(c, r, a.method+" "+path)
				} else if r.Status != want {
					c.Errorf("%s %s: %d, want %d\n%.300s", a.method, path, r.Status, want, r.Body)
				}
				e.up.untouched(c, mark, a.name)
				if n := e.idp.Stats(c).Revocations - before; n != 0 {
					c.Errorf("%d token revocation(s) at the provider", n)
				}
				e.alive(c, gw, laptop, "alice", "the session that was attacked")
				e.alive(c, gw, phone, "alice", "alice's other session")
			})
		}
	}

	run([]attempt{
		{name: "logout: POST without the CSRF header", method: "POST", path: "/bff/logout", hdr: secSameOrigin},
		{name: "logout: wrong CSRF header value", method: "POST", path: "/bff/logout", hdr: secHeaders(secSameOrigin, "X-CSRF", "0")},
		{name: "logout: cross-site fetch metadata", method: "POST", path: "/bff/logout", hdr: secHeaders(crossSite, "X-CSRF", "1")},
		{name: "logout: same-site sibling origin", method: "POST", path: "/bff/logout", hdr: []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "cors"}},
		{name: "logout: foreign Origin, no fetch metadata", method: "POST", path: "/bff/logout", hdr: []string{"X-CSRF", "1", "Origin", secEvilOrigin}},
		{name: "logout: Origin null", method: "POST", path: "/bff/logout", hdr: []string{"X-CSRF", "1", "Origin", "null"}},
		{name: "logout: text/plain form POST from another site", method: "POST", path: "/bff/logout", body: "x=1",
			hdr: secHeaders(textPlain, "Origin", secEvilOrigin, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")},
		{name: "logout: urlencoded form POST from another site", method: "POST", path: "/bff/logout", body: "returnUrl=%2F",
			hdr: secHeaders(form, "Origin", secEvilOrigin, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")},
		{name: "logout: GET without sid", method: "GET", path: "/bff/logout", hdr: secNavigate, want: 400},
		{name: "logout: GET with another session's sid", method: "GET", path: "/bff/logout?sid={sid}", hdr: secNavigate, want: 400},
		{name: "logout: GET with a made-up sid", method: "GET", path: "/bff/logout?sid=AAAAAAAAAAAAAAAAAAAAAA", hdr: secNavigate, want: 400},

		{name: "sessions: DELETE another device without the CSRF header", method: "DELETE", path: "/bff/sessions/{sid}", hdr: secSameOrigin},
		{name: "sessions: DELETE another device, cross-site fetch metadata", method: "DELETE", path: "/bff/sessions/{sid}", hdr: secHeaders(crossSite, "X-CSRF", "1")},
		{name: "sessions: DELETE another device, foreign Origin", method: "DELETE", path: "/bff/sessions/{sid}", hdr: []string{"X-CSRF", "1", "Origin", secEvilOrigin}},
		{name: "sessions: sign out other devices without the CSRF header", method: "DELETE", path: "/bff/sessions?others=true", hdr: secSameOrigin},
		{name: "sessions: sign out other devices, same-site sibling", method: "DELETE", path: "/bff/sessions?others=true", hdr: []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-site"}},
		{name: "sessions: list from another site", method: "GET", path: "/bff/sessions", hdr: crossSite},
		{name: "user: read from a foreign Origin (slides the session)", method: "GET", path: "/bff/user", hdr: []string{"Origin", secEvilOrigin}},

		{name: "route: GET without the CSRF header", method: "GET", path: "/api/x", hdr: secSameOrigin},
		{name: "route: wrong CSRF header value", method: "GET", path: "/api/x", hdr: secHeaders(secSameOrigin, "X-CSRF", "true")},
		{name: "route: CSRF header twice", method: "GET", path: "/api/x", hdr: secHeaders(secSameOrigin, "X-CSRF", "1", "X-CSRF", "1")},
		{name: "route: POST with cross-site fetch metadata", method: "POST", path: "/api/x", body: "{}", hdr: secHeaders(crossSite, "X-CSRF", "1", "Content-Type", "application/json")},
		{name: "route: PUT from a same-site sibling", method: "PUT", path: "/api/x", body: "{}", hdr: []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-site", "Content-Type", "application/json"}},
		{name: "route: DELETE with a foreign Origin, no fetch metadata", method: "DELETE", path: "/api/x", hdr: []string{"X-CSRF", "1", "Origin", secEvilOrigin}},
		{name: "route: text/plain form POST from another site", method: "POST", path: "/api/x", body: `{"amount":1000}`,
			hdr: secHeaders(textPlain, "Origin", secEvilOrigin, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")},
		{name: "route: urlencoded form POST from another site", method: "POST", path: "/api/x", body: "amount=1000",
			hdr: secHeaders(form, "Origin", secEvilOrigin, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")},
		{name: "route: cross-site top-level navigation carrying the cookie", method: "GET", path: "/api/x",
			hdr: []string{"Accept", "text/html", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}},
		{name: "route without a token (token: none): no CSRF header", method: "POST", path: "/open/x", body: "a=1", hdr: secHeaders(form, "Origin", secEvilOrigin)},
		{name: "route: WebSocket handshake from a foreign Origin", method: "GET", path: "/api/ws",
			hdr: []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", secEvilOrigin}},
		{name: "route: WebSocket handshake without Origin", method: "GET", path: "/api/ws",
			hdr: []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}},
	})

	s.run(t, e, "CSRF", "route: CORS preflight from another site",
		"no Access-Control-Allow-* grant; nothing reaches the upstream", func(c *secCase) {
			for _, path := range []string{"/api/x", "/open/x", "/bff/logout", "/bff/user"} {
				mark := e.up.count()
				r := anyClient.do(c, "OPTIONS", path, nil, "Origin", secEvilOrigin, "Access-Control-Request-Method", "POST",
					"Access-Control-Request-Headers", "x-csrf, content-type", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors")
				for name := range r.Header {
					if strings.HasPrefix(strings.ToLower(name), "access-control-allow-") {
						c.Errorf("OPTIONS %s: the answer grants CORS: %s: %s", path, name, r.Header.Get(name))
					}
				}
				e.up.untouched(c, mark, "OPTIONS "+path)
			}
		})
	s.run(t, e, "CSRF", "controls: the same calls from the SPA itself succeed",
		"200 from the route with the session's bearer token; 204 for ending the other device", func(c *secCase) {
			ensure(c)
			mark := e.up.count()
			r := anyClient.do(c, "GET", "/api/x", nil, withCookie(laptop, secAPI...)...)
			if r.Status != 200 {
				c.Fatalf("GET /api/x from the SPA: %d %s", r.Status, r.Body)
			}
			seen := e.up.since(mark)
			if len(seen) != 1 || !strings.HasPrefix(seen[0].Header.Get("Authorization"), "Bearer ") {
				c.Errorf("the upstream did not get one call with a bearer token: %d calls", len(seen))
			}
			r = anyClient.do(c, "DELETE", "/bff/sessions/"+phoneSID, nil, withCookie(laptop, secAPI...)...)
			if r.Status != 204 {
				c.Errorf("DELETE /bff/sessions/{phone} from the SPA: %d %s", r.Status, r.Body)
			}
			e.dead(c, gw, phone, "the phone after the SPA ended it")
		})
}

func secProxy(t *testing.T, s *secSuite, e *secEnv) {
	gw := e.gw1
	var bob string
	ensureBob := func(c *secCase) string {
		c.Helper()
		if st, _ := e.user(c, gw, bob); bob == "" || st != 200 {
			bob = e.client(gw.URL, true).login(c, "bob", "builder")
		}
		return bob
	}
	host := strings.TrimPrefix(gw.URL, "http://")
	// raw sends one request with exactly the given request target and extra header lines,
	// as bob's SPA would (cookie, CSRF header), and returns the response and what reached
	// the upstream.
	raw := func(c *secCase, method, target string, cookie string, extra ...string) (*response, []secSeen) {
		c.Helper()
		lines := []string{method + " " + target + " HTTP/1.1", "Host: " + host, "X-CSRF: 1", "Sec-Fetch-Site: same-origin",
			"Accept: application/json", "Connection: close"}
		if cookie != "" {
			lines = append(lines, "Cookie: "+secCookie+"="+cookie)
		}
		lines = append(lines, extra...)
		mark := e.up.count()
		out, _ := secRaw(c, gw.URL, secRawRequest(append(lines, "")...), 5*time.Second)
		list := secResponses(out)
		if len(list) == 0 {
			c.Fatalf("%s %s: no HTTP response: %q", method, target, out)
		}
		return list[0], e.up.since(mark)
	}

	// --- paths -------------------------------------------------------------------------
	for _, p := range []struct {
		name, target string
		anonymous    bool
		want         int
		upstream     string // the path the upstream must see; "" = nothing may reach it
	}{
		{"control: a plain route path", "/api/ok", false, 200, "/api/ok"},
		{"traversal ../ into a route with claim rules", "/api/../admin-api/x", false, 403, ""},
		{"traversal %2e%2e", "/api/%2e%2e/admin-api/x", false, 403, ""},
		{"traversal %2E%2E (upper case)", "/api/%2E%2E/admin-api/x", false, 403, ""},
		{"traversal .%2e", "/api/.%2e/admin-api/x", false, 403, ""},
		{"traversal with an encoded slash %2e%2e%2f", "/api/%2e%2e%2fadmin-api/x", false, 403, ""},
		{"traversal ..%2F with encoded slashes throughout", "/api/..%2Fadmin-api%2Fx", false, 403, ""},
		{"double-encoded traversal %252e%252e stays a literal segment", "/api/%252e%252e/admin-api/x", false, 200, "/api/%2e%2e/admin-api/x"},
		{"backslash traversal ..\\", `/api/..\admin-api/x`, false, 400, ""},
		{"encoded backslash traversal ..%5c", "/api/..%5cadmin-api/x", false, 400, ""},
		{"NUL byte %00", "/api/%00/../admin-api/x", false, 400, ""},
		{"double slash //", "//admin-api/x", false, 403, ""},
		{"encoded slash in the prefix", "/admin-api%2fx", false, 403, ""},
		{"case variant of a prefix", "/ADMIN-API/x", false, 404, ""},
		{"raw # then traversal", "/api/x#/../../admin-api/x", false, 403, ""},
		{"%23 then traversal", "/api/x%23/../../admin-api/x", false, 403, ""},
		{"%23 inside a segment is forwarded encoded", "/api/x%23frag", false, 200, "/api/x#frag"},
		{"raw # inside a segment is forwarded encoded", "/api/x#frag", false, 200, "/api/x#frag"},
		{"semicolon dot segment ..; (Tomcat reads /api/..;/x as /x)", "/api/..;/admin-api/x", false, 400, ""},
		{"semicolon dot segment with parameters ..;x=1", "/api/..;x=1/admin-api/x", false, 400, ""},
		{"encoded semicolon dot segment %2e%2e;", "/api/%2e%2e;/admin-api/x", false, 400, ""},
		{"semicolon dot segment .;", "/api/.;/x", false, 400, ""},
		{"semicolon dot segments escaping the upstream base path (strip_prefix)", "/strip/..;/..;/secret", false, 400, ""},
		{"semicolon dot segment from a public route into a user route, anonymous", "/open/..;/api/x", true, 400, ""},
		{"other path parameters pass: ;jsessionid=", "/api/x;jsessionid=0123", false, 200, "/api/x;jsessionid=0123"},
		{"escape the upstream base path (strip_prefix)", "/strip/%2e%2e/secret", false, 404, ""},
		{"escape the upstream base path, encoded slashes", "/strip/..%2f..%2fsecret", false, 404, ""},
		{"control: strip_prefix route", "/strip/x", false, 200, "/base/x"},
		{"traversal out of every route", "/api/x/../../../../etc/passwd", false, 404, ""},
		{"traversal from a public route into a user route, anonymous", "/open/..%2fapi/x", true, 401, ""},
		{"absolute-form request target naming another host", "http://evil.example/api/x", false, 200, "/api/x"},
	} {
		expect := fmt.Sprintf("%d; nothing reaches the upstream", p.want)
		if p.upstream != "" {
			expect = fmt.Sprintf("%d; the upstream sees exactly %s (the path that was matched)", p.want, p.upstream)
		}
		s.run(t, e, "PRX", "path: "+p.name, expect, func(c *secCase) {
			cookie := ""
			if !p.anonymous {
				cookie = ensureBob(c)
			}
			r, seen := raw(c, "GET", p.target, cookie)
			if r.Status != p.want {
				c.Errorf("GET %s: %d, want %d\n%.300s", p.target, r.Status, p.want, r.Body)
			}
			if p.upstream == "" {
				for _, x := range seen {
					c.Errorf("GET %s reached the upstream as %s", p.target, x.RequestURI)
				}
				return
			}
			if len(seen) != 1 {
				c.Fatalf("GET %s: %d requests reached the upstream, want 1", p.target, len(seen))
			}
			x := seen[0]
			if x.Path != p.upstream {
				c.Errorf("GET %s: the upstream saw path %q (request URI %q), want %q", p.target, x.Path, x.RequestURI, p.upstream)
			}
			if strings.Contains(x.RequestURI, "#") || strings.Contains(x.RequestURI, "/../") || strings.Contains(x.RequestURI, `\`) {
				c.Errorf("GET %s: the upstream's request URI %q can be read as another path", p.target, x.RequestURI)
			}
			if !strings.HasPrefix(x.Header.Get("Authorization"), "Bearer ") {
				c.Errorf("GET %s: the upstream got no bearer token", p.target)
			}
			if !strings.HasPrefix(x.Host, "127.0.0.1:") {
				c.Errorf("GET %s: the upstream saw Host %q", p.target, x.Host)
			}
		})
	}

	// --- request smuggling ---------------------------------------------------------------
	inner := "GET /open/smuggled HTTP/1.1\r\nHost: " + host + "\r\nX-CSRF: 1\r\nSec-Fetch-Site: same-origin\r\n\r\n"
	outer := func(headers ...string) string {
		return strings.Join(append([]string{"POST /open/outer HTTP/1.1", "Host: " + host, "X-CSRF: 1", "Sec-Fetch-Site: same-origin",
			"Content-Type: text/plain"}, headers...), "\r\n") + "\r\n\r\n"
	}
	clte := "0\r\n\r\n" + inner
	tecl := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(inner), inner)
	for _, v := range []struct {
		name, raw string
		both      bool // carries both Transfer-Encoding and Content-Length
		refuse    bool // must be refused outright
	}{
		{"CL.TE: Content-Length covers a second request after the last chunk",
			outer("Content-Length: "+fmt.Sprint(len(clte)), "Transfer-Encoding: chunked") + clte, true, false},
		{"TE.CL: a second request inside a chunk, Content-Length 4",
			outer("Transfer-Encoding: chunked", "Content-Length: 4") + tecl, true, false},
		{"TE with a tab before chunked, plus Content-Length",
			outer("Content-Length: "+fmt.Sprint(len(clte)), "Transfer-Encoding:\tchunked") + clte, true, false},
		{"two Transfer-Encoding headers", outer("Transfer-Encoding: chunked", "Transfer-Encoding: identity", "Content-Length: "+fmt.Sprint(len(clte))) + clte, true, true},
		{"Transfer-Encoding: xchunked", outer("Transfer-Encoding: xchunked", "Content-Length: "+fmt.Sprint(len(clte))) + clte, true, true},
		{"space before the colon of Transfer-Encoding", outer("Transfer-Encoding : chunked", "Content-Length: "+fmt.Sprint(len(clte))) + clte, true, true},
		{"two different Content-Length headers", outer("Content-Length: 5", "Content-Length: "+fmt.Sprint(5+len(inner))) + "hello" + inner, false, true},
		{"Content-Length with a sign", outer("Content-Length: +5") + "hello" + inner, false, true},
	} {
		expect := "the upstream never sees the smuggled request"
		if v.refuse {
			expect = "refused (4xx/5xx) and the connection closed; nothing reaches the upstream"
		} else if v.both {
			expect += "; the connection is closed after the response (RFC 9112 §6.1)"
		}
		s.run(t, e, "PRX", "smuggling: "+v.name, expect, func(c *secCase) {
			mark := e.up.count()
			out, closed := secRaw(c, gw.URL, v.raw, 2*time.Second)
			time.Sleep(300 * time.Millisecond) // anything smuggled has arrived by now
			seen := e.up.since(mark)
			for _, x := range seen {
				if strings.Contains(x.Path, "smuggled") {
					c.Errorf("the smuggled request reached the upstream: %s %s", x.Method, x.RequestURI)
				}
			}
			list := secResponses(out)
			if len(list) == 0 {
				c.Fatalf("no HTTP response: %q", out)
			}
			if v.refuse {
				if list[0].Status < 400 {
					c.Errorf("status %d, want a refusal", list[0].Status)
				}
				if len(seen) != 0 {
					c.Errorf("%d request(s) reached the upstream", len(seen))
				}
			}
			if v.both && !closed {
				c.Errorf("the gateway kept the connection open after a request with both Transfer-Encoding and Content-Length (%d responses on it)", len(list))
			}
			if len(list) > 1 {
				c.Errorf("the gateway answered %d requests on a connection that sent one", len(list))
			}
		})
	}

	// --- hop-by-hop headers ------------------------------------------------------------------
	s.run(t, e, "PRX", "hop-by-hop: Connection: X-CSRF without the header",
		"403; nothing reaches the upstream", func(c *secCase) {
			cookie := ensureBob(c)
			lines := []string{"GET /api/x HTTP/1.1", "Host: " + host, "Cookie: " + secCookie + "=" + cookie, "Sec-Fetch-Site: same-origin",
				"Accept: application/json", "Connection: close, X-CSRF", ""}
			mark := e.up.count()
			out, _ := secRaw(c, gw.URL, secRawRequest(lines...), 5*time.Second)
			if list := secResponses(out); len(list) == 0 || list[0].Status != 403 {
				c.Errorf("response %q, want 403", out)
			}
			e.up.untouched(c, mark, "Connection: X-CSRF")
		})
	s.run(t, e, "PRX", "hop-by-hop: Connection: X-CSRF with the header",
		"the check uses the header the gateway received (200); X-CSRF never reaches the upstream", func(c *secCase) {
			r, seen := raw(c, "GET", "/api/x", ensureBob(c), "Connection: X-CSRF")
			if r.Status != 200 || len(seen) != 1 {
				c.Fatalf("%d, %d upstream requests", r.Status, len(seen))
			}
			if seen[0].Header.Get("X-Csrf") != "" {
				c.Errorf("the upstream got X-CSRF")
			}
		})
	s.run(t, e, "PRX", "hop-by-hop: Connection: Authorization, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto",
		"the upstream still gets the session's bearer token and the gateway's forwarding headers", func(c *secCase) {
			r, seen := raw(c, "GET", "/api/x", ensureBob(c), "Connection: Authorization, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto",
				"Authorization: Bearer forged")
			if r.Status != 200 || len(seen) != 1 {
				c.Fatalf("%d, %d upstream requests", r.Status, len(seen))
			}
			h := seen[0].Header
			if a := h.Get("Authorization"); !strings.HasPrefix(a, "Bearer ") || strings.Contains(a, "forged") {
				c.Errorf("upstream Authorization %q", a)
			}
			if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") != host || h.Get("X-Forwarded-Proto") != "http" {
				c.Errorf("upstream X-Forwarded-For %q, -Host %q, -Proto %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"))
			}
		})
	s.run(t, e, "PRX", "hop-by-hop: Upgrade: h2c (HTTP/2 cleartext smuggling)",
		"only WebSocket upgrades pass: the upstream never receives Upgrade: h2c", func(c *secCase) {
			_, seen := raw(c, "GET", "/api/x", ensureBob(c), "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", "Connection: Upgrade, HTTP2-Settings")
			for _, x := range seen {
				if up := x.Header.Get("Upgrade"); up != "" {
					c.Errorf("the upstream received Upgrade: %s (Connection: %s)", up, x.Header.Get("Connection"))
				}
			}
		})

	// --- spoofed forwarding headers ------------------------------------------------------------
	for _, h := range []struct{ name, value, want, wantText string }{
		{"X-Forwarded-For", "6.6.6.6", "127.0.0.1", "the peer address"},
		{"X-Forwarded-Host", "evil.example", host, "the public host"},
		{"X-Forwarded-Proto", "https", "http", "the public scheme"},
		{"Forwarded", "for=6.6.6.6;host=evil.example;proto=https", "", ""},
		{"X-Real-IP", "6.6.6.6", "", ""},
		{"X-Forwarded-Uri", "/admin-api/x", "", ""},
		{"X-Forwarded-Method", "DELETE", "", ""},
		{"X-Forwarded-Prefix", "/admin-api", "", ""},
		{"X-Forwarded-Port", "8443", "", ""},
		{"X-Forwarded-Server", "evil.example", "", ""},
		{"X-Forwarded-User", "alice", "", ""},
		{"X-Forwarded-Email", "alice@example.com", "", ""},
		{"X-Forwarded-Client-Cert", "By=spiffe://cluster/ns/admin;URI=spiffe://cluster/ns/admin/sa/root", "", ""},
		{"X-Original-URL", "/admin-api/x", "", ""},
		{"X-Rewrite-URL", "/admin-api/x", "", ""},
		{"X-Auth-Request-User", "alice", "", ""},
		{"X-HTTP-Method-Override", "DELETE", "", ""},
		{"X-HTTP-Method", "DELETE", "", ""},
		{"X-Method-Override", "DELETE", "", ""},
		{"Remote-User", "alice", "", ""},
		{"Remote-Groups", "admin", "", ""},
		{"X-Amzn-Oidc-Identity", "alice", "", ""},
		{"X-Amzn-Oidc-Data", "eyJhbGciOiJFUzI1NiJ9.e30.sig", "", ""},
		{"X-Goog-Authenticated-User-Email", "accounts.google.com:alice@example.com", "", ""},
		{"X-Ms-Client-Principal-Name", "alice@example.com", "", ""},
		{"X-Original-URI", "/admin-api/x", "", ""},
		{"X-User", "alice", "", ""},
		{"X-Email", "alice@example.com", "", ""},
		{"X_User (underscore: CGI, WSGI and Rack read it as X-User)", "alice", "", ""},
	} {
		expect := "does not reach the upstream"
		if h.want != "" {
			expect = "replaced: the upstream sees " + h.wantText
		}
		s.run(t, e, "PRX", "spoofed "+h.name, expect, func(c *secCase) {
			name, _, _ := strings.Cut(h.name, " ")
			r, seen := raw(c, "GET", "/api/x", ensureBob(c), name+": "+h.value)
			if r.Status != 200 || len(seen) != 1 {
				c.Fatalf("%d, %d upstream requests", r.Status, len(seen))
			}
			got := seen[0].Header.Values(name)
			if h.want != "" {
				if len(got) != 1 || got[0] != h.want {
					c.Errorf("the upstream got %s %q, want %q", h.name, got, h.want)
				}
				return
			}
			if len(got) > 0 {
				c.Errorf("the upstream got the browser's %s: %q", h.name, got)
			}
		})
	}
	s.run(t, e, "PRX", "a Tomcat-style upstream is reached only under the route's prefix",
		"whatever reaches the upstream still lies under the route's prefix once path parameters are cut and dot segments resolved, as Tomcat does", func(c *secCase) {
			cookie := ensureBob(c)
			for _, v := range []struct{ target, under string }{
				{"/api/..;/admin-api/x", "/api/"}, {"/api/..;x=1/admin-api/x", "/api/"}, {"/api/%2e%2e;/admin-api/x", "/api/"},
				{"/api/x/..;/..;/admin-api/x", "/api/"}, {"/api/.;/..;/admin-api/x", "/api/"}, {"/api/..%3b/admin-api/x", "/api/"},
				{"/open/..;/api/x", "/open/"}, {"/strip/..;/..;/secret", "/base/"}, {"/api/x;jsessionid=0123", "/api/"},
			} {
				_, seen := raw(c, "GET", v.target, cookie)
				for _, x := range seen {
					if got := secTomcatPath(x.RequestURI); !strings.HasPrefix(got+"/", v.under) {
						c.Errorf("GET %s reached the upstream as %s, which Tomcat serves as %s, outside %s", v.target, x.RequestURI, got, v.under)
					}
				}
			}
		})
	s.run(t, e, "PRX", "103 Early Hints from the upstream carrying gatehouse's cookie",
		"the browser gets the 103 with its Link (and the upstream's own cookie), never a Set-Cookie for __Host-gatehouse or its flow cookies; the session lives on", func(c *secCase) {
			cookie := ensureBob(c)
			lines := []string{"GET /api/early-hints HTTP/1.1", "Host: " + host, "X-CSRF: 1", "Sec-Fetch-Site: same-origin",
				"Accept: application/json", "Cookie: " + secCookie + "=" + cookie, "Connection: close", ""}
			out, _ := secRaw(c, gw.URL, secRawRequest(lines...), 5*time.Second)
			list := secResponses(out)
			if len(list) != 2 || list[0].Status != 103 || list[1].Status != 200 {
				c.Fatalf("want a 103 then a 200, got %q", out)
			}
			if link := list[0].Header.Get("Link"); link != "</app.css>; rel=preload; as=style" {
				c.Errorf("103 Link = %q", link)
			}
			var names []string
			for _, r := range list {
				for _, line := range r.Header.Values("Set-Cookie") {
					if ck, err := http.ParseSetCookie(line); err == nil {
						names = append(names, fmt.Sprintf("%d:%s", r.Status, ck.Name))
						if strings.HasPrefix(ck.Name, secCookie) {
							c.Errorf("the upstream's %d set %s in the browser", r.Status, ck.Name)
						}
					}
				}
			}
			if !slices.Equal(names, []string{"103:app"}) {
				c.Errorf("cookies passed from the upstream: %v, want [103:app]", names)
			}
			if st, _ := e.user(c, gw, cookie); st != 200 {
				c.Errorf("bob's session after the 103: /bff/user %d", st)
			}
		})
	s.run(t, e, "PRX", "spoofed Host header", "the upstream sees its own host, and X-Forwarded-Host is the public host", func(c *secCase) {
		cookie := ensureBob(c)
		lines := []string{"GET /api/x HTTP/1.1", "Host: evil.example", "X-CSRF: 1", "Sec-Fetch-Site: same-origin", "Cookie: " + secCookie + "=" + cookie, "Connection: close", ""}
		mark := e.up.count()
		out, _ := secRaw(c, gw.URL, secRawRequest(lines...), 5*time.Second)
		seen := e.up.since(mark)
		if list := secResponses(out); len(list) == 0 || list[0].Status != 200 || len(seen) != 1 {
			c.Fatalf("response %.200q, %d upstream requests", out, len(seen))
		}
		if seen[0].Host != strings.TrimPrefix(e.up.URL, "http://") || seen[0].Header.Get("X-Forwarded-Host") != host {
			c.Errorf("the upstream saw Host %q, X-Forwarded-Host %q", seen[0].Host, seen[0].Header.Get("X-Forwarded-Host"))
		}
	})
	s.run(t, e, "PRX", "spoofed X-Forwarded-For at login", "the session records the peer address, not the spoofed one", func(c *secCase) {
		b := e.client(gw.URL, true)
		cb := b.authorize(c, "bob", "builder", "/")
		r := b.do(c, "GET", cb, nil, "Sec-Fetch-Mode", "navigate", "X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6")
		if r.Status != 200 {
			c.Fatalf("callback: %d", r.Status)
		}
		list := b.do(c, "GET", "/bff/sessions", nil, secSameOrigin...)
		if list.Status != 200 || strings.Contains(list.Body, "6.6.6.6") || !strings.Contains(list.Body, `"ip":"127.0.0.1"`) {
			c.Errorf("/bff/sessions: %d %s", list.Status, list.Body)
		}
	})

	// --- sizes ---------------------------------------------------------------------------
	big := strings.Repeat("a", 80<<10)
	for _, v := range []struct {
		name   string
		target string
		extra  []string
	}{
		{"one 80 KiB header", "/api/x", []string{"X-Big: " + big}},
		{"120 headers of 1 KiB", "/api/x", func() []string {
			var l []string
			for i := range 120 {
				l = append(l, fmt.Sprintf("X-H%d: %s", i, strings.Repeat("b", 1<<10)))
			}
			return l
		}()},
		{"an 80 KiB cookie", "/api/x", []string{"Cookie: other=" + big}},
		{"an 80 KiB URL", "/api/" + big, nil},
	} {
		s.run(t, e, "PRX", "oversized: "+v.name, "431 (or 414) from the gateway; nothing reaches the upstream", func(c *secCase) {
			r, seen := raw(c, "GET", v.target, ensureBob(c), v.extra...)
			if r.Status != 431 && r.Status != 414 {
				c.Errorf("status %d, want 431", r.Status)
			}
			for _, x := range seen {
				c.Errorf("reached the upstream: %s %.60s", x.Method, x.RequestURI)
			}
		})
	}
	s.run(t, e, "PRX", "oversized: a 64 MiB body to a route",
		"413 before anything reaches the upstream (a request body limit)", func(c *secCase) {
			cookie := ensureBob(c)
			mark := e.up.count()
			const size = 64 << 20
			req, _ := http.NewRequest("POST", gw.URL+"/api/upload", io.LimitReader(zeros{}, size))
			req.ContentLength = size
			for _, kv := range [][2]string{{"X-CSRF", "1"}, {"Sec-Fetch-Site", "same-origin"}, {"Content-Type", "application/octet-stream"}, {"Cookie", secCookie + "=" + cookie}} {
				req.Header.Set(kv[0], kv[1])
			}
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			seen := e.up.since(mark)
			var forwarded int64
			for _, x := range seen {
				forwarded += x.BodyLen
			}
			if err == nil && resp.StatusCode != 413 {
				c.Errorf("status %d, want 413; %d request(s) and %d MiB of body reached the upstream", resp.StatusCode, len(seen), forwarded>>20)
			} else if len(seen) > 0 {
				c.Errorf("%d request(s) and %d MiB of body reached the upstream", len(seen), forwarded>>20)
			}
		})
	s.run(t, e, "PRX", "oversized: a 1 MiB back-channel logout body",
		"400 or 413 (the endpoint reads at most 64 KiB)", func(c *secCase) {
			r := e.client(gw.URL, false).do(c, "POST", "/bff/backchannel", strings.NewReader("logout_token="+strings.Repeat("A", 1<<20)),
				"Content-Type", "application/x-www-form-urlencoded")
			if r.Status != 400 && r.Status != 413 {
				c.Errorf("status %d, want 400 or 413", r.Status)
			}
		})

	// --- slow clients ----------------------------------------------------------------------
	for _, v := range []struct {
		name     string
		result   <-chan secSlowResult
		timeout  time.Duration
		gateway  *gatehouseProc
		comesFor string
	}{
		{"header sent one line every 500 ms, read_header_timeout 2s", e.slowGW1, secHeaderTimout, e.gw1, "server.read_header_timeout: 2s"},
		{"header sent one line every 500 ms, default read_header_timeout (10s)", e.slowGW2, 10 * time.Second, e.gw2, "the default"},
	} {
		s.run(t, e, "PRX", "slow client: "+v.name,
			fmt.Sprintf("the gateway closes the connection about %s after it opened (%s), without serving the request", v.timeout, v.comesFor), func(c *secCase) {
				var r secSlowResult
				select {
				case r = <-v.result:
				case <-time.After(30 * time.Second):
					c.Fatal("the slow client never finished")
				}
				c.Logf("slow client: closed %v after %v, %d header bytes written, got %q, err %q", r.Closed, r.After.Round(10*time.Millisecond), r.Written, r.Got, r.Err)
				if !r.Closed {
					c.Errorf("the connection was not closed by the gateway (%s, after %v)", r.Err, r.After)
				}
				if r.After < v.timeout-500*time.Millisecond || r.After > v.timeout+3*time.Second {
					c.Errorf("closed after %v, want about %v", r.After, v.timeout)
				}
				if strings.Contains(r.Got, " 200 ") || strings.Contains(r.Got, " 401 ") {
					c.Errorf("the gateway served the unfinished request: %q", r.Got)
				}
				if u := e.client(v.gateway.URL, false).do(c, "GET", "/bff/user", nil, secSameOrigin...); u.Status != 401 {
					c.Errorf("the gateway does not answer normally afterwards: %d", u.Status)
				}
			})
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// secTomcatPath is the path a Tomcat-style upstream serves for a request URI: path
// parameters (";…") cut off each segment, then percent-decoding, then dot segments
// resolved.
func secTomcatPath(requestURI string) string {
	p, _, _ := strings.Cut(requestURI, "?")
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		seg, _, _ = strings.Cut(seg, ";")
		if d, err := url.PathUnescape(seg); err == nil {
			seg = d
		}
		segs[i] = seg
	}
	return path.Clean(strings.Join(segs, "/"))
}
