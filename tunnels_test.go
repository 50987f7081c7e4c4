package gatehouse_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// wsTunnel is a WebSocket opened through the gateway to the upstream's /wsloop echo.
type wsTunnel struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func openTunnel(t *testing.T, e *env, cookie string) *wsTunnel {
	t.Helper()
	conn, br, resp := openWebSocket(t, e, "/api/wsloop", e.url, cookie, 30*time.Second)
	t.Cleanup(func() { conn.Close() })
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket upgrade: %s", resp.Status)
	}
	ws := &wsTunnel{t: t, conn: conn, br: br}
	ws.echo("hello")
	return ws
}

// echo sends a line and wants it back.
func (ws *wsTunnel) echo(line string) {
	ws.t.Helper()
	ws.conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(ws.conn, line+"\n")
	if got, err := ws.br.ReadString('\n'); err != nil || got != "echo:"+line+"\n" {
		ws.t.Fatalf("echo through the WebSocket = %q, %v", got, err)
	}
}

// wantClosed waits for the gateway to close the WebSocket.
func (ws *wsTunnel) wantClosed(within time.Duration) {
	ws.t.Helper()
	start := time.Now()
	ws.conn.SetDeadline(start.Add(within))
	for {
		fmt.Fprint(ws.conn, "still there?\n")
		_, err := ws.br.ReadString('\n')
		if err == nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			ws.t.Fatalf("the WebSocket is still open %v after its session ended", within)
		}
		ws.t.Logf("WebSocket closed after %v (%v)", time.Since(start).Round(time.Millisecond), err)
		return
	}
}

// openStream opens the upstream's endless event stream through the gateway and returns
// a channel closed when the stream ends.
func openStream(t *testing.T, b *browser) <-chan struct{} {
	t.Helper()
	req, _ := http.NewRequest("GET", b.e.url+"/api/stream", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	c := *b.c
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("event stream: %s", resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data:") {
		t.Fatalf("first event = %q, %v", line, err)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer resp.Body.Close()
		io.Copy(io.Discard, br)
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return ended
}

func wantEnded(t *testing.T, ended <-chan struct{}, within time.Duration) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(within):
		t.Fatalf("the event stream still runs %v after its session ended", within)
	}
}

// tunnelEnv is routesEnv with an admin token, user-agent binding and a fast clock knob.
func tunnelEnv(t *testing.T, knobs func(*idptest.Knobs), mutate ...func(*gatehouse.Config)) *env {
	up := newUpstream(t)
	return newEnvKnobs(t, knobs, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: up.srv.URL}, {Path: "/open/", Upstream: up.srv.URL, Token: gatehouse.TokenNone}}
		c.Admin.Token = "admin-secret-token"
		c.Session.BindUserAgent = true
	}}, mutate...)...)
}

// sessionID returns the browser's own session id from /bff/sessions.
func sessionID(t *testing.T, b *browser) string {
	t.Helper()
	r := b.api("GET", "/bff/sessions")
	wantStatus(t, r, 200)
	for _, s := range decode(t, r)["sessions"].([]any) {
		if m := s.(map[string]any); m["current"] == true {
			return m["sid"].(string)
		}
	}
	t.Fatalf("no current session in %s", r.body)
	return ""
}

