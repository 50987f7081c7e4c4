package gatehouse_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// seen is what the test upstream observed of one request.
type seen struct {
	Method, Path, RawPath, Query string
	Auth, Cookie, CSRF           string
	XFF, XFHost, XFProto, XReal  string
	Forwarded, Custom            string
	Upgrade, XFUri               string
	BodyLen                      int64
}

type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []seen
	srv  *httptest.Server
}

func newUpstream(t *testing.T) *upstreamRecorder {
	u := &upstreamRecorder{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), Cookie: r.Header.Get("Cookie"), CSRF: r.Header.Get("X-CSRF"),
			XFF: r.Header.Get("X-Forwarded-For"), XFHost: r.Header.Get("X-Forwarded-Host"),
			XFProto: r.Header.Get("X-Forwarded-Proto"), XReal: r.Header.Get("X-Real-Ip"),
			Forwarded: r.Header.Get("Forwarded"), Custom: r.Header.Get("X-Route"),
			Upgrade: r.Header.Get("Upgrade"), XFUri: r.Header.Get("X-Forwarded-Uri")}
		if !strings.HasSuffix(r.URL.Path, "/ws") && !strings.HasSuffix(r.URL.Path, "/wsloop") {
			s.BodyLen, _ = io.Copy(io.Discard, r.Body)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, s)
		u.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/slow"):
			time.Sleep(2 * time.Second)
		case strings.HasSuffix(r.URL.Path, "/set-cookie"):
			http.SetCookie(w, &http.Cookie{Name: "__Host-gatehouse", Value: "planted", Path: "/", Secure: true})
			http.SetCookie(w, &http.Cookie{Name: "app", Value: "fine"})
		case strings.HasSuffix(r.URL.Path, "/events"):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(700 * time.Millisecond)
			fmt.Fprint(w, "data: second\n\n")
			return
		case strings.HasSuffix(r.URL.Path, "/stream"):
			// An endless event stream, until the gateway goes away.
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; r.Context().Err() == nil; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
			return
		case strings.HasSuffix(r.URL.Path, "/wsloop"):
			// A WebSocket-like echo of every line, until either side closes.
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				brw.WriteString("echo:" + line)
				brw.Flush()
			}
		case strings.HasSuffix(r.URL.Path, "/ws"):
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want upgrade", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo:" + line)
			brw.Flush()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstreamRecorder) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func routesEnv(t *testing.T, up *upstreamRecorder, mutate ...func(*gatehouse.Config)) *env {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	return newEnv(t, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{
			{Path: "/api/", Upstream: up.srv.URL, Headers: map[string]string{"X-Route": "api"}},
			{Path: "/api/admin/", Upstream: up.srv.URL, Require: []gatehouse.Rule{{Claim: "groups", Contains: []string{"admin"}}}},
			{Path: "/staff/", Upstream: up.srv.URL, Require: []gatehouse.Rule{{Claim: "groups", AnyOf: []string{"staff", "admin"}}}},
			{Path: "/client/", Upstream: up.srv.URL + "/base", Token: gatehouse.TokenClient},
			{Path: "/mixed/", Upstream: up.srv.URL, Token: gatehouse.TokenUserOrClient},
			{Path: "/maybe/", Upstream: up.srv.URL, Token: gatehouse.TokenUserOrNone},
			{Path: "/open", Upstream: up.srv.URL, Token: gatehouse.TokenNone},
			{Path: "/ro/", Upstream: up.srv.URL, Methods: []string{"GET"}},
			{Path: "/strip/", Upstream: up.srv.URL + "/inner/", StripPrefix: true},
			{Path: "/slow/", Upstream: up.srv.URL, Timeout: 300 * time.Millisecond},
			{Path: "/down/", Upstream: closedURL},
			{Path: "/cookies/", Upstream: up.srv.URL, ForwardCookies: []string{"theme"}},
		}
	}}, mutate...)...)
}

