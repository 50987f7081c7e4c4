package e2e

// TestSecurity is Gatehouse's security suite: attacks on the real gatehouse binary, signed in
// through the real npm oidc-provider, with a recording upstream on loopback. The fake
// provider of idp/idptest is used only where a real provider cannot be made to misbehave
// (ID tokens with forged signatures and wrong claims) and for the rate-limit and binding
// category, which starts gateways of its own (security_limits_test.go). Every case is a named subtest
// (TestSecurity/<category>/<case>) whose assertions can fail; at the end the suite writes
// every case with its result to e2e/artifacts/security-report.md and logs the same list.
// docs/security-tests.md describes the cases and how to run them:
//
//	go test ./e2e -run Security -v
//
// One provider, one upstream and three gateways serve the other cases:
//
//	gw1  oidc-provider client "bff": routes, read_header_timeout 2s; most cases
//	gw2  oidc-provider client "bff-short": idle_timeout 2s (expired cookies), default
//	     read_header_timeout (10s)
//	gw3  the fake provider (idptest): forged ID tokens
//
// Cases share these processes only where no state leaks between them: every case signs in
// its own browsers, and cases that must leave a session alive check it themselves.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

const (
	secCookie       = "__Host-gatehouse"
	secEvilOrigin   = "https://evil.example"
	secKeyID        = "sec-rs256"
	secShortClient  = "bff-short"
	secShortSecret  = "s3cret-short"
	secAdminToken1  = "sec-admin-token-gw1"
	secAdminToken2  = "sec-admin-token-gw2"
	secHeaderTimout = 2 * time.Second // gw1's server.read_header_timeout
)

// secEnv is what every case can use.
type secEnv struct {
	root   string
	idp    *harness.Provider
	idpKey *rsa.PrivateKey // the provider's signing key: the suite gave it to oidc-provider
	up     *secUpstream
	fake   *idptest.Provider
	gw1    *gatehouseProc
	gw2    *gatehouseProc
	gw3    *gatehouseProc

	slowGW1, slowGW2 <-chan secSlowResult // slow-header clients started at setup

	mu        sync.Mutex
	sensitive []harness.IssuedSecret // values the suite saw or made that no log may contain
	responses []string               // everything the gateways answered the suite's clients
}

func TestSecurity(t *testing.T) {
	start := time.Now()
	suite := &secSuite{}
	e := startSecEnv(t)
	defer func() { suite.report(t, e, time.Since(start)) }()

	t.Run("open redirect", func(t *testing.T) { secOpenRedirect(t, suite, e) })
	t.Run("csrf", func(t *testing.T) { secCSRF(t, suite, e) })
	t.Run("login", func(t *testing.T) { secLogin(t, suite, e) })
	t.Run("id token", func(t *testing.T) { secIDTokens(t, suite, e) })
	t.Run("logout token", func(t *testing.T) { secLogoutTokens(t, suite, e) })
	t.Run("proxy", func(t *testing.T) { secProxy(t, suite, e) })
	t.Run("cookies", func(t *testing.T) { secCookies(t, suite, e) })
	t.Run("rate limits and binding", func(t *testing.T) { secRateLimits(t, suite, e) })
	t.Run("connections and bodies", func(t *testing.T) { secConnections(t, suite, e) })
	t.Run("logs", func(t *testing.T) { secLogs(t, suite, e) })
}

