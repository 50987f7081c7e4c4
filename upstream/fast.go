package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	idle   map[poolKey][]*fastConn // the most recently used last
	maxIdl int
	// idleFor is how long a connection may stay idle: after it the reaper closes it, so
	// that a quiet proxy holds no sockets (and the upstream no connections) it will not use.
	idleFor time.Duration
	reaper  *time.Timer // pending while some connection is idle
	// headerLimit bounds a response's header block, as MaxResponseHeaderBytes does on the
	// standard path (10 MiB unless the transport sets it).
	headerLimit int
	noH1        sync.Map // host → true: a TLS upstream that speaks only HTTP/2 (errH2Only)
}

// poolKey names an upstream for the pool without building a string per request.
type poolKey struct {
	tls  bool
	host string
}

// fastConn is one upstream connection, with its buffers.
type fastConn struct {
	net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
	// expired is set by expire: a request's end (browser gone, a stream stopped) has made
	// every read and write fail at once; a deadline set later must not undo that.
	expired atomic.Bool
	expire  func() // c.expireNow, made once per connection
	// stream: the connection carries a stream whose stop (expire) may come at any time,
	// even after it ended: it is closed afterwards, never reused.
	stream bool
}

var longAgo = time.Unix(1, 0)

func (c *fastConn) expireNow() {
	c.expired.Store(true)
	c.SetDeadline(longAgo)
}

// setDeadline sets the connection's deadline unless it was expired meanwhile. (expire
// stores first and sets its deadline second; this sets first and loads second: one of
// the two sees the other, so the expiry wins.)
func (c *fastConn) setDeadline(t time.Time) {
	c.SetDeadline(t)
	if c.expired.Load() {
		c.SetDeadline(longAgo)
	}
}

const fastIdleTimeout = 90 * time.Second

// fastReadBuffer is a connection's read buffer. fasthttp parses a header block out of
// the buffer, so a larger block is read into a larger buffer, for that response only.
const fastReadBuffer = 32 << 10

// defaultHeaderLimit is net/http's Transport's default bound on a response's headers.
const defaultHeaderLimit = 10 << 20

func newFastTransport(next http.RoundTripper) *fastTransport {
	t := &fastTransport{next: next, idle: map[poolKey][]*fastConn{}, maxIdl: 256, idleFor: fastIdleTimeout, headerLimit: defaultHeaderLimit,
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
		if ht.MaxResponseHeaderBytes > 0 {
			t.headerLimit = int(min(ht.MaxResponseHeaderBytes, 1<<30))
		}
	}
	return t
}

// carries reports whether the fast transport takes req; the rest goes to next: other
// schemes, protocol switches (ReverseProxy keeps Upgrade, with Connection: Upgrade, only
// for those) and requests that wait for 100 Continue before sending their body (net/http's
// Transport holds the body back until the upstream says to go on, for up to
// ExpectContinueTimeout, so that a refusal costs no upload). A client's request trailers
// reach the upstream on neither path: ReverseProxy sends its copy of the request, whose
// trailers are never filled in, and they would pass by the request header hygiene.
func carries(req *http.Request) bool {
	return httpScheme(req.URL.Scheme) && !needsStandard(req.Header)
}

func httpScheme(s string) bool { return s == "http" || s == "https" }

// needsStandard reports whether headers ask for what only the standard path does: a
// protocol switch or a wait for 100 Continue. carries and takes both ask it.
func needsStandard(h http.Header) bool { return len(h["Upgrade"]) > 0 || len(h["Expect"]) > 0 }

// takes reports, before the outbound request is made, that carries will hold for it:
// the scheme is the target's, and the outbound headers have Upgrade or Expect only if r
// or the forward's own headers do. Serve then leaves the forward's timeout and stop to
// the connection (forward.byConn).
func (t *fastTransport) takes(r *http.Request, f *Forward) bool {
	return httpScheme(f.Target.URL.Scheme) &&
		!needsStandard(r.Header) && !needsStandard(f.Target.Headers) && !needsStandard(f.Headers)
}