func TestProxyHeaderHygiene(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	r := b.do("GET", "/api/orders?limit=2", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin",
		"Authorization", "Bearer forged-by-the-page", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "https", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6",
		"Cookie", "theme=dark; other=1")
	wantStatus(t, r, 200)
	s := up.last(t)
	tokens := e.idp.AccessTokens()
	if s.Auth != "Bearer "+tokens[len(tokens)-1] {
		t.Errorf("upstream Authorization = %q, want the session's current token", s.Auth)
	}
	if s.Path != "/api/orders" || s.Query != "limit=2" || s.Custom != "api" {
		t.Errorf("upstream saw %+v", s)
	}
	if s.Cookie != "" {
		t.Errorf("upstream received cookies %q", s.Cookie)
	}
	if s.CSRF != "" {
		t.Errorf("upstream received the CSRF header")
	}
	if s.XFF != "127.0.0.1" || s.XReal != "" || s.Forwarded != "" || s.XFHost != strings.TrimPrefix(e.url, "http://") || s.XFProto != "http" {
		t.Errorf("forwarding headers not replaced: %+v", s)
	}

	// Only configured cookies pass, and never Gatehouse's own.
	b.do("GET", "/cookies/x", nil, "X-CSRF", "1", "Cookie", "theme=dark; other=1; __Host-gatehouse-flow-x=y")
	if c := up.last(t).Cookie; c != "theme=dark" {
		t.Errorf("forwarded cookies = %q, want theme=dark only", c)
	}

	// An upstream cannot plant Gatehouse's cookie.
	r = b.api("GET", "/api/set-cookie")
	for _, c := range r.Cookies() {
		if c.Name == "__Host-gatehouse" {
			t.Fatal("upstream's Set-Cookie for the session cookie reached the browser")
		}
	}
	if len(r.Cookies()) != 1 || r.Cookies()[0].Name != "app" {
		t.Fatalf("the upstream's own cookies should pass: %v", r.Cookies())
	}
}

func TestProxyCSRFMatrix(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	for _, tc := range []struct {
		name    string
		method  string
		headers []string
		status  int
		reason  string
	}{
		{"same-origin with header", "POST", []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Origin", e.url}, 200, ""},
		{"GET with header, no fetch metadata (curl)", "GET", []string{"X-CSRF", "1"}, 200, ""},
		{"missing header", "POST", []string{"Sec-Fetch-Site", "same-origin"}, 403, "missing_header"},
		{"missing header on GET", "GET", []string{"Sec-Fetch-Site", "same-origin"}, 403, "missing_header"},
		{"wrong value", "POST", []string{"X-CSRF", "0", "Sec-Fetch-Site", "same-origin"}, 403, "wrong_value"},
		{"cross-site fetch", "POST", []string{"X-CSRF", "1", "Sec-Fetch-Site", "cross-site"}, 403, "cross_origin"},
		{"same-site but other origin", "PUT", []string{"X-CSRF", "1", "Sec-Fetch-Site", "same-site"}, 403, "cross_origin"},
		{"cross-site GET", "GET", []string{"X-CSRF", "1", "Sec-Fetch-Site", "cross-site"}, 403, "cross_origin"},
		{"foreign Origin, old browser", "DELETE", []string{"X-CSRF", "1", "Origin", "https://evil.example"}, 403, "cross_origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := b.do(tc.method, "/api/thing", nil, tc.headers...)
			if tc.status == 200 {
				wantStatus(t, r, 200)
				return
			}
			wantJSONError(t, r, tc.status, "csrf_rejected", tc.reason)
			if up.count() != before {
				t.Fatal("a refused request reached the upstream")
			}
		})
	}
	// The same checks guard /bff/ state changes.
	wantJSONError(t, b.do("DELETE", "/bff/sessions?others=true", nil, "X-CSRF", "1", "Sec-Fetch-Site", "cross-site"), 403, "csrf_rejected", "cross_origin")
	wantJSONError(t, b.do("POST", "/bff/logout", nil, "X-CSRF", "1", "Origin", "https://evil.example"), 403, "csrf_rejected", "cross_origin")
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

func TestProxyPathEscapes(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	for _, tc := range []struct {
		raw        string // request target as sent on the wire
		status     int
		upstream   string // path the upstream must see ("" = must not be reached)
		notReached bool
	}{
		{"/api/orders/1", 200, "/api/orders/1", false},
		{"/api", 200, "/api", false},
		{"/apix", 404, "", true},
		{"/api/../admin", 404, "", true},
		{"/api/%2e%2e/admin", 404, "", true},
		{"/api/%2E%2E/%2e%2e/etc/passwd", 404, "", true},
		{"/api/x/../../ro/y", 403, "", true},     // lands on /ro/, which has its own (GET-only) rules: method POST
		{"/api//x", 200, "/api/x", false},        // cleaned, then matched and forwarded clean
		{"/api/./x", 200, "/api/x", false},       // cleaned
		{"/api/a%2Fb", 200, "/api/a/b", false},   // an encoded slash keeps its encoding upstream
		{"/api/x%23/../../admin", 404, "", true}, // %23 is part of a segment, not a fragment
		{"/api/admin/../orders", 200, "/api/orders", false},
		{"/api/admin/users", 403, "", true},          // claim rule: alice is not in "admin"
		{"/api/%2e%2e%2fadmin/users", 404, "", true}, // encoded ../ decodes to the admin route's parent
		{"//api/orders", 200, "/api/orders", false},
		{"/API/orders", 404, "", true},
		{"/api\\..\\admin", 400, "", true},
		{"/api/%00", 400, "", true},
		{"/bff/../api/x", 200, "/api/x", false},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			before := up.count()
			status, _ := rawRequest(t, e, b, "POST", tc.raw)
			if tc.raw == "/api/x/../../ro/y" {
				if status != 405 {
					t.Fatalf("status = %d, want 405 (the /ro/ route allows GET only)", status)
				}
				return
			}
			if status != tc.status {
				t.Fatalf("status = %d, want %d", status, tc.status)
			}
			if tc.notReached {
				if up.count() != before {
					t.Fatalf("the upstream was reached with %+v", up.last(t))
				}
				return
			}
			got := up.last(t)
			if got.Path != tc.upstream {
				t.Fatalf("upstream path = %q, want %q", got.Path, tc.upstream)
			}
			if tc.raw == "/api/a%2Fb" && got.RawPath != "/api/a%2Fb" {
				t.Fatalf("upstream raw path = %q", got.RawPath)
			}
		})
	}
}

