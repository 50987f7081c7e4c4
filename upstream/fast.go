package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// fastTransport carries HTTP/1.1 requests with valyala/fasthttp's request and response
// types over a small pool of connections of its own (the shape of Traefik's fastProxy):
// fasthttp writes the request and parses the response, this code only maps headers and
// owns the connections, so that a target's timeout, a browser that goes away and
// OnStream's stop reach a blocked read (as deadlines on the connection). What it cannot
// carry goes to next, the standard transport: protocol upgrades (WebSocket, h2c) and any
// scheme other than http and https. It is an http.RoundTripper under the same
// httputil.ReverseProxy, so the hygiene, hooks and error rendering are the standard
// path's.
type fastTransport struct {
	next   http.RoundTripper
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	tls    *tls.Config // nil: the defaults
	mu     sync.Mutex
	idle   map[string][]*fastConn // by scheme and host, the most recently used last
	maxIdl int
	// idleFor is how long a connection may stay idle: after it the reaper closes it, so
	// that a quiet proxy holds no sockets (and the upstream no connections) it will not use.
	idleFor time.Duration
	reaper  *time.Timer // pending while some connection is idle
}

// fastConn is one upstream connection, with its buffers.
type fastConn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
}

const fastIdleTimeout = 90 * time.Second

// fastHeaderLimit bounds an upstream's response header block on the fast path: fasthttp
// parses it out of the read buffer, so it is the buffer's size.
const fastHeaderLimit = 32 << 10

func newFastTransport(next http.RoundTripper) *fastTransport {
	t := &fastTransport{next: next, idle: map[string][]*fastConn{}, maxIdl: 256, idleFor: fastIdleTimeout,
		dial: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext}
	if ht, ok := next.(*http.Transport); ok {
		// The same dialer and TLS settings (roots, client certificates) as the standard path.
		if ht.DialContext != nil {
			t.dial = ht.DialContext
		}
		if ht.TLSClientConfig != nil {
			t.tls = ht.TLSClientConfig.Clone()
		}
		if ht.MaxIdleConnsPerHost > 0 {
			t.maxIdl = ht.MaxIdleConnsPerHost
		}
		if ht.IdleConnTimeout > 0 {
			t.idleFor = ht.IdleConnTimeout
		}
	}
	return t
}

// carries reports whether the fast transport takes req; the rest goes to next.
func carries(req *http.Request) bool {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return false
	}
	// ReverseProxy keeps Upgrade (with Connection: Upgrade) only for a protocol switch.
	return len(req.Header["Upgrade"]) == 0
}

func (t *fastTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !carries(req) {
		return t.next.RoundTrip(req)
	}
	freq := fasthttp.AcquireRequest()
	freq.Header.DisableNormalizing()
	freq.Header.DisableSpecialHeader() // headers go out as the hygiene left them, Cookie included
	freq.URI().DisablePathNormalizing = true
	freq.Header.SetMethod(req.Method)
	freq.SetRequestURI(req.URL.RequestURI())
	freq.Header.Set("Host", req.URL.Host)
	for name, vals := range req.Header {
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		for _, v := range vals {
			if name == "User-Agent" && v == "" {
				continue // ReverseProxy's way of saying "send none"
			}
			freq.Header.Add(name, v)
		}
	}
	if req.Body != nil && req.Body != http.NoBody {
		n := int(req.ContentLength)
		if n <= 0 {
			n = -1 // chunked
			freq.Header.Set("Transfer-Encoding", "chunked")
		} else {
			freq.Header.Set("Content-Length", itoa(n))
		}
		freq.SetBodyStream(req.Body, n)
	}
	resp, err := t.roundTrip(req, freq)
	if err != nil {
		fasthttp.ReleaseRequest(freq)
	}
	return resp, err
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

func (t *fastTransport) roundTrip(req *http.Request, freq *fasthttp.Request) (*http.Response, error) {
	ctx := req.Context()
	key := req.URL.Scheme + "://" + req.URL.Host
	replayable := req.Body == nil || req.Body == http.NoBody
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(ctx, req.URL.Scheme, req.URL.Host, key)
		if err != nil {
			return nil, err
		}
		// A canceled request (browser gone, timeout, OnStream's stop) unblocks any read or
		// write on the connection at once.
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		resp, err := t.exchange(req, freq, c, stop, key)
		if err == nil {
			return resp, nil
		}
		stop()
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A kept-alive connection the upstream closed meanwhile fails before the first
		// response byte: try a fresh one, once, if the request can be sent again.
		if !reused || !replayable || attempt > 0 || !errors.Is(err, errStale) {
			return nil, err
		}
	}
}

