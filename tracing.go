package gatehouse

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse-bff/gatehouse/session"
)

// Tracing (Config.TracerProvider). With no provider nothing here runs: no handler or
// transport is wrapped and the request path pays one nil check. With one, ServeHTTP
// makes a server span per request, the flows make child spans (login, callback,
// code_exchange, refresh, revocation, session.store …), and the provider's and the
// upstreams' transports are wrapped by otelhttp, which makes their client spans and
// sends the W3C traceparent. No span carries a cookie, a token, a code, a state or a
// query string: the server span's attributes are chosen here, and the client spans'
// url.full is recorded without its query (hideQuery).
//
// The server span is not otelhttp's handler: that handler takes client.address from any
// X-Forwarded-For and trusts any inbound traceparent, and it is named before the route
// is known. Here the attributes use the same semantic-convention names, the client is
// the address after trusted_proxies, and an inbound trace context is honoured only from
// a trusted proxy; anyone else's request starts a new trace, and its traceparent and
// tracestate are not forwarded.

// tracerName is the instrumentation scope of Gatehouse's own spans.
const tracerName = "github.com/gatehouse-bff/gatehouse"

// defaultFrontendName is the gatehouse.frontend attribute and the access log's frontend
// of a gateway of one app (Config.Name empty).
const defaultFrontendName = "default"

// frontendLabel is the app's name in spans and the access log.
func (g *Gateway) frontendLabel() string {
	if g.name == "" {
		return defaultFrontendName
	}
	return g.name
}

// Span attribute keys of Gatehouse's own.
const (
	attrFrontend     = attribute.Key("gatehouse.frontend")
	attrKind         = attribute.Key("gatehouse.route.kind")
	attrRequestID    = attribute.Key("gatehouse.request_id")
	attrSingleFlight = attribute.Key("gatehouse.single_flight")
	attrStoreOp      = attribute.Key("db.operation.name")
)

// noSpan is what startSpan returns when tracing is off: ending it does nothing.
var noSpan = trace.SpanFromContext(context.Background())

// tracing is the Gateway's tracing state; the zero value is off.
type tracing struct {
	tracer     trace.Tracer // nil: off
	propagator propagation.TextMapPropagator
	fields     []string          // the propagator's headers, canonical: dropped from untrusted requests
	storeSpans map[string]string // span name by store operation
	// wrapProvider traces the requests of a provider's own transport (one with its TLS
	// client certificate); nil when tracing is off.
	wrapProvider func(http.RoundTripper) http.RoundTripper
}

// setupTracing turns tracing on when cfg has a TracerProvider: it wraps the provider's
// transport (returned), returns the wrapper of what carries the upstream requests (over
// both upstream paths, so that the fast one is traced too; nil when tracing is off), and
// hooks the session store operations.
func (g *Gateway) setupTracing(cfg Config, provider http.RoundTripper) (http.RoundTripper, func(http.RoundTripper) http.RoundTripper) {
	tp := cfg.TracerProvider
	if tp == nil {
		return provider, nil
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	g.tracing = tracing{tracer: tp.Tracer(tracerName, trace.WithInstrumentationVersion(Version)), propagator: prop,
		storeSpans: map[string]string{}}
	for _, f := range prop.Fields() {
		g.tracing.fields = append(g.tracing.fields, http.CanonicalHeaderKey(f))
	}
	for _, op := range session.Ops() {
		g.tracing.storeSpans[op] = "session.store " + op
	}
	opts := func(name func(*http.Request) string) []otelhttp.Option {
		return []otelhttp.Option{
			otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop),
			otelhttp.WithMeterProvider(noop.NewMeterProvider()), // metrics are Prometheus' (metrics.go)
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return name(r) }),
		}
	}
	g.tracing.wrapProvider = func(rt http.RoundTripper) http.RoundTripper {
		return tracedTransport{base: rt, prop: prop, otel: otelhttp.NewTransport(withQuery{rt},
			opts(func(r *http.Request) string { return "provider " + g.providerEndpointName(r.URL) })...)}
	}
	provider = g.tracing.wrapProvider(provider)
	wrapUpstream := func(rt http.RoundTripper) http.RoundTripper {
		return tracedTransport{base: rt, prop: prop, otel: otelhttp.NewTransport(withQuery{rt},
			opts(func(r *http.Request) string { return "upstream " + spanMethod(r.Method) })...)}
	}
	return provider, wrapUpstream
}

// tracedTransport sends a request through otelhttp (otel), which makes its client span,
// with the query hidden from it. A request of a trace that is not sampled skips otelhttp:
// its span would not be recorded either, and with a sampling ratio that is most requests;
// it only carries the trace context on, so that the upstream follows the decision.
type tracedTransport struct {
	otel http.RoundTripper // otelhttp.Transport over withQuery over base
	base http.RoundTripper
	prop propagation.TextMapPropagator
}

func (t tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if span := trace.SpanFromContext(ctx); !span.IsRecording() && span.SpanContext().IsValid() {
		r2 := r.WithContext(ctx)
		r2.Header = r.Header.Clone()
		t.prop.Inject(ctx, propagation.HeaderCarrier(r2.Header))
		return t.base.RoundTrip(r2)
	}
	return hideQuery{t.otel}.RoundTrip(r)
}

