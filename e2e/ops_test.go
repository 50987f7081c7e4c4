package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// Operations, against the real binary: SIGHUP reload, graceful shutdown with open
// WebSockets, check --online, the audit log file, and rate limits shared by replicas.

// waitFor polls cond every 50 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2EReloadOnSIGHUP(t *testing.T) {
	s := startStack(t, stackOpts{extraYAML: "rate_limits:\n  login: {per_minute: 1, burst: 1}\n"})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.api("GET", "/v2/x"), 404)
	expect(t, newBrowser(t, s.gw.URL).get("/bff/login"), 429) // the login above used the bucket

	cfg, err := os.ReadFile(s.gw.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "rate_limits:\n  login: {per_minute: 1, burst: 1}\n", "rate_limits:\n  login: {per_minute: 600, burst: 50}\n", 1)
	next = strings.Replace(next, "routes:\n", fmt.Sprintf("routes:\n  - path: /v2/\n    upstream: %s\n    strip_prefix: true\n", s.api.URL), 1)
	next = strings.Replace(next, "  refresh_lead: 2s\n", "  refresh_lead: 3s\n", 1) // needs a restart
	if next == string(cfg) {
		t.Fatal("the test did not change the configuration")
	}
	if err := os.WriteFile(s.gw.cfgPath, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	s.gw.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the new route", func() bool { return b.api("GET", "/v2/x").Status == 200 })
	if got := s.api.last(t).Get("X-Seen-Path"); got != "/x" {
		t.Fatalf("upstream path = %q", got)
	}
	expect(t, b.api("GET", "/api/x"), 200)                    // the session survived
	expect(t, newBrowser(t, s.gw.URL).get("/bff/login"), 200) // the provider's login page
	logs := s.gw.Logs()
	if !strings.Contains(logs, "configuration reloaded") || !strings.Contains(logs, `"settings":"provider.refresh_lead"`) {
		t.Fatalf("logs lack the reload and the restart warning:\n%s", logs)
	}

	// A broken file changes nothing and says why.
	os.WriteFile(s.gw.cfgPath, []byte(strings.Replace(next, "path: /v2/", "path: v2", 1)), 0o600)
	s.gw.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the reload error", func() bool {
		return strings.Contains(s.gw.Logs(), "configuration not reloaded")
	})
	if !strings.Contains(s.gw.Logs(), `routes[0].path`) {
		t.Fatal("the reload error does not name the field")
	}
	expect(t, b.api("GET", "/v2/x"), 200)
}

// wsUpstream echoes lines on WebSocket-upgraded connections (enough for a proxy test).
func wsUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(brw, "echo:"+line)
			brw.Flush()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// openWS logs in and opens a WebSocket through /ws/.
func openWS(t *testing.T, s *stack, b *browser) (net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(s.gw.URL, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /ws/echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\nCookie: __Host-gatehouse=%s\r\n\r\n",
		host, s.gw.URL, lastSessionCookie(t, b))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("WebSocket upgrade: %v %v", resp, err)
	}
	return conn, br
}

func echo(conn net.Conn, br *bufio.Reader, msg string) string {
	fmt.Fprint(conn, msg+"\n")
	line, _ := br.ReadString('\n')
	return strings.TrimSuffix(line, "\n")
}

func TestE2EGracefulShutdownDrainsWebSockets(t *testing.T) {
	ws := wsUpstream(t)
	s := startStack(t, stackOpts{extraYAML: fmt.Sprintf("  - path: /ws/\n    upstream: %s\nserver:\n  shutdown_timeout: 20s\n", ws)})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	conn, br := openWS(t, s, b)
	defer conn.Close()

	start := time.Now()
	s.gw.cmd.Process.Signal(syscall.SIGTERM)
	// Still running, reporting "draining", refusing new connections, WebSocket alive.
	waitFor(t, 5*time.Second, "/readyz to say draining", func() bool {
		resp, err := http.Get(s.gw.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 503 && strings.Contains(string(body), "draining")
	})
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(s.gw.URL, "http://"), time.Second); err == nil {
		t.Fatal("the public listener still accepts connections while draining")
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case <-s.gw.exited:
		t.Fatalf("gatehouse exited with a WebSocket open:\n%s", s.gw.Logs())
	default:
	}
	if got := echo(conn, br, "during drain"); got != "echo:during drain" {
		t.Fatalf("echo during the drain = %q", got)
	}
	// Closing the last WebSocket lets it exit, cleanly.
	conn.Close()
	select {
	case <-s.gw.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse did not exit after the last WebSocket closed")
	}
	s.gw.stopped = true
	if code := s.gw.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatal("the drain waited for its timeout, not for the WebSocket")
	}
	if !strings.Contains(s.gw.Logs(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the logs:\n%s", s.gw.Logs())
	}
}

