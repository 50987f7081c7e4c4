package upstream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-bff/gatehouse/upstream"
)

// startUpstream serves h on 127.0.0.1 until the test ends.
func startUpstream(t *testing.T, h http.Handler) *url.URL {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// recordingUpstream answers 204 and hands the test each request it received.
func recordingUpstream(t *testing.T) (*url.URL, <-chan *http.Request) {
	got := make(chan *http.Request, 1)
	u := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Clone(context.Background())
		w.WriteHeader(http.StatusNoContent)
	}))
	return u, got
}

// received waits for the request an upstream got.
func received(t *testing.T, got <-chan *http.Request) *http.Request {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got no request")
		return nil
	}
}

// closedURL is an address where nothing listens.
func closedURL(t *testing.T) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &url.URL{Scheme: "http", Host: addr}
}

func newProxy(t *testing.T, cfg upstream.Config) *upstream.Proxy {
	if cfg.Transport == nil {
		tr := upstream.NewTransport()
		t.Cleanup(tr.CloseIdleConnections)
		cfg.Transport = tr
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	return upstream.New(cfg)
}

// wrapper is the kind of ResponseWriter wrapper the gateway puts around the proxy: it
// records the status and, apart from Unwrap, offers nothing beyond http.ResponseWriter,
// so flushing and hijacking can only work through http.ResponseController.
type wrapper struct {
	http.ResponseWriter
	status int
}

func (w *wrapper) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *wrapper) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type gateway struct {
	URL    string
	client *http.Client
	status chan int // the status of each request as the wrapper saw it
}