func (t *fastTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f, _ := req.Context().Value(ctxKey{}).(*forward)
	if !carries(req) || t.h2Only(req.URL) {
		return t.standard(req, f)
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
			freq.Header.Set("Content-Length", strconv.Itoa(n))
		}
		freq.SetBodyStream(req.Body, n)
	}
	resp, err := t.roundTrip(req, freq, f)
	if errors.Is(err, errH2Only) && (f == nil || f.state.Load() == waiting) {
		fasthttp.ReleaseRequest(freq)
		return t.standard(req, f) // nothing was sent (and the timeout has not passed)
	}
	if err != nil {
		fasthttp.ReleaseRequest(freq)
	}
	return resp, err
}

// standard hands req to the standard transport. A forward that Serve left to the fast
// path's connection (byConn) first gets what the standard path bounds it with: a context
// that its stream's stop cancels, and a timer for the wait for headers.
func (t *fastTransport) standard(req *http.Request, f *forward) (*http.Response, error) {
	if f == nil || !f.byConn {
		return t.next.RoundTrip(req)
	}
	f.byConn = false
	var wait time.Duration
	if !f.deadline.IsZero() {
		wait = max(time.Until(f.deadline), time.Nanosecond) // passed: time out at once
	}
	ctx, timer := f.bound(req.Context(), wait)
	f.release = f.cancel
	if timer != nil {
		f.release = func() { timer.Stop(); f.cancel() }
	}
	return t.next.RoundTrip(req.WithContext(ctx))
}

// errH2Only: the upstream refused the TLS handshake for want of a protocol both speak
// (the fast path offers only http/1.1): it speaks only HTTP/2, which the standard path
// does. Its host is remembered, and its requests go there from then on.
var errH2Only = errors.New("upstream: TLS server speaks no HTTP/1.1")

func (t *fastTransport) h2Only(u *url.URL) bool {
	if u.Scheme != "https" {
		return false
	}
	_, ok := t.noH1.Load(u.Host)
	return ok
}

// noApplicationProtocol is the text of a remote no_application_protocol alert (RFC 7301
// §3.2): crypto/tls reports a peer's alert as a *net.OpError around an unexported type.
var noApplicationProtocol = tls.AlertError(120).Error()

func isNoApplicationProtocol(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && op.Err.Error() == noApplicationProtocol
}

func (t *fastTransport) roundTrip(req *http.Request, freq *fasthttp.Request, f *forward) (*http.Response, error) {
	ctx := req.Context()
	key := poolKey{tls: req.URL.Scheme == "https", host: req.URL.Host}
	replayable := req.Body == nil || req.Body == http.NoBody
	var deadline time.Time // the target's timeout, when Serve left it to the connection
	if f != nil && f.byConn {
		deadline = f.deadline
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(ctx, key, deadline)
		if err == nil {
			// A canceled request (browser gone, timeout, OnStream's stop) unblocks any
			// read or write on the connection at once.
			stop := context.AfterFunc(ctx, c.expire)
			var resp *http.Response
			if resp, err = t.exchange(req, freq, c, stop, key, deadline); err == nil {
				if f != nil {
					f.conn = c
				}
				return resp, nil
			}
			stop()
			c.Close()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			// The target's timeout passed while dialing, writing or waiting for headers:
			// the error handler answers 504, as the standard path's timer makes it do.
			f.state.CompareAndSwap(waiting, timedOut)
			return nil, err
		}
		if c == nil {
			return nil, err
		}
		// A kept-alive connection the upstream closed meanwhile fails before the first
		// response byte: try a fresh one, once, if the request can be sent again.
		if !reused || !replayable || attempt > 0 || !errors.Is(err, errStale) {
			return nil, err
		}
	}
}

var errStale = errors.New("connection closed before the response")

