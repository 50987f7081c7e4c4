package e2e

// The stack the browser tests run against: a provider (npm oidc-provider or `gatehouse
// devidp`), the demo API as its own process behind a request-counting proxy, and gatehouse
// serving the demo SPA (examples/demo/spa). The scenarios themselves are Node scripts in
// e2e/browser/ that drive Debian's Chromium with playwright-core; see browser_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// browserAccessTTL is the access token lifetime of both providers in the browser tests:
// short, so that every scenario lives through refreshes and the refresh scenario can wait
// past an expiry.
const browserAccessTTL = 8 * time.Second

// browserUser is an account at the provider. Each scenario signs in as its own user, so
// that session lists and provider sessions of one scenario never show in another.
type browserUser struct {
	Name     string   `json:"name"`
	Password string   `json:"password"`
	Display  string   `json:"display"`
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
}

var browserUsers = []browserUser{
	{Name: "alice", Password: "wonderland", Display: "Alice", Email: "alice@example.com", Groups: []string{"admin", "staff"}},
	{Name: "bob", Password: "builder", Display: "Bob", Email: "bob@example.com", Groups: []string{"staff"}},
	{Name: "carol", Password: "carol-pw", Display: "Carol", Email: "carol@example.com", Groups: []string{"staff"}},
	{Name: "dave", Password: "dave-pw", Display: "Dave", Email: "dave@example.com", Groups: []string{"staff"}},
	{Name: "erin", Password: "erin-pw", Display: "Erin", Email: "erin@example.com", Groups: []string{"staff"}},
	{Name: "frank", Password: "frank-pw", Display: "Frank", Email: "frank@example.com", Groups: []string{"staff"}},
}

func browserUserNamed(t testing.TB, name string) browserUser {
	for _, u := range browserUsers {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no browser test user %q", name)
	return browserUser{}
}

// chromiumPath is Debian's Chromium, which the tests drive (playwright never downloads a
// browser here). GATEHOUSE_E2E_CHROMIUM overrides it.
func chromiumPath() string {
	if p := os.Getenv("GATEHOUSE_E2E_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// checkBrowserSetup fails the test, saying how to install what is missing, unless node,
// playwright-core (e2e/node_modules) and Chromium are there. It never skips.
func checkBrowserSetup(t testing.TB) (root string) {
	t.Helper()
	root = harness.CheckNodeSetup(t) // node, oidc-provider and playwright-core
	chromium := chromiumPath()
	st, err := os.Stat(chromium)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("browser tests: Chromium is missing at %s: install it with `sudo apt-get install -y chromium` "+
			"(Debian's package; retry once if apt fails with \"rename failed … partial\"), or point GATEHOUSE_E2E_CHROMIUM at a "+
			"Chromium binary. scripts/test.sh installs it. Playwright's own browser downloads are not used.", chromium)
	}
	return root
}

// buildDemoAPI builds examples/demo/api/cmd/demoapi into dir.
func buildDemoAPI(t testing.TB, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "demoapi")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/demo/api/cmd/demoapi")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the demo API: %v\n%s", err, out)
	}
	return bin
}

// browserChild is a child process whose output is kept and shown when the test fails.
type browserChild struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// startProcess runs cmd until the test ends and waits until its stdout has a line matching
// ready; it returns the first submatch of that line.
func startBrowserChild(t testing.TB, name string, cmd *exec.Cmd, ready *regexp.Regexp) (*browserChild, string) {
	t.Helper()
	p := &browserChild{name: name, cmd: cmd, out: &lockedBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if m := ready.FindStringSubmatch(line); m != nil && !sent {
				sent = true
				found <- m[len(m)-1]
			}
		}
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case v := <-found:
		return p, v
	case <-p.exited:
		t.Fatalf("%s exited at start:\n%s", name, p.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start within 30 s:\n%s", name, p.out.String())
	}
	return nil, ""
}

// stop ends the process with SIGTERM (SIGKILL after 10 s), by its PID.
func (p *browserChild) stop(t testing.TB) {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", p.name, p.out.String())
	}
}

