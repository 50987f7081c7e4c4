package gatehouse

import (
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// What Gatehouse reads from a request: its path, its client, what kind of request it is,
// and where it may be sent back to.

// requestPath returns the cleaned, decoded request path, refusing paths no browser
// sends for a good reason (NUL, backslashes, a dot segment with path parameters).
func requestPath(r *http.Request) (string, bool) {
	p := r.URL.Path
	if p == "" || p[0] != '/' || strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	c := cleanPath(p)
	if strings.IndexByte(c, ';') >= 0 && hasDotSegmentWithParams(c) {
		return "", false
	}
	return c, true
}

// hasDotSegmentWithParams reports whether a segment of p is "." or ".." once its path
// parameters (";…") are cut off. Tomcat, Jetty and Spring cut them before resolving dot
// segments, so they read "/api/..;/admin" (or "/api/%2e%2e;x=1/admin") as "/admin": such a
// path would reach them outside the route it matched here. Other segments with ";"
// (";jsessionid=…", matrix parameters) pass as they are.
func hasDotSegmentWithParams(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if name, _, ok := strings.Cut(seg, ";"); ok && (name == "." || name == "..") {
			return true
		}
	}
	return false
}

// cleanPath is path.Clean keeping a trailing slash, so /app/ and /app stay distinct for
// the frontend.
func cleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// clientIP is the browser's address: the peer, or the last address a trusted proxy put
// in X-Forwarded-For.
func (g *Gateway) clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	addr := ap.Addr().Unmap()
	if !g.trusted(addr) {
		return addr.String()
	}
	// Walk X-Forwarded-For from the nearest hop back, skipping our own trusted proxies:
	// the first address that is not one of them is the client.
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
		if !g.trusted(addr) {
			break
		}
	}
	return addr.String()
}

func (g *Gateway) trusted(a netip.Addr) bool {
	for _, p := range g.config().TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isNavigation reports whether r is a person's top-level page load: only those may be
// redirected to login. A frame is not one (Sec-Fetch-Dest: iframe), so a page on another
// site cannot start logins by framing protected addresses.
func isNavigation(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "", "document":
	default:
		return false
	}
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && wantsHTML(r) && !isWebSocket(r)
}

// wantsHTML tells a person's navigation from an API call: Sec-Fetch-Mode says so in
// every current browser; without it, an Accept preferring HTML does.
func wantsHTML(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/json")
}

// localPath returns p if it is a local path safe to redirect to after login or logout,
// else "/". Local means: one leading slash, then neither a slash nor a backslash, no
// control characters, and the same after percent-decoding (browsers treat "/\evil" and
// "/%2F%2Fevil" variants inconsistently, so none passes). The query and fragment are kept
// as given, minus control characters.
// returnPath is where a login or logout returns to: the local path p, or the app's
// start page (the public URL's path) when p is missing or not local.
func (g *Gateway) returnPath(p string) string {
	local := localPath(p)
	if local == "/" && p != "/" {
		return g.basePath + "/"
	}
	return local
}

func localPath(p string) string {
	if p == "" || len(p) > 2048 {
		return "/"
	}
	pathPart, rest := p, ""
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		pathPart, rest = p[:i], p[i:]
	}
	local := func(s string) bool {
		if len(s) == 0 || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return false
		}
		return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' })
	}
	// Decode repeatedly: every decoded form must still be local.
	for s, i := pathPart, 0; ; i++ {
		if !local(s) || i == 4 {
			return "/"
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "/"
		}
		if d == s {
			break
		}
		s = d
	}
	if strings.ContainsFunc(rest, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return p
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// userAgent is the request's User-Agent, bounded for logs and session metadata.
func userAgent(r *http.Request) string { return truncate(r.UserAgent(), 256) }

// truncate bounds a header value for logs and records.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
