package upstream_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/upstream"
)

// rawUpstream answers every request on every connection with the parts of answer, written
// with pause between them, and closes the connection afterwards when closeAfter is set.
// It is a net.Listener, not an http.Server, so that it can break HTTP in ways a server
// never would.
func rawUpstream(t testing.TB, answer func(req *http.Request) []string, pause time.Duration, closeAfter bool) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup // the connections' goroutines end with the test binary
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					for i, part := range answer(req) {
						if i > 0 {
							time.Sleep(pause)
						}
						if _, err := io.WriteString(c, part); err != nil {
							return
						}
					}
					if closeAfter {
						return
					}
				}
			})
		}
	})
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// observed is what a browser sees of one forwarded response.
type observed struct {
	Interim []string // informational responses: status and header
	Status  int
	Header  http.Header
	Body    string
	BodyErr bool // the body broke off
	Trailer http.Header
}

// renderJSON is an ErrorHandler in the manner of the gateway's renderer.
func renderJSON(w http.ResponseWriter, _ *http.Request, err error) {
	status, kind := http.StatusBadGateway, "unreachable"
	switch {
	case errors.Is(err, upstream.ErrTimeout):
		status, kind = http.StatusGatewayTimeout, "timeout"
	case errors.Is(err, upstream.ErrBodyTooLarge):
		status, kind = http.StatusRequestEntityTooLarge, "body_too_large"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": kind})
}

// through sends one request through a proxy with the target's Fast set as asked.
func through(t *testing.T, u *url.URL, fast bool, method string, timeout time.Duration) observed {
	t.Helper()
	p := newProxy(t, upstream.Config{ProtectedCookie: ownCookie, ErrorHandler: renderJSON})
	g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: fast, Timeout: timeout}}, nil)
	var interim []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		var b strings.Builder
		http.Header(h).Write(&b)
		interim = append(interim, fmt.Sprintf("%d %s", code, b.String()))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, g.URL+"/x", nil)
	resp, err := g.client.Do(req)
	if err != nil {
		return observed{Interim: interim, Status: -1, Body: "transport error"}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	h := resp.Header.Clone()
	h.Del("Date")
	return observed{Interim: interim, Status: resp.StatusCode, Header: h, Body: string(body), BodyErr: err != nil, Trailer: resp.Trailer}
}

