package devidp

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

func TestCodeFlow(t *testing.T) {
	all := []string{"openid", "profile", "email", "groups", "offline_access"}
	cases := []struct {
		name        string
		issuerPath  string
		user        string
		scopes      []string
		want        map[string]any // in the ID token and from userinfo
		absent      []string
		wantRefresh bool
	}{
		{
			name: "configured user with every scope", user: "alice", scopes: all,
			want: map[string]any{
				"name": "Alice Liddell", "email": "alice@example.com", "email_verified": true,
				"groups": []any{"admin", "staff"}, "preferred_username": "alice",
			},
			wantRefresh: true,
		},
		{
			name: "any other user name gets default claims", user: "carol",
			scopes: []string{"openid", "profile", "email"},
			want:   map[string]any{"name": "carol", "email": "carol@example.com", "preferred_username": "carol"},
			absent: []string{"groups"},
		},
		{
			name: "openid alone releases no profile claims", user: "alice", scopes: []string{"openid"},
			want:   map[string]any{},
			absent: []string{"name", "email", "groups", "preferred_username"},
		},
		{
			name: "issuer with a path and a trailing slash", issuerPath: "/idp/", user: "bob", scopes: all,
			want:        map[string]any{"name": "Bob", "groups": []any{"staff"}},
			wantRefresh: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.issuerPath, nil)
			e.oauth.Scopes = tc.scopes
			tok, _ := e.codeFlow(tc.user, false)

			if tok.TokenType != "Bearer" {
				t.Errorf("token_type = %q, want Bearer", tok.TokenType)
			}
			if got := tok.RefreshToken != ""; got != tc.wantRefresh {
				t.Errorf("refresh token issued = %v, want %v", got, tc.wantRefresh)
			}
			if tok.id.Subject != tc.user {
				t.Errorf("ID token sub = %q, want %q", tok.id.Subject, tc.user)
			}
			var idClaims map[string]any
			if err := tok.id.Claims(&idClaims); err != nil {
				t.Fatal(err)
			}
			if sid, _ := idClaims["sid"].(string); sid == "" {
				t.Errorf("ID token has no sid: %v", idClaims)
			}
			if _, ok := idClaims["auth_time"].(float64); !ok {
				t.Errorf("ID token has no auth_time: %v", idClaims)
			}
			checkClaims(t, "ID token", idClaims, tc.want, tc.absent)

			info, err := e.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok.Token))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != tc.user {
				t.Errorf("userinfo sub = %q, want %q", info.Subject, tc.user)
			}
			var infoClaims map[string]any
			if err := info.Claims(&infoClaims); err != nil {
				t.Fatal(err)
			}
			checkClaims(t, "userinfo", infoClaims, tc.want, tc.absent)

			at := e.accessTokenClaims(tok.AccessToken)
			wantAT := map[string]any{
				"iss": e.srv.Issuer(), "sub": tc.user, "aud": testClientID, "client_id": testClientID,
				"scope": strings.Join(tc.scopes, " "),
			}
			checkClaims(t, "access token", at, wantAT, nil)
			if jti, _ := at["jti"].(string); jti == "" {
				t.Errorf("access token has no jti: %v", at)
			}
			if got := at["exp"].(float64) - at["iat"].(float64); got != testAccessTTL.Seconds() {
				t.Errorf("access token lives %vs, want %v", got, testAccessTTL.Seconds())
			}
			if u, ok := e.srv.cfg.Users[tc.user]; ok {
				// The user's groups, email and name are in every access token,
				// whatever the scopes, for demo APIs.
				checkClaims(t, "access token", at, map[string]any{
					"groups": u.Claims["groups"], "email": u.Claims["email"], "name": u.Claims["name"],
				}, nil)
			}
			parsed, err := jwt.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			if typ := parsed.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
				t.Errorf("access token typ = %v, want at+jwt", typ)
			}
		})
	}
}