// startGateway serves p behind a wrapper. f.Path and f.RawPath default to the request's;
// prepare, when not nil, may adjust the request first.
func startGateway(t *testing.T, p *upstream.Proxy, f upstream.Forward, prepare func(w http.ResponseWriter, r *http.Request)) *gateway {
	t.Helper()
	g := &gateway{status: make(chan int, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := &wrapper{ResponseWriter: w}
		f := f
		if f.Path == "" {
			f.Path, f.RawPath = r.URL.Path, r.URL.RawPath
		}
		if prepare != nil {
			prepare(ww, r)
		}
		p.Serve(ww, r, f)
		select {
		case g.status <- ww.status:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	g.client = srv.Client()
	g.client.Timeout = 10 * time.Second
	return g
}

// do sends req and reads the whole response.
func (g *gateway) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func (g *gateway) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g.do(t, req)
}

// spoofable are headers a browser could send to pass for a proxy or a signed-in user.
var spoofable = []string{"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server",
	"X-Forwarded-Ssl", "X-Original-Url", "X-Original-Forwarded-For", "X-Rewrite-Url", "X-Client-Ip", "True-Client-Ip",
	"Cf-Connecting-Ip", "X-Cluster-Client-Ip", "Client-Ip", "X-Forwarded-User", "X-Forwarded-Email",
	"X-Forwarded-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Access-Token", "X-Remote-User"}

// identityHeaders are headers with which other gateways name the user, one or more of
// each family of the default strip list.
var identityHeaders = []string{"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Addr", "X-Remote-User", "X-Remote-Group",
	"X-Remote-Extra-Scopes", "X-Auth-Request-User", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
	"X-Amzn-Oidc-Data", "X-Amzn-Oidc-Identity", "X-Amzn-Oidc-Accesstoken", "X-Goog-Authenticated-User-Email",
	"X-Goog-Authenticated-User-Id", "X-Goog-Iap-Jwt-Assertion", "X-Ms-Client-Principal", "X-Ms-Client-Principal-Name",
	"X-Ms-Client-Principal-Id", "X-Ms-Client-Principal-Idp", "X-Ms-Token-Aad-Access-Token", "Cf-Access-Jwt-Assertion",
	"Cf-Access-Authenticated-User-Email", "X-Pomerium-Jwt-Assertion", "X-Pomerium-Claim-Email", "X-Authentik-Username",
	"X-Authentik-Groups", "X-Vouch-User", "X-Webauth-User", "X-Consumer-Username", "X-Consumer-Id", "X-Credential-Identifier",
	"X-Authenticated-Userid", "X-Userinfo", "X-Jwt-Assertion", "X-User", "X-Username", "X-User-Id", "X-User-Email",
	"X-User-Groups", "X-Email", "X-Groups", "X-Preferred-Username", "X-Id-Token", "X-Access-Token", "X-Ssl-Client-Dn",
	"Ssl-Client-Cert", "X-Client-Cert", "X-Client-Cert-Chain", "X-Client-Verify", "X-Client-Dn", "X-Arr-Clientcert",
	"X-Original-Uri"}

func ownCookie(name string) bool { return strings.HasPrefix(name, "gh_") }

func TestRequestHeaders(t *testing.T) {
	tests := []struct {
		name    string
		cfg     upstream.Config
		target  upstream.Target
		token   string
		forward upstream.Forward // Headers and Strip
		browser http.Header
		host    string // the Host the browser sends, "" for the gateway's
		check   func(t *testing.T, up *url.URL, got *http.Request)
	}{{
		name:    "browser credentials replaced by the token",
		token:   "upstream-token",
		browser: http.Header{"Authorization": {"Basic YnJvd3Nlcjpw"}, "Proxy-Authorization": {"Basic cHJveHk6cA=="}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "Authorization", got.Header.Values("Authorization"), "Bearer upstream-token")
			want(t, "Proxy-Authorization", got.Header.Values("Proxy-Authorization"))
		},
	}, {
		name:    "browser credentials dropped without a token",
		browser: http.Header{"Authorization": {"Bearer stolen"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "Authorization", got.Header.Values("Authorization"))
		},
	}, {
		name:    "DropHeaders removed, other headers kept",
		cfg:     upstream.Config{DropHeaders: []string{"X-Csrf-Token"}},
		browser: http.Header{"X-Csrf-Token": {"t0k"}, "Accept-Language": {"fr"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Csrf-Token", got.Header.Values("X-Csrf-Token"))
			want(t, "Accept-Language", got.Header.Values("Accept-Language"), "fr")
		},
	}, {
		name:    "cookies dropped by default",
		cfg:     upstream.Config{ProtectedCookie: ownCookie},
		browser: http.Header{"Cookie": {"theme=dark; gh_session=s"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "Cookie", got.Header.Values("Cookie"))
		},
	}, {
		name:    "only ForwardCookies kept, never a protected one",
		cfg:     upstream.Config{ProtectedCookie: ownCookie},
		target:  upstream.Target{ForwardCookies: []string{"theme", "lang", "gh_session"}},
		browser: http.Header{"Cookie": {"theme=dark; tracking=1; gh_session=s", "lang=fr; gh_csrf=c"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "Cookie", got.Header.Values("Cookie"), "theme=dark; lang=fr")
		},
	}, {
		name:    "listed cookies absent from the request: no Cookie header",
		target:  upstream.Target{ForwardCookies: []string{"theme"}},
		browser: http.Header{"Cookie": {"tracking=1"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "Cookie", got.Header.Values("Cookie"))
		},
	}, {
		name: "inbound forwarding headers removed",
		browser: func() http.Header {
			h := http.Header{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"},
				"X-Forwarded-Anything": {"x"}, "Forwarded": {"for=198.51.100.1"}}
			for _, name := range spoofable {
				h.Set(name, "spoofed")
			}
			return h
		}(),
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			for _, name := range append([]string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Anything", "Forwarded"}, spoofable...) {
				want(t, name, got.Header.Values(name))
			}
		},
	}, {
		name: "method and path overrides removed",
		browser: http.Header{"X-Http-Method-Override": {"DELETE"}, "X-Http-Method": {"DELETE"}, "X-Method-Override": {"DELETE"},
			"X-Original-Method": {"DELETE"}, "X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			for _, name := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method", "X-Original-Url", "X-Rewrite-Url"} {
				want(t, name, got.Header.Values(name))
			}
		},
	}, {
		name: "identity headers of other gateways removed, every family",
		browser: func() http.Header {
			h := http.Header{"Accept-Language": {"fr"}, "X-Request-Id": {"r1"}, "X-Userx": {"kept: not a listed name"}}
			for _, name := range identityHeaders {
				h.Set(name, "alice")
			}
			return h
		}(),
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			for _, name := range identityHeaders {
				want(t, name, got.Header.Values(name))
			}
			want(t, "Accept-Language", got.Header.Values("Accept-Language"), "fr")
			want(t, "X-Request-Id", got.Header.Values("X-Request-Id"), "r1")
			want(t, "X-Userx", got.Header.Values("X-Userx"), "kept: not a listed name")
		},
	}, {
		name: "underscore spellings removed like dashed ones (CGI reads both as HTTP_X_USER)",
		browser: http.Header{"X_user": {"alice"}, "Remote_user": {"alice"}, "X_forwarded_for": {"6.6.6.6"},
			"X_http_method_override": {"DELETE"}, "X_auth_request_email": {"a@example.com"}, "X_theme": {"dark"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			for _, name := range []string{"X_user", "Remote_user", "X_forwarded_for", "X_http_method_override", "X_auth_request_email"} {
				want(t, name, got.Header.Values(name))
			}
			want(t, "X-Forwarded-For", got.Header.Values("X-Forwarded-For"), "127.0.0.1")
			want(t, "X_theme", got.Header.Values("X_theme"), "dark")
		},
	}, {
		name:    "StripHeaders adds names and prefixes, in any case",
		cfg:     upstream.Config{StripHeaders: []string{"x-tenant", "X-Debug-*"}},
		browser: http.Header{"X-Tenant": {"other"}, "X-Debug-Role": {"admin"}, "X-Debug": {"kept"}, "X-Tenantx": {"kept"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Tenant", got.Header.Values("X-Tenant"))
			want(t, "X-Debug-Role", got.Header.Values("X-Debug-Role"))
			want(t, "X-Debug", got.Header.Values("X-Debug"), "kept")
			want(t, "X-Tenantx", got.Header.Values("X-Tenantx"), "kept")
		},
	}, {
		name: "KeepHeaders forwards listed identity headers, never an override",
		cfg:  upstream.Config{KeepHeaders: []string{"X-Amzn-Oidc-Identity", "Remote-*", "X-Http-Method-Override", "X-Forwarded-User"}},
		browser: http.Header{"X-Amzn-Oidc-Identity": {"id"}, "X-Amzn-Oidc-Data": {"jwt"}, "Remote-User": {"alice"},
			"X-Http-Method-Override": {"DELETE"}, "X-Forwarded-User": {"alice"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Amzn-Oidc-Identity", got.Header.Values("X-Amzn-Oidc-Identity"), "id")
			want(t, "X-Amzn-Oidc-Data", got.Header.Values("X-Amzn-Oidc-Data"))
			want(t, "Remote-User", got.Header.Values("Remote-User"), "alice")
			want(t, "X-Http-Method-Override", got.Header.Values("X-Http-Method-Override"))
			want(t, "X-Forwarded-User", got.Header.Values("X-Forwarded-User"))
		},
	}, {
		name:    "X-Forwarded-For from an untrusted peer replaced by the peer",
		browser: http.Header{"X-Forwarded-For": {"203.0.113.9"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Forwarded-For", got.Header.Values("X-Forwarded-For"), "127.0.0.1")
		},
	}, {
		name:    "X-Forwarded-For from a trusted proxy appended to",
		cfg:     upstream.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		browser: http.Header{"X-Forwarded-For": {"203.0.113.9"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Forwarded-For", got.Header.Values("X-Forwarded-For"), "203.0.113.9, 127.0.0.1")
		},
	}, {
		name:    "X-Forwarded-For from another peer replaced despite TrustedProxies",
		cfg:     upstream.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		browser: http.Header{"X-Forwarded-For": {"203.0.113.9"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Forwarded-For", got.Header.Values("X-Forwarded-For"), "127.0.0.1")
		},
	}, {
		name:    "X-Forwarded-Host and Proto from PublicURL",
		cfg:     upstream.Config{PublicURL: &url.URL{Scheme: "https", Host: "app.example.com"}},
		browser: http.Header{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Forwarded-Host", got.Header.Values("X-Forwarded-Host"), "app.example.com")
			want(t, "X-Forwarded-Proto", got.Header.Values("X-Forwarded-Proto"), "https")
		},
	}, {
		name:    "Target.Headers set over the browser's",
		target:  upstream.Target{Headers: http.Header{"X-Api-Key": {"k1"}, "X-Tenant": {"a", "b"}}},
		browser: http.Header{"X-Api-Key": {"forged"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-Api-Key", got.Header.Values("X-Api-Key"), "k1")
			want(t, "X-Tenant", got.Header.Values("X-Tenant"), "a", "b")
		},
	}, {
		name:    "Forward.Headers set after the hygiene, over the route's and the browser's",
		cfg:     upstream.Config{KeepHeaders: []string{"X-User"}},
		target:  upstream.Target{Headers: http.Header{"X-Route": {"r"}}},
		forward: upstream.Forward{Headers: http.Header{"X-User": {"alice"}, "X-Forwarded-User": {"alice"}, "X-Gatehouse-Assertion": {"signed"}}},
		browser: http.Header{"X-User": {"mallory"}, "X-Forwarded-User": {"mallory"}, "X-Gatehouse-Assertion": {"forged"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-User", got.Header.Values("X-User"), "alice")
			want(t, "X-Forwarded-User", got.Header.Values("X-Forwarded-User"), "alice")
			want(t, "X-Gatehouse-Assertion", got.Header.Values("X-Gatehouse-Assertion"), "signed")
			want(t, "X-Route", got.Header.Values("X-Route"), "r")
		},
	}, {
		name:    "X-Gatehouse-* never from the browser",
		browser: http.Header{"X-Gatehouse-Assertion": {"forged"}, "X-Gatehouse-Anything": {"1"}, "X_gatehouse_assertion": {"forged"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			for _, name := range []string{"X-Gatehouse-Assertion", "X-Gatehouse-Anything", "X_gatehouse_assertion"} {
				want(t, name, got.Header.Values(name))
			}
		},
	}, {
		name:    "Forward.Strip removes names whatever KeepHeaders says",
		cfg:     upstream.Config{KeepHeaders: []string{"X-User"}},
		forward: upstream.Forward{Strip: upstream.NewHeaderNames("X-User", "x-grafana-role")},
		browser: http.Header{"X-User": {"mallory"}, "X-Grafana-Role": {"Admin"}, "X_grafana_role": {"Admin"}, "X-Other": {"kept"}},
		check: func(t *testing.T, _ *url.URL, got *http.Request) {
			want(t, "X-User", got.Header.Values("X-User"))
			want(t, "X-Grafana-Role", got.Header.Values("X-Grafana-Role"))
			want(t, "X_grafana_role", got.Header.Values("X_grafana_role"))
			want(t, "X-Other", got.Header.Values("X-Other"), "kept")
		},
	}, {
		name: "Host is the upstream's",
		host: "evil.example",
		check: func(t *testing.T, up *url.URL, got *http.Request) {
			if got.Host != up.Host {
				t.Errorf("Host = %q, want the upstream's %q", got.Host, up.Host)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, got := recordingUpstream(t)
			target := tc.target
			target.Name, target.Prefix, target.URL = "/api/", "/api/", up
			f := tc.forward
			f.Target, f.Token, f.ClientIP = &target, tc.token, "192.0.2.1"
			g := startGateway(t, newProxy(t, tc.cfg), f, nil)
			req, err := http.NewRequest(http.MethodGet, g.URL+"/api/items", nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, vals := range tc.browser {
				req.Header[name] = vals
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			if resp, _ := g.do(t, req); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d, want 204", resp.StatusCode)
			}
			tc.check(t, up, received(t, got))
		})
	}
}

// want checks a header's values.
func want(t *testing.T, name string, got []string, values ...string) {
	t.Helper()
	if !slices.Equal(got, values) {
		t.Errorf("%s = %q, want %q", name, got, values)
	}
}

func TestResponseCookies(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{"gh_session=planted; Path=/", "theme=dark; Path=/", "gh_csrf=x", "cart=3; HttpOnly"} {
			w.Header().Add("Set-Cookie", c)
		}
	}))
	p := newProxy(t, upstream.Config{ProtectedCookie: ownCookie})
	g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: up}}, nil)
	resp, _ := g.get(t, "/")
	want(t, "Set-Cookie", resp.Header.Values("Set-Cookie"), "theme=dark; Path=/", "cart=3; HttpOnly")
}

func TestPaths(t *testing.T) {
	tests := []struct {
		name          string
		base          string // the upstream URL's path
		prefix        string
		strip         bool
		path, rawPath string
		query         string
		want          string // request-target the upstream sees
	}{
		{name: "base path prepended", base: "/v1", prefix: "/api/", path: "/api/items", want: "/v1/api/items"},
		{name: "base path with trailing slash", base: "/v1/", prefix: "/api/", path: "/api/items", want: "/v1/api/items"},
		{name: "no base path", prefix: "/api/", path: "/api/items", want: "/api/items"},
		{name: "prefix stripped", base: "/v1", prefix: "/api/", strip: true, path: "/api/items/7", want: "/v1/items/7"},
		{name: "prefix without trailing slash stripped", base: "/v1", prefix: "/api", strip: true, path: "/api/items", want: "/v1/items"},
		{name: "bare prefix stripped", base: "/v1", prefix: "/api/", strip: true, path: "/api", want: "/v1/"},
		{name: "bare prefix with slash stripped", base: "/v1", prefix: "/api/", strip: true, path: "/api/", want: "/v1/"},
		{name: "bare prefix stripped without base", prefix: "/api/", strip: true, path: "/api", want: "/"},
		{name: "escaped slash kept", base: "/v1", prefix: "/api/", path: "/api/files/a/b", rawPath: "/api/files/a%2Fb", want: "/v1/api/files/a%2Fb"},
		{name: "escaped slash kept under a stripped prefix", base: "/v1", prefix: "/api/", strip: true, path: "/api/files/a/b", rawPath: "/api/files/a%2Fb", want: "/v1/files/a%2Fb"},
		{name: "raw path meaning another path not forwarded", base: "/v1", prefix: "/api/", strip: true, path: "/api/public", rawPath: "/api/admin%2Fusers", want: "/v1/public"},
		{name: "raw path with an escaped traversal not forwarded", base: "/v1", prefix: "/api/", path: "/api/b", rawPath: "/api/a/..%2Fb", want: "/v1/api/b"},
		{name: "query kept as sent", base: "/v1", prefix: "/api/", strip: true, path: "/api/search", query: "q=a%2Bb&q=c&empty=", want: "/v1/search?q=a%2Bb&q=c&empty="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, got := recordingUpstream(t)
			base := *up
			base.Path = tc.base
			sent := make(chan *url.URL, 1)
			tr := upstream.NewTransport()
			t.Cleanup(tr.CloseIdleConnections)
			p := newProxy(t, upstream.Config{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				u := *r.URL
				sent <- &u
				return tr.RoundTrip(r)
			})})
			target := &upstream.Target{Name: tc.prefix, Prefix: tc.prefix, StripPrefix: tc.strip, URL: &base}
			g := startGateway(t, p, upstream.Forward{Target: target, Path: tc.path, RawPath: tc.rawPath},
				func(_ http.ResponseWriter, r *http.Request) { r.URL.Fragment = "section-2" }) // a fragment must never travel on
			uri := "/ignored"
			if tc.query != "" {
				uri += "?" + tc.query
			}
			g.get(t, uri)
			if r := received(t, got); r.RequestURI != tc.want {
				t.Errorf("upstream got %q, want %q", r.RequestURI, tc.want)
			}
			u := <-sent
			if u.Fragment != "" || u.RawFragment != "" {
				t.Errorf("forwarded with fragment %q", u.Fragment)
			}
			// The wire shows EscapedPath, which ignores a RawPath that means another path;
			// a Transport reading RawPath itself must not see one either.
			if u.RawPath != "" && u.RawPath != u.EscapedPath() {
				t.Errorf("outbound RawPath %q means another path than %q", u.RawPath, u.Path)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// earlyHints is what the browser's side saw of a forward whose upstream sent 103 Early
// Hints before its answer.
type earlyHints struct {
	hints []textproto.MIMEHeader // the headers of each 1xx, in order
	codes []int
	final *http.Response
	body  string
}

// getWithHints forwards GET / to an upstream that sends two 103s (with a Link, its own
// cookie, one of the gateway's and hop-by-hop headers) and then its answer; prepare may set
// headers the gateway's side sets before forwarding. fast chooses the target's path.
func getWithHints(t *testing.T, fast bool, prepare func(w http.ResponseWriter, r *http.Request)) earlyHints {
	t.Helper()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for i, link := range []string{"</app.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script"} {
			h.Set("Link", link)
			h["Set-Cookie"] = []string{"gh_session=planted-" + fmt.Sprint(i) + "; Path=/; Secure; HttpOnly", "hint=" + fmt.Sprint(i) + "; Path=/"}
			h.Set("Connection", "X-Hop")
			h.Set("X-Hop", "1")
			h.Set("Keep-Alive", "timeout=1")
			w.WriteHeader(http.StatusEarlyHints)
		}
		clear(h)
		h.Set("Set-Cookie", "app=1; Path=/")
		io.WriteString(w, "page")
	}))
	p := newProxy(t, upstream.Config{ProtectedCookie: ownCookie})
	g := startGateway(t, p, upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: up, Fast: fast}}, prepare)
	var out earlyHints
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		out.codes = append(out.codes, code)
		out.hints = append(out.hints, h)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, g.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	out.final, out.body = g.do(t, req)
	return out
}

func TestEarlyHints(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(map[bool]string{false: "standard", true: "fast"}[fast], func(t *testing.T) { testEarlyHints(t, fast) })
	}
}

