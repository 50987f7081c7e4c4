package main

import (
	"io"
	mathrand "math/rand/v2"
	"net"
	"sync"
	"time"
)

// faults is what a faultProxy does to the connections it carries. The zero value
// forwards everything untouched.
type faults struct {
	// Latency delays every chunk from the client to the target by this much (so each
	// request/response round trip takes that much longer), without limiting throughput.
	Latency time.Duration
	// Blackhole holds every byte in both directions and dials nothing new: connections
	// are accepted and then hang, as when packets are dropped. Lifting it delivers what
	// was held, as TCP's retransmissions would.
	Blackhole bool
	// Cut refuses new connections and resets the open ones.
	Cut bool
	// ResetRate is the chance that a chunk from the client resets the connection (both
	// sides, RST) instead of being forwarded: about that share of requests fail.
	ResetRate float64
}

// faultProxy is a TCP proxy from a loopback port to a target address, with faults that
// can be changed at any time. Connections whose source address exempt accepts are
// forwarded untouched whatever the faults: the chaos run's Redis sentinels and
// replication bind their outgoing connections to another loopback address, so that a
// fault hits the gateways' view of Redis only.
type faultProxy struct {
	name   string
	ln     net.Listener
	target string
	exempt func(net.Addr) bool

	mu      sync.Mutex
	f       faults
	changed chan struct{} // closed and replaced at every change of f
	conns   map[*proxyConn]struct{}
	closed  bool
	done    chan struct{} // closed by close
}

type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	gone           chan struct{} // closed by reset
}

// reset closes both sides with RST rather than FIN.
func (c *proxyConn) reset() {
	c.once.Do(func() {
		close(c.gone)
		for _, n := range []net.Conn{c.client, c.server} {
			if n == nil {
				continue
			}
			if t, ok := n.(*net.TCPConn); ok {
				t.SetLinger(0)
			}
			n.Close()
		}
	})
}

// startFaultProxy listens on listen (127.0.0.1:0 for any port) and forwards to target.
func startFaultProxy(name, listen, target string, exempt func(net.Addr) bool) (*faultProxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	if exempt == nil {
		exempt = func(net.Addr) bool { return false }
	}
	p := &faultProxy{name: name, ln: ln, target: target, exempt: exempt,
		changed: make(chan struct{}), conns: map[*proxyConn]struct{}{}, done: make(chan struct{})}
	go p.serve()
	return p, nil
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

// set replaces the faults. Cut resets every open connection at once.
func (p *faultProxy) set(f faults) {
	p.mu.Lock()
	p.f = f
	close(p.changed)
	p.changed = make(chan struct{})
	var cut []*proxyConn
	if f.Cut {
		for c := range p.conns {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		c.reset()
	}
}

func (p *faultProxy) current() (faults, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f, p.changed
}

// waitOpen blocks while a blackhole holds the proxy; false when the connection ends
// meanwhile (done closed).
func (p *faultProxy) waitOpen(done <-chan struct{}) (faults, bool) {
	for {
		f, changed := p.current()
		if !f.Blackhole {
			return f, true
		}
		select {
		case <-changed:
		case <-done:
			return f, false
		}
	}
}

func (p *faultProxy) close() {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	var all []*proxyConn
	for c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range all {
		c.reset()
	}
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *faultProxy) track(c *proxyConn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *faultProxy) handle(client net.Conn) {
	pc := &proxyConn{client: client, gone: make(chan struct{})}
	if !p.track(pc, true) {
		client.Close()
		return
	}
	defer p.track(pc, false)
	defer pc.reset()
	exempt := p.exempt(client.RemoteAddr())
	if !exempt {
		f, _ := p.current()
		if f.Cut {
			return
		}
		// Held until the blackhole lifts (or the proxy closes); a client that gave up
		// meanwhile makes the pipes fail at once then.
		if _, ok := p.waitOpen(pc.gone); !ok {
			return
		}
	}
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	pc.server = server
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pc, client, server, true, exempt) }()
	go func() { defer wg.Done(); p.pipe(pc, server, client, false, exempt) }()
	wg.Wait()
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies from src to dst, chunk by chunk, applying the faults of the moment.
// toServer is the client-to-target direction, where latency and resets apply.
func (p *faultProxy) pipe(pc *proxyConn, src, dst net.Conn, toServer, exempt bool) {
	defer pc.reset()
	done := pc.gone
	if exempt {
		io.Copy(dst, src)
		return
	}
	// A reader and a writer, so that latency delays each chunk from when it was read
	// rather than queueing the delays one after another.
	q := make(chan chunk, 64)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		f, ok := p.waitOpen(done)
		if !ok {
			return
		}
		if toServer {
			if f.Cut || f.ResetRate > 0 && mathrand.Float64() < f.ResetRate {
				return // the deferred reset sends RST both ways
			}
			if f.Latency > 0 {
				time.Sleep(time.Until(c.at.Add(f.Latency)))
				if f, ok = p.waitOpen(done); !ok || f.Cut {
					return
				}
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// exemptIP is the loopback source address of the connections faults never touch (the
// sentinels' and the replication's, see bind-source-addr in the chaos run's Redis).
const exemptIP = "127.0.0.2"

func exemptSource(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.String() == exemptIP
}
