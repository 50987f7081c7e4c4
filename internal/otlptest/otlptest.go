// Package otlptest is an OpenTelemetry collector's trace receiver for tests: an HTTP
// server on 127.0.0.1 that accepts POST /v1/traces with an OTLP protobuf body (gzip or
// not), decodes it with the official collector types, and keeps the spans, so that a test
// can check the span tree an exporter really sent, and every value in it.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions.
type Span struct {
	TraceID, SpanID, ParentID string // hex; ParentID "" for a root
	Name                      string
	Kind                      tracepb.Span_SpanKind
	Attrs                     map[string]string // values as text
	Resource                  map[string]string
	Scope                     string
	StatusCode                tracepb.Status_StatusCode
	StatusMessage             string
	// Values is every string the span carried on the wire: its name, every attribute key
	// and value, event, link, status message, resource attribute and scope, for leak
	// checks.
	Values []string
}

// Receiver is the collector. Safe for concurrent use.
type Receiver struct {
	URL string // base URL: the traces endpoint is URL + "/v1/traces"

	mu       sync.Mutex
	spans    []Span
	headers  []http.Header // of each export request
	problems []string      // malformed exports
}

// New starts a receiver for the test's lifetime. At the end of the test it fails it if
// an export was malformed.
func New(t testing.TB) *Receiver {
	t.Helper()
	rc := &Receiver{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	srv.Start()
	rc.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, p := range rc.problems {
			t.Errorf("otlptest: %s", p)
		}
	})
	return rc
}

func (rc *Receiver) fail(w http.ResponseWriter, status int, format string, args ...any) {
	rc.mu.Lock()
	rc.problems = append(rc.problems, fmt.Sprintf(format, args...))
	rc.mu.Unlock()
	http.Error(w, fmt.Sprintf(format, args...), status)
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		rc.fail(w, http.StatusNotFound, "%s %s: only POST /v1/traces is served", r.Method, r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		rc.fail(w, http.StatusUnsupportedMediaType, "Content-Type %q, want application/x-protobuf", ct)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			rc.fail(w, http.StatusBadRequest, "gzip: %v", err)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		rc.fail(w, http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		rc.fail(w, http.StatusBadRequest, "decoding ExportTraceServiceRequest: %v", err)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		resValues := values(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := ss.GetScope().GetName()
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Name: s.GetName(), Kind: s.GetKind(), Attrs: attrMap(s.GetAttributes()), Resource: res, Scope: scope,
					StatusCode: s.GetStatus().GetCode(), StatusMessage: s.GetStatus().GetMessage(),
				}
				if p := s.GetParentSpanId(); len(p) > 0 {
					sp.ParentID = hex.EncodeToString(p)
				}
				sp.Values = append(sp.Values, sp.Name, sp.StatusMessage, scope, s.GetTraceState())
				sp.Values = append(sp.Values, values(s.GetAttributes())...)
				for _, ev := range s.GetEvents() {
					sp.Values = append(sp.Values, ev.GetName())
					sp.Values = append(sp.Values, values(ev.GetAttributes())...)
				}
				for _, l := range s.GetLinks() {
					sp.Values = append(sp.Values, l.GetTraceState())
					sp.Values = append(sp.Values, values(l.GetAttributes())...)
				}
				sp.Values = append(sp.Values, resValues...)
				got = append(got, sp)
			}
		}
	}
	rc.mu.Lock()
	rc.spans = append(rc.spans, got...)
	rc.headers = append(rc.headers, r.Header.Clone())
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// Spans returns the spans received so far.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.spans)
}

// Headers returns the headers of each export request received so far.
func (rc *Receiver) Headers() []http.Header {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.headers)
}

// WaitFor polls until ok holds of the spans received, and returns them; it fails the
// test after timeout, listing what arrived.
func (rc *Receiver) WaitFor(t testing.TB, timeout time.Duration, what string, ok func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := rc.Spans()
		if ok(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("otlptest: no %s within %v; received:\n%s", what, timeout, Dump(spans))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dump lists spans one a line: name, ids, attributes.
func Dump(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s trace=%s span=%s parent=%s kind=%v attrs=%v\n", s.Name, s.TraceID, s.SpanID, s.ParentID, s.Kind, s.Attrs)
	}
	return b.String()
}

// Named returns the spans called name.
func Named(spans []Span, name string) []Span {
	var out []Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// ByID finds a span by its id.
func ByID(spans []Span, id string) (Span, bool) {
	for _, s := range spans {
		if s.SpanID == id {
			return s, true
		}
	}
	return Span{}, false
}

// Ancestors returns the names of s's ancestors among spans, nearest first.
func Ancestors(spans []Span, s Span) []string {
	var out []string
	for p, ok := ByID(spans, s.ParentID); ok; p, ok = ByID(spans, p.ParentID) {
		out = append(out, p.Name)
		if len(out) > 64 {
			break
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = text(kv.GetValue())
	}
	return m
}

func values(kvs []*commonpb.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.GetKey(), text(kv.GetValue()))
	}
	return out
}

// text renders any attribute value, arrays and maps included, so that a leak check
// sees what they hold.
func text(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return string(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, text(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *commonpb.AnyValue_KvlistValue:
		var parts []string
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+text(kv.GetValue()))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return ""
}

// Leaks lists, for each span, the values exported that hold one of secrets (those of 6
// characters or more), a query in url.full, or an attribute that records a query or a
// header. A secret is named by its first characters only.
func Leaks(spans []Span, secrets []string) []string {
	var out []string
	for _, s := range spans {
		for _, v := range s.Values {
			for _, secret := range secrets {
				if len(secret) >= 6 && strings.Contains(v, secret) {
					out = append(out, fmt.Sprintf("span %q exports a secret (%.6s…) in %q", s.Name, secret, v))
				}
			}
		}
		for k := range s.Attrs {
			if k == "url.query" || strings.HasPrefix(k, "http.request.header.") || strings.HasPrefix(k, "http.response.header.") {
				out = append(out, fmt.Sprintf("span %q records %s", s.Name, k))
			}
		}
		if u := s.Attrs["url.full"]; strings.Contains(u, "?") {
			out = append(out, fmt.Sprintf("span %q records a query in url.full %q", s.Name, u))
		}
	}
	return out
}
