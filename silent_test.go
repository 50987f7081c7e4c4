package gatehouse_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// silentLogin starts GET target (a /bff/login?prompt=none or /bff/silent-login), checks
// that the authorization request asks for prompt=none alone, and returns the response
// to the provider's answer at the callback.
func silentLogin(t *testing.T, b *browser, target string, headers ...string) *resp {
	t.Helper()
	r := b.get(target, headers...)
	if r.StatusCode != http.StatusFound {
		t.Fatalf("%s = %d %s", target, r.StatusCode, r.body)
	}
	auth, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if p := auth.Query().Get("prompt"); p != "none" {
		t.Fatalf("authorization request prompt=%q, want none alone", p)
	}
	r = b.get(auth.String())
	if r.StatusCode != http.StatusFound {
		t.Fatalf("provider authorize = %d %s", r.StatusCode, r.body)
	}
	return b.get(r.Header.Get("Location"), headers...)
}

// TestSilentLoginReturnsTheProvidersAnswer: /bff/login?prompt=none never ends on an
// error page. The provider's login_required (or consent_required, …) returns the browser
// to returnUrl with ?error=… appended, query and fragment kept; a configured prompt
// (consent) is replaced, since none may not be combined.
func TestSilentLoginReturnsTheProvidersAnswer(t *testing.T) {
	for _, code := range []string{"login_required", "consent_required", "interaction_required", "weird<code>"} {
		t.Run(code, func(t *testing.T) {
			e := newEnvKnobs(t, func(k *idptest.Knobs) { k.AuthorizeError = code }, func(c *gatehouse.Config) {
				c.Provider.AuthParams = map[string]string{"prompt": "consent"}
			})
			b := e.browser()
			r := silentLogin(t, b, "/bff/login?prompt=none&returnUrl="+url.QueryEscape("/app/x?tab=2#top"))
			want := code
			if code == "weird<code>" {
				want = "provider_error" // never an attacker's string
			}
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/app/x?tab=2&error="+want+"#top" {
				t.Fatalf("callback = %d Location %q; want 303 to the app with error=%s", r.StatusCode, r.Header.Get("Location"), want)
			}
			if b.cookie("__Host-gatehouse") != nil {
				t.Fatal("a refused silent login left a session cookie")
			}
			if !strings.Contains(e.audit.String(), `"reason":"provider_`) {
				t.Errorf("no login_failed audit event: %s", e.audit)
			}
		})
	}
}

// TestSilentLoginSignsIn: a prompt=none login the provider grants is an ordinary login.
func TestSilentLoginSignsIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := silentLogin(t, b, "/bff/login?prompt=none&returnUrl=/app")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, "/app") {
		t.Fatalf("callback = %d %s", r.StatusCode, r.body)
	}
	wantStatus(t, b.api("GET", "/bff/user"), http.StatusOK)
}

// TestSilentLoginFrame: /bff/silent-login ends on a page that posts the outcome to a
// parent of its own origin only, which only pages of that origin may frame; a framing
// from another site is refused before a login starts.
func TestSilentLoginFrame(t *testing.T) {
	for _, tc := range []struct {
		name     string
		refuse   string
		loggedIn string
	}{{"signed in", "", "true"}, {"not signed in", "login_required", "false"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvKnobs(t, func(k *idptest.Knobs) { k.AuthorizeError = tc.refuse })
			b := e.browser()
			r := silentLogin(t, b, "/bff/silent-login", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "iframe")
			if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `data-logged-in="`+tc.loggedIn+`"`) ||
				!strings.Contains(r.body, `source:"bff-silent-login"`) || !strings.Contains(r.body, "location.origin") {
				t.Fatalf("callback = %d %s", r.StatusCode, r.body)
			}
			csp := r.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "frame-ancestors 'self'") || !strings.Contains(csp, "script-src 'sha256-") ||
				r.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
				t.Errorf("headers: CSP %q, X-Frame-Options %q", csp, r.Header.Get("X-Frame-Options"))
			}
			status := http.StatusUnauthorized
			if tc.loggedIn == "true" {
				status = http.StatusOK
			}
			wantStatus(t, b.api("GET", "/bff/user"), status)
			// Every other page keeps frame-ancestors 'none'.
			if r := b.get("/bff/callback?state=forged&code=x", "Accept", "text/html", "Sec-Fetch-Mode", "navigate"); r.Header.Get("X-Frame-Options") != "DENY" ||
				!strings.Contains(r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
				t.Errorf("an error page may be framed: %v", r.Header)
			}
		})
	}
	e := newEnv(t)
	r := e.browser().get("/bff/silent-login", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "iframe")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site silent login = %d %s", r.StatusCode, r.body)
	}
	if e.idp.Count("authorize") != 0 {
		t.Error("a cross-site framing reached the provider")
	}
}