func TestE2EShutdownTimeoutClosesWebSockets(t *testing.T) {
	ws := wsUpstream(t)
	s := startStack(t, stackOpts{extraYAML: fmt.Sprintf("  - path: /ws/\n    upstream: %s\nserver:\n  shutdown_timeout: 1s\n", ws)})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	conn, br := openWS(t, s, b)
	defer conn.Close()
	if got := echo(conn, br, "hi"); got != "echo:hi" {
		t.Fatalf("echo = %q", got)
	}
	start := time.Now()
	s.gw.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.gw.exited:
	case <-time.After(8 * time.Second):
		t.Fatal("gatehouse did not exit after its shutdown timeout")
	}
	s.gw.stopped = true
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("exited after %v, before the 1 s drain timeout", d)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the WebSocket is still open after the shutdown")
	}
	if !strings.Contains(s.gw.Logs(), "drain timeout passed") {
		t.Fatalf("logs:\n%s", s.gw.Logs())
	}
}

func TestE2ECheckOnline(t *testing.T) {
	s := startStack(t, stackOpts{})
	run := func(path string) (string, int) {
		cmd := exec.Command(binary, "check", "--online", "--timeout", "3s", "--config", path)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run(s.gw.cfgPath)
	if code != 0 || !strings.Contains(out, "ok   provider: discovery of "+s.idp.Issuer()) || !strings.Contains(out, "ok   session store: memory answers") ||
		!strings.Contains(out, "ok   routes[0].upstream") {
		t.Fatalf("check --online = %d:\n%s", code, out)
	}

	// A provider that is down, and a Redis store that is down: both named.
	cfg, _ := os.ReadFile(s.gw.cfgPath)
	bad := strings.Replace(string(cfg), s.idp.Issuer(), fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), 1)
	bad = strings.Replace(bad, "store: memory", fmt.Sprintf("store: redis://127.0.0.1:%d\n  redis: {dial_timeout: 500ms}", freePort(t)), 1)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(bad), 0o600)
	out, code = run(path)
	if code != 1 || !strings.Contains(out, "FAIL provider") || !strings.Contains(out, "FAIL session store") {
		t.Fatalf("check --online with the provider and Redis down = %d:\n%s", code, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Fatal("check prints the client secret")
	}
}

func TestE2EAuditLogFile(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.log")
	s := startStack(t, stackOpts{extraYAML: "audit_log:\n  output: " + auditPath + "\n"})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.do("GET", "/api/x", nil), 403) // no CSRF header
	// W3C trace context passes through to the upstream, so traces span the gateway.
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	expect(t, b.do("GET", "/api/x", nil, "X-CSRF", "1", "traceparent", tp, "tracestate", "vendor=abc"), 200)
	if h := s.api.last(t); h.Get("Traceparent") != tp || h.Get("Tracestate") != "vendor=abc" {
		t.Fatalf("upstream trace headers = %q %q", h.Get("Traceparent"), h.Get("Tracestate"))
	}
	r := b.api("POST", "/bff/logout")
	expect(t, r, 200)

	events := func(path string) []map[string]any {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("audit line is not JSON: %q", line)
			}
			out = append(out, m)
		}
		return out
	}
	var names []string
	for _, e := range events(auditPath) {
		names = append(names, e["event"].(string))
		if e["log"] != "audit" || e["ip"] != "127.0.0.1" || e["time"] == nil {
			t.Fatalf("audit event lacks fields: %v", e)
		}
	}
	if got := strings.Join(names, " "); got != "login_started login_succeeded csrf_rejected logout" {
		t.Fatalf("audit events = %s", got)
	}
	data, _ := os.ReadFile(auditPath)
	for _, secret := range s.idp.IssuedSecrets(t) {
		if strings.Contains(string(data), secret) {
			t.Fatalf("the audit log contains an issued secret (%.8s…)", secret)
		}
	}
	if info, _ := os.Stat(auditPath); info.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode %v, want 0600", info.Mode().Perm())
	}

	// logrotate: move the file away, SIGHUP, and new events go to a new file.
	os.Rename(auditPath, auditPath+".1")
	s.gw.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the audit log to be reopened", func() bool { _, err := os.Stat(auditPath); return err == nil })
	expect(t, newBrowser(t, s.gw.URL).get("/bff/login"), 200) // the provider's login page
	waitFor(t, 5*time.Second, "an event in the new file", func() bool {
		data, _ := os.ReadFile(auditPath)
		return bytes.Contains(data, []byte(`"event":"login_started"`))
	})
}