func testEarlyHints(t *testing.T, fast bool) {
	got := getWithHints(t, fast, nil)
	if got.final.StatusCode != http.StatusOK || got.body != "page" {
		t.Errorf("final response %d %q, want 200 %q", got.final.StatusCode, got.body, "page")
	}
	if !slices.Equal(got.codes, []int{103, 103}) {
		t.Fatalf("informational responses %v, want two 103s", got.codes)
	}
	for i, link := range []string{"</app.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script"} {
		h := http.Header(got.hints[i])
		want(t, fmt.Sprintf("103 #%d Link", i), h.Values("Link"), link)
		// The upstream's own cookie may pass as it would in a final response; the gateway's
		// may not, nor may hop-by-hop headers.
		want(t, fmt.Sprintf("103 #%d Set-Cookie", i), h.Values("Set-Cookie"), "hint="+fmt.Sprint(i)+"; Path=/")
		for _, name := range []string{"Connection", "X-Hop", "Keep-Alive"} {
			want(t, fmt.Sprintf("103 #%d %s", i, name), h.Values(name))
		}
	}
	want(t, "final Set-Cookie", got.final.Header.Values("Set-Cookie"), "app=1; Path=/")
	want(t, "final Link", got.final.Header.Values("Link"))
}

// The headers the gateway set before forwarding (a renewed session cookie, Connection:
// close) belong to the final response, not to an upstream's 1xx, and survive it.
func TestEarlyHintsKeepTheGatewaysHeaders(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(map[bool]string{false: "standard", true: "fast"}[fast], func(t *testing.T) { testEarlyHintsKeepTheGatewaysHeaders(t, fast) })
	}
}

