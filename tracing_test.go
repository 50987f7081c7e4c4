package gatehouse_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/otlptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// traceEnv is a gateway whose TracerProvider exports over real OTLP/HTTP, through the
// SDK's batch span processor, to a receiver that decodes the collector's protobuf.
type traceEnv struct {
	*env
	rc     *otlptest.Receiver
	tp     *sdktrace.TracerProvider
	up     *traceUpstream
	access *testutil.SyncBuffer
}

// traceUpstream records the trace headers of every request it gets.
type traceUpstream struct {
	mu  sync.Mutex
	got []http.Header
	srv *httptest.Server
}

func (u *traceUpstream) all() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.got)
}

func (u *traceUpstream) last(t *testing.T) http.Header {
	t.Helper()
	all := u.all()
	if len(all) == 0 {
		t.Fatal("the upstream got no request")
	}
	return all[len(all)-1]
}

func newTraceEnv(t *testing.T, mutate ...func(*gatehouse.Config)) *traceEnv {
	t.Helper()
	return newTraceEnvSampler(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), mutate...)
}

func newTraceEnvSampler(t *testing.T, sampler sdktrace.Sampler, mutate ...func(*gatehouse.Config)) *traceEnv {
	t.Helper()
	te := &traceEnv{rc: otlptest.New(t), up: &traceUpstream{}, access: &testutil.SyncBuffer{}}
	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(te.rc.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	te.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond)))
	t.Cleanup(func() { te.tp.Shutdown(context.Background()) })
	te.up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.up.mu.Lock()
		h := r.Header.Clone()
		h.Set("X-Test-Query", r.URL.RawQuery) // what the upstream got, not what the span says
		te.up.got = append(te.up.got, h)
		te.up.mu.Unlock()
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(te.up.srv.Close)
	te.env = newEnv(t, append([]func(*gatehouse.Config){func(c *gatehouse.Config) {
		c.TracerProvider = te.tp
		c.Routes = []gatehouse.Route{{Path: "/api/", Upstream: te.up.srv.URL}, {Path: "/open/", Upstream: te.up.srv.URL, Token: gatehouse.TokenNone}}
		c.AccessLogger = slog.New(slog.NewJSONHandler(te.access, nil))
	}}, mutate...)...)
	return te
}

// flush exports every span ended so far and returns all the receiver holds.
func (te *traceEnv) flush() []otlptest.Span {
	te.t.Helper()
	if err := te.tp.ForceFlush(te.t.Context()); err != nil {
		te.t.Fatal(err)
	}
	return te.rc.Spans()
}

// one returns the only span called name, failing otherwise.
func one(t *testing.T, spans []otlptest.Span, name string) otlptest.Span {
	t.Helper()
	got := otlptest.Named(spans, name)
	if len(got) != 1 {
		t.Fatalf("%d spans named %q, want 1; received:\n%s", len(got), name, otlptest.Dump(spans))
	}
	return got[0]
}

func wantAttrs(t *testing.T, s otlptest.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attrs[k]; !ok || got != v {
			t.Errorf("%q: %s = %q (set %v), want %q", s.Name, k, got, ok, v)
		}
	}
}

