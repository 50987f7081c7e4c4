package gatehouse_test

import (
	"net/netip"
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
