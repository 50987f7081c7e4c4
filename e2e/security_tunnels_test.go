package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
	"github.com/gatehouse-bff/gatehouse/session/redisstore/redistest"
)

// openWSAt opens a WebSocket through the replica at replicaURL, as a load balancer
// would have sent it there: the public Host and Origin, the session cookie.
func openWSAt(t *testing.T, replicaURL, public, cookie string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(replicaURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /ws/echo HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\nCookie: __Host-gatehouse=%s\r\n\r\n",
		strings.TrimPrefix(public, "http://"), public, cookie)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("WebSocket upgrade at %s: %v %v", replicaURL, resp, err)
	}
	if got := echo(conn, br, "hello"); got != "echo:hello" {
		t.Fatalf("echo through %s = %q", replicaURL, got)
	}
	return conn, br
}

// closedWithin reports how long the gateway took to close conn, failing after within.
// The time is counted from start, before the session was ended.
func closedWithin(t *testing.T, conn net.Conn, br *bufio.Reader, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	conn.SetDeadline(start.Add(within))
	for {
		fmt.Fprint(conn, "ping\n")
		if _, err := br.ReadString('\n'); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the WebSocket is still open %v after its session ended", within)
			}
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2ESessionEndClosesWebSocketsOnEveryReplica: three replicas on one Redis. A
// session's WebSocket is held by replica 3; the session is ended at replica 1 (logout)
// or replica 2 (admin revocation, back-channel logout): replica 3 closes the socket
// within a few seconds, and other sessions' sockets stay open.
func TestE2ESessionEndClosesWebSocketsOnEveryReplica(t *testing.T) {
	redis := redistest.Start(t)
	lbListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + lbListener.Addr().String()
	client := harness.BFFClient(public)
	idp := harness.StartProvider(t, harness.ProviderConfig{Clients: []harness.Client{client}})
	ws := wsUpstream(t)

	var replicas []*gatehouseProc
	for range 3 {
		port := freePort(t)
		replicas = append(replicas, startGatehouse(t, port, fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
trusted_proxies: [127.0.0.1]
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
session:
  store: %s
  redis: {timeout: 1s, key_prefix: "e2e:"}
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
routes:
  - path: /ws/
    upstream: %s
`, port, public, idp.Issuer(), redis.URL, ws)))
	}
	lb := startBalancer(t, lbListener, replicas)
	held := replicas[2]

	login := func(user, password string) (*browser, string) {
		b := newBrowser(t, lb.URL)
		expect(t, b.login(user, password, "/"), 200)
		return b, lastSessionCookie(t, b)
	}

	// A bystander's socket on the same replica must survive everything below.
	_, bystanderCookie := login("bob", "builder")
	bystander, bystanderBr := openWSAt(t, held.URL, public, bystanderCookie)

	t.Run("logout at replica 1", func(t *testing.T) {
		_, cookie := login("alice", "wonderland")
		conn, br := openWSAt(t, held.URL, public, cookie)
		start := time.Now()
		req, _ := http.NewRequest("POST", replicas[0].URL+"/bff/logout", nil)
		req.Host = strings.TrimPrefix(public, "http://")
		for k, v := range map[string]string{"Cookie": "__Host-gatehouse=" + cookie, "X-CSRF": "1", "Origin": public,
			"Sec-Fetch-Site": "same-origin", "Accept": "application/json"} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("logout at replica 1: %s", resp.Status)
		}
		d := closedWithin(t, conn, br, start, 5*time.Second)
		t.Logf("tunnels: logout at replica 1 closed the WebSocket at replica 3 after %v", d.Round(100*time.Microsecond))
	})

	t.Run("admin revocation at replica 2", func(t *testing.T) {
		b, cookie := login("alice", "wonderland")
		conn, br := openWSAt(t, held.URL, public, cookie)
		sid := ""
		for _, s := range jsonBody(t, b.api("GET", "/bff/sessions"))["sessions"].([]any) {
			if m := s.(map[string]any); m["current"] == true {
				sid = m["sid"].(string)
			}
		}
		start := time.Now()
		req, _ := http.NewRequest("DELETE", replicas[1].AdminURL+"/admin/sessions/"+sid, nil)
		req.Header.Set("Authorization", "Bearer e2e-admin-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("admin revocation at replica 2: %s", resp.Status)
		}
		d := closedWithin(t, conn, br, start, 5*time.Second)
		t.Logf("tunnels: admin revocation at replica 2 closed the WebSocket at replica 3 after %v", d.Round(100*time.Microsecond))
	})

	t.Run("back-channel logout from the provider", func(t *testing.T) {
		_, cookie := login("alice", "wonderland")
		conn, br := openWSAt(t, held.URL, public, cookie)
		start := time.Now()
		if sessions, bcl := idp.EndSessions(t, "alice"); sessions == 0 || bcl == 0 {
			t.Fatalf("the provider ended %d sessions with %d back-channel logouts", sessions, bcl)
		}
		d := closedWithin(t, conn, br, start, 5*time.Second)
		t.Logf("tunnels: back-channel logout closed the WebSocket at replica 3 after %v", d.Round(100*time.Microsecond))
	})

	bystander.SetDeadline(time.Now().Add(5 * time.Second))
	if got := echo(bystander, bystanderBr, "still here"); got != "echo:still here" {
		t.Fatalf("another user's WebSocket was closed too: echo = %q", got)
	}
	resp, err := http.Get(held.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := string(body); !strings.Contains(m, `gatehouse_tunnels_closed_total{reason="session_ended"} 3`) {
		t.Errorf("replica 3's metrics do not count the 3 closed tunnels:\n%s", grepLines(m, "gatehouse_tunnels"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
