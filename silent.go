package gatehouse

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// silentScript tells the parent frame the outcome of a /bff/silent-login: the page's
// own origin is the only target, so a parent of another origin receives nothing (and
// frame-ancestors 'self' keeps such a parent from loading the page at all).
const silentScript = `parent.postMessage({source:"bff-silent-login",` +
	`isLoggedIn:document.documentElement.dataset.loggedIn==="true"},location.origin)`

// silentCSP allows the page's one script, by hash, and framing by pages of its own
// origin only; every other page of Gatehouse keeps frame-ancestors 'none'.
var silentCSP = func() string {
	sum := sha256.Sum256([]byte(silentScript))
	return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
}()

// silentResult answers the end of a /bff/silent-login flow.
func (g *Gateway) silentResult(w http.ResponseWriter, loggedIn bool) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", silentCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	w.WriteHeader(http.StatusOK)
	v := "false"
	if loggedIn {
		v = "true"
	}
	w.Write([]byte(`<!doctype html><html data-logged-in="` + v + `"><head><meta charset="utf-8">` +
		`<title>Silent sign-in</title></head><body><script>` + silentScript + `</script></body></html>`))
}