func (t *fastTransport) exchange(req *http.Request, freq *fasthttp.Request, c *fastConn, stop func() bool, key poolKey, deadline time.Time) (*http.Response, error) {
	if !deadline.IsZero() {
		c.setDeadline(deadline)
	}
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
	br, err := t.readResponse(req, fresp, c.br)
	if err != nil {
		fasthttp.ReleaseResponse(fresp)
		return nil, err
	}
	if !deadline.IsZero() {
		c.setDeadline(time.Time{}) // the timeout bounds the wait for headers only
	}
	code := fresp.StatusCode()
	x := &fastResponse{} // the response and its body in one allocation
	resp := &x.resp
	*resp = http.Response{
		Status: statusText(code), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, fresp.Header.Len()), Request: req,
		ContentLength: int64(fresp.Header.ContentLength()),
	}
	copyHeader(resp.Header, &fresp.Header, resp.ContentLength >= 0 && code != http.StatusNoContent && code >= 200 &&
		(code != http.StatusNotModified || len(fresp.Header.Peek("Content-Length")) > 0))
	if resp.ContentLength < 0 {
		resp.ContentLength = -1
	}
	if fresp.Header.ContentLength() == -1 {
		resp.TransferEncoding = chunked
	}
	for name := range fresp.Header.Trailers() {
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
		resp.Trailer[http.CanonicalHeaderKey(string(name))] = nil
	}
	b := &x.body
	*b = fastBody{t: t, c: c, br: br, freq: freq, fresp: fresp, stop: stop, key: key, trailer: resp.Trailer,
		closeDelimited: fresp.Header.ContentLength() == -2}
	if s := fresp.BodyStream(); s != nil && !fresp.SkipBody {
		b.stream = s
	} else {
		b.eof = true
	}
	if code == http.StatusNoContent || code == http.StatusNotModified || fresp.SkipBody {
		resp.ContentLength = 0
		if fresp.SkipBody && fresp.Header.ContentLength() >= 0 {
			resp.ContentLength = int64(fresp.Header.ContentLength())
		}
	}
	resp.Body = b
	return resp, nil
}

// fastResponse is a response and its body, allocated together.
type fastResponse struct {
	resp http.Response
	body fastBody
}

var chunked = []string{"chunked"} // read only, as net/http's Transport treats it

// statusTexts holds http.Response.Status for the status codes, so that no response
// builds its own.
var statusTexts = func() (t [600]string) {
	for code := 100; code < len(t); code++ {
		t[code] = strconv.Itoa(code)
		if text := http.StatusText(code); text != "" {
			t[code] += " " + text
		}
	}
	return t
}()

func statusText(code int) string {
	if code >= 100 && code < len(statusTexts) {
		return statusTexts[code]
	}
	return strconv.Itoa(code)
}

// copyHeader copies fasthttp's response header into h, less the framing fields, with a
// Content-Length field (the length fasthttp parsed) when withLength is set. Every value
// is a piece of one string and every field's list a piece of one slice: two allocations
// for the whole block, where a field apiece would cost two or three, and no allocation
// for the name of a well-known field.
func copyHeader(h http.Header, fh *fasthttp.ResponseHeader, withLength bool) {
	type field struct {
		name       string
		start, end int
	}
	var stack [16]field
	fields := stack[:0]
	size := 20 // room for a length
	for _, v := range fh.All() {
		size += len(v)
	}
	var sb strings.Builder
	sb.Grow(size)
	for k, v := range fh.All() {
		name := headerName(k)
		switch name {
		case "Trailer", "Content-Length", "Transfer-Encoding":
			continue
		}
		fields = append(fields, field{name, sb.Len(), sb.Len() + len(v)})
		sb.Write(v)
	}
	if withLength {
		var digits [20]byte
		n := strconv.AppendInt(digits[:0], int64(fh.ContentLength()), 10)
		fields = append(fields, field{"Content-Length", sb.Len(), sb.Len() + len(n)})
		sb.Write(n)
	}
	if len(fields) == 0 {
		return
	}
	all := sb.String()
	values := make([]string, len(fields))
	for i, f := range fields {
		values[i] = all[f.start:f.end]
		if prior, ok := h[f.name]; ok {
			h[f.name] = append(prior, values[i]) // a repeated field: its own list
		} else {
			h[f.name] = values[i : i+1 : i+1]
		}
	}
}