func testEarlyHintsKeepTheGatewaysHeaders(t *testing.T, fast bool) {
	got := getWithHints(t, fast, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Set-Cookie", "gh_session=renewed; Path=/; Secure; HttpOnly")
		w.Header().Set("X-Gateway", "1")
	})
	if len(got.hints) != 2 {
		t.Fatalf("%d informational responses, want 2", len(got.hints))
	}
	for i, h := range got.hints {
		want(t, fmt.Sprintf("103 #%d Set-Cookie", i), http.Header(h).Values("Set-Cookie"), "hint="+fmt.Sprint(i)+"; Path=/")
		want(t, fmt.Sprintf("103 #%d X-Gateway", i), http.Header(h).Values("X-Gateway"))
	}
	want(t, "final Set-Cookie", got.final.Header.Values("Set-Cookie"), "gh_session=renewed; Path=/; Secure; HttpOnly", "app=1; Path=/")
	want(t, "final X-Gateway", got.final.Header.Values("X-Gateway"), "1")
}

func TestTrailers(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "payload")
		w.Header().Set("X-Checksum", "c0ffee")
	}))
	g := startGateway(t, newProxy(t, upstream.Config{}), upstream.Forward{Target: &upstream.Target{Name: "/", Prefix: "/", URL: up}}, nil)
	resp, body := g.get(t, "/")
	if body != "payload" {
		t.Errorf("body %q", body)
	}
	want(t, "trailer X-Checksum", resp.Trailer.Values("X-Checksum"), "c0ffee")
}

