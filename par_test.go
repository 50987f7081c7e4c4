package gatehouse_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
)

// A provider that advertises PAR gets the whole authorization request over the back
// channel (provider.par: auto, the default); the browser sees only client_id and a
// request_uri, and the login completes through it.
func TestLoginWithPushedAuthorizationRequest(t *testing.T) {
	e := newEnvKnobs(t, func(k *idptest.Knobs) { k.PAR = true }, func(c *gatehouse.Config) {
		c.Provider.AuthParams = map[string]string{"prompt": "consent"}
	})
	b := e.browser()
	r := b.get("/bff/login?returnUrl=/orders")
	wantStatus(t, r, http.StatusFound)
	auth, _ := url.Parse(r.Header.Get("Location"))
	q := auth.Query()
	if len(q) != 2 || q.Get("client_id") != e.idp.ClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("the browser was sent to %s: want client_id and request_uri only", auth)
	}
	pushed := e.idp.LastForm("par")
	if pushed.Get("state") == "" || pushed.Get("code_challenge") == "" || pushed.Get("prompt") != "consent" ||
		pushed.Get("redirect_uri") != e.url+"/bff/callback" {
		t.Fatalf("pushed request %v", pushed)
	}
	r = b.get(auth.String())
	wantStatus(t, r, http.StatusFound)
	cb := b.get(r.Header.Get("Location"), "Sec-Fetch-Mode", "navigate")
	wantStatus(t, cb, http.StatusOK)
	if u := b.api("GET", "/bff/user"); u.StatusCode != http.StatusOK {
		t.Fatalf("/bff/user after a pushed login: %d %s", u.StatusCode, u.body)
	}

	// par: never leaves the parameters in the URL.
	e2 := newEnvKnobs(t, func(k *idptest.Knobs) { k.PAR = true }, func(c *gatehouse.Config) { c.Provider.PAR = "never" })
	r = e2.browser().get("/bff/login")
	auth, _ = url.Parse(r.Header.Get("Location"))
	if !auth.Query().Has("state") || e2.idp.Count("par") != 0 {
		t.Fatalf("par: never pushed, or sent %s", auth)
	}
}

// A push the provider refuses is a 502 (its answer is unusable), a busy provider a 503
// with its Retry-After, both with a readable page for the navigation and JSON for an
// API caller, and neither gives the client secret or the pushed state away.
func TestPushedAuthorizationRequestFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		knobs  func(*idptest.Knobs)
		status int
		code   string
		retry  string
	}{
		{"refused", func(k *idptest.Knobs) { k.PAR, k.PARStatus, k.PARError = true, 400, "invalid_request" }, 502, "bad_gateway", ""},
		{"busy", func(k *idptest.Knobs) { k.PAR, k.PARStatus, k.RetryAfter = true, 503, "20" }, 503, "unavailable", "20"},
		{"down", func(k *idptest.Knobs) { k.PAR, k.PARStatus = true, 500 }, 503, "unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvKnobs(t, tc.knobs)
			b := e.browser()
			r := b.do("GET", "/bff/login", nil, "Accept", "application/json")
			wantJSONError(t, r, tc.status, tc.code, "")
			if got := r.Header.Get("Retry-After"); tc.retry != "" && got != tc.retry {
				t.Errorf("Retry-After %q, want %q", got, tc.retry)
			}
			page := b.get("/bff/login", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			if page.StatusCode != tc.status || !strings.Contains(page.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("navigation: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
			}
			for _, leak := range []string{e.idp.ClientSecret, e.idp.LastForm("par").Get("state"), e.idp.LastForm("par").Get("code_challenge")} {
				for what, text := range map[string]string{"response": r.body + page.body, "logs": e.logs.String(), "audit": e.audit.String()} {
					if leak != "" && strings.Contains(text, leak) {
						t.Fatalf("the %s hold a secret of the pushed request (%q)", what, leak)
					}
				}
			}
			for _, c := range append(r.Cookies(), page.Cookies()...) {
				if strings.Contains(c.Name, "-flow-") {
					t.Fatalf("flow cookie %s set for a login that could not start", c.Name)
				}
			}
			if e.idp.Count("par") != 2 && tc.retry == "" {
				t.Errorf("%d pushes, want 2", e.idp.Count("par"))
			}
		})
	}
}