// openWebSocket sends a WebSocket upgrade through the gateway and reads the answer's head.
func openWebSocket(t *testing.T, e *env, path, origin, cookie string, deadline time.Duration) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(deadline))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\nUser-Agent: Go-http-client/1.1\r\nCookie: __Host-gatehouse=%s\r\n\r\n",
		path, strings.TrimPrefix(e.url, "http://"), origin, cookie)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn, br, resp
}

// rawRequest sends a request line exactly as given, with the browser's cookie and the
// CSRF header.
func rawRequest(t *testing.T, e *env, b *browser, method, target string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cookie := b.cookie("__Host-gatehouse")
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nCookie: __Host-gatehouse=%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		method, target, strings.TrimPrefix(e.url, "http://"), cookie.Value)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestProxyRouteRules(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	anon := e.browser()

	// No session: API calls get 401 JSON with the login URL; navigations go to login.
	r := anon.api("GET", "/api/x")
	wantJSONError(t, r, 401, "unauthenticated", "no_session")
	if decode(t, r)["login_url"] != "/bff/login" {
		t.Fatal("401 without login_url")
	}
	r = anon.get("/api/report?y=2", "Sec-Fetch-Mode", "navigate", "Accept", "text/html")
	wantStatus(t, r, 302)
	if r.Header.Get("Location") != "/bff/login?returnUrl=%2Fapi%2Freport%3Fy%3D2" {
		t.Fatalf("navigation redirected to %q", r.Header.Get("Location"))
	}

	// A frame is not a top-level navigation: no login flow for framed API addresses.
	r = anon.get("/api/report", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "iframe", "Accept", "text/html")
	wantJSONError(t, r, 401, "unauthenticated", "no_session")

	// token: client works without a session, with one cached token.
	r = anon.api("GET", "/client/items")
	wantStatus(t, r, 200)
	first := up.last(t)
	if !strings.HasPrefix(first.Auth, "Bearer client-") || first.Path != "/base/client/items" {
		t.Fatalf("client route: %+v", first)
	}
	anon.api("GET", "/client/items")
	if up.last(t).Auth != first.Auth || e.idp.Count("client_credentials") != 1 {
		t.Fatalf("client token not cached: %d requests", e.idp.Count("client_credentials"))
	}
	// user_or_client and user_or_none fall back.
	anon.api("GET", "/mixed/a")
	if up.last(t).Auth != first.Auth {
		t.Fatal("user_or_client without a session did not use the client token")
	}
	wantStatus(t, anon.api("GET", "/maybe/a"), 200)
	if up.last(t).Auth != "" {
		t.Fatal("user_or_none without a session sent a token")
	}
	wantStatus(t, anon.api("GET", "/open"), 200)
	wantStatus(t, anon.api("GET", "/open/x"), 200)
	if up.last(t).Auth != "" {
		t.Fatal("token: none sent a token")
	}
	wantJSONError(t, anon.do("GET", "/open/x", nil), 403, "csrf_rejected", "missing_header")

	b := e.browser()
	b.login()
	userTok := e.idp.AccessTokens()[0]
	b.api("GET", "/mixed/a")
	if up.last(t).Auth != "Bearer "+userTok {
		t.Fatal("user_or_client with a session did not use the user's token")
	}
	b.api("GET", "/maybe/a")
	if up.last(t).Auth != "Bearer "+userTok {
		t.Fatal("user_or_none with a session did not use the user's token")
	}

	// Methods, claims, strip_prefix.
	wantJSONError(t, b.api("POST", "/ro/x"), 405, "method_not_allowed", "")
	wantStatus(t, b.api("GET", "/ro/x"), 200)
	wantJSONError(t, b.api("GET", "/api/admin/users"), 403, "forbidden", "claims")
	wantStatus(t, b.api("GET", "/staff/list"), 200)
	wantStatus(t, b.api("GET", "/strip/deep/path"), 200)
	if p := up.last(t).Path; p != "/inner/deep/path" {
		t.Fatalf("strip_prefix forwarded %q", p)
	}

	// Upstream failures leave the session alone.
	wantJSONError(t, b.api("GET", "/down/x"), 502, "bad_gateway", "upstream_unreachable")
	start := time.Now()
	wantJSONError(t, b.api("GET", "/slow/slow"), 504, "gateway_timeout", "upstream_timeout")
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("timeout took %v", time.Since(start))
	}
	wantStatus(t, b.api("GET", "/bff/user"), 200)
}

