package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// Forward-auth behind a real nginx (auth_request) and a real Caddy (forward_auth), each
// running the configuration shipped in deploy/forward-auth/ with only its addresses
// changed: the browser talks to the ingress, which asks the gatehouse binary about every
// /api/ call and forwards it to the test upstream with the token Gatehouse gave it.

const (
	nginxBin = "/usr/sbin/nginx"
	caddyBin = "/usr/bin/caddy"
)

// faStack is an ingress in front of gatehouse, the provider and the upstream.
type faStack struct {
	idp     *harness.Provider
	gw      *gatehouseProc
	api     *upstream
	ingress string // the ingress's URL: public_url
}

// startForwardAuthStack starts the provider, the upstream and gatehouse with public_url
// the ingress's address (ingressPort). The ingress itself is started by the caller.
func startForwardAuthStack(t *testing.T, ingressPort int, accessTTL time.Duration) *faStack {
	t.Helper()
	public := fmt.Sprintf("http://127.0.0.1:%d", ingressPort)
	idp := harness.StartProvider(t, harness.ProviderConfig{
		AccessTokenTTL: accessTTL,
		Clients:        []harness.Client{harness.BFFClient(public)},
	})
	api := startUpstream(t)
	port := freePort(t)
	// Routes without upstream: the ingress forwards. The ingress connects from 127.0.0.1,
	// the only trusted proxy; the tests' own direct calls come from 127.0.0.3.
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
trusted_proxies: [127.0.0.1/32]
forward_auth:
  redirect_navigations: true
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access, groups]
  auth_params: {prompt: consent}
  refresh_lead: 2s
session:
  store: memory
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
log:
  level: debug
routes:
  - path: /api/v1/
  - path: /api/admin/
    require:
      - claim: groups
        contains: [admin]