// A server-sent-events response reaches the browser event by event on both paths: the
// upstream sends one event and then holds the stream open until the test has that event
// at the client, so only a flush all the way through brings it. Chunked (net/http's way)
// and close-delimited (an HTTP/1.0-style server's) streams.
func TestStreamFlushed(t *testing.T) {
	t.Parallel()
	upstreams := map[string]func(t *testing.T, release <-chan struct{}) *url.URL{
		"chunked": func(t *testing.T, release <-chan struct{}) *url.URL {
			return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: one\n\n")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: two\n\n")
			}))
		},
		"close-delimited": func(t *testing.T, release <-chan struct{}) *url.URL {
			return rawStreamUpstream(t, release)
		},
	}
	for _, transport := range []string{"standard", "fast"} {
		for kind, start := range upstreams {
			t.Run(transport+"/"+kind, func(t *testing.T) {
				t.Parallel()
				release := make(chan struct{})
				releaseOnce := sync.OnceFunc(func() { close(release) })
				up := start(t, release)
				t.Cleanup(releaseOnce) // before the upstream closes: it waits for its handlers
				target := &upstream.Target{Name: "/", Prefix: "/", URL: up, Fast: transport == "fast"}
				g := startGateway(t, newProxy(t, upstream.Config{}), upstream.Forward{Target: target}, nil)
				resp, err := g.client.Get(g.URL + "/events")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				first := make(chan string, 1)
				go func() {
					line, _ := br.ReadString('\n')
					first <- line
				}()
				select {
				case line := <-first:
					if line != "data: one\n" {
						t.Fatalf("first line %q", line)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("no event at the client after 3 s while the upstream holds the stream open: the proxy buffers it")
				}
				if line, _ := br.ReadString('\n'); line != "\n" {
					t.Fatalf("the first event ends with %q", line)
				}
				releaseOnce()
				if event := readEvent(t, br); event != "data: two" {
					t.Fatalf("second event %q", event)
				}
			})
		}
	}
}