// wellKnown maps the usual spellings of common response header names to their canonical
// form: looking a []byte up in it allocates nothing.
var wellKnown = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Age", "Alt-Svc", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Security-Policy", "Content-Type", "Cross-Origin-Embedder-Policy",
		"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "Date", "Etag", "Expires",
		"Keep-Alive", "Last-Modified", "Link", "Location", "Permissions-Policy", "Pragma",
		"Referrer-Policy", "Retry-After", "Server", "Server-Timing", "Set-Cookie",
		"Strict-Transport-Security", "Timing-Allow-Origin", "Trailer", "Transfer-Encoding", "Vary",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Request-Id",
	} {
		m[name], m[strings.ToLower(name)] = name, name
	}
	m["ETag"], m["WWW-Authenticate"], m["X-Request-ID"] = "Etag", "Www-Authenticate", "X-Request-Id"
	return m
}()

func headerName(k []byte) string {
	if name, ok := wellKnown[string(k)]; ok {
		return name
	}
	return http.CanonicalHeaderKey(string(k))
}

// maxInterim bounds the informational responses before a final one when nobody takes
// them, as fasthttp's own Response.Read does. Under ReverseProxy somebody always does
// (it passes them on), and then, as on net/http's Transport, only each one's size is
// bounded.
const maxInterim = 100

var errTooManyInterim = errors.New("upstream: too many informational (1xx) responses")

// readResponse reads a response as fasthttp's Response.Read does, except that each
// informational response (103 Early Hints…) goes to the request's Got1xxResponse trace:
// ReverseProxy sets it to pass the response on to the browser, through the same hooks as
// net/http's Transport does on the standard path. It returns the reader the body is read
// from: br, or a larger buffer over br when a header block did not fit in br's.
func (t *fastTransport) readResponse(req *http.Request, fresp *fasthttp.Response, br *bufio.Reader) (*bufio.Reader, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for n := 0; ; n++ {
		var err error
		if br, err = t.readHeader(&fresp.Header, br); err != nil {
			return br, err
		}
		code := fresp.StatusCode()
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
		delivered := trace != nil && trace.Got1xxResponse != nil
		if n >= maxInterim && !delivered {
			return br, errTooManyInterim
		}
		if delivered {
			h := make(textproto.MIMEHeader, fresp.Header.Len())
			for k, v := range fresp.Header.All() {
				name := http.CanonicalHeaderKey(string(k))
				h[name] = append(h[name], string(v))
			}
			if err := trace.Got1xxResponse(code, h); err != nil {
				return br, err
			}
		}
	}
	if code := fresp.StatusCode(); fresp.SkipBody || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return br, nil
	}
	return br, fresp.ReadBody(br, 0)
}

// readHeader reads one header block with fasthttp's parser, where the two paths would
// otherwise answer differently:
//   - a block larger than br's buffer is read again into a larger buffer over br (fasthttp
//     only peeks until the block parses), up to headerLimit, net/http's bound;
//   - repeats of one Content-Length value are taken as one, as net/http does (RFC 9110
//     §8.6 allows that or refusing); fasthttp refuses any repeat. Differing values are
//     refused on both paths.
func (t *fastTransport) readHeader(h *fasthttp.ResponseHeader, br *bufio.Reader) (*bufio.Reader, error) {
	for {
		err := h.Read(br)
		switch {
		case err == nil:
			return br, nil
		case isSmallBuffer(err) && br.Size() < t.headerLimit:
			br = t.larger(br)
		case errors.Is(err, fasthttp.ErrDuplicateContentLength):
			block, grown, ok := t.headerBlock(br)
			if !ok {
				return grown, err
			}
			one, ok := oneContentLength(block)
			if !ok {
				return grown, err
			}
			if err := h.Read(bufio.NewReaderSize(bytes.NewReader(one), len(one))); err != nil {
				return grown, err
			}
			_, err := grown.Discard(len(block))
			return grown, err
		default:
			return br, err
		}
	}
}

