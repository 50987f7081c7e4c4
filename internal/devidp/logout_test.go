package devidp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// TestEndSession covers RP-Initiated Logout: the provider session ends, and
// the browser is redirected only to a registered post_logout_redirect_uri.
func TestEndSession(t *testing.T) {
	cases := []struct {
		name         string
		params       func(tok tokens) url.Values
		method       string
		wantRedirect bool   // to testPostLogout with the state
		wantStatus   int    // when not redirected
		wantText     string // on the page
		wantEnded    bool
	}{
		{
			name: "registered post_logout_redirect_uri",
			params: func(tok tokens) url.Values {
				return url.Values{"id_token_hint": {tok.rawID}, "client_id": {testClientID},
					"post_logout_redirect_uri": {testPostLogout}, "state": {"s1"}}
			},
			wantRedirect: true, wantEnded: true,
		},
		{
			name: "id_token_hint alone names the client, by POST",
			params: func(tok tokens) url.Values {
				return url.Values{"id_token_hint": {tok.rawID}, "post_logout_redirect_uri": {testPostLogout}, "state": {"s1"}}
			},
			method: http.MethodPost, wantRedirect: true, wantEnded: true,
		},
		{
			name: "unregistered post_logout_redirect_uri",
			params: func(tok tokens) url.Values {
				return url.Values{"id_token_hint": {tok.rawID}, "post_logout_redirect_uri": {"http://evil.example/"}, "state": {"s1"}}
			},
			wantStatus: 200, wantText: "is not registered for client", wantEnded: true,
		},
		{
			name: "post_logout_redirect_uri without a client",
			params: func(tokens) url.Values {
				return url.Values{"post_logout_redirect_uri": {testPostLogout}}
			},
			wantStatus: 200, wantText: "names no client", wantEnded: true,
		},
		{
			name:       "no parameters",
			params:     func(tokens) url.Values { return url.Values{} },
			wantStatus: 200, wantText: "You are signed out", wantEnded: true,
		},
		{
			name: "expired id_token_hint is still a hint",
			params: func(tok tokens) url.Values {
				return url.Values{"id_token_hint": {tok.rawID}, "post_logout_redirect_uri": {testPostLogout}, "state": {"s1"}}
			},
			wantRedirect: true, wantEnded: true,
		},
		{
			name: "forged id_token_hint",
			params: func(tokens) url.Values {
				return url.Values{"id_token_hint": {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, "post_logout_redirect_uri": {testPostLogout}}
			},
			wantStatus: 400, wantText: "Nobody was signed out",
		},
		{
			name: "client_id that is not the hint's audience",
			params: func(tok tokens) url.Values {
				return url.Values{"id_token_hint": {tok.rawID}, "client_id": {"other"}, "post_logout_redirect_uri": {testPostLogout}}
			},
			wantStatus: 400, wantText: "Nobody was signed out",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", func(c *Config) {
				c.Clients = append(c.Clients, Client{ID: "other", Secret: "x", PostLogoutRedirectURIs: []string{testPostLogout}})
			})
			tok, b := e.codeFlow("alice", false)
			if strings.HasPrefix(tc.name, "expired") {
				e.clock.Advance(2 * DefaultIDTokenTTL)
			}
			var r response
			if tc.method == http.MethodPost {
				r = b.post(e.url("/end_session"), tc.params(tok))
			} else {
				r = b.get(e.url("/end_session?" + tc.params(tok).Encode()))
			}
			if tc.wantRedirect {
				loc := r.location(t)
				if r.status != http.StatusFound && r.status != http.StatusSeeOther {
					t.Errorf("status %d, want a redirect", r.status)
				}
				if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testPostLogout || loc.Query().Get("state") != "s1" {
					t.Errorf("redirected to %s, want %s with state=s1", loc, testPostLogout)
				}
			} else {
				if r.status != tc.wantStatus || r.header.Get("Location") != "" {
					t.Errorf("status %d Location %q, want %d and no redirect", r.status, r.header.Get("Location"), tc.wantStatus)
				}
				if !strings.Contains(r.body, tc.wantText) || !strings.Contains(r.body, devNotice) {
					t.Errorf("page lacks %q or the notice:\n%s", tc.wantText, r.body)
				}
			}

			// Is the provider session over? prompt=none tells.
			f := newFlow()
			q := callbackParams(t, b.get(e.authURL(f, oauth2.SetAuthURLParam("prompt", "none"))))
			if ended := q.Get("error") == "login_required"; ended != tc.wantEnded {
				t.Errorf("provider session ended = %v, want %v (%v)", ended, tc.wantEnded, q)
			}
			// Ending the session also ends the grants made in it.
			_, err := e.refresh(tok.RefreshToken)
			if tc.wantEnded {
				wantOAuthError(t, err, "invalid_grant")
			} else if err != nil {
				t.Errorf("refresh after a refused logout: %v", err)
			}
		})
	}
}

// received is one back-channel logout request as a relying party saw it.
type received struct {
	contentType string
	typ         any
	token       *oidc.LogoutToken
	err         error
}