func TestE2ERateLimitsSharedAcrossReplicas(t *testing.T) {
	redis := redistest.Start(t)
	port1, port2 := freePort(t), freePort(t)
	// Both replicas serve one public origin; the test talks to each directly.
	public := fmt.Sprintf("http://127.0.0.1:%d", port1)
	idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{harness.BFFClient(public)}})
	cfg := func(port int) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider: {issuer: %s, client_id: bff, client_secret: s3cret}
session:
  store: %s
  redis: {key_prefix: "rl-e2e:"}
admin: {listen: "{{ADMIN}}"}
rate_limits:
  login: {per_minute: 1, burst: 4}
`, port, public, idp.Issuer(), redis.URL)
	}
	g1, g2 := startGatehouse(t, port1, cfg(port1)), startGatehouse(t, port2, cfg(port2))
	var got []int
	for i := range 6 {
		g := []*gatehouseProc{g1, g2}[i%2]
		got = append(got, newBrowser(t, g.URL).get("/bff/login").Status) // 200: the provider's page
	}
	if fmt.Sprint(got) != "[200 200 200 200 429 429]" {
		t.Fatalf("logins across two replicas = %v, want 4 allowed in all", got)
	}
	if !strings.Contains(g1.Logs()+g2.Logs(), `"event":"rate_limited"`) {
		t.Fatal("no rate_limited audit event")
	}
	// The buckets are in Redis, under the configured prefix: the client's login bucket and
	// the global one of pending login flows (session.max_pending_flows).
	keys := redis.Do(t, "KEYS", "rl-e2e:rl:*")
	var names []string
	for _, k := range keys.([]any) {
		names = append(names, fmt.Sprint(k))
	}
	slices.Sort(names)
	if len(names) != 2 || !strings.HasPrefix(names[0], "rl-e2e:rl:{login_flows|") || !strings.HasPrefix(names[1], "rl-e2e:rl:{login|") {
		t.Fatalf("rate-limit keys in Redis = %v, want the login bucket and the login flows' one", names)
	}
}

// TestE2EReloadOnFileChange: no SIGHUP; the binary sees its configuration file change
// (renamed over, as editors and config management write it) and serves the new route.
// A broken file then keeps the route, and /readyz and the metrics say why.
func TestE2EReloadOnFileChange(t *testing.T) {
	s := startStack(t, stackOpts{})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	expect(t, b.api("GET", "/v2/x"), 404)

	cfg, err := os.ReadFile(s.gw.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "routes:\n", fmt.Sprintf("routes:\n  - path: /v2/\n    upstream: %s\n    strip_prefix: true\n", s.api.URL), 1)
	replace := func(content string) {
		t.Helper()
		tmp := s.gw.cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, s.gw.cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	replace(next)
	waitFor(t, 5*time.Second, "the new route", func() bool { return b.api("GET", "/v2/x").Status == 200 })
	if !strings.Contains(s.gw.Logs(), `"trigger":"file changed"`) {
		t.Fatal("the log does not say the file change triggered the reload")
	}

	replace(strings.Replace(next, "path: /v2/", "path: v2", 1))
	waitFor(t, 5*time.Second, "the reload error", func() bool {
		return strings.Contains(s.gw.Logs(), "configuration not reloaded")
	})
	expect(t, b.api("GET", "/v2/x"), 200)
	get := func(path string) (int, string) {
		resp, err := http.Get(s.gw.AdminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "configuration reload failed") {
		t.Fatalf("/readyz after a failed reload = %d %s, want 200 with the failure", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `gatehouse_config_reloads_total{outcome="failed"} 1`) ||
		!strings.Contains(body, "gatehouse_config_last_reload_success 0") {
		t.Fatal("the metrics do not show the failed reload")
	}
}
