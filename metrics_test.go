package gatehouse_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, e *env) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.gw.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	wantStatus(t, b.api("GET", "/api/x"), 200)
	wantStatus(t, b.api("POST", "/api/x"), 200)
	b.do("GET", "/api/x", nil)
	b.get("/bff/callback?state=nope&code=x")
	e.clock.Advance(2 * time.Minute)
	wantStatus(t, b.api("GET", "/api/x"), 200)
	m := scrape(t, e)
	for _, want := range []string{
		`gatehouse_proxy_request_seconds_count{code="2xx",method="GET",route="/api/"} 2`,
		`gatehouse_proxy_request_seconds_count{code="2xx",method="POST",route="/api/"} 1`,
		`gatehouse_http_requests_seconds_count{kind="route",method="GET",status="403"} 1`,
		`gatehouse_logins_total{outcome="completed"} 1`,
		`gatehouse_login_failures_total{reason="login_no_flow"} 1`,
		`gatehouse_token_refreshes_total{outcome="ok"} 1`,
		`gatehouse_refresh_lock_wait_seconds_count 1`,
		`gatehouse_active_sessions 1`,
		`gatehouse_ready{component="provider"} 1`,
		`gatehouse_ready{component="store"} 1`,
		`gatehouse_audit_events_total{event="csrf_rejected"} 1`,
		`gatehouse_audit_events_total{event="rate_limited"} 0`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="token"} 2`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="discovery"} 1`,
		`gatehouse_provider_request_seconds_count{code="2xx",endpoint="jwks"}`,
		`gatehouse_store_operation_seconds_count{op="get"}`,
		`gatehouse_store_operation_seconds_count{op="set_indexed"}`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No user data in labels.
	if strings.Contains(m, "alice") || strings.Contains(m, "127.0.0.1") {
		t.Error("a metric label carries a subject or an address")
	}
}
