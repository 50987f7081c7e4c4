package gatehouse_test

import (
	"net/netip"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestSessionBinding(t *testing.T) {
	up := newUpstream(t)
	e := routesEnv(t, up, func(c *gatehouse.Config) {
		c.Session.BindUserAgent = true
		c.Session.BindIPv4Prefix = 24
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	chrome := func(v string) string { return "Mozilla/5.0 (X11; Linux x86_64) Chrome/" + v + " Safari/537.36" }
	api := func(b *browser, ua, ip string) *resp {
		return b.do("GET", "/api/x", nil, "X-CSRF", "1", "Accept", "application/json", "User-Agent", ua, "X-Forwarded-For", ip)
	}
	b := e.browser()
	b.get(b.startLogin("/"), "User-Agent", chrome("156.0.1"), "X-Forwarded-For", "203.0.113.10")

	wantStatus(t, api(b, chrome("156.0.1"), "203.0.113.10"), 200)
	// A browser update and a new address in the same /24 keep the session.
	wantStatus(t, api(b, chrome("157.0.3"), "203.0.113.99"), 200)
	// Another network ends it.
	wantJSONError(t, api(b, chrome("157.0.3"), "198.51.100.10"), 401, "unauthenticated", "session_revoked")
	e.wantAudit("session_revoked", map[string]any{"by": "gatehouse", "reason": "binding_network", "ip": "198.51.100.10"})
	// And it stays ended from the right network too.
	wantJSONError(t, api(b, chrome("157.0.3"), "203.0.113.10"), 401, "unauthenticated", "")

	b = e.browser()
	b.get(b.startLogin("/"), "User-Agent", chrome("156.0.1"), "X-Forwarded-For", "203.0.113.10")
	wantJSONError(t, api(b, "curl/8.5.0", "203.0.113.10"), 401, "unauthenticated", "session_revoked")
	e.wantAudit("session_revoked", map[string]any{"by": "gatehouse", "reason": "binding_user_agent", "user_agent": "curl/8.5.0"})
}