// traceStore records a session store operation as a span of the request that made it.
// Operations outside a recorded span (background sweeps, the end-of-session
// subscription, a request not sampled) are not recorded.
func (g *Gateway) traceStore(ctx context.Context, op string, start, end time.Time, err error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	name, ok := g.tracing.storeSpans[op]
	if !ok {
		name = "session.store " + op
	}
	_, span := g.tracing.tracer.Start(ctx, name, trace.WithTimestamp(start),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrStoreOp.String(op)))
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		span.SetStatus(codes.Error, "store operation failed")
	}
	span.End(trace.WithTimestamp(end))
}

// singleFlight is the gatehouse.single_flight attribute of a refresh: "leader" when this
// request ran it (the provider call is the span's child), "follower" when it waited for
// another request's.
func singleFlight(shared bool) attribute.KeyValue {
	if shared {
		return attrSingleFlight.String("follower")
	}
	return attrSingleFlight.String("leader")
}

// startSpan starts a child span of ctx's when tracing is on. Off, it returns ctx and a
// span whose End does nothing, allocating nothing.
func (g *Gateway) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if g.tracing.tracer == nil {
		return ctx, noSpan
	}
	return g.tracing.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span, marking it failed when err is not nil. The description is the
// error's code and reason when it is one of ours, never its text: that may quote the
// provider.
func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, errorLabel(err))
	}
	span.End()
}

// errorLabel names an error for a span without its text.
func errorLabel(err error) string {
	var he *httpError
	switch {
	case errors.As(err, &he):
		if he.reason != "" {
			return he.code + ":" + he.reason
		}
		return he.code
	case isSessionEnd(err):
		return "session_ended"
	}
	return "error"
}

// startRequest starts the request's server span: a child of the trace context a
// trusted proxy sent, else the root of a new trace (see the comment at the top).
func (g *Gateway) startRequest(r *http.Request) (*http.Request, trace.Span) {
	ctx := r.Context()
	fromTrusted := false
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && g.trusted(ap.Addr().Unmap()) {
		fromTrusted = true
	}
	if fromTrusted {
		ctx = g.tracing.propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	} else {
		for _, f := range g.tracing.fields {
			delete(r.Header, f)
		}
	}
	ctx, span := g.tracing.tracer.Start(ctx, spanMethod(r.Method), trace.WithSpanKind(trace.SpanKindServer))
	return r.WithContext(ctx), span
}

// endRequest names the server span after what served the request, and records its
// outcome. Attributes: method, path (never the query; for /bff/ the endpoint's pattern),
// route, kind, frontend, status, request id and the client's address.
func (g *Gateway) endRequest(span trace.Span, r *http.Request, sw *statusRecorder, kind string) {
	if !span.IsRecording() {
		span.End()
		return
	}
	route := sw.route
	if kind == "bff" {
		if p, ok := requestPath(r); ok {
			route = bffPattern(p)
		}
	}
	name := spanMethod(r.Method)
	switch {
	case route != "":
		name += " " + route
	case kind == "frontend":
		name += " frontend"
	}
	span.SetName(name)
	p := r.URL.Path
	switch {
	case kind == "bff":
		p = route // /bff/sessions/{sid}: a session's handle, which the admin API accepts, is not exported
	case len(p) > maxLoggedPath:
		p = p[:maxLoggedPath] + "…"
	}
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs,
		attribute.String("http.request.method", spanMethod(r.Method)),
		attribute.String("url.path", p),
		attrKind.String(kind),
		attrFrontend.String(g.frontendLabel()),
		attribute.Int("http.response.status_code", sw.status),
		attrRequestID.String(sw.id[0]),
		attribute.String("client.address", g.clientIP(r)),
	)
	if route != "" {
		attrs = append(attrs, attribute.String("http.route", route))
	}
	if sw.status >= 500 {
		attrs = append(attrs, attribute.String("error.type", strconv.Itoa(sw.status)))
		span.SetStatus(codes.Error, "")
	}
	span.SetAttributes(attrs...)
	span.End()
}

// bffPattern is the endpoint pattern of a cleaned /bff/ path ("/bff/sessions/{sid}"), or
// "/bff/*" for a path that is none: a span name never holds a session id or junk.
func bffPattern(p string) string {
	if _, ok := endpoints[p]; ok {
		return p
	}
	if sid, ok := strings.CutPrefix(p, "/bff/sessions/"); ok && sid != "" && !strings.Contains(sid, "/") {
		return "/bff/sessions/{sid}"
	}
	return "/bff/*"
}

// spanMethod is the request's method when it is a standard one, else _OTHER (as the
// semantic conventions say): a client picks the method, and a span name must not hold
// whatever it sent.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// traceID is the trace id of r's span for the access log, or "".
func traceID(r *http.Request) string {
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// hideQuery hides the query of a request from next, an otelhttp.Transport, which puts
// the whole URL in url.full: a query may hold anything the browser put there. withQuery,
// the transport after otelhttp, puts it back before the request goes out.
type hideQuery struct{ next http.RoundTripper }

type queryKey struct{}

func (t hideQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery == "" && !r.URL.ForceQuery {
		return t.next.RoundTrip(r)
	}
	u := *r.URL
	u.RawQuery, u.ForceQuery = "", false
	r2 := r.WithContext(context.WithValue(r.Context(), queryKey{}, r.URL))
	r2.URL = &u
	return t.next.RoundTrip(r2)
}

type withQuery struct{ next http.RoundTripper }

func (t withQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	orig, ok := r.Context().Value(queryKey{}).(*url.URL)
	if !ok {
		return t.next.RoundTrip(r)
	}
	u := *r.URL
	u.RawQuery, u.ForceQuery = orig.RawQuery, orig.ForceQuery
	r2 := r.WithContext(r.Context())
	r2.URL = &u
	return t.next.RoundTrip(r2)
}