func TestProxyAdminClaim(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	e.idp.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"groups": []string{"admin"}} })
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/admin/users"), 200)
}

func TestProxyStreamsAndWebSockets(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()

	// SSE: the first event arrives before the upstream finishes.
	req, _ := http.NewRequest("GET", e.url+"/api/events", nil)
	req.Header.Set("X-CSRF", "1")
	start := time.Now()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first SSE line = %q, %v", line, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("first event took %v: the proxy buffered the stream", d)
	}

	ws := func(origin string) string { return wsEcho(t, e, "/api/ws", origin, b.cookie("__Host-gatehouse").Value) }
	if got := ws(e.url); got != "echo:hello\n" {
		t.Fatalf("same-origin WebSocket: %q", got)
	}
	if !strings.HasPrefix(up.last(t).Auth, "Bearer at-") {
		t.Fatal("the WebSocket handshake did not carry the token")
	}
	if got := ws("https://evil.example"); !strings.HasPrefix(got, "403") {
		t.Fatalf("foreign-origin WebSocket: %q, want 403", got)
	}
}

// wsEcho opens a WebSocket-style upgrade through the gateway, sends a line and returns
// the echo, or the status line when the upgrade was refused.
func wsEcho(t *testing.T, e *env, path, origin, cookie string) string {
	t.Helper()
	conn, br, resp := openWebSocket(t, e, path, origin, cookie, 5*time.Second)
	defer conn.Close()
	if resp.StatusCode != 101 {
		return resp.Status
	}
	fmt.Fprint(conn, "hello\n")
	echo, _ := br.ReadString('\n')
	return echo
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