var errStale = errors.New("connection closed before the response")

func (t *fastTransport) exchange(req *http.Request, freq *fasthttp.Request, c *fastConn, stop func() bool, key string) (*http.Response, error) {
	if err := freq.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return nil, errStale
		}
		return nil, err
	}
	fresp := fasthttp.AcquireResponse()
	fresp.Header.DisableNormalizing()
	fresp.Header.SetNoDefaultContentType(true)
	fresp.StreamBody = true
	fresp.SkipBody = req.Method == http.MethodHead
	if err := readResponse(req, fresp, c.br); err != nil {
		fasthttp.ReleaseResponse(fresp)
		return nil, err
	}
	resp := &http.Response{
		Status: itoa(fresp.StatusCode()), StatusCode: fresp.StatusCode(),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, fresp.Header.Len()), Request: req,
		ContentLength: int64(fresp.Header.ContentLength()),
	}
	for k, v := range fresp.Header.All() {
		name := http.CanonicalHeaderKey(string(k))
		switch name {
		case "Trailer", "Content-Length", "Transfer-Encoding":
			continue
		}
		resp.Header[name] = append(resp.Header[name], string(v))
	}
	if resp.ContentLength >= 0 && fresp.StatusCode() != http.StatusNoContent && fresp.StatusCode() >= 200 &&
		(fresp.StatusCode() != http.StatusNotModified || len(fresp.Header.Peek("Content-Length")) > 0) {
		resp.Header["Content-Length"] = []string{itoa(int(resp.ContentLength))}
	}
	if resp.ContentLength < 0 {
		resp.ContentLength = -1
	}
	if fresp.Header.ContentLength() == -1 {
		resp.TransferEncoding = []string{"chunked"}
	}
	for name := range fresp.Header.Trailers() {
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
		resp.Trailer[http.CanonicalHeaderKey(string(name))] = nil
	}
	b := &fastBody{t: t, c: c, freq: freq, fresp: fresp, stop: stop, key: key, trailer: resp.Trailer,
		closeDelimited: fresp.Header.ContentLength() == -2}
	if s := fresp.BodyStream(); s != nil && !fresp.SkipBody {
		b.stream = s
	} else {
		b.eof = true
	}
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified || fresp.SkipBody {
		resp.ContentLength = 0
		if fresp.SkipBody && fresp.Header.ContentLength() >= 0 {
			resp.ContentLength = int64(fresp.Header.ContentLength())
		}
	}
	resp.Body = b
	return resp, nil
}

// maxInterim bounds the informational responses before a final one, as fasthttp's own
// Response.Read does.
const maxInterim = 100

var errTooManyInterim = errors.New("upstream: too many informational (1xx) responses")

// readResponse reads a response as fasthttp's Response.Read does, except that each
// informational response (103 Early Hints…) goes to the request's Got1xxResponse trace:
// ReverseProxy sets it to pass the response on to the browser, through the same hooks as
// net/http's Transport does on the standard path.
func readResponse(req *http.Request, fresp *fasthttp.Response, br *bufio.Reader) error {
	trace := httptrace.ContextClientTrace(req.Context())
	for n := 0; ; n++ {
		if err := fresp.Header.Read(br); err != nil {
			return err
		}
		code := fresp.StatusCode()
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
		if n >= maxInterim {
			return errTooManyInterim
		}
		if trace != nil && trace.Got1xxResponse != nil {
			h := make(textproto.MIMEHeader, fresp.Header.Len())
			for k, v := range fresp.Header.All() {
				name := http.CanonicalHeaderKey(string(k))
				h[name] = append(h[name], string(v))
			}
			if err := trace.Got1xxResponse(code, h); err != nil {
				return err
			}
		}
	}
	if code := fresp.StatusCode(); fresp.SkipBody || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil
	}
	return fresp.ReadBody(br, 0)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// fastBody is a response body read from the connection as the proxy copies it; at EOF