func startSecEnv(t *testing.T) *secEnv {
	t.Helper()
	e := &secEnv{root: harness.RepoRoot(t)}
	var err error
	if e.idpKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: e.idpKey, KeyID: secKeyID, Algorithm: "RS256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}

	port1, port2 := freePort(t), freePort(t)
	pub1, pub2 := fmt.Sprintf("http://127.0.0.1:%d", port1), fmt.Sprintf("http://127.0.0.1:%d", port2)
	short := harness.BFFClient(pub2)
	short.ClientID, short.ClientSecret = secShortClient, secShortSecret
	users := append(harness.DefaultUsers(), harness.User{ID: "mallory", Password: "attacker-pw", Claims: map[string]any{
		"email": "mallory@example.com", "email_verified": true, "name": "Mallory", "groups": []string{},
	}})
	e.idp = harness.StartProvider(t, harness.ProviderConfig{
		Clients: []harness.Client{harness.BFFClient(pub1), short},
		Users:   users,
		JWKS:    json.RawMessage(`{"keys":[` + string(jwk) + `]}`),
		// The login cases attack what an authorization URL carries (state, PKCE,
		// redirect_uri), so the provider offers no PAR: with it the URL would carry only a
		// request_uri and they would pass without testing anything. PAR has its own tests
		// (e2e/par_test.go).
		PAR: "off",
	})
	e.up = startSecUpstream(t)

	e.gw1 = startGatehouse(t, port1, secRelaxRateLimits(t, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access, groups]
  auth_params: {prompt: consent}
  allowed_auth_params: [prompt, login_hint]
session:
  store: memory
admin:
  listen: {{ADMIN}}
  token: %s
log:
  level: debug
server:
  read_header_timeout: %s
routes:
  - path: /api/
    upstream: %s
  - path: /admin-api/
    upstream: %s
    require:
      - claim: groups
        contains: admin
  - path: /open/
    upstream: %s
    token: none
  - path: /strip/
    upstream: %s/base
    strip_prefix: true
`, port1, pub1, e.idp.Issuer(), secAdminToken1, secHeaderTimout, e.up.URL, e.up.URL, e.up.URL, e.up.URL)))

	e.gw2 = startGatehouse(t, port2, secRelaxRateLimits(t, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: %s
  client_secret: %s
  scopes: [openid, profile, email, offline_access, groups]
  auth_params: {prompt: consent}
session:
  store: memory
  idle_timeout: 2s
admin:
  listen: {{ADMIN}}
  token: %s
log:
  level: debug
routes:
  - path: /api/
    upstream: %s
`, port2, pub2, e.idp.Issuer(), secShortClient, secShortSecret, secAdminToken2, e.up.URL)))

	e.fake = idptest.New(t)
	port3 := freePort(t)
	e.gw3 = startGatehouse(t, port3, secRelaxRateLimits(t, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: http://127.0.0.1:%d
provider:
  issuer: %s
  client_id: %s
  client_secret: %s
session:
  store: memory
admin:
  listen: {{ADMIN}}
log:
  level: debug
routes:
  - path: /api/
    upstream: %s
`, port3, port3, e.fake.Issuer, e.fake.ClientID, e.fake.ClientSecret, e.up.URL)))

	// Everything the fake provider issues, and everything the suite collects, is audited in
	// the logs of every gateway of this test binary too.
	registerAuditSource(func() []harness.IssuedSecret {
		var out []harness.IssuedSecret
		for _, v := range e.fake.IssuedSecrets() {
			out = append(out, harness.IssuedSecret{Kind: "fake provider secret", Value: v})
		}
		e.mu.Lock()
		out = append(out, e.sensitive...)
		e.mu.Unlock()
		return out
	})

	// The slow-header clients take seconds: they run in the background from the start and
	// their cases collect the results.
	e.slowGW1 = secSlowHeaders(e.gw1.URL)
	e.slowGW2 = secSlowHeaders(e.gw2.URL)
	return e
}

// secRelaxRateLimits raises the rate limits of a configuration for the suite, which signs in
// dozens of times a minute from 127.0.0.1, when the binary knows rate_limits (another part of
// the project): `gatehouse check` decides. Rate limiting itself is not under test here.
func secRelaxRateLimits(t testing.TB, cfg string) string {
	t.Helper()
	const relaxed = `
rate_limits:
  login: {per_minute: 100000, burst: 100000}
  callback: {per_minute: 100000, burst: 100000}
  backchannel: {per_minute: 100000, burst: 100000}
  admin: {per_minute: 100000, burst: 100000}
  sessions: {per_minute: 100000, burst: 100000}
`
	path := filepath.Join(t.TempDir(), "check.yaml")
	candidate := cfg + relaxed
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(candidate, "{{ADMIN}}", "127.0.0.1:1")), 0o600); err != nil {
		t.Fatal(err)
	}
	if exec.Command(binary, "check", "--config", path).Run() == nil {
		return candidate
	}
	return cfg
}

func (e *secEnv) addSensitive(kind string, values ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range values {
		if len(v) >= 8 {
			e.sensitive = append(e.sensitive, harness.IssuedSecret{Kind: kind, Value: v})
		}
	}
}

// ---------------------------------------------------------------------------------------------
// cases and the report

type secSuite struct {
	mu      sync.Mutex
	results []secResult
	ids     map[string]int
}

type secResult struct {
	ID, Category, Name, Expect string
	Pass                       bool
	Notes                      []string
	Took                       time.Duration
}

// secCase is a case's *testing.T that also keeps its failure messages for the report.
// Helpers that take a testing.TB get it, so their failures are kept too.
type secCase struct {
	*testing.T
	e     *secEnv
	mu    sync.Mutex
	notes []string
}

func (c *secCase) note(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(msg) > 600 {
		msg = msg[:600] + "…"
	}
	c.notes = append(c.notes, msg)
}

func (c *secCase) Errorf(format string, args ...any) {
	c.T.Helper()
	c.note(fmt.Sprintf(format, args...))
	c.T.Errorf(format, args...)
}

func (c *secCase) Fatalf(format string, args ...any) {
	c.T.Helper()
	c.note(fmt.Sprintf(format, args...))
	c.T.Fatalf(format, args...)
}

func (c *secCase) Error(args ...any) {
	c.T.Helper()
	c.note(fmt.Sprint(args...))
	c.T.Error(args...)
}

func (c *secCase) Fatal(args ...any) {
	c.T.Helper()
	c.note(fmt.Sprint(args...))
	c.T.Fatal(args...)
}

// run runs one case as the subtest t/name and records its result. code prefixes the case's
// ID (RED, CSRF, …).
func (s *secSuite) run(t *testing.T, e *secEnv, code, name, expect string, fn func(c *secCase)) {
	t.Helper()
	s.mu.Lock()
	if s.ids == nil {
		s.ids = map[string]int{}
	}
	s.ids[code]++
	id := fmt.Sprintf("%s-%02d", code, s.ids[code])
	s.mu.Unlock()
	category := strings.ReplaceAll(t.Name()[strings.LastIndex(t.Name(), "/")+1:], "_", " ")
	t.Run(name, func(tt *testing.T) {
		c := &secCase{T: tt, e: e}
		start := time.Now()
		defer func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			c.mu.Lock()
			notes := append([]string(nil), c.notes...)
			c.mu.Unlock()
			s.results = append(s.results, secResult{ID: id, Category: category, Name: name, Expect: expect,
				Pass: !tt.Failed(), Notes: notes, Took: time.Since(start)})
		}()
		fn(c)
	})
}

func (s *secSuite) report(t *testing.T, e *secEnv, took time.Duration) {
	s.mu.Lock()
	results := append([]secResult(nil), s.results...)
	s.mu.Unlock()
	slices.SortStableFunc(results, func(a, b secResult) int { return strings.Compare(a.ID, b.ID) })
	// Keep the categories in the order they ran.
	order := map[string]int{}
	for i, r := range s.results {
		if _, ok := order[r.Category]; !ok {
			order[r.Category] = i
		}
	}
	slices.SortStableFunc(results, func(a, b secResult) int { return order[a.Category] - order[b.Category] })

	passed := 0
	for _, r := range results {
		if r.Pass {
			passed++
		}
	}
	cell := func(s string) string {
		return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Gatehouse security suite report\n\n")
	fmt.Fprintf(&b, "`go test ./e2e -run Security` — %s, %d cases, **%d passed, %d failed**, %.1f s",
		time.Now().UTC().Format(time.RFC3339), len(results), passed, len(results)-passed, took.Seconds())
	if os.Getenv("GATEHOUSE_E2E_RACE") == "1" {
		b.WriteString(" (binary built with -race)")
	}
	b.WriteString(".\n\nWhat each case attacks and why the expectation is the right one: [docs/security-tests.md](../../docs/security-tests.md).\n\n")
	b.WriteString("| ID | Category | Case | Expectation | Result |\n|---|---|---|---|---|\n")
	for _, r := range results {
		res := "PASS"
		if !r.Pass {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.ID, cell(r.Category), cell(r.Name), cell(r.Expect), res)
	}
	var failed []secResult
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, r := range failed {
			fmt.Fprintf(&b, "### %s %s / %s\n\nExpected: %s\n\n", r.ID, r.Category, r.Name, r.Expect)
			for _, n := range r.Notes {
				fmt.Fprintf(&b, "- %s\n", cell(n))
			}
			if len(r.Notes) == 0 {
				b.WriteString("- (failed in a subtest or a helper; see the test output)\n")
			}
			b.WriteString("\n")
		}
	}
	dir := filepath.Join(e.root, "e2e", "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("security report: %v", err)
		return
	}
	path := filepath.Join(dir, "security-report.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("security report: %v", err)
		return
	}
	var list strings.Builder
	for _, r := range results {
		res := "PASS"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(&list, "  %-4s %-9s %-14s %s\n", res, r.ID, r.Category, r.Name)
	}
	t.Logf("security suite: %d cases, %d passed, %d failed, %.1f s; report: %s\n%s",
		len(results), passed, len(results)-passed, took.Seconds(), path, list.String())
	if len(results) == 0 {
		t.Error("security suite: no case ran")
	}
}

// ---------------------------------------------------------------------------------------------
// the recording upstream

// secUpstream is an API on loopback that records everything that reaches it.
type secUpstream struct {
	URL  string
	mu   sync.Mutex
	seen []secSeen
}

type secSeen struct {
	Method, Path, RawPath, RequestURI, Host string
	Header                                  http.Header
	Body                                    []byte // the first 64 KiB
	BodyLen                                 int64
}

func startSecUpstream(t *testing.T) *secUpstream {
	u := &secUpstream{}
	u.URL = serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var head bytes.Buffer
		n, _ := io.Copy(&head, io.LimitReader(r.Body, 64<<10))
		rest, _ := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, secSeen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, RequestURI: r.RequestURI,
			Host: r.Host, Header: r.Header.Clone(), Body: head.Bytes(), BodyLen: n + rest})
		u.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/early-hints") {
			// An upstream trying to plant gatehouse's cookie with an informational response.
			w.Header().Set("Link", "</app.css>; rel=preload; as=style")
			w.Header()["Set-Cookie"] = []string{secCookie + "=planted-by-103; Path=/; Secure; HttpOnly", "app=1; Path=/"}
			w.WriteHeader(http.StatusEarlyHints)
			clear(w.Header())
		}
		if strings.HasSuffix(r.URL.Path, "/set-cookie") {
			// An upstream trying to plant gatehouse's cookies in the browser.
			w.Header().Add("Set-Cookie", secCookie+"=planted-by-upstream; Path=/; Secure; HttpOnly")
			w.Header().Add("Set-Cookie", secCookie+"-flow-0011223344556677=planted; Path=/; Secure; HttpOnly")
			w.Header().Add("Set-Cookie", "app=1; Path=/")
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"path":%q}`, r.URL.Path)
	}))
	return u
}