// larger is a read buffer over br, eight times its size up to headerLimit, for a header
// block that did not fit in br's.
func (t *fastTransport) larger(br *bufio.Reader) *bufio.Reader {
	return bufio.NewReaderSize(br, min(br.Size()*8, t.headerLimit))
}

func isSmallBuffer(err error) bool {
	var small *fasthttp.ErrSmallBuffer // escapes: only on this path
	return errors.As(err, &small)
}

// headerBlock peeks at the whole header block at the front of br (its empty line
// included), into a larger buffer over br if need be, up to headerLimit.
func (t *fastTransport) headerBlock(br *bufio.Reader) ([]byte, *bufio.Reader, bool) {
	for {
		b, err := br.Peek(br.Buffered())
		if err != nil {
			return nil, br, false
		}
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], br, true
		}
		if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
			return b[:i+2], br, true
		}
		if br.Buffered() == br.Size() {
			if br.Size() >= t.headerLimit {
				return nil, br, false
			}
			br = t.larger(br)
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, br, false
		}
	}
}

// oneContentLength returns block with the repeats of its Content-Length field removed,
// or false when the repeats differ (after trimming spaces, as net/http compares them)
// or a field is folded onto the next line.
func oneContentLength(block []byte) ([]byte, bool) {
	out := make([]byte, 0, len(block))
	var first []byte
	seen, afterLength := false, false
	for line := range bytes.Lines(block) {
		if afterLength && (line[0] == ' ' || line[0] == '\t') {
			return nil, false // a length folded onto the next line: leave it to the parser
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		afterLength = found && bytes.EqualFold(name, []byte("Content-Length"))
		if !afterLength {
			out = append(out, line...)
			continue
		}
		value = bytes.Trim(value, " \t\r\n")
		switch {
		case !seen:
			first, seen = value, true
			out = append(out, line...)
		case !bytes.Equal(value, first):
			return nil, false
		}
	}
	return out, true
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
	br             *bufio.Reader // c.br, or a larger buffer over it
	freq           *fasthttp.Request
	fresp          *fasthttp.Response
	stream         io.Reader
	stop           func() bool
	key            poolKey
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
	reuse := b.stop() && b.eof && !b.c.stream && !b.closeDelimited && !b.fresp.ConnectionClose() && !b.freq.ConnectionClose() &&
		b.fresp.StatusCode() != http.StatusSwitchingProtocols && b.br.Buffered() == 0 && b.c.br.Buffered() == 0
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
// A deadline that is not zero bounds the dial and the TLS handshake too.
func (t *fastTransport) conn(ctx context.Context, key poolKey, deadline time.Time) (*fastConn, bool, error) {
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
	host := key.host
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "80"
		if key.tls {
			port = "443"
		}
		addr = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	raw, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	var nc net.Conn = raw
	if key.tls {
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
			if isNoApplicationProtocol(err) {
				t.noH1.Store(host, true)
				return nil, false, errH2Only
			}
			return nil, false, err
		}
		nc = tc
	}
	c := &fastConn{Conn: nc, br: bufio.NewReaderSize(nc, fastReadBuffer), bw: bufio.NewWriterSize(nc, 4096)}
	c.expire = c.expireNow
	return c, false, nil
}

// put keeps c for the next request to key. The request's AfterFunc was stopped before
// it ran, so nothing expires c any more.
func (t *fastTransport) put(key poolKey, c *fastConn) {
	c.expired.Store(false)
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
	t.idle = map[poolKey][]*fastConn{}
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