// it fills in the trailers, and Close gives the connection back when the response ended
// cleanly.
type fastBody struct {
	t              *fastTransport
	c              *fastConn
	freq           *fasthttp.Request
	fresp          *fasthttp.Response
	stream         io.Reader
	stop           func() bool
	key            string
	trailer        http.Header
	eof, closed    bool
	closeDelimited bool
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.stream.Read(p)
	if err == io.EOF {
		b.eof = true
		for name := range b.trailer {
			if vals := b.fresp.Header.PeekAll(name); len(vals) > 0 {
				out := make([]string, len(vals))
				for i, v := range vals {
					out[i] = string(v)
				}
				b.trailer[name] = out
			}
		}
	}
	return n, err
}

func (b *fastBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	reuse := b.stop() && b.eof && !b.closeDelimited && !b.fresp.ConnectionClose() && !b.freq.ConnectionClose() &&
		b.fresp.StatusCode() != http.StatusSwitchingProtocols && b.c.br.Buffered() == 0
	b.fresp.CloseBodyStream()
	fasthttp.ReleaseResponse(b.fresp)
	fasthttp.ReleaseRequest(b.freq)
	if reuse {
		b.t.put(b.key, b.c)
	} else {
		b.c.Close()
	}
	return nil
}

// conn returns an idle connection to the host, or dials one.
func (t *fastTransport) conn(ctx context.Context, scheme, host, key string) (*fastConn, bool, error) {
	t.mu.Lock()
	for list := t.idle[key]; len(list) > 0; list = t.idle[key] {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[key] = list[:len(list)-1]
		if time.Since(c.used) < t.idleFor {
			t.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	t.mu.Unlock()
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	raw, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	var nc net.Conn = raw
	if scheme == "https" {
		cfg := &tls.Config{}
		if t.tls != nil {
			cfg = t.tls.Clone()
		}
		if cfg.ServerName == "" {
			h, _, err := net.SplitHostPort(addr)
			if err != nil {
				h = host
			}
			cfg.ServerName = h
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, false, err
		}
		nc = tc
	}
	return &fastConn{Conn: nc, br: bufio.NewReaderSize(nc, fastHeaderLimit), bw: bufio.NewWriterSize(nc, 4096)}, false, nil
}

func (t *fastTransport) put(key string, c *fastConn) {
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	c.used = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle[key]) >= t.maxIdl {
		c.Close()
		return
	}
	t.idle[key] = append(t.idle[key], c)
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.idleFor, t.reap)
	}
}

// reap closes the connections idle for longer than idleFor and, while some stay idle,
// comes back when the oldest of them expires. The lists are ordered by use, so the
// expired ones are at their fronts.
func (t *fastTransport) reap() {
	now := time.Now()
	var expired []*fastConn
	t.mu.Lock()
	next := time.Duration(-1)
	for key, list := range t.idle {
		i := 0
		for ; i < len(list) && now.Sub(list[i].used) >= t.idleFor; i++ {
			expired = append(expired, list[i])
			list[i] = nil
		}
		if i == len(list) {
			delete(t.idle, key)
			continue
		}
		t.idle[key] = list[i:]
		if wait := t.idleFor - now.Sub(list[i].used); next < 0 || wait < next {
			next = wait
		}
	}
	if next >= 0 {
		t.reaper.Reset(next)
	} else {
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.Close()
	}
}

// CloseIdleConnections closes every idle connection of the fast path (and of the
// standard transport behind it).
func (t *fastTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*fastConn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.Close()
		}
	}
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