// rawStreamUpstream answers with an event stream delimited by the connection's close, as
// a server without chunked encoding does: one event, then the rest once release closes.
func rawStreamUpstream(t *testing.T, release <-chan struct{}) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: one\n\n")
		<-release
		io.WriteString(c, "data: two\n\n")
	})
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v (so far %q)", err, lines)
		}
		if line == "\n" {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("pong: " + line)
		brw.Flush()
	}))
	// A timeout bounds the wait for the 101 only, not the connection's life.
	target := &upstream.Target{Name: "/ws", Prefix: "/ws", URL: up, Timeout: 200 * time.Millisecond}
	g := startGateway(t, newProxy(t, upstream.Config{}), upstream.Forward{Target: target}, nil)

	gw, _ := url.Parse(g.URL)
	conn, err := net.Dial("tcp", gw.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", gw.Host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("handshake answered %d, Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	time.Sleep(target.Timeout + 100*time.Millisecond)
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); line != "pong: ping\n" {
		t.Fatalf("read %q, %v; want %q", line, err, "pong: ping\n")
	}
}

// secret is in the query of every failing request; no error may show it.
const secret = "fake-s3cret-0123"

// failure is one way a forward fails.
type failure struct {
	name    string
	kind    error
	status  int              // what the default ErrorHandler sends
	handler http.HandlerFunc // the upstream's; nil for none listening
	timeout time.Duration
	maxBody int64 // when > 0, the gateway limits the request body to this
	leave   bool  // the browser goes away once the upstream has the request
}

