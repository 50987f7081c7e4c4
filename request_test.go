package gatehouse_test

import (
	"net/netip"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestTrustedProxies(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	b := e.browser()
	// Behind a trusted proxy, the client is the last address it added.
	cb := b.startLogin("/")
	wantStatus(t, b.get(cb, "X-Forwarded-For", "198.51.100.7, 203.0.113.9"), 200)
	list := decode(t, b.api("GET", "/bff/sessions"))["sessions"].([]any)
	if ip := list[0].(map[string]any)["ip"]; ip != "203.0.113.9" {
		t.Fatalf("session IP = %v, want the client behind the trusted proxy", ip)
	}
	b.do("GET", "/api/x", nil, "X-CSRF", "1", "X-Forwarded-For", "203.0.113.9")
	if xff := up.last(t).XFF; xff != "203.0.113.9, 127.0.0.1" {
		t.Fatalf("upstream X-Forwarded-For = %q", xff)
	}
}

// A segment that is a dot segment once its ";" parameters are cut (Tomcat reads
// /api/..;/admin as /admin) is refused before route matching.
func TestDotSegmentWithParamsRefused(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up)
	b := e.browser()
	b.login()
	for _, target := range []string{"/api/..;/admin/x", "/api/..;x=1/admin/x", "/api/%2e%2e;/admin/x", "/api/.%2e;/x",
		"/api/.;/x", "/open/..;/api/x", "/strip/..;/..;/secret", "/api/x/..;", "/api/..%3b/x"} {
		before := up.count()
		if status, body := rawRequest(t, e, b, "GET", target); status != 400 || !strings.Contains(body, "invalid_path") {
			t.Errorf("GET %s: %d %s, want 400 invalid_path", target, status, body)
		}
		if up.count() != before {
			t.Errorf("GET %s reached the upstream", target)
		}
	}
	// Other path parameters pass as they are.
	for _, target := range []string{"/api/x;jsessionid=0123", "/api/a;v=1/b", "/api/...;/x", "/api/;/x"} {
		if status, body := rawRequest(t, e, b, "GET", target); status != 200 {
			t.Errorf("GET %s: %d %s, want 200", target, status, body)
		} else if got := up.last(t).Path; got != target {
			t.Errorf("GET %s: the upstream saw %s", target, got)
		}
	}
}
