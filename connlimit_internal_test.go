package gatehouse

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeListener accepts connections from the given peers, then blocks.
type fakeListener struct {
	net.Listener
	peers chan string
}

func (l *fakeListener) Accept() (net.Conn, error) {
	p, ok := <-l.peers
	if !ok {
		return nil, net.ErrClosed
	}
	return &fakeConn{peer: netip.MustParseAddrPort(p)}, nil
}

type fakeConn struct {
	net.Conn
	peer   netip.AddrPort
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.peer) }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

// TestLimitListenerKeysByClientNetwork: IPv6 clients share a cap per /64, an IPv4
// address and its IPv4-mapped form are one client, and a trusted proxy is never capped.
func TestLimitListenerKeysByClientNetwork(t *testing.T) {
	g, err := New(Config{PublicURL: "http://127.0.0.1:1", Provider: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "c", ClientSecret: "s"},
		Server: ServerConfig{MaxConnectionsPerClient: 2}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("2001:db8:ff::/48")}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fl := &fakeListener{peers: make(chan string, 100)}
	ln := g.LimitListener(fl)
	accept := func(peer string) net.Conn {
		t.Helper()
		fl.peers <- peer
		done := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			done <- c
		}()
		select {
		case c := <-done:
			return c
		case <-time.After(100 * time.Millisecond):
			return nil // refused: Accept went on to wait for the next one
		}
	}
	// The refused peer's Accept is still waiting: feed it a peer that is always allowed.
	drain := func() { fl.peers <- "[2001:db8:ff::1]:1" }

	a := accept("[2001:db8:0:1::1]:1000")
	accept("[2001:db8:0:1::ffff]:1000")
	if c := accept("[2001:db8:0:1:8000::2]:1000"); c != nil {
		t.Fatal("a third connection from the same /64 was accepted")
	}
	drain()
	if accept("[2001:db8:0:2::1]:1000") == nil {
		t.Fatal("another /64 was refused")
	}
	accept("192.0.2.1:1")
	accept("[::ffff:192.0.2.1]:2")
	if accept("192.0.2.1:3") != nil {
		t.Fatal("192.0.2.1 and ::ffff:192.0.2.1 counted apart")
	}
	drain()
	for range 5 {
		if accept("[2001:db8:ff::7]:1") == nil {
			t.Fatal("a trusted proxy was capped")
		}
	}
	a.Close()
	a.Close() // twice: one slot back, not two
	if accept("[2001:db8:0:1::3]:1000") == nil {
		t.Fatal("the /64 closed a connection but is still refused")
	}
	if accept("[2001:db8:0:1::4]:1000") != nil {
		t.Fatal("a double Close gave back two slots")
	}
	drain()
}

func TestServerDefaultsAndChecks(t *testing.T) {
	s := Config{}.withDefaults().Server
	if s.BodyTimeout != 10*time.Second || s.MaxConnectionsPerClient != 256 {
		t.Fatalf("defaults: %+v, want body_timeout 10s, max_connections_per_client 256", s)
	}
	err := Config{PublicURL: "http://127.0.0.1:1", Provider: ProviderConfig{Issuer: "http://127.0.0.1:1", ClientID: "c", ClientSecret: "s"},
		Server: ServerConfig{BodyTimeout: -time.Second, MaxConnectionsPerClient: -1},
		Routes: []Route{{Path: "/a/", Upstream: "http://127.0.0.1:2", BodyTimeout: -time.Second}}}.Validate()
	for _, want := range []string{"server.body_timeout", "server.max_connections_per_client", "routes[0].body_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want a problem naming %s", err, want)
		}
	}
}