// checkClaims compares want against got (JSON-decoded) and checks that the
// absent claims are missing.
func checkClaims(t *testing.T, what string, got, want map[string]any, absent []string) {
	t.Helper()
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s claim %q = %#v, want %#v", what, k, got[k], v)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("%s has claim %q = %#v; want it absent", what, k, got[k])
		}
	}
}

// TestAuthorizeWithSession covers single sign-on and the prompt and max_age
// parameters.
func TestAuthorizeWithSession(t *testing.T) {
	cases := []struct {
		name        string
		freshClient bool // a browser without a provider session
		opts        []oauth2.AuthCodeOption
		want        string // "code", "login" or an error code
	}{
		{name: "the session signs in without a form", want: "code"},
		{name: "prompt=consent needs no consent screen", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "consent")}, want: "code"},
		{name: "prompt=none with a session", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "none")}, want: "code"},
		{name: "prompt=none without a session", freshClient: true, opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "none")}, want: "login_required"},
		{name: "prompt=none with another value", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "none login")}, want: "invalid_request"},
		{name: "prompt=login shows the form", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login")}, want: "login"},
		{name: "max_age=0 shows the form", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "0")}, want: "login"},
		{name: "max_age=0 with prompt=none", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "0"), oauth2.SetAuthURLParam("prompt", "none")}, want: "login_required"},
		{name: "a recent enough session satisfies max_age", opts: []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", "3600")}, want: "code"},
		{name: "no session shows the form", freshClient: true, want: "login"},
	}
	e := newEnv(t, "", nil)
	first, b := e.codeFlow("alice", false)
	e.clock.Advance(time.Second) // so that max_age=0 is not met by accident
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := b
			if tc.freshClient {
				br = newBrowser(t)
			}
			f := newFlow()
			r := br.get(e.authURL(f, tc.opts...))
			switch tc.want {
			case "login":
				loginForm(t, r)
			case "code":
				if r.status != http.StatusFound {
					t.Fatalf("want a redirect with a code, got %d:\n%s", r.status, r.body)
				}
				tok := e.exchange(f, callbackParams(t, r))
				if tok.id.Subject != "alice" {
					t.Errorf("sub = %q, want alice", tok.id.Subject)
				}
				var c1, c2 struct {
					SID      string `json:"sid"`
					AuthTime int64  `json:"auth_time"`
				}
				if err := first.id.Claims(&c1); err != nil {
					t.Fatal(err)
				}
				if err := tok.id.Claims(&c2); err != nil {
					t.Fatal(err)
				}
				if c1 != c2 {
					t.Errorf("single sign-on changed sid/auth_time: first %+v, now %+v", c1, c2)
				}
			default:
				q := callbackParams(t, r)
				if q.Get("error") != tc.want || q.Get("state") != f.state || q.Get("iss") != e.srv.Issuer() || q.Has("code") {
					t.Errorf("want error=%s with state and iss and no code, got %v", tc.want, q)
				}
			}
		})
	}
}