// childOf returns the only child of parent called name.
func childOf(t *testing.T, spans []otlptest.Span, parent otlptest.Span, name string) otlptest.Span {
	t.Helper()
	var got []otlptest.Span
	for _, s := range otlptest.Named(spans, name) {
		if s.ParentID == parent.SpanID {
			got = append(got, s)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d children of %q named %q, want 1; received:\n%s", len(got), parent.Name, name, otlptest.Dump(spans))
	}
	return got[0]
}

func childrenOf(spans []otlptest.Span, parent otlptest.Span, name string) []otlptest.Span {
	var got []otlptest.Span
	for _, s := range otlptest.Named(spans, name) {
		if s.ParentID == parent.SpanID {
			got = append(got, s)
		}
	}
	return got
}

// traceparent parses a W3C traceparent header into its trace and parent span ids.
func traceparent(t *testing.T, h string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(h, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q is not a W3C trace context", h)
	}
	return parts[1], parts[2]
}

// The whole life of a session, traced: login, callback (code exchange, userinfo), an API
// call through a route, logout (revocation). Each request is one server span with its
// flow's spans below it; the provider and the upstream see the trace in traceparent,
// and nothing exported holds a secret.
func TestTracingSpanTree(t *testing.T) {
	// Both upstream paths make the upstream's client span and carry its traceparent.
	for _, mode := range []gatehouse.TransportMode{gatehouse.TransportStandard, gatehouse.TransportFast} {
		t.Run(string(mode), func(t *testing.T) { testTracingSpanTree(t, mode) })
	}
}

func testTracingSpanTree(t *testing.T, mode gatehouse.TransportMode) {
	te := newTraceEnv(t, func(c *gatehouse.Config) { c.UpstreamTransportMode = mode })
	b := te.browser()
	loc := b.startLogin("/app")
	cb, _ := url.Parse(loc)
	state := cb.Query().Get("state")
	wantStatus(t, b.get(loc, "Sec-Fetch-Mode", "navigate"), 200)
	const querySecret = "q-secret-d41d8cd98f00"
	r := b.do("GET", "/api/orders?access_key="+querySecret, nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin")
	wantStatus(t, r, 200)
	cookie := b.cookie("__Host-gatehouse")
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	upHeader := te.up.last(t)
	sid, _ := decode(t, b.api("GET", "/bff/user"))["sid"].(string)
	other := b.api("DELETE", "/bff/sessions/"+sid+"x") // another session's handle in the path
	wantStatus(t, b.api("POST", "/bff/logout"), 200)
	spans := te.flush()

	// Login.
	loginReq := one(t, spans, "GET /bff/login")
	if loginReq.Kind != tracepb.Span_SPAN_KIND_SERVER || loginReq.ParentID != "" {
		t.Errorf("login request span: kind %v parent %q, want a server root", loginReq.Kind, loginReq.ParentID)
	}
	wantAttrs(t, loginReq, map[string]string{
		"http.request.method": "GET", "http.route": "/bff/login", "url.path": "/bff/login",
		"gatehouse.route.kind": "bff", "gatehouse.frontend": "default", "http.response.status_code": "302",
		"client.address": "127.0.0.1",
	})
	if loginReq.Attrs["gatehouse.request_id"] == "" {
		t.Error("the request span has no gatehouse.request_id")
	}
	login := childOf(t, spans, loginReq, "login")
	childOf(t, spans, login, "session.store set") // the flow record

	// Callback: code exchange with the token request and userinfo below it.
	cbReq := one(t, spans, "GET /bff/callback")
	callback := childOf(t, spans, cbReq, "callback")
	exchange := childOf(t, spans, callback, "code_exchange")
	tokenCall := childOf(t, spans, exchange, "provider token")
	userinfo := childOf(t, spans, exchange, "provider userinfo")
	for _, s := range []otlptest.Span{tokenCall, userinfo} {
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("%q kind %v, want client", s.Name, s.Kind)
		}
		if s.Attrs["http.response.status_code"] != "200" {
			t.Errorf("%q status %q", s.Name, s.Attrs["http.response.status_code"])
		}
	}
	childOf(t, spans, callback, "session.store set_indexed")
	// The provider saw the trace: the last userinfo request's traceparent names the span.
	tid, sid := traceparent(t, te.idp.LastHeader("/userinfo", "Traceparent"))
	if tid != userinfo.TraceID || sid != userinfo.SpanID {
		t.Errorf("provider's traceparent %s/%s, want the userinfo span %s/%s", tid, sid, userinfo.TraceID, userinfo.SpanID)
	}
	if tid, _ := traceparent(t, te.idp.LastHeader("/token", "Traceparent")); tid != cbReq.TraceID {
		t.Errorf("token request's trace %s, want the callback's %s", tid, cbReq.TraceID)
	}

	// The API call: a route span, the session lookup, the upstream call.
	apiReq := one(t, spans, "GET /api/")
	wantAttrs(t, apiReq, map[string]string{"http.route": "/api/", "gatehouse.route.kind": "route", "url.path": "/api/orders",
		"http.response.status_code": "200", "gatehouse.frontend": "default"})
	if gets := childrenOf(spans, apiReq, "session.store get"); len(gets) == 0 {
		t.Error("the session lookup has no store span")
	}
	up := childOf(t, spans, apiReq, "upstream GET")
	if up.Kind != tracepb.Span_SPAN_KIND_CLIENT || up.Attrs["url.full"] != te.up.srv.URL+"/api/orders" {
		t.Errorf("upstream span: kind %v url.full %q, want client and the URL without its query", up.Kind, up.Attrs["url.full"])
	}
	if q := upHeader.Get("X-Test-Query"); q != "access_key="+querySecret {
		t.Errorf("the upstream got the query %q: hiding it from the span lost it", q)
	}
	tid, sid = traceparent(t, upHeader.Get("Traceparent"))
	if tid != up.TraceID || sid != up.SpanID {
		t.Errorf("upstream's traceparent %s/%s, want the upstream span %s/%s", tid, sid, up.TraceID, up.SpanID)
	}
	// The access line of the API call names its trace.
	var apiLine map[string]any
	for _, l := range jsonLines(t, te.access.String()) {
		if l["path"] == "/api/orders" {
			apiLine = l
		}
	}
	if apiLine == nil || apiLine["trace_id"] != apiReq.TraceID || apiLine["request_id"] != apiReq.Attrs["gatehouse.request_id"] {
		t.Errorf("access line %v, want trace_id %s and request_id %s", apiLine, apiReq.TraceID, apiReq.Attrs["gatehouse.request_id"])
	}

	// A session's handle in the path is not exported.
	del := one(t, spans, "DELETE /bff/sessions/{sid}")
	wantAttrs(t, del, map[string]string{"url.path": "/bff/sessions/{sid}", "http.route": "/bff/sessions/{sid}",
		"http.response.status_code": strconv.Itoa(other.StatusCode)})

	// Logout: the revocation at the provider.
	logoutReq := one(t, spans, "POST /bff/logout")
	logout := childOf(t, spans, logoutReq, "logout")
	revocation := childOf(t, spans, logout, "revocation")
	childOf(t, spans, revocation, "provider revocation")
	if tid, _ := traceparent(t, te.idp.LastHeader("/revoke", "Traceparent")); tid != logoutReq.TraceID {
		t.Errorf("revocation request's trace %s, want the logout's %s", tid, logoutReq.TraceID)
	}

	// Every request is its own trace: nobody's traceparent was trusted.
	traces := map[string]bool{}
	for _, s := range []otlptest.Span{loginReq, cbReq, apiReq, logoutReq} {
		traces[s.TraceID] = true
	}
	if len(traces) != 4 {
		t.Errorf("the four requests are in %d traces, want 4", len(traces))
	}

	if sid == "" {
		t.Fatal("/bff/user has no sid")
	}
	secrets := append(te.idp.IssuedSecrets(), cookie.Value, state, querySecret, "access_key", te.idp.ClientSecret, sid)
	for _, c := range b.c.Jar.Cookies(mustURL(strings.Replace(te.url, "http:", "https:", 1))) {
		secrets = append(secrets, c.Value)
	}
	leakCheck(t, spans, secrets)
}

// leakCheck fails when any value exported (names, attributes, events, links, status,
// resource) holds a secret, or when a span records a query or a header.
func leakCheck(t *testing.T, spans []otlptest.Span, secrets []string) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatal("no spans to check")
	}
	for _, l := range otlptest.Leaks(spans, secrets) {
		t.Error(l)
	}
}

