// Package e2e runs the real gatehouse binary against a real OpenID Connect provider (npm
// oidc-provider), real upstreams on loopback, and — in other files — real Redis and
// Chromium. Run it with the README's test command, or `npm ci --prefix e2e` once and then
// `go test ./e2e/`.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
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
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"go.yaml.in/yaml/v3"
)

// binary is the gatehouse binary built once for the whole run.
var binary string

// upstreamTransport is GATEHOUSE_E2E_UPSTREAM_TRANSPORT: standard or fast puts
// `upstream_transport:` into every gatehouse's config that does not choose one itself, so
// that the suite (or a part of it, with -run) runs on that proxy path; empty leaves the
// configs as written (the default, standard).
var upstreamTransport = os.Getenv("GATEHOUSE_E2E_UPSTREAM_TRANSPORT")

func TestMain(m *testing.M) {
	switch upstreamTransport {
	case "", "standard", "fast":
	default:
		fmt.Fprintf(os.Stderr, "e2e: GATEHOUSE_E2E_UPSTREAM_TRANSPORT is %q; want standard, fast or empty\n", upstreamTransport)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gatehouse")
	args := []string{"build", "-o", binary}
	if os.Getenv("GATEHOUSE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/gatehouse")...)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the gatehouse binary failed:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort is a port for a process the test starts next (harness.FreePort: outside the
// ephemeral range, never twice).
func freePort(t testing.TB) int {
	t.Helper()
	return harness.FreePort(t)
}

// gatehouseProc is one running gatehouse process.
type gatehouseProc struct {
	t         testing.TB
	URL       string // public URL
	AdminURL  string
	cfgPath   string
	cmd       *exec.Cmd
	logs      *lockedBuffer
	exited    chan struct{}
	stopped   bool
	extraLogs []string // logs of earlier runs of this gatehouse (after a restart)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startGatehouse writes config (YAML, with {{PORT}} and {{ADMIN}} already substituted by
// the caller) and runs `gatehouse serve` until the test ends. Every gatehouse logs at debug
// (added when config has no log section); when the test ends its logs are audited for
// secrets (see leakaudit_test.go). GATEHOUSE_E2E_UPSTREAM_TRANSPORT, when set, adds a
// top-level upstream_transport (see withUpstreamTransport).
func startGatehouse(t testing.TB, port int, config string) *gatehouseProc {
	t.Helper()
	adminPort := freePort(t)
	config = strings.ReplaceAll(config, "{{ADMIN}}", fmt.Sprintf("127.0.0.1:%d", adminPort))
	config = withDebugLogging(t, config)
	config = withUpstreamTransport(config)
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gatehouseProc{t: t, URL: fmt.Sprintf("http://127.0.0.1:%d", port), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort), cfgPath: path}
	g.start()
	t.Cleanup(func() {
		g.Stop()
		auditGatehouseLogs(t, g)
	})
	return g
}

// withUpstreamTransport returns config with `upstream_transport: <upstreamTransport>` added
// when GATEHOUSE_E2E_UPSTREAM_TRANSPORT is set and config has no top-level
// upstream_transport (a test that chooses the path keeps its choice, as do routes that
// set their own).
func withUpstreamTransport(config string) string {
	if upstreamTransport == "" {
		return config
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		return config // gatehouse itself will say what is wrong with it
	}
	if _, present := doc["upstream_transport"]; present {
		return config
	}
	return strings.TrimRight(config, "\n") + "\nupstream_transport: " + upstreamTransport + "\n"
}

func (g *gatehouseProc) start() {
	t := g.t
	t.Helper()
	if g.logs != nil {
		g.extraLogs = append(g.extraLogs, g.logs.String())
	}
	g.logs = &lockedBuffer{}
	g.cmd = exec.Command(binary, "serve", "--config", g.cfgPath)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.stopped = false
	g.exited = make(chan struct{})
	go func() { g.cmd.Wait(); close(g.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.AdminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-g.exited:
			t.Fatalf("gatehouse exited at start:\n%s", g.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse not ready after 20 s:\n%s", g.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process with SIGTERM (SIGKILL after 10 s).
func (g *gatehouseProc) Stop() {
	if g.stopped {
		return
	}
	g.stopped = true
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.exited
	}
	if g.t.Failed() {
		g.t.Logf("gatehouse logs (%s):\n%s", g.URL, g.logs.String())
	}
}

// Kill9 ends the process at once, as a crash would.
func (g *gatehouseProc) Kill9() {
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
	g.stopped = true
}

// Restart starts the process again with the same configuration.
func (g *gatehouseProc) Restart() { g.start() }

// Logs is everything the process wrote, across restarts.
func (g *gatehouseProc) Logs() string {
	return strings.Join(g.extraLogs, "") + g.logs.String()
}

// recorder keeps every response a browser received, to prove no token leaks to it.
type recorder struct {
	mu    sync.Mutex
	base  http.RoundTripper
	seen  []string
	hosts map[string]bool // only responses from these hosts (the gateway's) are kept
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil || !r.hosts[req.URL.Host] {
		return resp, err
	}
	var hdr strings.Builder
	resp.Header.Write(&hdr)
	resp.Body = &teeBody{ReadCloser: resp.Body, r: r, head: resp.Status + "\n" + hdr.String()}
	return resp, nil
}

type teeBody struct {
	io.ReadCloser
	r    *recorder
	head string
	buf  bytes.Buffer
	done bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.buf.Write(p[:n])
	if err != nil {
		t.flush()
	}
	return n, err
}

func (t *teeBody) Close() error {
	t.flush()
	return t.ReadCloser.Close()
}

func (t *teeBody) flush() {
	if t.done {
		return
	}
	t.done = true
	t.r.mu.Lock()
	t.r.seen = append(t.r.seen, t.head+t.buf.String())
	t.r.mu.Unlock()
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, "\n")
}

// browser is an HTTP client with a loopback cookie jar; redirects are followed except
// those to the gateway's callbacks, which tests visit themselves.
type browser struct {
	t   testing.TB
	c   *http.Client
	gw  string
	rec *recorder
}

func newBrowser(t testing.TB, gatewayURLs ...string) *browser {
	rec := &recorder{base: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 64}, hosts: map[string]bool{}}
	for _, u := range gatewayURLs {
		pu, _ := url.Parse(u)
		rec.hosts[pu.Host] = true
	}
	b := &browser{t: t, gw: gatewayURLs[0], rec: rec}
	b.c = &http.Client{Jar: harness.NewLoopbackJar(), Transport: rec, Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if rec.hosts[req.URL.Host] && strings.Contains(req.URL.Path, "/bff/") { // an app on a path prefix has its /bff/ there
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return fmt.Errorf("too many redirects")
			}
			return nil
		}}
	return b
}

type response struct {
	Status int
	Header http.Header
	Body   string
	URL    *url.URL
}

func (b *browser) do(method, target string, body io.Reader, headers ...string) *response {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.gw + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: string(data), URL: resp.Request.URL}
}

func (b *browser) get(target string, headers ...string) *response {
	return b.do("GET", target, nil, headers...)
}

// api calls like the SPA's fetch.
func (b *browser) api(method, target string) *response {
	return b.do(method, target, nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors")
}

// login runs the whole flow through the provider's real login form and returns the
// callback's response.
func (b *browser) login(user, password, returnURL string) *response {
	b.t.Helper()
	r := b.get("/bff/login?returnUrl="+url.QueryEscape(returnURL), "Sec-Fetch-Mode", "navigate")
	if r.Status != 200 || !strings.Contains(r.Body, "password") {
		b.t.Fatalf("/bff/login did not lead to the provider's login form: %d %s", r.Status, r.Body)
	}
	resp := harness.Login(b.t, b.c, r.URL.String(), user, password)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.Contains(loc, "/bff/callback") {
		b.t.Fatalf("after the login form: %d, Location %q", resp.StatusCode, loc)
	}
	return b.get(loc, "Sec-Fetch-Mode", "navigate")
}

func (b *browser) user() (int, map[string]any) {
	b.t.Helper()
	r := b.api("GET", "/bff/user")
	var m map[string]any
	json.Unmarshal([]byte(r.Body), &m)
	return r.Status, m
}

func jsonBody(t testing.TB, r *response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("not JSON (%d): %s", r.Status, r.Body)
	}
	return m
}

func expect(t testing.TB, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d\n%s", r.URL, r.Status, status, r.Body)
	}
}

