package redistest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a server, with the network faults a test
// switches on and off while clients stay connected to it: replies held back (Delay),
// silence (Blackhole), and connections reset (Cut). It is stopped when the test ends.
//
//	p := redistest.NewProxy(t, srv.Addr)
//	st, _ := redisstore.Open(ctx, redisstore.Options{URL: p.URL()})
//	p.Blackhole() // connections are accepted, nothing is answered
//	…
//	p.Forward()   // what was held back is delivered
type Proxy struct {
	// Addr is the proxy's host:port.
	Addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the mode changes
	hold    bool          // Blackhole: nothing is forwarded, either way
	delay   time.Duration // replies (server to client) wait this long
	conns   map[net.Conn]struct{}
	closed  bool
}

// NewProxy starts a proxy to target (host:port) that forwards everything until told
// otherwise.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln,
		changed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// URL is the redis:// URL of database 0 through the proxy.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// Forward makes the proxy forward at once in both directions, delivering what it held.
func (p *Proxy) Forward() { p.set(false, 0) }

// Blackhole makes the proxy accept connections and forward nothing, either way, as a
// network that went silent: what is sent meanwhile is held, and delivered after Forward.
func (p *Proxy) Blackhole() { p.set(true, 0) }

// Delay makes the proxy hold every reply (bytes from the server) for d before passing it
// on; requests still reach the server at once, so commands run but their answers come late.
func (p *Proxy) Delay(d time.Duration) { p.set(false, d) }

// Cut closes every connection open through the proxy now (clients see a reset or EOF);
// later connections are served in the current mode.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.set(false, 0) // wakes the pumps that hold data, which then find their ends closed
}

func (p *Proxy) set(hold bool, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.delay = hold, delay
	close(p.changed)
	p.changed = make(chan struct{})
}

// mode returns the current mode and the channel closed when it changes.
func (p *Proxy) mode() (hold bool, delay time.Duration, changed chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hold, p.delay, p.changed
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	go p.pump(server, client, false)
	p.pump(client, server, true)
}

// pump copies from src to dst, chunk by chunk, holding each chunk while the mode says
// so. Closing either end closes both.
func (p *Proxy) pump(dst, src net.Conn, reply bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			got := time.Now()
			for {
				hold, delay, changed := p.mode()
				if !hold {
					if wait := time.Until(got.Add(delay)); reply && wait > 0 {
						select {
						case <-time.After(wait):
						case <-changed:
							continue
						}
					}
					break
				}
				<-changed
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