// Concurrent requests of one session needing a refresh make one leader refresh span,
// with the provider's token request below it, and follower spans that only waited.
func TestTracingSingleFlightRefresh(t *testing.T) {
	te := newTraceEnv(t)
	te.idp.Set(func(k *idptest.Knobs) {
		k.AccessTokenTTL = time.Minute
		k.RotateRefresh = true
		k.TokenDelay = 300 * time.Millisecond // all the requests arrive while the leader waits
	})
	b := te.browser()
	b.login()
	te.clock.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", te.url+"/api/burst", nil)
			req.Header.Set("X-CSRF", "1")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if got := te.idp.Count("refresh_token"); got != 1 {
		t.Fatalf("%d refreshes at the provider, want 1", got)
	}
	spans := te.flush()
	var leaders, followers []otlptest.Span
	for _, s := range otlptest.Named(spans, "refresh") {
		switch s.Attrs["gatehouse.single_flight"] {
		case "leader":
			leaders = append(leaders, s)
		case "follower":
			followers = append(followers, s)
		default:
			t.Errorf("refresh span with single_flight %q", s.Attrs["gatehouse.single_flight"])
		}
		if p, ok := otlptest.ByID(spans, s.ParentID); !ok || p.Name != "GET /api/" {
			t.Errorf("refresh span's parent is %q, want the request's span", p.Name)
		}
	}
	if len(leaders) != 1 || len(followers) == 0 || len(leaders)+len(followers) != 8 {
		t.Fatalf("%d leader and %d follower refresh spans, want 1 and 7:\n%s", len(leaders), len(followers), otlptest.Dump(spans))
	}
	// The token request, and the store's lock and save, are the leader's.
	var refreshCalls []otlptest.Span
	for _, s := range otlptest.Named(spans, "provider token") {
		if s.TraceID == leaders[0].TraceID {
			refreshCalls = append(refreshCalls, s)
		}
	}
	if len(refreshCalls) != 1 || !slices.Contains(otlptest.Ancestors(spans, refreshCalls[0]), "refresh") {
		t.Errorf("the refresh's token request is not below the leader's refresh span:\n%s", otlptest.Dump(spans))
	}
	for _, f := range followers {
		for _, s := range spans {
			if s.ParentID == f.SpanID {
				t.Errorf("follower refresh span has a child %q: only the leader works", s.Name)
			}
		}
	}
	leakCheck(t, spans, append(te.idp.IssuedSecrets(), b.cookie("__Host-gatehouse").Value))
}