func TestSessionEndClosesItsWebSocketsAndStreams(t *testing.T) {
	ends := map[string]func(t *testing.T, e *env, b *browser){
		"logout": func(t *testing.T, e *env, b *browser) {
			wantStatus(t, b.api("POST", "/bff/logout"), 200)
		},
		"revoked by the user from another device": func(t *testing.T, e *env, b *browser) {
			sid := sessionID(t, b)
			other := e.browser()
			other.login()
			wantStatus(t, other.api("DELETE", "/bff/sessions/"+sid), 204)
		},
		"revoked by an admin": func(t *testing.T, e *env, b *browser) {
			sid := sessionID(t, b)
			admin := httptest.NewServer(e.gw.AdminHandler())
			defer admin.Close()
			req, _ := http.NewRequest("DELETE", admin.URL+"/admin/sessions/"+sid, nil)
			req.Header.Set("Authorization", "Bearer admin-secret-token")
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != 204 {
				t.Fatalf("admin DELETE = %s", r.Status)
			}
		},
		"back-channel logout": func(t *testing.T, e *env, b *browser) {
			wantStatus(t, e.backchannel(e.idp.LogoutToken("alice", "provider-session-1", "logout+jwt", nil)), 200)
		},
		"binding broken": func(t *testing.T, e *env, b *browser) {
			wantStatus(t, b.do("GET", "/bff/user", nil, "User-Agent", "Stolen-Cookie-Client/1.0", "Sec-Fetch-Site", "same-origin"), 401)
		},
		"refresh refused": func(t *testing.T, e *env, b *browser) {
			e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_grant" })
			e.clock.Advance(2 * time.Minute) // past the access token's minute
			wantStatus(t, b.api("GET", "/api/orders"), 401)
		},
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			e := tunnelEnv(t, nil)
			b := e.browser()
			b.login()
			cookie := b.cookie("__Host-gatehouse").Value
			ws := openTunnel(t, e, cookie)
			stream := openStream(t, b)
			// A tunnel without the session's token is not the session's: it stays.
			anon, anonBr, resp := openWebSocket(t, e, "/open/wsloop", e.url, cookie, 10*time.Second)
			defer anon.Close()
			if resp.StatusCode != 101 {
				t.Fatalf("upgrade on the token: none route: %s", resp.Status)
			}
			end(t, e, b)
			ws.wantClosed(3 * time.Second)
			wantEnded(t, stream, 3*time.Second)
			(&wsTunnel{t: t, conn: anon, br: anonBr}).echo("unaffected")
		})
	}
}

func TestTunnelsCloseWhenTheSessionExpires(t *testing.T) {
	t.Run("idle timeout", func(t *testing.T) {
		e := tunnelEnv(t, func(k *idptest.Knobs) { k.AccessTokenTTL = 24 * time.Hour })
		b := e.browser()
		b.login()
		ws := openTunnel(t, e, b.cookie("__Host-gatehouse").Value)
		e.clock.Advance(20 * time.Minute)
		e.gw.RecheckTunnels()
		time.Sleep(100 * time.Millisecond)
		ws.echo("not idle yet")
		e.clock.Advance(11 * time.Minute) // 31 min without a request: past the 30 min idle timeout
		e.gw.RecheckTunnels()
		ws.wantClosed(3 * time.Second)
	})
	t.Run("absolute timeout, however busy", func(t *testing.T) {
		e := tunnelEnv(t, func(k *idptest.Knobs) { k.AccessTokenTTL = 24 * time.Hour },
			func(c *gatehouse.Config) { c.Session.AbsoluteTimeout = time.Hour })
		b := e.browser()
		b.login()
		ws := openTunnel(t, e, b.cookie("__Host-gatehouse").Value)
		for range 2 {
			e.clock.Advance(25 * time.Minute)
			wantStatus(t, b.api("GET", "/bff/user"), 200)
			e.gw.RecheckTunnels()
			time.Sleep(100 * time.Millisecond)
			ws.echo("busy")
		}
		e.clock.Advance(15 * time.Minute) // 65 min after login
		e.gw.RecheckTunnels()
		ws.wantClosed(3 * time.Second)
	})
}

func TestTunnelsCloseWhenTheTokenCannotBeRefreshed(t *testing.T) {
	e := tunnelEnv(t, nil)
	b := e.browser()
	b.login()
	ws := openTunnel(t, e, b.cookie("__Host-gatehouse").Value)
	refreshes := e.idp.Count("refresh_token")

	// The token expires; the provider renews it: the tunnel stays, and the refresh did
	// not count as use of the session.
	e.clock.Advance(2 * time.Minute)
	e.gw.RecheckTunnels()
	deadline := time.Now().Add(3 * time.Second)
	for e.idp.Count("refresh_token") == refreshes && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.idp.Count("refresh_token") == refreshes {
		t.Fatal("the tunnel's token expired and nobody asked the provider for a new one")
	}
	ws.echo("renewed")

	// The next time, the provider refuses: the tunnel closes.
	e.idp.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = 400, "invalid_grant" })
	e.clock.Advance(2 * time.Minute)
	e.gw.RecheckTunnels()
	ws.wantClosed(3 * time.Second)
	wantStatus(t, b.api("GET", "/bff/user"), 401)
}
