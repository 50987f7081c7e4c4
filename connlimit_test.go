package gatehouse_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// TestLimitListenerCapsConnectionsPerClient: a client network holding the cap has its
// next connection closed unserved, while another client is served; a closed connection
// gives its slot back; a trusted proxy is not counted; the refusals are counted.
func TestLimitListenerCapsConnectionsPerClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Server.MaxConnectionsPerClient = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	})
	srv := &http.Server{Handler: e.gw, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(e.gw.LimitListener(ln))
	t.Cleanup(func() { srv.Close() })

	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// served sends a request on conn and reports whether it was answered.
	served := func(conn net.Conn) bool {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /bff/user HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, res.Body)
		return res.StatusCode == http.StatusUnauthorized
	}

	var held []net.Conn
	for i := range 3 {
		c := dial("127.0.0.2")
		if !served(c) {
			t.Fatalf("connection %d of 127.0.0.2 (within the cap of 3) was not served", i+1)
		}
		held = append(held, c)
	}
	for i := range 2 {
		if served(dial("127.0.0.2")) {
			t.Fatalf("connection %d of 127.0.0.2 beyond the cap was served", 4+i)
		}
	}
	if !served(dial("127.0.0.3")) {
		t.Fatal("another client was refused while 127.0.0.2 held its cap")
	}
	for i := range 5 {
		if !served(dial("127.0.0.9")) {
			t.Fatalf("connection %d of the trusted proxy was refused: it must not be counted", i+1)
		}
	}
	// A slot comes back when a connection closes (once the server has seen it close).
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for !served(dial("127.0.0.2")) {
		if time.Now().After(deadline) {
			t.Fatal("127.0.0.2 closed a connection but is still refused")
		}
		time.Sleep(20 * time.Millisecond)
	}

	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var refused float64
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, `gatehouse_connections_refused_total{reason="client_cap"} `); ok {
			fmt.Sscan(v, &refused)
		}
	}
	if refused < 2 {
		t.Errorf("gatehouse_connections_refused_total{reason=\"client_cap\"} = %v, want at least 2", refused)
	}
	if !strings.Contains(e.logs.String(), "connection refused: the client network holds too many") {
		t.Error("no log of the refusal")
	}
}
