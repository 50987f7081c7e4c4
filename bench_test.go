package gatehouse_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// staticUpstream answers every request with the same small JSON body, in memory, so
// the benchmarks measure the proxies and nothing else.
type staticUpstream struct{}

func (staticUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(`{"ok":true}`)),
		ContentLength: 11, Request: r}, nil
}

// benchGateway logs in once through the fake provider and returns the gateway and the
// session cookie.
func benchGateway(b *testing.B, transport http.RoundTripper, upstreamURL string) (http.Handler, string, string) {
	b.Helper()
	return benchGatewayWith(b, transport, upstreamURL)
}

func benchGatewayWith(b *testing.B, transport http.RoundTripper, upstreamURL string, mutate ...func(*gatehouse.Config)) (http.Handler, string, string) {
	b.Helper()
	return benchGatewayKnobs(b, transport, upstreamURL, nil, mutate...)
}

// benchGatewayKnobs is benchGatewayWith against a fake provider with these knobs.
func benchGatewayKnobs(b *testing.B, transport http.RoundTripper, upstreamURL string, knobs func(*idptest.Knobs), mutate ...func(*gatehouse.Config)) (http.Handler, string, string) {
	b.Helper()
	idp := idptest.New(b)
	if knobs != nil {
		idp.Set(knobs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	public := "http://" + ln.Addr().String()
	cfg := gatehouse.Config{
		PublicURL: public,
		Provider:  gatehouse.ProviderConfig{Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret},
		Routes: []gatehouse.Route{
			{Path: "/api/", Upstream: upstreamURL},
			{Path: "/open/", Upstream: upstreamURL, Token: gatehouse.TokenNone},
		},
		UpstreamTransport: transport,
		Logger:            slog.New(slog.DiscardHandler),
		AuditLogger:       slog.New(slog.DiscardHandler),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	gw, err := gatehouse.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: gw}}
	srv.Start()
	b.Cleanup(func() { srv.Close(); gw.Close() })

	c := &http.Client{Jar: testutil.NewLoopbackJar(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := c.Get(public + "/bff/login")
	if err != nil {
		b.Fatal(err)
	}
	r, _ = c.Get(r.Header.Get("Location"))
	r, _ = c.Get(r.Header.Get("Location"))
	r.Body.Close()
	u, _ := url.Parse(strings.Replace(public, "http:", "https:", 1))
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-gatehouse" {
			return gw, ck.Value, public
		}
	}
	b.Fatal("login failed")
	return nil, "", ""
}

func apiRequest(target, cookie string) *http.Request {
	req := httptest.NewRequest("GET", target, nil)
	req.RemoteAddr = "127.0.0.1:50000"
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36")
	if cookie != "" {
		req.Header.Set("Cookie", "__Host-gatehouse="+cookie+"; theme=dark")
	}
	return req
}

type pool struct{}

var poolBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (pool) Get() []byte  { return *poolBuffers.Get().(*[]byte) }
func (pool) Put(b []byte) { poolBuffers.Put(&b) }

// BenchmarkProxy compares the authenticated hot path with a bare ReverseProxy doing the
// same forwarding, in memory (no network): the difference is Gatehouse's own cost per
// request (cookie, store lookup, decryption, CSRF checks, token attach, header hygiene).
// BenchmarkProxyLoopback does the same over real HTTP on loopback with the default
// transport. bench/run.sh runs both; see docs/benchmarks.md.
func BenchmarkProxy(b *testing.B) {
	const upstreamURL = "http://upstream.invalid"
	target, _ := url.Parse(upstreamURL)
	// The baseline reuses copy buffers as Gatehouse does, so the difference is
	// Gatehouse's own work, not a pool.
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  staticUpstream{},
		BufferPool: pool{},
	}
	gw, cookie, public := benchGateway(b, staticUpstream{}, upstreamURL)

	run := func(b *testing.B, h http.Handler, target, cookie string) {
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, apiRequest(target, cookie))
			if rec.Code != 200 {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	b.Run("baseline=bare-reverseproxy", func(b *testing.B) { run(b, bare, public+"/api/orders", "") })
	b.Run("gatehouse=user-token", func(b *testing.B) { run(b, gw, public+"/api/orders", cookie) })
	b.Run("gatehouse=no-token", func(b *testing.B) { run(b, gw, public+"/open/orders", "") })

	// The two upstream transports side by side need a real upstream: the fast path
	// dials one itself. Same handler in front, same loopback upstream behind.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	std, stdCookie, stdPublic := benchGatewayWith(b, nil, up.URL, func(c *gatehouse.Config) {
		c.UpstreamTransportMode = gatehouse.TransportStandard
	})
	fast, fastCookie, fastPublic := benchGatewayWith(b, nil, up.URL, func(c *gatehouse.Config) {
		c.UpstreamTransportMode = gatehouse.TransportFast
	})
	b.Run("gatehouse=user-token,upstream=loopback,transport=standard", func(b *testing.B) { run(b, std, stdPublic+"/api/orders", stdCookie) })
	b.Run("gatehouse=user-token,upstream=loopback,transport=fast", func(b *testing.B) { run(b, fast, fastPublic+"/api/orders", fastCookie) })
	b.Run("gatehouse=no-token,upstream=loopback,transport=standard", func(b *testing.B) { run(b, std, stdPublic+"/open/orders", "") })
	b.Run("gatehouse=no-token,upstream=loopback,transport=fast", func(b *testing.B) { run(b, fast, fastPublic+"/open/orders", "") })
}