func (u *secUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// since returns what reached the upstream after count() returned mark.
func (u *secUpstream) since(mark int) []secSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]secSeen(nil), u.seen[mark:]...)
}

// untouched fails the case if anything reached the upstream since mark.
func (u *secUpstream) untouched(t testing.TB, mark int, what string) {
	t.Helper()
	for _, s := range u.since(mark) {
		t.Errorf("%s: a request reached the upstream: %s %s", what, s.Method, s.RequestURI)
	}
}

// ---------------------------------------------------------------------------------------------
// HTTP clients

// secClient is a browser-like client of one gateway. With a jar it keeps cookies and follows
// redirects, except those to a gateway's /bff/ endpoints, which cases visit themselves;
// without one it follows nothing.
type secClient struct {
	e  *secEnv
	gw string
	c  *http.Client
}

type secTransport struct {
	e    *secEnv
	base http.RoundTripper
}

var secGatewayHosts sync.Map // host:port of the suite's gateways

func (st *secTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := st.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if _, ok := secGatewayHosts.Load(req.URL.Host); !ok {
		return resp, nil
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var hdr strings.Builder
	resp.Header.Write(&hdr)
	st.e.mu.Lock()
	st.e.responses = append(st.e.responses, req.Method+" "+req.URL.Path+"\n"+resp.Status+"\n"+hdr.String()+"\n"+string(body))
	st.e.mu.Unlock()
	for _, c := range resp.Cookies() {
		switch {
		case c.Name == secCookie:
			st.e.addSensitive("session cookie", c.Value)
		case strings.HasPrefix(c.Name, secCookie+"-flow-"):
			st.e.addSensitive("flow cookie", c.Value)
		case strings.HasPrefix(c.Name, secCookie):
			st.e.addSensitive("logout cookie", c.Value)
		}
	}
	return resp, nil
}

var secSharedTransport = &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 5 * time.Second}

