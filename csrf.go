package gatehouse

import (
	"net/http"
	"net/url"
	"slices"
)

// checkCSRF applies the three CSRF defences to an API call or a state-changing /bff/
// call. The SameSite cookie is the third: it is not sent on cross-site requests at all.
//
//  1. The custom header (X-CSRF: 1). A page on another site cannot add it without a CORS
//     preflight, which Gatehouse never grants.
//  2. net/http.CrossOriginProtection: Sec-Fetch-Site, or Origin against the host.
//     CrossOriginProtection exempts safe methods; Gatehouse's API calls are protected
//     whatever their method, so a GET is checked as if it were a POST.
func (g *Gateway) checkCSRF(r *http.Request) error {
	run := g.current()
	vals := r.Header[run.csrfHeader]
	switch {
	case len(vals) == 0:
		return errCSRF("missing_header")
	case len(vals) != 1 || vals[0] != run.cfg.CSRF.Value:
		return errCSRF("wrong_value")
	}
	return g.checkSameOrigin(r)
}

// checkSameOrigin refuses a read from another origin that the browser labels as such
// (Sec-Fetch-Site, or Origin against the host). It guards the /bff/ reads that need no
// CSRF header but have a side effect (/bff/user slides the idle timeout): a page on a
// sibling origin of the same site could not read the answer, but could keep a session
// from idling out.
func (g *Gateway) checkSameOrigin(r *http.Request) error {
	c := *r
	c.Method = http.MethodPost // CrossOriginProtection exempts GET
	if err := g.cop.Check(&c); err != nil {
		return errCSRF("cross_origin").with(err)
	}
	return nil
}

// checkWebSocketOrigin replaces the CSRF header on a WebSocket handshake, which a
// browser cannot send with custom headers: the Origin must be ours or allowed.
func (g *Gateway) checkWebSocketOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return errCSRF("websocket_origin_missing")
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return errCSRF("websocket_origin")
	}
	o := u.Scheme + "://" + u.Host
	if o == g.origin || slices.Contains(g.config().WebSocketOrigins, o) {
		return nil
	}
	return errCSRF("websocket_origin")
}