// BenchmarkProxyLoopback is the same comparison over real HTTP on loopback: a client,
// the proxy as a server, and an upstream server, as in production.
func BenchmarkProxyLoopback(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	bareSrv := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  transport,
		BufferPool: pool{},
	})
	defer bareSrv.Close()
	_, cookie, public := benchGatewayWith(b, nil, up.URL, func(c *gatehouse.Config) {
		c.UpstreamTransportMode = gatehouse.TransportStandard
	})
	_, fastCookie, fastPublic := benchGatewayWith(b, nil, up.URL, func(c *gatehouse.Config) {
		c.UpstreamTransportMode = gatehouse.TransportFast
	})

	run := loopbackLoad()
	b.Run("baseline=bare-reverseproxy", func(b *testing.B) { run(b, bareSrv.URL, "") })
	b.Run("gatehouse=user-token,transport=standard", func(b *testing.B) { run(b, public, cookie) })
	b.Run("gatehouse=user-token,transport=fast", func(b *testing.B) { run(b, fastPublic, fastCookie) })
}

// loopbackLoad returns what BenchmarkProxyLoopback and BenchmarkProxyStores run: GET
// base/api/orders in parallel over real HTTP, with the session cookie when there is one,
// each answer read whole and required to be 200.
func loopbackLoad() func(b *testing.B, base, cookie string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	return func(b *testing.B, base, cookie string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", base+"/api/orders", nil)
				req.Header.Set("X-CSRF", "1")
				if cookie != "" {
					req.Header.Set("Cookie", "__Host-gatehouse="+cookie)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
}

// BenchmarkForwardAuth compares, in one run, what Gatehouse spends answering an
// ingress's forward-auth question (/bff/auth, nginx's request shape) with what it spends
// proxying the same call itself: the same checks, minus the forwarding.
func BenchmarkForwardAuth(b *testing.B) {
	const upstreamURL = "http://upstream.invalid"
	gw, cookie, public := benchGatewayWith(b, staticUpstream{}, upstreamURL, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	run := func(b *testing.B, target string, h ...string) {
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			req := apiRequest(target, cookie)
			for i := 0; i+1 < len(h); i += 2 {
				req.Header.Set(h[i], h[i+1])
			}
			gw.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	b.Run("gatehouse=proxy", func(b *testing.B) { run(b, public+"/api/orders") })
	b.Run("gatehouse=forward-auth", func(b *testing.B) {
		run(b, public+"/bff/auth", "X-Original-Method", "GET", "X-Original-URI", "/api/orders")
	})
}