// hang blocks until the proxy gives up on the request. It reads the body first: only
// then does the server watch the connection and cancel r's context when it closes.
func hang(_ http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

var failures = []failure{
	{name: "unreachable", kind: upstream.ErrUnreachable, status: http.StatusBadGateway},
	{name: "timeout", kind: upstream.ErrTimeout, status: http.StatusGatewayTimeout, handler: hang, timeout: 50 * time.Millisecond},
	{name: "body too large", kind: upstream.ErrBodyTooLarge, status: http.StatusRequestEntityTooLarge, maxBody: 16,
		handler: func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }},
	{name: "client gone", kind: upstream.ErrClientGone, status: 499, handler: hang, leave: true},
}

type outcome struct {
	status int    // the browser's, 0 when it left
	body   string // the browser's
	served int    // as the gateway's wrapper saw it
}

// provoke makes a forward fail as c says.
func provoke(t *testing.T, c failure, cfg upstream.Config) outcome {
	t.Helper()
	up := closedURL(t)
	arrived := make(chan struct{})
	if c.handler != nil {
		once := sync.OnceFunc(func() { close(arrived) })
		up = startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			once()
			c.handler(w, r)
		}))
	}
	target := &upstream.Target{Name: "/api/", Prefix: "/api/", URL: up, Timeout: c.timeout}
	g := startGateway(t, newProxy(t, cfg), upstream.Forward{Target: target, Token: "upstream-token", ClientIP: "192.0.2.1"},
		func(w http.ResponseWriter, r *http.Request) {
			if c.maxBody > 0 {
				r.Body = http.MaxBytesReader(w, r.Body, c.maxBody)
			}
		})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/api/users/42?access_token="+secret,
		strings.NewReader(strings.Repeat("x", 1024)))
	if err != nil {
		t.Fatal(err)
	}
	var o outcome
	if c.leave {
		go func() {
			if resp, err := g.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream got no request")
		}
		cancel()
	} else {
		resp, body := g.do(t, req)
		o.status, o.body = resp.StatusCode, body
	}
	select {
	case o.served = <-g.status:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway did not finish")
	}
	return o
}

func TestErrorHandler(t *testing.T) {
	kinds := []error{upstream.ErrUnreachable, upstream.ErrTimeout, upstream.ErrBodyTooLarge, upstream.ErrClientGone}
	for _, c := range failures {
		t.Run(c.name, func(t *testing.T) {
			type call struct {
				r   *http.Request
				err error
			}
			calls := make(chan call, 2)
			o := provoke(t, c, upstream.Config{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				calls <- call{r, err}
				w.WriteHeader(http.StatusTeapot)
				io.WriteString(w, "rendered")
			}})
			if !c.leave && (o.status != http.StatusTeapot || o.body != "rendered") {
				t.Errorf("browser got %d %q, want the ErrorHandler's response", o.status, o.body)
			}
			if o.served != http.StatusTeapot {
				t.Errorf("gateway served %d, want the ErrorHandler's 418", o.served)
			}
			got := <-calls
			if len(calls) > 0 {
				t.Error("ErrorHandler called more than once")
			}
			for _, k := range kinds {
				if errors.Is(got.err, k) != (k == c.kind) {
					t.Errorf("errors.Is(%v, %v) = %t", got.err, k, !(k == c.kind))
				}
			}
			var e *upstream.Error
			if !errors.As(got.err, &e) {
				t.Fatalf("err is %T, want *upstream.Error", got.err)
			}
			if e.Target != "/api/" || e.Cause == "" {
				t.Errorf("Target %q, Cause %q; want the target's name and a cause", e.Target, e.Cause)
			}
			msg := got.err.Error()
			for _, leak := range []string{secret, "access_token", "/users/42", "http://"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q shows %q from the request URL", msg, leak)
				}
			}
			// The handler gets the browser's request, not the outbound one with the token.
			if got.r.URL.Path != "/api/users/42" || got.r.Header.Get("Authorization") != "" {
				t.Errorf("ErrorHandler got request %s with Authorization %q, want the inbound one", got.r.URL.Path, got.r.Header.Get("Authorization"))
			}
		})
	}
}

func TestDefaultErrorStatus(t *testing.T) {
	for _, c := range failures {
		t.Run(c.name, func(t *testing.T) {
			o := provoke(t, c, upstream.Config{})
			if o.served != c.status {
				t.Errorf("gateway served %d, want %d", o.served, c.status)
			}
			if !c.leave && (o.status != c.status || o.body != "") {
				t.Errorf("browser got %d %q, want %d and no body", o.status, o.body, c.status)
			}
		})
	}
}

