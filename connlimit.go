package gatehouse

import (
	"io"
	"net"
	"net/netip"
	"sync"
)

// LimitListener wraps ln, a TCP listener serving the Gateway, so that one client network
// holds at most server.max_connections_per_client connections at once (default 256). A
// client network is what the rate limits count by: an IPv4 address, an IPv6 /64. A
// connection beyond the cap is closed as soon as it is accepted, before anything is read
// from it, and counted in gatehouse_connections_refused_total; other clients are not
// affected, and the client gets its slots back as its connections close.
//
// Connections from trusted_proxies are not counted: behind a load balancer every
// connection comes from it, and the proxy is the place to cap its own clients.
//
// Wrap the TCP listener itself, and add TLS (tls.NewListener) on top of the result, so
// that http.Server still sees the *tls.Conn. The cap is read once, here.
func (g *Gateway) LimitListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, g: g, max: g.config().Server.MaxConnectionsPerClient, open: map[string]int{}}
}

type limitListener struct {
	net.Listener
	g    *Gateway
	max  int
	mu   sync.Mutex
	open map[string]int // client network → connections open; only networks with some
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, counted := l.key(c.RemoteAddr())
		if !counted {
			return c, nil
		}
		l.mu.Lock()
		full := l.open[key] >= l.max
		if !full {
			l.open[key]++
		}
		l.mu.Unlock()
		if !full {
			return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
		}
		c.Close()
		l.g.metrics.connRefused.WithLabelValues("client_cap").Inc()
		if l.g.limitLog.first("conn|"+key, l.g.now()) {
			l.g.log.Warn("connection refused: the client network holds too many", "network", key,
				"max_connections_per_client", l.max)
		}
	}
}

// key is the client network of a connection's peer; connections from trusted proxies (and
// peers that are not IP addresses, such as a Unix socket's) are not counted.
func (l *limitListener) key(a net.Addr) (string, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "", false
	}
	addr := ap.Addr().Unmap()
	if l.g.trusted(addr) {
		return "", false
	}
	return clientNetwork(addr.String()), true
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// limitedConn gives its slot back when closed (once, however often Close is called; by
// the server, or by the proxy for a hijacked WebSocket).
type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite and ReadFrom keep what *net.TCPConn offers the server: a graceful close of
// the sending side and sendfile for static files.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