// The transport conformance suite: one table of upstream behaviours, honest and not,
// run through the standard and the fast path; what the browser sees must be the same,
// except where a case documents a difference (docs/configuration.md lists them).
func TestTransportConformance(t *testing.T) {
	t.Parallel()
	const ok = "HTTP/1.1 200 OK\r\n"
	bigHeader := "X-Big: " + strings.Repeat("a", 8<<10) + "\r\n"
	hugeHeader := "X-Big: " + strings.Repeat("a", 40<<10) + "\r\n"               // more than the fast path's read buffer
	monster := "X-Big: " + strings.Repeat("a", 3<<20) + "\r\n"                   // a larger buffer than the first growth
	pastLimit := strings.Repeat("X-Big: "+strings.Repeat("a", 1<<20)+"\r\n", 11) // more than net/http's 10 MiB
	many1xx := strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", 150)
	cases := []struct {
		name       string
		method     string
		parts      []string
		pause      time.Duration
		closeAfter bool
		timeout    time.Duration
		differs    string // why the fast path answers otherwise, "" for not
		// sniffed: the answer has no Content-Type, and whether net/http's server sniffs one
		// depends on whether the first body bytes came with the headers: timing, on
		// either path. Content-Type is not compared.
		sniffed bool
	}{
		{name: "plain", parts: []string{ok + "Content-Length: 5\r\nX-A: 1\r\n\r\nhello"}},
		{name: "chunked with extensions and trailers", parts: []string{ok + "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1;q=\"a\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"}, sniffed: true},
		{name: "content-length longer than the body", parts: []string{ok + "Content-Length: 10\r\n\r\nhello"}, closeAfter: true},
		{name: "content-length shorter than the body", parts: []string{ok + "Content-Length: 2\r\n\r\nhello"}},
		{name: "duplicate equal lengths", parts: []string{ok + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"}},
		{name: "duplicate equal lengths, spaced and cased", parts: []string{ok + "content-length: 5\r\nX-A: 1\r\nCONTENT-LENGTH:   5  \r\n\r\nhello"}},
		{name: "duplicate lengths across reads", parts: []string{ok + "Content-Length: 5\r\nContent-Length: 5\r\n", "X-A: 1\r\n\r\nhello"}, pause: 20 * time.Millisecond},
		{name: "duplicate lengths after large headers", parts: []string{ok + "Content-Length: 5\r\nContent-Length: 5\r\n" + hugeHeader + "\r\nhello"}},
		{name: "duplicate lengths then a fold", parts: []string{ok + "Content-Length: 5\r\nContent-Length: 5\r\n 5\r\n\r\nhello"}},
		{name: "duplicate lengths on a 204", parts: []string{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"}},
		{name: "duplicate lengths on a HEAD", method: http.MethodHead, parts: []string{ok + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"}},
		{name: "conflicting lengths", parts: []string{ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"}},
		{name: "conflicting lengths on a HEAD", method: http.MethodHead, parts: []string{ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"}},
		{name: "a list of lengths", parts: []string{ok + "Content-Length: 5, 5\r\n\r\nhello"}},
		{name: "length and chunked", parts: []string{ok + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"}, sniffed: true},
		{name: "1xx before the final response", parts: []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nSet-Cookie: gh_s=planted\r\n\r\n" + ok + "Content-Length: 2\r\n\r\nok"}},
		{name: "two 1xx with hop-by-hop headers", parts: []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\nSet-Cookie: app=1\r\n\r\n" + ok + "Content-Length: 2\r\n\r\nok"}},
		{name: "unsolicited 100 Continue", parts: []string{"HTTP/1.1 100 Continue\r\n\r\n" + ok + "Content-Length: 2\r\n\r\nok"}},
		{name: "1xx then 204", parts: []string{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"}},
		{name: "204 with a body", parts: []string{"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"}},
		{name: "304 with a body", parts: []string{"HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\nhello"}},
		{name: "HEAD with a body", method: http.MethodHead, parts: []string{ok + "Content-Length: 5\r\n\r\nhello"}},
		{name: "connection close mid-stream", parts: []string{ok + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"}, closeAfter: true, sniffed: true},
		{name: "close after the headers", parts: []string{ok + "Content-Length: 5\r\n\r\n"}, closeAfter: true},
		{name: "close-delimited body", parts: []string{ok + "Connection: close\r\n\r\nhello to the end"}, closeAfter: true, sniffed: true},
		{name: "slow body", parts: []string{ok + "Content-Length: 10\r\n\r\n", "hello", "world"}, pause: 50 * time.Millisecond},
		{name: "slow headers past the timeout", parts: []string{"", ok + "Content-Length: 2\r\n\r\nok"}, pause: 300 * time.Millisecond, timeout: 100 * time.Millisecond},
		{name: "large headers", parts: []string{ok + bigHeader + "Content-Length: 2\r\n\r\nok"}},
		{name: "oversized headers", parts: []string{ok + hugeHeader + "Content-Length: 2\r\n\r\nok"}},
		{name: "oversized headers, slowly", parts: []string{ok + hugeHeader, hugeHeader + "Content-Length: 2\r\n\r\nok"}, pause: 20 * time.Millisecond},
		{name: "megabytes of headers", parts: []string{ok + monster + "Content-Length: 2\r\n\r\nok"}},
		{name: "headers past the limit", parts: []string{ok + pastLimit + "Content-Length: 2\r\n\r\nok"}, closeAfter: true},
		{name: "oversized 1xx", parts: []string{"HTTP/1.1 103 Early Hints\r\n" + hugeHeader + "\r\n" + ok + "Content-Length: 2\r\n\r\nok"}},
		{name: "150 informational responses", parts: []string{many1xx + ok + "Content-Length: 2\r\n\r\nok"}},
		{name: "obs-fold", parts: []string{ok + "X-Fold: a\r\n b\r\nContent-Length: 2\r\n\r\nok"}},
		{name: "bare CR in a value", parts: []string{ok + "X-Cr: a\rb\r\nContent-Length: 2\r\n\r\nok"}},
		{name: "splitting attempt: the gateway's cookie", parts: []string{ok + "X-A: a\r\nSet-Cookie: gh_session=evil\r\nSet-Cookie: app=1\r\nContent-Length: 2\r\n\r\nok"}},
		{name: "hop-by-hop headers", parts: []string{ok + "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"}},
		{name: "an unsolicited second response in the same write", parts: []string{ok + "Content-Length: 2\r\n\r\nok" + ok + "Content-Length: 5\r\n\r\nstray"}},
		{name: "garbage status line", parts: []string{"HTTP/1.1 2x0 Nope\r\n\r\n"}, closeAfter: true},
		{name: "no response at all", parts: []string{""}, closeAfter: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			method := c.method
			if method == "" {
				method = http.MethodGet
			}
			u := rawUpstream(t, func(*http.Request) []string { return c.parts }, c.pause, c.closeAfter)
			std := through(t, u, false, method, c.timeout)
			fast := through(t, u, true, method, c.timeout)
			if c.sniffed {
				delete(std.Header, "Content-Type")
				delete(fast.Header, "Content-Type")
			}
			same := reflect.DeepEqual(std, fast)
			switch {
			case c.differs == "" && !same:
				t.Errorf("the paths differ:\nstandard %+v\nfast     %+v", std, fast)
			case c.differs != "" && same:
				t.Errorf("the paths agree, but the case documents a difference (%s): %+v", c.differs, std)
			}
		})
	}
}

// No response of one request ever reaches another: many browsers at once over kept-alive
// upstream connections, some of whose requests break their connection, each request with
// its own marker that the answer must carry.
func TestTransportNoCrossedResponses(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			t.Parallel()
			u := rawUpstream(t, func(r *http.Request) []string {
				m := r.URL.Query().Get("m")
				switch {
				case strings.HasSuffix(m, "3"): // declares more than it sends, then waits: the proxy must not reuse this connection
					return []string{"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + m}
					// No case sends a stray extra response in the same write as the real one: on
					// both paths (net/http's Transport included) the next request on that
					// connection may then read the stray as its answer before the connection is
					// seen to be broken. docs/configuration.md says so; an upstream that does
					// this is broken, and its routes must not be shared by users who may not see
					// each other's answers.
				}
				return []string{"HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(m)) + "\r\n\r\n" + m}
			}, 0, false)
			p := newProxy(t, upstream.Config{ErrorHandler: renderJSON})
			g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: fast, Timeout: 200 * time.Millisecond}}, nil)
			g.client.Timeout = 500 * time.Millisecond
			var wg sync.WaitGroup
			var mu sync.Mutex
			crossed := 0
			for c := range 8 {
				wg.Go(func() {
					for i := range 20 {
						m := fmt.Sprintf("c%di%d", c, i)
						resp, err := g.client.Get(g.URL + "/x?m=" + m)
						if err != nil {
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK && !strings.HasSuffix(m, "3") && string(body) != m {
							mu.Lock()
							crossed++
							t.Errorf("request %s got %q", m, body)
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// FuzzTransportParity feeds an arbitrary upstream answer to both paths. Where the two
// parsers may disagree (fasthttp is stricter than net/http in places, see
// docs/configuration.md), what must hold on both is checked: the gateway's cookies never
// reach the browser, headers the upstream named in Connection never do, and an answer
// is either the upstream's or the renderer's JSON error.
func FuzzTransportParity(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2;x=y\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: gh_session=x\r\nSet-Cookie: a=b\r\nConnection: X-H\r\nX-H: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nSet-Cookie: gh_s=1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nX-Fold: a\r\n b\r\n\r\nbody",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		u := rawUpstream(t, func(*http.Request) []string { return []string{answer} }, 0, true)
		for _, fast := range []bool{false, true} {
			o := through(t, u, fast, http.MethodGet, time.Second)
			if o.Status == -1 {
				continue // the gateway's answer itself broke off: nothing reached the browser
			}
			for _, v := range o.Header.Values("Set-Cookie") {
				if c, err := http.ParseSetCookie(v); err == nil && ownCookie(c.Name) {
					t.Errorf("fast=%v: the gateway's cookie reached the browser: %q", fast, v)
				}
			}
			if o.Header.Get("Connection") != "" || o.Header.Get("Keep-Alive") != "" {
				t.Errorf("fast=%v: a hop-by-hop header reached the browser: %v", fast, o.Header)
			}
			if o.Status == http.StatusBadGateway && o.Header.Get("Content-Type") == "application/json" &&
				o.Body != "{\"error\":\"unreachable\"}\n" && !strings.Contains(answer, "502") {
				t.Errorf("fast=%v: a 502 that is neither the renderer's nor the upstream's: %q", fast, o.Body)
			}
		}
	})
}

// A request body cut off by the gateway's limit is a 413 from the renderer on both paths,
// and a body within it reaches the upstream whole.
func TestTransportBodyLimit(t *testing.T) {
	t.Parallel()
	u := rawUpstream(t, func(r *http.Request) []string {
		return []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	}, 0, false)
	for _, fast := range []bool{false, true} {
		p := newProxy(t, upstream.Config{ErrorHandler: renderJSON})
		g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: fast}},
			func(w http.ResponseWriter, r *http.Request) { r.Body = http.MaxBytesReader(w, r.Body, 10) })
		for _, c := range []struct {
			body   string
			status int
		}{{"small", http.StatusOK}, {strings.Repeat("x", 100), http.StatusRequestEntityTooLarge}} {
			req, _ := http.NewRequest(http.MethodPost, g.URL+"/x", io.NopCloser(strings.NewReader(c.body))) // chunked: no length
			resp, body := g.do(t, req)
			if resp.StatusCode != c.status {
				t.Errorf("fast=%v, body of %d bytes: %d %s, want %d", fast, len(c.body), resp.StatusCode, body, c.status)
			}
		}
	}
}

// A browser's request sees one behaviour on both paths: its trailers never reach the
// upstream (they would pass by the header hygiene, an identity header sent as a
// trailer), and when it waits for 100 Continue it is not told to send its body if the
// upstream refuses it first (the fast path leaves such requests to the standard one).
func TestTransportRequestTrailersAndExpect(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s", body, r.Trailer.Get("X-Sum"))
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	t.Cleanup(client.CloseIdleConnections)
	for _, fast := range []bool{false, true} {
		p := newProxy(t, upstream.Config{ErrorHandler: renderJSON})
		g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: fast}}, nil)
		for _, c := range []struct {
			path      string
			expect    bool
			status    int
			body      string
			continued bool // the browser was told to send its body
		}{
			{path: "/echo", status: http.StatusOK, body: "hello|"},
			{path: "/echo", expect: true, status: http.StatusOK, body: "hello|", continued: true},
			{path: "/deny", expect: true, status: http.StatusUnauthorized},
		} {
			continued := false
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got100Continue: func() { continued = true }})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+c.path, io.NopCloser(strings.NewReader("hello"))) // chunked
			req.Trailer = http.Header{"X-Sum": {"42"}}
			if c.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("fast=%v %s expect=%v: %v", fast, c.path, c.expect, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || string(body) != c.body || continued != c.continued {
				t.Errorf("fast=%v %s expect=%v: %d %q, continued %v; want %d %q, continued %v",
					fast, c.path, c.expect, resp.StatusCode, body, continued, c.status, c.body, c.continued)
			}
		}
	}
}

// A request without Accept-Encoding reaches the upstream without one on both paths: the
// standard transport does not ask for gzip on its own (and then decode it, which would
// cost the gateway CPU and drop the upstream's Content-Length).
func TestTransportNoAddedCompression(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			io.WriteString(gz, "hello")
			gz.Close()
			return
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	var seen []string
	for _, fast := range []bool{false, true} {
		p := newProxy(t, upstream.Config{ErrorHandler: renderJSON})
		g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: fast}}, nil)
		for _, ae := range []string{"", "gzip"} {
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/x", nil)
			if ae != "" {
				req.Header.Set("Accept-Encoding", ae)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := fmt.Sprintf("ae=%q: %d encoding=%q length=%d body=%q", ae, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.ContentLength, body)
			if ae == "" && got != `ae="": 200 encoding="" length=5 body="hello"` {
				t.Errorf("fast=%v: %s, want the upstream's identity answer with its length", fast, got)
			}
			seen = append(seen, got)
		}
	}
	if seen[0] != seen[2] || seen[1] != seen[3] {
		t.Errorf("the paths differ:\nstandard %q\nfast     %q", seen[:2], seen[2:])
	}
}

// A TLS upstream that speaks only HTTP/2 refuses the fast path's http/1.1 handshake: the
// request goes by the standard path instead, with the target's timeout, and so do the
// host's requests after it.
func TestTransportFastFallsBackForHTTP2Only(t *testing.T) {
	t.Parallel()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, r.Proto)
	}))
	up.EnableHTTP2 = true
	// Strict about ALPN, as some non-Go servers are (Go's own would serve HTTP/1.1 to a
	// client that offers only http/1.1): no h2 offered, no handshake.
	up.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := up.TLS.Clone()
		cfg.GetConfigForClient = nil
		if cfg.NextProtos = []string{"h2"}; !slices.Contains(hello.SupportedProtos, "h2") {
			cfg.NextProtos = []string{"h2-strict"} // no protocol in common: no_application_protocol
		}
		return cfg, nil
	}}
	up.StartTLS()
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	tr := upstream.NewTransport()
	tr.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool()}
	tr.TLSClientConfig.RootCAs.AddCert(up.Certificate())
	t.Cleanup(tr.CloseIdleConnections)
	p := newProxy(t, upstream.Config{Transport: tr, ErrorHandler: renderJSON})
	g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: u, Fast: true, Timeout: 100 * time.Millisecond}}, nil)
	for range 2 {
		if resp, body := g.get(t, "/x"); resp.StatusCode != http.StatusOK || body != "HTTP/2.0" {
			t.Fatalf("%d %q, want 200 from the HTTP/2 upstream", resp.StatusCode, body)
		}
	}
	if resp, body := g.get(t, "/slow"); resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "timeout") {
		t.Fatalf("a slow answer: %d %q, want the timeout's 504", resp.StatusCode, body)
	}
}