func TestErrorCauseHasNoURL(t *testing.T) {
	tests := []struct {
		name string
		err  func(u *url.URL) error
	}{
		{"url.Error", func(u *url.URL) error {
			return &url.Error{Op: "Post", URL: u.String(), Err: errors.New("connection reset by peer")}
		}},
		{"wrapped url.Error", func(u *url.URL) error {
			return fmt.Errorf("after 3 attempts: %w", &url.Error{Op: "Post", URL: u.String(), Err: errors.New("connection reset by peer")})
		}},
		{"nested url.Error", func(u *url.URL) error {
			return &url.Error{Op: "Post", URL: u.String(), Err: &url.Error{Op: "Post", URL: u.String(), Err: errors.New("connection reset by peer")}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 1)
			p := newProxy(t, upstream.Config{
				Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, tc.err(r.URL) }),
				ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
					errs <- err
					w.WriteHeader(http.StatusBadGateway)
				},
			})
			target := &upstream.Target{Name: "/api/", Prefix: "/api/", URL: &url.URL{Scheme: "http", Host: "upstream.test"}}
			g := startGateway(t, p, upstream.Forward{Target: target}, nil)
			g.get(t, "/api/users/42?access_token="+secret)
			err := <-errs
			var e *upstream.Error
			if !errors.As(err, &e) || !errors.Is(err, upstream.ErrUnreachable) {
				t.Fatalf("got %v, want an *upstream.Error of kind ErrUnreachable", err)
			}
			if e.Cause != "connection reset by peer" {
				t.Errorf("Cause %q, want the transport's cause alone", e.Cause)
			}
			if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, "upstream.test") {
				t.Errorf("error %q shows the URL", msg)
			}
		})
	}
}

func TestTimeoutBoundsOnlyHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		select {
		case <-time.After(400 * time.Millisecond): // twice the target's timeout
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow body")
	}))
	errs := make(chan error, 1)
	p := newProxy(t, upstream.Config{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		errs <- err
		w.WriteHeader(http.StatusTeapot)
	}})
	target := &upstream.Target{Name: "/", Prefix: "/", URL: up, Timeout: 200 * time.Millisecond}
	g := startGateway(t, p, upstream.Forward{Target: target}, nil)
	resp, body := g.get(t, "/")
	if resp.StatusCode != http.StatusOK || body != "slow body" {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, "slow body")
	}
	select {
	case err := <-errs:
		t.Errorf("ErrorHandler called with %v", err)
	default:
	}
}

// BenchmarkServe counts what one forward allocates, the upstream's side included.
func BenchmarkServe(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	u, err := url.Parse(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	p := upstream.New(upstream.Config{Logger: slog.New(slog.DiscardHandler)})
	for _, bc := range []struct {
		name    string
		timeout time.Duration
	}{{"NoTimeout", 0}, {"Timeout", time.Minute}} {
		f := upstream.Forward{Target: &upstream.Target{Name: "/api/", Prefix: "/api/", URL: u, Timeout: bc.timeout},
			Token: "tok", Path: "/api/x", ClientIP: "192.0.2.1"}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "http://gw.test/api/x?q=1", nil)
				w := httptest.NewRecorder()
				p.Serve(w, r, f)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

func TestCheckHeaderRules(t *testing.T) {
	strip, keep := upstream.CheckHeaderRules(
		[]string{"X-Tenant", "X-Debug-*", "x-lower", "", "*", "X-*-Role", "Bad Header", "X-A:b"},
		[]string{"Remote-User", "X-Amzn-Oidc-*", "X-Tenant", "X-Debug-Role", "X-*", "X-Forwarded-User", "X-Http-Method-Override",
			"x_original_method", "Accept-Language", "X-Userx", ""})
	want(t, "strip problems", strip,
		`"" is not a header name or a prefix of one followed by *`,
		`"*" is not a header name or a prefix of one followed by *`,
		`"X-*-Role" is not a header name or a prefix of one followed by *`,
		`"Bad Header" is not a header name or a prefix of one followed by *`,
		`"X-A:b" is not a header name or a prefix of one followed by *`)
	want(t, "keep problems", keep,
		`"X-*" is a forwarding or method/path override header, which is always removed`,
		`"X-Forwarded-User" is a forwarding or method/path override header, which is always removed`,
		`"X-Http-Method-Override" is a forwarding or method/path override header, which is always removed`,
		`"x_original_method" is a forwarding or method/path override header, which is always removed`,
		`"Accept-Language" is not removed anyway (it is not in the strip list)`,
		`"X-Userx" is not removed anyway (it is not in the strip list)`,
		`"" is not a header name or a prefix of one followed by *`)
	if s, k := upstream.CheckHeaderRules(nil, upstream.DefaultStripHeaders()); len(s)+len(k) != 0 {
		t.Errorf("the default list cannot be kept: %q %q", s, k)
	}
}
