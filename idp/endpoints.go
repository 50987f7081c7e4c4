package idp

import (
	"net/url"
	"strings"
)

// EndpointName names the provider endpoint a request URL is for, for metrics:
// discovery, jwks, token, userinfo, revocation, end_session, par, or other. It is cheap
// enough to call on every provider request.
func (c *Client) EndpointName(u *url.URL) string {
	if u == nil {
		return "other"
	}
	where := u.Scheme + "://" + u.Host + u.Path
	if strings.HasSuffix(u.Path, "/.well-known/openid-configuration") || c.cfg.DiscoveryURL != "" && where == c.cfg.DiscoveryURL {
		return "discovery"
	}
	c.mu.Lock()
	d := c.state
	c.mu.Unlock()
	if d == nil {
		return "other"
	}
	switch where {
	case d.meta.TokenEndpoint:
		return "token"
	case d.meta.JWKSURI:
		return "jwks"
	case d.meta.UserinfoEndpoint:
		return "userinfo"
	case d.meta.RevocationEndpoint:
		return "revocation"
	case d.meta.EndSessionEndpoint:
		return "end_session"
	case d.meta.PAREndpoint:
		return "par"
	}
	return "other"
}