// An inbound traceparent is honoured only from trusted_proxies: anyone else's request
// starts a new trace, and its traceparent and tracestate do not reach the upstream.
func TestTracingInboundTraceparent(t *testing.T) {
	const inTrace, inSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	in := "00-" + inTrace + "-" + inSpan + "-01"
	for _, trusted := range []bool{false, true} {
		t.Run(map[bool]string{false: "untrusted", true: "trusted"}[trusted], func(t *testing.T) {
			te := newTraceEnv(t, func(c *gatehouse.Config) {
				if trusted {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			})
			b := te.browser()
			wantStatus(t, b.do("GET", "/open/x", nil, "X-CSRF", "1", "traceparent", in, "tracestate", "evil=1"), 200)
			spans := te.flush()
			req := one(t, spans, "GET /open/")
			up := childOf(t, spans, req, "upstream GET")
			h := te.up.last(t)
			tid, sid := traceparent(t, h.Get("Traceparent"))
			if tid != up.TraceID || sid != up.SpanID {
				t.Errorf("upstream's traceparent %s/%s, want the upstream span %s/%s", tid, sid, up.TraceID, up.SpanID)
			}
			if trusted {
				if req.TraceID != inTrace || req.ParentID != inSpan {
					t.Errorf("from a trusted proxy: trace %s parent %s, want %s %s", req.TraceID, req.ParentID, inTrace, inSpan)
				}
				if h.Get("Tracestate") != "evil=1" {
					t.Errorf("a trusted proxy's tracestate %q was not carried on", h.Get("Tracestate"))
				}
				return
			}
			if req.TraceID == inTrace || req.ParentID != "" {
				t.Errorf("from an untrusted client: trace %s parent %q, want a new root", req.TraceID, req.ParentID)
			}
			if v := h.Get("Tracestate"); v != "" {
				t.Errorf("an untrusted tracestate reached the upstream: %q", v)
			}
		})
	}
}

// A request whose trace is not sampled records nothing, and carries the trace context on
// with the decision, so that the upstream does not sample it either.
func TestTracingUnsampled(t *testing.T) {
	const inTrace, inSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	te := newTraceEnvSampler(t, sdktrace.ParentBased(sdktrace.NeverSample()), func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	b := te.browser()
	wantStatus(t, b.do("GET", "/open/x?k=v", nil, "X-CSRF", "1", "traceparent", "00-"+inTrace+"-"+inSpan+"-00"), 200)
	h := te.up.last(t)
	tp := h.Get("Traceparent")
	if tid, _ := traceparent(t, tp); tid != inTrace || !strings.HasSuffix(tp, "-00") {
		t.Errorf("upstream got traceparent %q, want trace %s, not sampled", tp, inTrace)
	}
	if q := h.Get("X-Test-Query"); q != "k=v" {
		t.Errorf("upstream got the query %q", q)
	}
	wantStatus(t, b.do("GET", "/open/y", nil, "X-CSRF", "1"), 200)
	if tp := te.up.last(t).Get("Traceparent"); !strings.HasSuffix(tp, "-00") {
		t.Errorf("a new unsampled trace: upstream got traceparent %q", tp)
	}
	if spans := te.flush(); len(spans) != 0 {
		t.Errorf("%d spans exported, want none:\n%s", len(spans), otlptest.Dump(spans))
	}
}

// The gateway's own client-credentials token is fetched under a client_credentials span.
func TestTracingClientCredentials(t *testing.T) {
	te := newTraceEnv(t, func(c *gatehouse.Config) {
		c.Routes = append(c.Routes, gatehouse.Route{Path: "/client/", Upstream: te0URL(c), Token: gatehouse.TokenClient})
	})
	b := te.browser()
	wantStatus(t, b.do("GET", "/client/x", nil, "X-CSRF", "1"), 200)
	spans := te.flush()
	req := one(t, spans, "GET /client/")
	cc := childOf(t, spans, req, "client_credentials")
	wantAttrs(t, cc, map[string]string{"gatehouse.single_flight": "leader"})
	childOf(t, spans, cc, "provider token")
	leakCheck(t, spans, te.idp.IssuedSecrets())
}

// te0URL is the upstream of the first route newTraceEnv configured.
func te0URL(c *gatehouse.Config) string { return c.Routes[0].Upstream }

// Tracing on, a failing upstream call is an error span, and its server span says 502.
func TestTracingUpstreamDown(t *testing.T) {
	te := newTraceEnv(t)
	te.up.srv.Close()
	b := te.browser()
	wantStatus(t, b.do("GET", "/open/x?token=abcdef123456", nil, "X-CSRF", "1"), 502)
	spans := te.flush()
	req := one(t, spans, "GET /open/")
	if req.StatusCode != tracepb.Status_STATUS_CODE_ERROR || req.Attrs["error.type"] != "502" {
		t.Errorf("request span status %v error.type %q, want an error and 502", req.StatusCode, req.Attrs["error.type"])
	}
	up := childOf(t, spans, req, "upstream GET")
	if up.StatusCode != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("upstream span status %v, want an error", up.StatusCode)
	}
	leakCheck(t, spans, []string{"abcdef123456"})
}

// discardExporter drops spans, so that BenchmarkProxyTracing measures making and
// batching them, not a network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkProxyTracing is BenchmarkProxy's authenticated call with tracing on: every
// request sampled (server span, store span, upstream client span, traceparent), and none
// sampled (the spans are made but not recorded). Against BenchmarkProxy's
// gatehouse=user-token it is the cost of tracing per request; see docs/operations.md.
func BenchmarkProxyTracing(b *testing.B) {
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{{"sampled", sdktrace.AlwaysSample()}, {"unsampled", sdktrace.NeverSample()}} {
		b.Run("gatehouse=user-token,tracing="+c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler), sdktrace.WithBatcher(discardExporter{}))
			defer tp.Shutdown(context.Background())
			gw, cookie, public := benchGatewayWith(b, staticUpstream{}, "http://upstream.invalid", func(cfg *gatehouse.Config) { cfg.TracerProvider = tp })
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				gw.ServeHTTP(rec, apiRequest(public+"/api/orders", cookie))
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