// upstream is an API on loopback that records what reached it.
type upstream struct {
	URL  string
	mu   sync.Mutex
	reqs []http.Header
	srv  *http.Server
}

func startUpstream(t testing.TB) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{URL: "http://" + ln.Addr().String()}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("X-Seen-Path", r.URL.Path)
		u.mu.Lock()
		u.reqs = append(u.reqs, h)
		u.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: tick %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(200 * time.Millisecond)
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"path":%q}`, r.URL.Path)
	})}
	go u.srv.Serve(ln)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func (u *upstream) all() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.reqs...)
}

func (u *upstream) last(t testing.TB) http.Header {
	t.Helper()
	all := u.all()
	if len(all) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return all[len(all)-1]
}

// latestAccessToken is the newest access token the provider issued (from its log).
func latestAccessToken(t testing.TB, p *harness.Provider) string {
	t.Helper()
	var last string
	for _, s := range p.IssuedTokens(t) {
		if s.Kind == "access_token" {
			last = s.Value
		}
	}
	return last
}

// readLines is a small SSE reader helper.
func readLines(r io.Reader, n int) []string {
	sc := bufio.NewScanner(r)
	var out []string
	for len(out) < n && sc.Scan() {
		if line := sc.Text(); line != "" {
			out = append(out, line)
		}
	}
	return out
}
