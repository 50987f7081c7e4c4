package gatehouse_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// deadlineEnv is a gateway with short body deadlines: 300 ms for /bff/* and the rest,
// 500 ms for /api/ (its own body_timeout), 700 ms for /short/ (its timeout), none for
// /stream/ (streaming) once forwarded, and for /user-stream/ (streaming, token user) only
// with a session.
func deadlineEnv(t *testing.T) *env {
	up := newUpstream(t)
	return newEnv(t, func(c *gatehouse.Config) {
		c.Server.BodyTimeout = 300 * time.Millisecond
		c.Routes = []gatehouse.Route{
			{Path: "/api/", Upstream: up.srv.URL, Token: gatehouse.TokenNone, BodyTimeout: 500 * time.Millisecond},
			{Path: "/short/", Upstream: up.srv.URL, Token: gatehouse.TokenNone, Timeout: 700 * time.Millisecond},
			{Path: "/stream/", Upstream: up.srv.URL, Token: gatehouse.TokenNone, Streaming: true},
			{Path: "/user-stream/", Upstream: up.srv.URL, Streaming: true},
		}
	})
}

// slowBody sends a request to the gateway (with the CSRF header, so that routes forward
// it) declaring a 1000-byte body and sends it one byte every 50 ms; it returns how long after the headers the gateway closed the
// connection, or false if it had not after wait.
func slowBody(t *testing.T, e *env, method, path string, wait time.Duration) (time.Duration, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
		method, path, strings.TrimPrefix(e.url, "http://"))
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, conn) // until the gateway closes (EOF or reset)
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(wait)
	for {
		select {
		case d := <-closed:
			return d, true
		case <-timeout:
			return 0, false
		case <-tick.C:
			conn.Write([]byte("a"))
		}
	}
}

func TestBodyDeadlineByRequestClass(t *testing.T) {
	e := deadlineEnv(t)
	for _, c := range []struct {
		name, method, path string
		deadline           time.Duration // 0: the connection stays open
	}{
		{"bff endpoint that reads its body", "POST", "/bff/backchannel", 300 * time.Millisecond},
		{"bff endpoint that ignores its body", "POST", "/bff/user", 300 * time.Millisecond},
		{"frontend (no route)", "POST", "/index.html", 300 * time.Millisecond},
		{"route with body_timeout", "POST", "/api/upload", 500 * time.Millisecond},
		{"route with only a timeout", "PUT", "/short/upload", 700 * time.Millisecond},
		{"streaming route", "POST", "/stream/upload", 0},
		{"streaming route refused for want of a session", "POST", "/user-stream/upload", 300 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			wait := 2 * time.Second
			took, closed := slowBody(t, e, c.method, c.path, wait)
			switch {
			case c.deadline == 0 && closed:
				t.Fatalf("closed after %v; a streaming route's body has no deadline", took)
			case c.deadline == 0:
			case !closed:
				t.Fatalf("a body sent a byte every 50 ms still held the connection after %v; want it closed after %v", wait, c.deadline)
			case took < c.deadline-50*time.Millisecond || took > c.deadline+time.Second:
				t.Fatalf("closed after %v, want about %v", took, c.deadline)
			}
		})
	}
}

// TestBodyDeadlineSparesStreamsAndKeepAlive: a deadline is on the body only. Once it is
// read, a long response, the next request on the connection and a WebSocket go on.
func TestBodyDeadlineSparesStreamsAndKeepAlive(t *testing.T) {
	e := deadlineEnv(t)
	host := strings.TrimPrefix(e.url, "http://")
	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn, bufio.NewReader(conn)
	}
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t)
		})
	}

	run("a response streaming past the deadline after a POST", func(t *testing.T) {
		conn, br := dial(t)
		fmt.Fprintf(conn, "POST /api/events HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nContent-Length: 5\r\n\r\nhello", host)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body) // the second event comes 700 ms later, past 500 ms
		if err != nil || !strings.Contains(string(body), "data: second") {
			t.Fatalf("the stream was cut: %q, %v", body, err)
		}
	})
	run("a response streaming past the deadline after a GET", func(t *testing.T) {
		conn, br := dial(t)
		fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\n\r\n", host)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil || !strings.Contains(string(body), "data: second") {
			t.Fatalf("the stream was cut: %q, %v", body, err)
		}
	})
	run("the next request on a kept-alive connection", func(t *testing.T) {
		conn, br := dial(t)
		for i, req := range []string{
			"POST /bff/user HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc",
			"POST /api/x HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nContent-Length: 3\r\n\r\nabc",
			"GET /bff/user HTTP/1.1\r\nHost: %s\r\n\r\n",
		} {
			if i > 0 {
				time.Sleep(800 * time.Millisecond) // past every deadline of the previous request
			}
			fmt.Fprintf(conn, req, host)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d on the connection: %v", i+1, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	})
	run("a WebSocket", func(t *testing.T) {
		conn, br := dial(t)
		fmt.Fprintf(conn, "GET /api/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: %s\r\n\r\n", host, e.url)
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", res, err)
		}
		time.Sleep(time.Second)
		fmt.Fprint(conn, "ping\n")
		if line, err := br.ReadString('\n'); line != "echo:ping\n" {
			t.Fatalf("after 1 s the tunnel answers %q, %v", line, err)
		}
	})
}
