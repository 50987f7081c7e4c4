package gatehouse

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// Cookie names. The session cookie is cfg.Cookie.Name; the others derive from it so that
// one prefix marks everything Gatehouse owns.
func (g *Gateway) flowCookieName(state string) string {
	sum := sha256.Sum256([]byte("gatehouse flow cookie\x00" + state))
	return g.config().Cookie.Name + "-flow-" + hex.EncodeToString(sum[:8])
}

func (g *Gateway) logoutCookieName() string { return g.config().Cookie.Name + "-logout" }

// isOwnCookie reports whether a cookie is Gatehouse's: never forwarded upstream, never
// settable by an upstream.
func (g *Gateway) isOwnCookie(name string) bool {
	return name == g.config().Cookie.Name || strings.HasPrefix(name, g.config().Cookie.Name+"-")
}

// baseCookie has the attributes every Gatehouse cookie shares: host-only (no Domain),
// Path=/, Secure, HttpOnly, as the __Host- prefix requires.
func (g *Gateway) baseCookie(name, value string) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true}
}

func (g *Gateway) setSessionCookie(w http.ResponseWriter, value string, expires time.Time) {
	c := g.baseCookie(g.config().Cookie.Name, value)
	c.SameSite = g.config().Cookie.SameSite
	c.MaxAge = max(int(expires.Sub(g.now()).Seconds()), 1)
	http.SetCookie(w, c)
}

func (g *Gateway) clearCookie(w http.ResponseWriter, name string, sameSite http.SameSite) {
	c := g.baseCookie(name, "")
	c.SameSite = sameSite
	c.MaxAge = -1
	http.SetCookie(w, c)
}

func (g *Gateway) clearSessionCookie(w http.ResponseWriter) {
	g.clearCookie(w, g.config().Cookie.Name, g.config().Cookie.SameSite)
}

// setFlowCookie binds a login flow to this browser. SameSite=Lax: the provider's
// redirect back to the callback is a cross-site top-level navigation, which carries Lax
// cookies but not Strict ones.
func (g *Gateway) setFlowCookie(w http.ResponseWriter, name, value string) {
	c := g.baseCookie(name, value)
	c.SameSite = http.SameSiteLaxMode
	c.MaxAge = int(g.config().Session.FlowTimeout.Seconds())
	http.SetCookie(w, c)
}

// sessionCookie returns the session cookie's value, or "".
func (g *Gateway) sessionCookie(r *http.Request) string {
	for _, c := range r.CookiesNamed(g.config().Cookie.Name) {
		if c.Value != "" {
			return c.Value
		}
	}
	return ""
}
