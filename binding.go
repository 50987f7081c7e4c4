package gatehouse

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatehouse-bff/gatehouse/session"
)

// bindingHolds checks an optional session binding: the browser (User-Agent, version
// numbers aside) and the network the session was created from. It returns the reason
// of a mismatch, or "".
func (g *Gateway) bindingHolds(r *http.Request, s *session.Session) string {
	sc := g.config().Session
	if sc.BindUserAgent && uaFamily(userAgent(r)) != uaFamily(s.UserAgent) {
		return "binding_user_agent"
	}
	if sc.BindIPv4Prefix > 0 || sc.BindIPv6Prefix > 0 {
		was, err1 := netip.ParseAddr(s.IP)
		now, err2 := netip.ParseAddr(g.clientIP(r))
		if err1 != nil || err2 != nil {
			return "binding_network"
		}
		was, now = was.Unmap(), now.Unmap()
		bits := sc.BindIPv6Prefix
		if was.Is4() {
			bits = sc.BindIPv4Prefix
		}
		if was.Is4() != now.Is4() {
			// A dual-stack client may switch families: only bind the family that is bound.
			if (was.Is4() && sc.BindIPv4Prefix > 0) || (was.Is6() && sc.BindIPv6Prefix > 0) {
				return "binding_network"
			}
			return ""
		}
		if bits == 0 {
			return ""
		}
		pw, _ := was.Prefix(bits)
		if !pw.Contains(now) {
			return "binding_network"
		}
	}
	return ""
}

// uaFamily is a User-Agent without its digits, so that a browser update does not end
// every session.
func uaFamily(ua string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, ua)
}