func (e *secEnv) client(gw string, withJar bool) *secClient {
	for _, g := range []*gatehouseProc{e.gw1, e.gw2, e.gw3} {
		if g != nil {
			secGatewayHosts.Store(strings.TrimPrefix(g.URL, "http://"), true)
		}
	}
	cl := &secClient{e: e, gw: gw}
	cl.c = &http.Client{Transport: &secTransport{e: e, base: secSharedTransport}, Timeout: 20 * time.Second}
	if !withJar {
		cl.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return cl
	}
	cl.c.Jar = harness.NewLoopbackJar()
	cl.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if _, ok := secGatewayHosts.Load(req.URL.Host); ok && strings.HasPrefix(req.URL.Path, "/bff/") {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("too many redirects")
		}
		return nil
	}
	return cl
}

// do sends a request; target is a path on the gateway or an absolute URL. hdr are name,
// value pairs added in order (a name may repeat); "Host" sets the Host header.
func (cl *secClient) do(t testing.TB, method, target string, body io.Reader, hdr ...string) *response {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		target = cl.gw + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := cl.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: string(data), URL: resp.Request.URL}
}

// Headers of the SPA's own calls, of a navigation, and of attacker pages.
var (
	secSameOrigin = []string{"Accept", "application/json", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty"}
	secAPI        = append([]string{"X-CSRF", "1"}, secSameOrigin...)
	secNavigate   = []string{"Accept", "text/html", "Sec-Fetch-Site", "none", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
)

func secHeaders(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

// withCookie adds a session cookie header.
func withCookie(cookie string, hdr ...string) []string {
	return append([]string{"Cookie", secCookie + "=" + cookie}, hdr...)
}

// user returns the /bff/user status and claims for a session cookie (same-origin call).
func (e *secEnv) user(t testing.TB, gw *gatehouseProc, cookie string) (int, map[string]any) {
	t.Helper()
	r := e.client(gw.URL, false).do(t, "GET", "/bff/user", nil, withCookie(cookie, secSameOrigin...)...)
	var m map[string]any
	json.Unmarshal([]byte(r.Body), &m)
	return r.Status, m
}

// alive fails t unless cookie opens a session of sub on gw.
func (e *secEnv) alive(t testing.TB, gw *gatehouseProc, cookie, sub, what string) {
	t.Helper()
	status, m := e.user(t, gw, cookie)
	claims, _ := m["claims"].(map[string]any)
	if status != 200 || claims["sub"] != sub {
		t.Errorf("%s: the session of %s is gone or changed: /bff/user = %d %v", what, sub, status, m)
	}
}

// dead fails t unless cookie opens no session on gw (401); it returns the reason.
func (e *secEnv) dead(t testing.TB, gw *gatehouseProc, cookie, what string) string {
	t.Helper()
	status, m := e.user(t, gw, cookie)
	if status != 401 {
		t.Errorf("%s: /bff/user = %d %v, want 401", what, status, m)
	}
	reason, _ := m["reason"].(string)
	return reason
}

// start begins a login without following the redirect: it returns the provider's
// authorization URL; the flow cookie is in the client's jar.
func (cl *secClient) start(t testing.TB, query string) string {
	t.Helper()
	c := *cl.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("GET", cl.gw+"/bff/login"+query, nil)
	for i := 0; i+1 < len(secNavigate); i += 2 {
		req.Header.Set(secNavigate[i], secNavigate[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /bff/login: %v", err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		t.Fatalf("GET /bff/login%s: %d, Location %q", query, resp.StatusCode, loc)
	}
	return loc
}

// authorize signs user in at the provider for a login started at the gateway and returns the
// URL of the callback the provider redirected to, not visited.
func (cl *secClient) authorize(t testing.TB, user, password, returnURL string) string {
	t.Helper()
	q := ""
	if returnURL != "" {
		q = "?returnUrl=" + url.QueryEscape(returnURL)
	}
	r := cl.do(t, "GET", "/bff/login"+q, nil, secNavigate...)
	callback := cl.gw + "/bff/callback"
	if loc := r.Header.Get("Location"); (r.Status == 302 || r.Status == 303) && loc != "" {
		u, _ := r.URL.Parse(loc)
		if strings.HasPrefix(u.String(), callback) {
			return u.String() // signed in at the provider already (or the fake provider)
		}
	}
	if r.Status != 200 || !strings.Contains(r.Body, `name="password"`) {
		t.Fatalf("/bff/login did not lead to the provider's login form: %d %s\n%.500s", r.Status, r.URL, r.Body)
	}
	resp := harness.Login(t, cl.c, r.URL.String(), user, password)
	resp.Body.Close()
	loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), callback) {
		t.Fatalf("after the login form: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.String()
}

// noFollow sends a request with the client's cookies without following its redirect.
func (cl *secClient) noFollow(t testing.TB, method, target string, hdr ...string) *response {
	t.Helper()
	c := *cl.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return (&secClient{e: cl.e, gw: cl.gw, c: &c}).do(t, method, target, nil, hdr...)
}

// callback visits a callback URL as the browser arriving from the provider would.
func (cl *secClient) callback(t testing.TB, u string) *response {
	t.Helper()
	return cl.do(t, "GET", u, nil, "Accept", "text/html", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
}

// login signs user in and returns the session cookie.
func (cl *secClient) login(t testing.TB, user, password string) string {
	t.Helper()
	r := cl.callback(t, cl.authorize(t, user, password, "/"))
	if r.Status != 200 {
		t.Fatalf("login of %s: callback %d\n%.500s", user, r.Status, r.Body)
	}
	return cl.session(t)
}

// session is the session cookie in the client's jar ("" if none).
func (cl *secClient) session(t testing.TB) string {
	t.Helper()
	u, _ := url.Parse(cl.gw)
	for _, c := range cl.c.Jar.Cookies(u) {
		if c.Name == secCookie {
			return c.Value
		}
	}
	return ""
}

// plant puts a cookie into the client's jar, as an attacker able to set cookies would.
func (cl *secClient) plant(name, value string) {
	u, _ := url.Parse(cl.gw)
	cl.c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true}})
}

// setCookieValue returns the value r sets for cookie name, and whether it sets it.
func setCookieValue(r *response, name string) (string, bool) {
	for _, line := range r.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// sid is the public handle of a session (from /bff/user).
func (e *secEnv) sid(t testing.TB, gw *gatehouseProc, cookie string) string {
	t.Helper()
	status, m := e.user(t, gw, cookie)
	sid, _ := m["sid"].(string)
	if status != 200 || sid == "" {
		t.Fatalf("/bff/user = %d %v", status, m)
	}
	return sid
}

// ---------------------------------------------------------------------------------------------
// raw HTTP

// secRaw writes raw bytes to the gateway at gwURL and reads until the server closes the
// connection or wait has passed. closed reports the server closed it.
func secRaw(t testing.TB, gwURL, raw string, wait time.Duration) (out string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(gwURL, "http://"))
	if err != nil {
		t.Fatalf("dial %s: %v", gwURL, err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	data, err := io.ReadAll(conn)
	return string(data), err == nil
}

// secResponses parses every HTTP response in out (pipelined responses included).
func secResponses(out string) []*response {
	var list []*response
	br := bufio.NewReader(strings.NewReader(out))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return list
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		list = append(list, &response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)})
	}
}

// secRawRequest builds a request with CRLF line ends from lines; the last element is the body.
func secRawRequest(lines ...string) string {
	return strings.Join(lines[:len(lines)-1], "\r\n") + "\r\n\r\n" + lines[len(lines)-1]
}

// secSlowResult is what a slow-header client observed.
type secSlowResult struct {
	Closed  bool          // the server closed the connection
	After   time.Duration // since the connection opened
	Got     string        // what the server sent
	Err     string
	Written int // header bytes the client managed to write
}

// secSlowHeaders opens a connection to gwURL and sends a request's header one line every
// 500 ms, never finishing it (slowloris), for at most 20 s.
func secSlowHeaders(gwURL string) <-chan secSlowResult {
	ch := make(chan secSlowResult, 1)
	go func() {
		start := time.Now()
		conn, err := net.Dial("tcp", strings.TrimPrefix(gwURL, "http://"))
		if err != nil {
			ch <- secSlowResult{Err: err.Error()}
			return
		}
		defer conn.Close()
		done := make(chan secSlowResult, 1)
		go func() {
			data, err := io.ReadAll(conn)
			r := secSlowResult{Closed: true, After: time.Since(start), Got: string(data)}
			if err != nil {
				r.Closed, r.Err = false, err.Error()
			}
			done <- r
		}()
		lines := []string{"GET /bff/user HTTP/1.1\r\n", "Host: " + strings.TrimPrefix(gwURL, "http://") + "\r\n"}
		for i := 0; i < 40; i++ {
			lines = append(lines, fmt.Sprintf("X-Slow-%d: %d\r\n", i, i))
		}
		written := 0
		for _, line := range lines {
			select {
			case r := <-done:
				r.Written = written
				ch <- r
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := io.WriteString(conn, line); err != nil {
				break
			}
			written += len(line)
		}
		select {
		case r := <-done:
			r.Written = written
			ch <- r
		case <-time.After(2 * time.Second):
			ch <- secSlowResult{Closed: false, After: time.Since(start), Written: written, Err: "still open after 20 s"}
		}
	}()
	return ch
}

// ---------------------------------------------------------------------------------------------
// tokens

// secSign signs claims as a JWS: alg "RS256" with key (an *rsa.PrivateKey), "HS256" with key
// (a []byte of any length), or "none". kid and typ are header values ("" omits them).
func secSign(t testing.TB, alg string, key any, kid, typ string, claims map[string]any) string {
	t.Helper()
	if alg == "none" || alg == "HS256" {
		header := map[string]any{"alg": alg}
		if kid != "" {
			header["kid"] = kid
		}
		if typ != "" {
			header["typ"] = typ
		}
		h, _ := json.Marshal(header)
		p, _ := json.Marshal(claims)
		input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
		if alg == "none" {
			return input + "."
		}
		// By hand: go-jose refuses HMAC keys shorter than the hash (client secrets often are).
		mac := hmac.New(sha256.New, key.([]byte))
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// jwtHeader decodes a JWT's header without verifying it.
func jwtHeader(raw string) map[string]any {
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(raw string) map[string]any {
	parts := strings.Split(raw, ".")
	if len(parts) < 2 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// lastIDTokenOf returns the newest ID token the provider issued to sub, and its claims.
func (e *secEnv) lastIDTokenOf(t testing.TB, sub string) (string, map[string]any) {
	t.Helper()
	toks := e.idp.IssuedTokens(t)
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].Kind != "id_token" {
			continue
		}
		if c := jwtClaims(toks[i].Value); c["sub"] == sub {
			return toks[i].Value, c
		}
	}
	t.Fatalf("the provider issued no ID token to %s", sub)
	return "", nil
}

func secRandom() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---------------------------------------------------------------------------------------------
// redirect targets as a browser follows them

var (
	secMetaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]*)">`)
	secLinkHref    = regexp.MustCompile(`<a href="([^"]*)">`)
)

// secBrowserTarget resolves a redirect target against base as a browser would: leading and
// trailing C0 controls and spaces dropped, tabs and newlines removed anywhere, backslashes
// read as slashes (they are, in http and https URLs).
func secBrowserTarget(base, target string) (*url.URL, error) {
	s := strings.TrimFunc(target, func(r rune) bool { return r <= 0x20 })
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(s)
	b, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	ref, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	return b.ResolveReference(ref), nil
}

// checkSameOrigin fails t unless target, followed from a page of gw, stays on gw's origin;
// with exact it must also be exactly want.
func checkSameOrigin(t testing.TB, gw, where, target, want string, exact bool) {
	t.Helper()
	u, err := secBrowserTarget(gw+"/bff/callback", target)
	g, _ := url.Parse(gw)
	switch {
	case err != nil:
		t.Errorf("%s: target %q does not parse (%v)", where, target, err)
	case u.Scheme != g.Scheme || u.Host != g.Host:
		t.Errorf("%s: target %q leads a browser to %s://%s, off the gateway's origin", where, target, u.Scheme, u.Host)
	case exact && target != want:
		t.Errorf("%s: target %q, want exactly %q", where, target, want)
	}
}

// pageTargets extracts the meta refresh and link targets of the callback's page.
func pageTargets(t testing.TB, body string) (refresh, link string) {
	t.Helper()
	m := secMetaRefresh.FindStringSubmatch(body)
	l := secLinkHref.FindStringSubmatch(body)
	if m == nil || l == nil {
		t.Fatalf("the callback page has no refresh or link:\n%.800s", body)
	}
	return html.UnescapeString(m[1]), html.UnescapeString(l[1])
}