// TestAuthorizeRefusals checks that the provider never redirects to an
// unverified redirect_uri and that other problems come back as error
// redirects.
func TestAuthorizeRefusals(t *testing.T) {
	verifier := oauth2.GenerateVerifier()
	cases := []struct {
		name      string
		change    func(q url.Values)
		wantPage  int    // a status: the answer must be a page, not a redirect
		wantError string // else: the error redirect's code
	}{
		{name: "unknown client", change: func(q url.Values) { q.Set("client_id", "nobody") }, wantPage: 400},
		{name: "unregistered redirect_uri", change: func(q url.Values) { q.Set("redirect_uri", "http://evil.example/cb") }, wantPage: 400},
		{name: "redirect_uri differing only in a trailing slash", change: func(q url.Values) { q.Set("redirect_uri", testRedirectURI+"/") }, wantPage: 400},
		{name: "redirect_uri missing", change: func(q url.Values) { q.Del("redirect_uri") }, wantPage: 400},
		{name: "PKCE missing", change: func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, wantError: "invalid_request"},
		{name: "PKCE plain", change: func(q url.Values) { q.Set("code_challenge", verifier); q.Set("code_challenge_method", "plain") }, wantError: "invalid_request"},
		{name: "PKCE method missing means plain", change: func(q url.Values) { q.Del("code_challenge_method") }, wantError: "invalid_request"},
		{name: "implicit flow", change: func(q url.Values) { q.Set("response_type", "token") }, wantError: "unsupported_response_type"},
		{name: "hybrid flow", change: func(q url.Values) { q.Set("response_type", "code id_token") }, wantError: "unsupported_response_type"},
		{name: "bad max_age", change: func(q url.Values) { q.Set("max_age", "-1") }, wantError: "invalid_request"},
		{name: "request object", change: func(q url.Values) { q.Set("request", "x.y.z") }, wantError: "request_not_supported"},
		{name: "relative resource", change: func(q url.Values) { q.Set("resource", "/api") }, wantError: "invalid_target"},
	}
	e := newEnv(t, "", nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{
				"client_id": {testClientID}, "redirect_uri": {testRedirectURI}, "response_type": {"code"},
				"scope": {"openid"}, "state": {"st4te"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
			}
			tc.change(q)
			r := newBrowser(t).get(e.url("/authorize?" + q.Encode()))
			if tc.wantPage != 0 {
				if r.status != tc.wantPage || r.header.Get("Location") != "" {
					t.Fatalf("want a %d page without redirect, got %d Location %q", tc.wantPage, r.status, r.header.Get("Location"))
				}
				if !strings.Contains(r.body, devNotice) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
					t.Errorf("error page is not the HTML page with the notice:\n%s", r.body)
				}
				return
			}
			got := callbackParams(t, r)
			if got.Get("error") != tc.wantError || got.Get("state") != "st4te" || got.Get("iss") != e.srv.Issuer() || got.Has("code") {
				t.Errorf("want error=%s with state and iss, got %v", tc.wantError, got)
			}
		})
	}
}

// TestLoginForm covers the form itself: quick buttons, cancel, bad names and
// cross-origin posts.
func TestLoginForm(t *testing.T) {
	cases := []struct {
		name       string
		form       url.Values
		header     http.Header
		wantStatus int
		wantSub    string // for a successful login
		wantError  string // for an error redirect
	}{
		{name: "quick button", form: url.Values{"user": {"bob"}, "login": {""}}, wantStatus: 303, wantSub: "bob"},
		{name: "typed name", form: url.Values{"login": {" dave@example.com "}}, wantStatus: 303, wantSub: "dave@example.com"},
		{name: "cancel", form: url.Values{"cancel": {"1"}, "login": {""}}, wantStatus: 303, wantError: "access_denied"},
		{name: "empty name shows the form again", form: url.Values{"login": {""}}, wantStatus: 400},
		{name: "name with a space", form: url.Values{"login": {"a b"}}, wantStatus: 400},
		{name: "cross-origin post", form: url.Values{"user": {"bob"}}, header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, wantStatus: 403},
	}
	e := newEnv(t, "", nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			f := newFlow()
			page := b.get(e.authURL(f))
			tc.form.Set("request", loginForm(t, page))
			for _, want := range []string{`name="user" value="alice"`, `name="user" value="bob"`, `name="short_lived"`, devNotice} {
				if !strings.Contains(page.body, want) {
					t.Errorf("login page lacks %s", want)
				}
			}
			req, _ := http.NewRequest(http.MethodPost, e.url("/login"), strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tc.header {
				req.Header[k] = v
			}
			r := do(t, b.c, req)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d:\n%s", r.status, tc.wantStatus, r.body)
			}
			switch {
			case tc.wantSub != "":
				tok := e.exchange(f, callbackParams(t, r))
				if tok.id.Subject != tc.wantSub {
					t.Errorf("sub = %q, want %q", tok.id.Subject, tc.wantSub)
				}
			case tc.wantError != "":
				if q := callbackParams(t, r); q.Get("error") != tc.wantError || q.Get("state") != f.state {
					t.Errorf("want error=%s, got %v", tc.wantError, q)
				}
			case tc.wantStatus == 400:
				loginForm(t, response{status: 200, body: r.body}) // the form again
			}
		})
	}
}