// serveLoopback runs h on a fresh loopback port until the test ends.
func serveLoopback(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// browserAPICounter sits between gatehouse and the demo API and counts what reaches the API, so
// that a test can prove an attack never got there. GET <ControlURL>/requests lists them.
type browserAPICounter struct {
	URL        string // what gatehouse's routes point at
	ControlURL string
	mu         sync.Mutex
	reqs       []browserAPIRequest
}

type browserAPIRequest struct {
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Bearer bool      `json:"bearer"`
	At     time.Time `json:"at"`
}

func startBrowserAPICounter(t testing.TB, api string) *browserAPICounter {
	target, _ := url.Parse(api)
	c := &browserAPICounter{}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		FlushInterval: -1, // event streams
	}
	c.URL = serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.reqs = append(c.reqs, browserAPIRequest{Method: r.Method, Path: r.URL.Path, At: time.Now(),
			Bearer: strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")})
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	c.ControlURL = serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		out := map[string]any{"total": len(c.reqs), "requests": append([]browserAPIRequest{}, c.reqs...)}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}))
	return c
}

// browserTokenTap is a transparent reverse proxy in front of devidp that records every token its
// token endpoint hands out (devidp, unlike the test oidc-provider, has no token log). devidp
// runs with its issuer set to the tap's URL, so gatehouse, the demo API and the browser all
// talk to it through the tap.
type browserTokenTap struct {
	URL    string
	mu     sync.Mutex
	tokens []harness.IssuedSecret
	target *url.URL
}

func startBrowserTokenTap(t testing.TB) *browserTokenTap {
	tap := &browserTokenTap{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			tap.mu.Lock()
			target := tap.target
			tap.mu.Unlock()
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			// Authorization codes (in the redirect back to the gateway), for the log audit.
			if loc, err := url.Parse(resp.Header.Get("Location")); err == nil && loc.Query().Get("code") != "" {
				tap.mu.Lock()
				tap.tokens = append(tap.tokens, harness.IssuedSecret{Kind: "authorization_code", Value: loc.Query().Get("code")})
				tap.mu.Unlock()
			}
			if resp.Request.Method != http.MethodPost || !strings.HasSuffix(resp.Request.URL.Path, "/token") {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				tap.mu.Lock()
				for _, kind := range []string{"access_token", "refresh_token", "id_token"} {
					if v, _ := m[kind].(string); v != "" {
						tap.tokens = append(tap.tokens, harness.IssuedSecret{Kind: kind, Value: v})
					}
				}
				tap.mu.Unlock()
			}
			return nil
		},
	}
	tap.URL = serveLoopback(t, rp)
	registerAuditSource(tap.issued) // devidp has no token log: the log audit reads the tap
	return tap
}

func (tap *browserTokenTap) issued() []harness.IssuedSecret {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]harness.IssuedSecret(nil), tap.tokens...)
}

// browserStack is one provider, the demo API and gatehouse serving the demo SPA.
type browserStack struct {
	provider string // "oidc-provider" or "devidp"
	root     string
	issuer   string
	idp      *harness.Provider // oidc-provider
	tap      *browserTokenTap  // devidp
	gw       *gatehouseProc
	api      *browserAPICounter
	apiProc  *browserChild
	devidp   *browserChild
	outDir   string // traffic captured by the scenarios
	// ignoreCertificateErrors: gatehouse serves a test certificate (browserStackTLS).
	ignoreCertificateErrors bool
}

