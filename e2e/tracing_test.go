package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/internal/otlptest"
)

// TestE2ETracing runs the binary with only the standard OTEL_* variables pointed at a real
// OTLP/HTTP receiver, against the real provider: a login, an API call and a logout make
// their span trees, the upstream sees the API call's trace in traceparent, the access log
// names it, the spans queued when the process stops are flushed, and nothing exported
// holds a secret.
func TestE2ETracing(t *testing.T) {
	rc := otlptest.New(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_SERVICE_NAME", "gatehouse-e2e")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=e2e")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	// Export only at shutdown, so that the test sees the flush on SIGTERM.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	accessPath := filepath.Join(t.TempDir(), "access.log")
	s := startStack(t, stackOpts{logYAML: "  access: file\n  access_file: " + accessPath + "\n"})
	b := newBrowser(t, s.gw.URL)
	expect(t, b.login("alice", "wonderland", "/"), 200)
	r := b.do("GET", "/api/orders?access_token=in-the-query", nil, "X-CSRF", "1")
	expect(t, r, 200)
	upTP := s.api.last(t).Get("Traceparent")
	var cookies []string
	for _, c := range b.c.Jar.Cookies(&url.URL{Scheme: "https", Host: strings.TrimPrefix(s.gw.URL, "http://")}) {
		cookies = append(cookies, c.Value)
	}
	logout := b.api("POST", "/bff/logout")
	expect(t, logout, 200)
	if got := len(rc.Spans()); got != 0 {
		t.Fatalf("%d spans exported before shutdown with a 10-minute batch delay", got)
	}
	s.gw.Stop()
	if !strings.Contains(s.gw.Logs(), `"msg":"tracing on: OTLP/HTTP"`) {
		t.Fatalf("no startup line for tracing:\n%s", s.gw.Logs())
	}
	spans := rc.Spans()
	find := func(name string) otlptest.Span {
		t.Helper()
		got := otlptest.Named(spans, name)
		if len(got) != 1 {
			t.Fatalf("%d spans named %q, want 1:\n%s", len(got), name, otlptest.Dump(spans))
		}
		return got[0]
	}
	below := func(s otlptest.Span, ancestor string) {
		t.Helper()
		a := otlptest.Ancestors(spans, s)
		if len(a) == 0 || !strings.Contains(strings.Join(a, "|"), ancestor) {
			t.Errorf("%q is under %v, want %q among them", s.Name, a, ancestor)
		}
	}
	login := find("login")
	below(login, "GET /bff/login")
	exchange := find("code_exchange")
	below(exchange, "callback")
	for _, s := range otlptest.Named(spans, "provider token") {
		below(s, "code_exchange")
		if s.Attrs["http.response.status_code"] != "200" {
			t.Errorf("token request status %q", s.Attrs["http.response.status_code"])
		}
	}
	if len(otlptest.Named(spans, "provider token")) != 1 || len(otlptest.Named(spans, "provider userinfo")) != 1 {
		t.Errorf("want one token and one userinfo request:\n%s", otlptest.Dump(spans))
	}
	below(find("provider revocation"), "revocation")
	api := find("GET /api/")
	if api.Resource["service.name"] != "gatehouse-e2e" || api.Resource["deployment.environment.name"] != "e2e" {
		t.Errorf("resource %v: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES not applied", api.Resource)
	}
	up := find("upstream GET")
	if up.ParentID != api.SpanID || up.Attrs["url.full"] != s.api.URL+"/api/orders" {
		t.Errorf("upstream span parent %s url.full %q", up.ParentID, up.Attrs["url.full"])
	}
	if want := "00-" + up.TraceID + "-" + up.SpanID + "-01"; upTP != want {
		t.Errorf("upstream got traceparent %q, want %q", upTP, want)
	}

	data, err := os.ReadFile(accessPath)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var m map[string]any
		json.Unmarshal(line, &m)
		if m["path"] == "/api/orders" {
			found = true
			if m["trace_id"] != api.TraceID || m["request_id"] != r.Header.Get("X-Request-Id") {
				t.Errorf("access line %v, want trace_id %s", m, api.TraceID)
			}
		}
	}
	if !found {
		t.Errorf("no access line for /api/orders:\n%s", data)
	}

	secrets := append(s.idp.IssuedSecrets(t), cookies...)
	secrets = append(secrets, "in-the-query", "s3cret", "e2e-admin-token")
	for _, l := range otlptest.Leaks(spans, secrets) {
		t.Error(l)
	}
}