`, port, public, idp.Issuer())
	return &faStack{idp: idp, api: api, gw: startGatehouse(t, port, cfg), ingress: public}
}

func hostPort(u string) string { p, _ := url.Parse(u); return p.Host }

// shipped reads a file of deploy/forward-auth/ with its addresses replaced.
func shipped(t *testing.T, name string, replace ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "forward-auth", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("%s no longer contains %q", name, replace[i])
		}
		s = strings.ReplaceAll(s, replace[i], replace[i+1])
	}
	return s
}

// startProcess runs an ingress until the test ends and waits for its port to answer.
func startProcess(t *testing.T, port int, name string, args ...string) *lockedBuffer {
	t.Helper()
	if _, err := os.Stat(name); err != nil {
		t.Fatalf("%s is needed (Debian package: scripts/test.sh installs it): %v", name, err)
	}
	logs := &lockedBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", filepath.Base(name), logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return logs
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", name, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %d: %s", name, port, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNginx runs nginx with deploy/forward-auth/nginx.conf.
func startNginx(t *testing.T, port int, s *faStack) {
	t.Helper()
	dir := t.TempDir()
	conf := nginxConf(t, dir,
		"server 127.0.0.1:9080;", "server "+hostPort(s.gw.URL)+";",
		"server 127.0.0.1:8000;", "server "+hostPort(s.api.URL)+";",
		"listen 8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"root /var/www/app;", "root "+dir+";",
		"worker_processes auto;", "worker_processes 1;")
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, port, nginxBin, "-p", dir, "-c", path, "-g", "daemon off; pid "+dir+"/nginx.pid; error_log stderr;")
}

// nginxConf is the shipped nginx.conf with replace applied, and with logs and temporary
// files of its own in dir: the packaged paths are the system nginx's.
func nginxConf(t *testing.T, dir string, replace ...string) string {
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	return shipped(t, "nginx.conf", append(replace,
		"http {", "http {\n    access_log off;\n    client_body_temp_path "+dir+"/body;\n    proxy_temp_path "+dir+"/proxy;\n"+
			"    fastcgi_temp_path "+dir+"/fastcgi;\n    uwsgi_temp_path "+dir+"/uwsgi;\n    scgi_temp_path "+dir+"/scgi;\n")...)
}

// startCaddy runs caddy with deploy/forward-auth/Caddyfile.
func startCaddy(t *testing.T, port int, s *faStack) {
	t.Helper()
	dir := t.TempDir()
	conf := "{\n\tadmin off\n}\n" + shipped(t, "Caddyfile",
		"app.example.com {", fmt.Sprintf("http://127.0.0.1:%d {", port),
		"reverse_proxy 127.0.0.1:9080", "reverse_proxy "+hostPort(s.gw.URL),
		"forward_auth 127.0.0.1:9080", "forward_auth "+hostPort(s.gw.URL),
		"reverse_proxy 127.0.0.1:8000", "reverse_proxy "+hostPort(s.api.URL),
		"root * /var/www/app", "root * "+dir)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, port, caddyBin, "run", "--config", path, "--adapter", "caddyfile")
}

// untrustedAuth calls /bff/auth directly, from 127.0.0.3 (not a trusted proxy), with the
// session's cookie and the SPA's headers plus h.
func untrustedAuth(t *testing.T, s *faStack, b *browser, target string, h ...string) *response {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 5 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", s.gw.URL+target, nil)
	ing, _ := url.Parse(s.ingress)
	for _, ck := range b.c.Jar.Cookies(&url.URL{Scheme: "https", Host: ing.Host, Path: "/"}) {
		req.AddCookie(ck)
	}
	if req.Header.Get("Cookie") == "" {
		t.Fatal("the browser holds no session cookie")
	}
	h = append([]string{"X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Origin", s.ingress}, h...)
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return &response{Status: res.StatusCode, Header: res.Header, Body: string(body), URL: req.URL}
}

// checkForwardAuth runs what both ingresses must do.
func checkForwardAuth(t *testing.T, s *faStack) *browser {
	b := newBrowser(t, s.ingress)
	expect(t, b.login("alice", "wonderland", "/"), 200)

	// The SPA's call passes, with the bearer the ingress got from Gatehouse.
	r := b.api("GET", "/api/v1/orders?limit=2")
	expect(t, r, 200)
	h := s.api.last(t)
	if h.Get("Authorization") != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatalf("upstream Authorization = %q, want the session's token", h.Get("Authorization"))
	}
	if h.Get("X-Seen-Path") != "/api/v1/orders" || strings.Contains(h.Get("Cookie"), "gatehouse") {
		t.Fatalf("upstream saw path %q, cookie %q", h.Get("X-Seen-Path"), h.Get("Cookie"))
	}
	// A POST too: its CSRF defences are the browser's own headers.
	expect(t, b.do("POST", "/api/v1/orders", strings.NewReader(`{}`), "X-CSRF", "1", "Origin", s.ingress,
		"Sec-Fetch-Site", "same-origin", "Content-Type", "application/json", "Accept", "application/json"), 200)
	// A token the browser sends is replaced by the session's.
	expect(t, b.do("GET", "/api/v1/x", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Authorization", "Bearer forged"), 200)
	if got := s.api.last(t).Get("Authorization"); got != "Bearer "+latestAccessToken(t, s.idp) {
		t.Fatalf("upstream Authorization = %q after a forged one", got)
	}

	reached := len(s.api.all())
	refused := func(name string, r *response, status int, code, reason string) {
		t.Helper()
		if r.Status != status {
			t.Fatalf("%s: %d, want %d: %s", name, r.Status, status, r.Body)
		}
		m := jsonBody(t, r)
		if m["error"] != code || reason != "" && m["reason"] != reason {
			t.Fatalf("%s: body %v, want %s/%s", name, m, code, reason)
		}
	}
	anon := newBrowser(t, s.ingress)
	r = anon.api("GET", "/api/v1/orders")
	refused("no cookie", r, 401, "unauthenticated", "no_session")
	if m := jsonBody(t, r); m["login_url"] != "/bff/login" {
		t.Fatalf("no login_url: %v", m)
	}
	refused("foreign Origin", b.do("POST", "/api/v1/orders", nil, "X-CSRF", "1", "Origin", "https://evil.example", "Accept", "application/json"),
		403, "csrf_rejected", "cross_origin")
	refused("cross-site fetch", b.do("GET", "/api/v1/orders", nil, "X-CSRF", "1", "Sec-Fetch-Site", "cross-site", "Accept", "application/json"),
		403, "csrf_rejected", "cross_origin")
	refused("missing X-CSRF", b.do("POST", "/api/v1/orders", nil, "Sec-Fetch-Site", "same-origin", "Accept", "application/json"),
		403, "csrf_rejected", "missing_header")
	refused("a path outside every route", b.api("GET", "/api/other"), 403, "forbidden", "no_route")
	refused("dot segments out of the route", b.api("GET", "/api/v1/%2e%2e/other"), 403, "forbidden", "no_route")

	// A navigation without a session is sent to log in, and back.
	r = anon.get("/api/v1/report?month=5&y=2", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document", "Accept", "text/html")
	if r.Status != http.StatusFound || r.Header.Get("Location") != "/bff/login?returnUrl="+url.QueryEscape("/api/v1/report?month=5&y=2") {
		t.Fatalf("navigation without a session: %d Location %q", r.Status, r.Header.Get("Location"))
	}
	if n := len(s.api.all()); n != reached {
		t.Fatalf("%d refused requests reached the upstream", n-reached)
	}

	// The same headers from a peer that is not a trusted proxy describe nothing.
	for _, h := range [][]string{
		{"X-Original-Method", "GET", "X-Original-URI", "/api/v1/orders"},
		{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/v1/orders", "X-Forwarded-Host", hostPort(s.ingress), "X-Forwarded-Proto", "http"},
	} {
		r := untrustedAuth(t, s, b, "/bff/auth", h...)
		if r.Status != 400 || r.Header.Get("Authorization") != "" || !strings.Contains(r.Body, "forward_auth_untrusted") {
			t.Fatalf("untrusted peer with %v: %d %q %s", h, r.Status, r.Header.Get("Authorization"), r.Body)
		}
	}
	if r := untrustedAuth(t, s, b, "/bff/auth/api/v1/orders"); r.Status != 400 || r.Header.Get("Authorization") != "" {
		t.Fatalf("untrusted peer, Envoy's shape: %d %q", r.Status, r.Header.Get("Authorization"))
	}
	return b
}

// logoutEndsAccess: after logout, the next call through the ingress is refused.
func logoutEndsAccess(t *testing.T, s *faStack, b *browser) {
	t.Helper()
	expect(t, b.api("GET", "/api/v1/before-logout"), 200)
	if r := b.do("POST", "/bff/logout", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin"); r.Status >= 400 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	reached := len(s.api.all())
	if r := b.api("GET", "/api/v1/after-logout"); r.Status != 401 {
		t.Fatalf("after logout: %d %s", r.Status, r.Body)
	}
	if len(s.api.all()) != reached {
		t.Fatal("a call after logout reached the upstream")
	}
}

func TestE2EForwardAuthNginx(t *testing.T) {
	port := freePort(t)
	s := startForwardAuthStack(t, port, 10*time.Second)
	startNginx(t, port, s)
	b := checkForwardAuth(t, s)

	// A browser's own X-Original-URI is replaced by nginx's.
	r := b.do("GET", "/api/other", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Accept", "application/json",
		"X-Original-URI", "/api/v1/orders", "X-Forwarded-Uri", "/api/v1/orders")
	if r.Status != 403 || !strings.Contains(r.Body, "no_route") {
		t.Fatalf("a browser's X-Original-URI: %d %s", r.Status, r.Body)
	}

	// Refresh at expiry: once, for a burst of calls through nginx.
	time.Sleep(8500 * time.Millisecond) // inside the 2 s lead of a 10 s token
	s.idp.Reset(t)
	before := len(s.api.all())
	const n = 50
	var wg sync.WaitGroup
	failures := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/burst/%d", s.ingress, i), nil)
			req.Header.Set("X-CSRF", "1")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
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
	close(failures)
	for f := range failures {
		t.Errorf("burst call failed: %s", f)
	}
	if got := s.idp.Stats(t).TokenRequests["refresh_token"]; got != 1 {
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
	logoutEndsAccess(t, s, b)
	assertNoSecretLeakIn(t, s.idp, s.gw.Logs(), b)
}

func TestE2EForwardAuthCaddy(t *testing.T) {
	port := freePort(t)
	s := startForwardAuthStack(t, port, 0)
	startCaddy(t, port, s)
	b := checkForwardAuth(t, s)

	// Caddy passes a browser's X-Original-URI on: two descriptions, none believed.
	r := b.do("GET", "/api/other", nil, "X-CSRF", "1", "Sec-Fetch-Site", "same-origin", "Accept", "application/json",
		"X-Original-URI", "/api/v1/orders")
	if r.Status == 200 || !strings.Contains(r.Body, "forward_auth_ambiguous") {
		t.Fatalf("a browser's X-Original-URI through Caddy: %d %s", r.Status, r.Body)
	}
	logoutEndsAccess(t, s, b)
	assertNoSecretLeakIn(t, s.idp, s.gw.Logs(), b)
}

// The shipped configurations pass the checks of the tools that read them.
func TestE2EForwardAuthConfigsValidate(t *testing.T) {
	for _, bin := range []string{nginxBin, caddyBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is needed (scripts/test.sh installs it): %v", bin, err)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginxBin, "-t", "-p", dir, "-c", conf, "-g", "pid "+dir+"/nginx.pid; error_log stderr;").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "syntax is ok") {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(caddyBin, "validate", "--config", filepath.Join("..", "deploy", "forward-auth", "Caddyfile"), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Errorf("caddy validate: %v\n%s", err, out)
	}
}