// startBrowserStack starts the stack. crossSite (devidp only) addresses the provider as
// localhost while gatehouse is 127.0.0.1: different sites, so that the browser sends no
// SameSite=Strict cookie on the redirect back from the provider.
func startBrowserStack(t *testing.T, provider, root, demoapi string, crossSite bool, opts ...browserStackTLS) *browserStack {
	t.Helper()
	s := &browserStack{provider: provider, root: root, outDir: t.TempDir()}
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	var tlsOpt browserStackTLS
	if len(opts) > 0 {
		tlsOpt = opts[0]
		public = fmt.Sprintf("https://127.0.0.1:%d", port)
		s.ignoreCertificateErrors = true
	}

	var providerYAML, clientYAML string
	switch provider {
	case "oidc-provider":
		var users []harness.User
		for _, u := range browserUsers {
			users = append(users, harness.User{ID: u.Name, Password: u.Password, Claims: map[string]any{
				"email": u.Email, "email_verified": true, "name": u.Display, "preferred_username": u.Name, "groups": u.Groups,
			}})
		}
		s.idp = harness.StartProvider(t, harness.ProviderConfig{
			AccessTokenTTL: browserAccessTTL,
			Clients:        []harness.Client{harness.BFFClient(public)},
			Users:          users,
			// oidc-provider's access tokens are opaque (the demo API resolves them with
			// userinfo), and so are its client-credentials tokens, which userinfo refuses:
			// the client-credentials route asks for a JWT for this resource instead.
			Resources: []harness.Resource{{Resource: "https://demo-api.example", Scope: "demo.status"}},
		})
		s.issuer = s.idp.Issuer()
		providerYAML = `
  client_id: bff
  client_secret: s3cret
  auth_params: {prompt: consent}`
		clientYAML = `
    resource: https://demo-api.example
    scopes: [demo.status]`
	case "devidp":
		s.tap = startBrowserTokenTap(t)
		if crossSite {
			s.tap.URL = strings.Replace(s.tap.URL, "//127.0.0.1:", "//localhost:", 1)
		}
		s.issuer = s.tap.URL
		var cfg strings.Builder
		fmt.Fprintf(&cfg, `listen: 127.0.0.1:0
issuer: %s
access_token_ttl: %s
clients:
  - id: gatehouse-demo
    secret: demo-secret
    redirect_uris: [%s/bff/callback]
    post_logout_redirect_uris: [%s/bff/logout/callback]
    backchannel_logout_uri: %s/bff/backchannel
users:
`, s.issuer, browserAccessTTL, public, public, public)
		for _, u := range browserUsers {
			fmt.Fprintf(&cfg, "  %s: {name: %s, email: %s, groups: [%s]}\n", u.Name, u.Display, u.Email, strings.Join(u.Groups, ", "))
		}
		path := filepath.Join(t.TempDir(), "devidp.yaml")
		if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		var addr string
		s.devidp, addr = startBrowserChild(t, "devidp", exec.Command(binary, "devidp", "--config", path),
			regexp.MustCompile(`listening on (\S+)`))
		s.tap.mu.Lock()
		s.tap.target, _ = url.Parse("http://" + addr)
		s.tap.mu.Unlock()
		providerYAML = `
  client_id: gatehouse-demo
  client_secret: demo-secret`
		if crossSite {
			providerYAML += `
  allowed_auth_params: [prompt]` // relogin.mjs asks for prompt=login
		}
		clientYAML = `
    scopes: [demo.status]`
	default:
		t.Fatalf("unknown provider %q", provider)
	}
	if crossSite && provider != "devidp" {
		t.Fatalf("a cross-site stack needs devidp")
	}

	var apiURL string
	s.apiProc, apiURL = startBrowserChild(t, "demoapi", exec.Command(demoapi, "--listen", "127.0.0.1:0", "--issuer", s.issuer),
		regexp.MustCompile(`listening on (http://\S+),`))
	s.api = startBrowserAPICounter(t, apiURL)

	cfg := fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s%s
  scopes: [openid, profile, email, groups, offline_access]
  refresh_lead: 2s
session:
  store: memory
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
log:
  level: debug
routes:
  - path: /api/admin
    upstream: %s
    token: user
    require:
      - claim: groups
        contains: [admin]
  - path: /api/
    upstream: %s
    token: user
  - path: /client/
    upstream: %s
    token: client%s
%sfrontend:
  dir: %s
`, port, public, s.issuer, providerYAML, s.api.URL, s.api.URL, s.api.URL, clientYAML, tlsOpt.routes,
		filepath.Join(root, "examples", "demo", "spa"))
	if tlsOpt.certFile != "" {
		cfg += fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", tlsOpt.certFile, tlsOpt.keyFile)
	}
	s.gw = startGatehouse(t, port, cfg)
	s.gw.URL = public
	return s
}

// browserStackTLS turns TLS on for the stack's gatehouse (public_url https://…, a
// certificate the browser is told to accept) and adds routes (YAML list items).
type browserStackTLS struct {
	certFile, keyFile string
	routes            string
}

// issuedTokens is every access, refresh and ID token the provider issued so far.
func (s *browserStack) issuedTokens(t testing.TB) []harness.IssuedSecret {
	var out []harness.IssuedSecret
	var all []harness.IssuedSecret
	if s.idp != nil {
		all = s.idp.IssuedTokens(t)
	} else {
		all = s.tap.issued()
	}
	for _, tok := range all {
		switch tok.Kind {
		case "access_token", "refresh_token", "id_token":
			out = append(out, tok)
		}
	}
	return out
}

// scenarioConfig is what a Node scenario gets (JSON, its first argument).
type scenarioConfig struct {
	Scenario      string        `json:"scenario"`
	Provider      string        `json:"provider"`
	Chromium      string        `json:"chromium"`
	Gateway       string        `json:"gateway"`
	Issuer        string        `json:"issuer"`
	ProviderBase  string        `json:"providerBase"`
	AccessTTL     float64       `json:"accessTTL"` // seconds
	APICounter    string        `json:"apiCounter"`
	TrafficFile   string        `json:"trafficFile"`
	ArtifactsDir  string        `json:"artifactsDir"`
	Users         []browserUser `json:"users"`
	TimeoutMillis int           `json:"timeoutMillis"`
	// IgnoreCertificateErrors launches Chromium with --ignore-certificate-errors.
	IgnoreCertificateErrors bool `json:"ignoreCertificateErrors"`
}

// runScenario runs `node e2e/browser/<name>.mjs <config>` and decodes the JSON it prints.
// The script fails with a readable message (and screenshots of its open pages under
// e2e/artifacts/) when something it waited for does not happen.
func (s *browserStack) runScenario(t *testing.T, name string, out any, users ...string) {
	t.Helper()
	artifacts := filepath.Join(s.root, "e2e", "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := scenarioConfig{
		Scenario: name, Provider: s.provider, Chromium: chromiumPath(), Gateway: s.gw.URL, Issuer: s.issuer,
		AccessTTL: browserAccessTTL.Seconds(), APICounter: s.api.ControlURL + "/requests",
		TrafficFile:  filepath.Join(s.outDir, name+".traffic.jsonl"),
		ArtifactsDir: artifacts, TimeoutMillis: 90_000, IgnoreCertificateErrors: s.ignoreCertificateErrors,
	}
	if s.idp != nil {
		cfg.ProviderBase = s.idp.BaseURL()
	} else {
		cfg.ProviderBase = s.tap.URL
	}
	for _, u := range users {
		cfg.Users = append(cfg.Users, browserUserNamed(t, u))
	}
	arg, _ := json.Marshal(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(s.root, "e2e", "browser", name+".mjs"), string(arg))
	cmd.Dir = filepath.Join(s.root, "e2e")
	// Its own process group: if it has to be killed, its Chromium goes with it. (The script
	// also stops itself, and its browser, after cfg.TimeoutMillis.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("browser scenario %s/%s: %.1f s", s.provider, name, time.Since(start).Seconds())
	if testing.Verbose() || err != nil {
		t.Logf("node e2e/browser/%s.mjs (stderr):\n%s", name, stderr.String())
	}
	if err != nil {
		t.Fatalf("browser scenario %s against %s failed (%v); its log is above, screenshots of its pages are in %s",
			name, s.provider, err, artifacts)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		t.Fatalf("browser scenario %s printed no JSON result (%v):\n%s", name, err, stdout.String())
	}
}