// TestBackchannelLogout delivers logout tokens to an httptest relying party
// that verifies them with go-oidc, from end_session and from the sessions
// page.
func TestBackchannelLogout(t *testing.T) {
	cases := []struct {
		name       string
		trigger    func(e *env, b *browser, tok tokens) response
		answer     int      // what the relying party answers
		wantLog    []string // in one log line
		wantOnPage string
		wantStatus int
	}{
		{
			name: "RP-initiated logout",
			trigger: func(e *env, b *browser, tok tokens) response {
				return b.get(e.url("/end_session?" + url.Values{"id_token_hint": {tok.rawID},
					"post_logout_redirect_uri": {testPostLogout}}.Encode()))
			},
			answer: 200, wantLog: []string{"level=INFO", `msg="devidp: back-channel logout delivered"`, "client_id=" + testClientID, "status=200"},
			wantStatus: 302,
		},
		{
			name: "sessions page button",
			trigger: func(e *env, b *browser, tok tokens) response {
				var claims struct {
					SID string `json:"sid"`
				}
				if err := tok.id.Claims(&claims); err != nil {
					e.t.Fatal(err)
				}
				list := b.get(e.url("/sessions"))
				if !strings.Contains(list.body, claims.SID) || !strings.Contains(list.body, "back-channel logout") {
					e.t.Fatalf("sessions page does not list %s with a button:\n%s", claims.SID, list.body)
				}
				return b.post(e.url("/sessions/logout"), url.Values{"sid": {claims.SID}})
			},
			answer: 200, wantLog: []string{`msg="devidp: back-channel logout delivered"`, "status=200"}, wantOnPage: "HTTP 200", wantStatus: 200,
		},
		{
			name: "relying party answers 500",
			trigger: func(e *env, b *browser, tok tokens) response {
				var claims struct {
					SID string `json:"sid"`
				}
				if err := tok.id.Claims(&claims); err != nil {
					e.t.Fatal(err)
				}
				return b.post(e.url("/sessions/logout"), url.Values{"sid": {claims.SID}})
			},
			answer: 500, wantLog: []string{"level=WARN", `msg="devidp: back-channel logout delivered"`, "status=500"}, wantOnPage: "HTTP 500", wantStatus: 200,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var verifier atomic.Pointer[oidc.IDTokenVerifier]
			got := make(chan received, 4)
			rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				raw := r.PostFormValue("logout_token")
				rec := received{contentType: r.Header.Get("Content-Type")}
				if parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256}); err == nil {
					rec.typ = parsed.Headers[0].ExtraHeaders[jose.HeaderType]
				}
				rec.token, rec.err = verifier.Load().VerifyLogout(r.Context(), raw)
				got <- rec
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(tc.answer)
			}))
			defer rp.Close()
			// A client that never takes part in the session must not be called.
			bystander := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				t.Error("back-channel logout sent to a client that was not in the session")
			}))
			defer bystander.Close()

			e := newEnv(t, "", func(c *Config) {
				c.Clients[0].BackchannelLogoutURI = rp.URL + "/bff/backchannel"
				c.Clients = append(c.Clients, Client{ID: "bystander", Secret: "x", BackchannelLogoutURI: bystander.URL})
			})
			verifier.Store(e.verifier)
			tok, b := e.codeFlow("alice", false)
			var idClaims struct {
				SID string `json:"sid"`
			}
			if err := tok.id.Claims(&idClaims); err != nil {
				t.Fatal(err)
			}

			r := tc.trigger(e, b, tok)
			if r.status != tc.wantStatus {
				t.Fatalf("trigger answered %d, want %d:\n%s", r.status, tc.wantStatus, r.body)
			}
			if !strings.Contains(r.body, tc.wantOnPage) {
				t.Errorf("page lacks %q:\n%s", tc.wantOnPage, r.body)
			}
			// Delivery is complete before the provider answers the browser.
			var rec received
			select {
			case rec = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("no back-channel logout request arrived")
			}
			if rec.err != nil {
				t.Fatalf("go-oidc refused the logout token: %v", rec.err)
			}
			if rec.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", rec.contentType)
			}
			if rec.typ != "logout+jwt" {
				t.Errorf("typ = %v, want logout+jwt", rec.typ)
			}
			lt := rec.token
			if lt.SessionID != idClaims.SID || lt.Subject != "alice" || lt.Issuer != e.srv.Issuer() ||
				len(lt.Audience) != 1 || lt.Audience[0] != testClientID || lt.TokenID == "" {
				t.Errorf("logout token = %+v, want sid %s sub alice aud %s", lt, idClaims.SID, testClientID)
			}
			if !lt.Expiry.After(lt.IssuedAt) {
				t.Errorf("logout token exp %v not after iat %v", lt.Expiry, lt.IssuedAt)
			}
			if len(got) != 0 {
				t.Errorf("%d more back-channel requests than expected", len(got))
			}
			if !logged(e.logs.String(), tc.wantLog...) {
				t.Errorf("no log line with %q:\n%s", tc.wantLog, e.logs.String())
			}
			if list := b.get(e.url("/sessions")); strings.Contains(list.body, idClaims.SID) {
				t.Errorf("the ended session is still listed")
			}
		})
	}
}

// logged reports whether one line of logs contains every part.
func logged(logs string, parts ...string) bool {
	for line := range strings.Lines(logs) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
