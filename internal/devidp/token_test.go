package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestCodeExchangeRefusals sends token requests that must fail, next to one
// that must succeed so a broken setup cannot pass for a refusal.
func TestCodeExchangeRefusals(t *testing.T) {
	cases := []struct {
		name      string
		change    func(form url.Values, f flow)
		wantError string // "" means success
	}{
		{name: "correct request", change: func(url.Values, flow) {}},
		{name: "PKCE verifier missing", change: func(form url.Values, _ flow) { form.Del("code_verifier") }, wantError: "invalid_grant"},
		{name: "PKCE verifier wrong", change: func(form url.Values, _ flow) { form.Set("code_verifier", oauth2.GenerateVerifier()) }, wantError: "invalid_grant"},
		{name: "PKCE challenge sent as verifier", change: func(form url.Values, f flow) {
			form.Set("code_verifier", oauth2.S256ChallengeFromVerifier(f.verifier))
		}, wantError: "invalid_grant"},
		{name: "redirect_uri differs", change: func(form url.Values, _ flow) { form.Set("redirect_uri", testRedirectURI+"?x=1") }, wantError: "invalid_grant"},
		{name: "redirect_uri missing", change: func(form url.Values, _ flow) { form.Del("redirect_uri") }, wantError: "invalid_grant"},
		{name: "unknown code", change: func(form url.Values, _ flow) { form.Set("code", "nope") }, wantError: "invalid_grant"},
		{name: "code from another client", change: func(form url.Values, _ flow) { form.Set("client_id", "other") }, wantError: "invalid_grant"},
		{name: "code missing", change: func(form url.Values, _ flow) { form.Del("code") }, wantError: "invalid_request"},
	}
	e := newEnv(t, "", func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "other", Secret: "other-secret", RedirectURIs: []string{testRedirectURI}})
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow()
			params := e.login(newBrowser(t), e.authURL(f), "alice", false)
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {params.Get("code")},
				"redirect_uri": {testRedirectURI}, "code_verifier": {f.verifier},
				"client_id": {testClientID}, "client_secret": {testClientSecret},
			}
			tc.change(form, f)
			if form.Get("client_id") == "other" {
				form.Set("client_secret", "other-secret")
			}
			r := e.postForm("/token", form, "", "")
			if tc.wantError == "" {
				if r.status != http.StatusOK || r.json(t)["access_token"] == nil {
					t.Fatalf("want tokens, got %d %s", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusBadRequest || r.json(t)["error"] != tc.wantError {
				t.Fatalf("want 400 %s, got %d %s", tc.wantError, r.status, r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		})
	}
}

// TestCodeReplay: a code works once; using it again fails and revokes what
// the first use produced.
func TestCodeReplay(t *testing.T) {
	e := newEnv(t, "", nil)
	f := newFlow()
	params := e.login(newBrowser(t), e.authURL(f), "alice", false)
	first := e.exchange(f, params)
	if r := e.userinfo(first.AccessToken); r.status != http.StatusOK {
		t.Fatalf("userinfo before the replay: %d %s", r.status, r.body)
	}

	_, err := e.oauth.Exchange(t.Context(), params.Get("code"), oauth2.VerifierOption(f.verifier))
	wantOAuthError(t, err, "invalid_grant")

	if r := e.userinfo(first.AccessToken); r.status != http.StatusUnauthorized {
		t.Errorf("access token from the replayed code still works: %d %s", r.status, r.body)
	}
	_, err = e.refresh(first.RefreshToken)
	wantOAuthError(t, err, "invalid_grant")
	if !strings.Contains(e.logs.String(), "authorization code replayed") {
		t.Errorf("the replay was not logged:\n%s", e.logs.String())
	}
}

// TestRefreshRotation: every refresh rotates the refresh token, and the new
// ID token keeps sub, sid and auth_time and drops the nonce.
func TestRefreshRotation(t *testing.T) {
	e := newEnv(t, "", nil)
	first, _ := e.codeFlow("alice", false)
	var before struct {
		SID      string `json:"sid"`
		AuthTime int64  `json:"auth_time"`
	}
	if err := first.id.Claims(&before); err != nil {
		t.Fatal(err)
	}
	current := first
	seen := map[string]bool{first.RefreshToken: true}
	for i := range 3 {
		e.clock.Advance(time.Second)
		next, err := e.refresh(current.RefreshToken)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if next.RefreshToken == "" || seen[next.RefreshToken] {
			t.Fatalf("refresh %d: refresh token not rotated: %q", i, next.RefreshToken)
		}
		seen[next.RefreshToken] = true
		got := e.verifyTokens(next, "") // no nonce after a refresh (OIDC Core §12.2)
		var after struct {
			SID      string `json:"sid"`
			AuthTime int64  `json:"auth_time"`
		}
		if err := got.id.Claims(&after); err != nil {
			t.Fatal(err)
		}
		if got.id.Subject != "alice" || after != before {
			t.Errorf("refresh %d: sub %q sid/auth_time %+v, want alice %+v", i, got.id.Subject, after, before)
		}
		if got.id.IssuedAt.Unix() != e.clock.Now().Unix() {
			t.Errorf("refresh %d: iat = %v, want now", i, got.id.IssuedAt)
		}
		if r := e.userinfo(next.AccessToken); r.status != http.StatusOK {
			t.Errorf("refresh %d: new access token refused by userinfo: %d", i, r.status)
		}
		current = got
	}
}

// TestRefreshReuse: presenting a rotated refresh token revokes the whole
// grant, the newest tokens included.
func TestRefreshReuse(t *testing.T) {
	cases := []struct {
		name      string
		rotations int
		reuse     int // index of the refresh token to present again
	}{
		{name: "the first token after one rotation", rotations: 1, reuse: 0},
		{name: "the first token after three rotations", rotations: 3, reuse: 0},
		{name: "a middle token after three rotations", rotations: 3, reuse: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", nil)
			first, _ := e.codeFlow("alice", false)
			refreshTokens := []string{first.RefreshToken}
			accessTokens := []string{first.AccessToken}
			for i := range tc.rotations {
				next, err := e.refresh(refreshTokens[i])
				if err != nil {
					t.Fatalf("rotation %d: %v", i, err)
				}
				refreshTokens = append(refreshTokens, next.RefreshToken)
				accessTokens = append(accessTokens, next.AccessToken)
			}
			newestRT, newestAT := refreshTokens[len(refreshTokens)-1], accessTokens[len(accessTokens)-1]
			if r := e.userinfo(newestAT); r.status != http.StatusOK {
				t.Fatalf("newest access token before the reuse: %d", r.status)
			}

			_, err := e.refresh(refreshTokens[tc.reuse])
			wantOAuthError(t, err, "invalid_grant")

			_, err = e.refresh(newestRT)
			wantOAuthError(t, err, "invalid_grant")
			if r := e.userinfo(newestAT); r.status != http.StatusUnauthorized {
				t.Errorf("newest access token survived the reuse: %d", r.status)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	cases := []struct {
		name            string
		token           func(tokens) string
		hint            string
		asOther         bool
		wantAccessDead  bool
		wantRefreshDead bool
	}{
		{name: "refresh token ends the grant", token: func(t tokens) string { return t.RefreshToken }, hint: "refresh_token",
			wantAccessDead: true, wantRefreshDead: true},
		{name: "refresh token with a wrong hint", token: func(t tokens) string { return t.RefreshToken }, hint: "access_token",
			wantAccessDead: true, wantRefreshDead: true},
		{name: "access token ends only itself", token: func(t tokens) string { return t.AccessToken }, hint: "access_token",
			wantAccessDead: true},
		{name: "access token without a hint", token: func(t tokens) string { return t.AccessToken }, wantAccessDead: true},
		{name: "unknown token is ignored", token: func(tokens) string { return "not-a-token" }},
		{name: "another client cannot revoke", token: func(t tokens) string { return t.RefreshToken }, asOther: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "", func(c *Config) {
				c.Clients = append(c.Clients, Client{ID: "other", Secret: "other-secret"})
			})
			tok, _ := e.codeFlow("alice", false)
			id, secret := testClientID, testClientSecret
			if tc.asOther {
				id, secret = "other", "other-secret"
			}
			r := e.postForm("/revoke", url.Values{"token": {tc.token(tok)}, "token_type_hint": {tc.hint}}, id, secret)
			if r.status != http.StatusOK {
				t.Fatalf("revoke: %d %s", r.status, r.body)
			}
			ui := e.userinfo(tok.AccessToken)
			if dead := ui.status == http.StatusUnauthorized; dead != tc.wantAccessDead {
				t.Errorf("access token refused = %v, want %v (status %d)", dead, tc.wantAccessDead, ui.status)
			}
			if tc.wantAccessDead && !strings.Contains(ui.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q, want a Bearer invalid_token challenge", ui.header.Get("WWW-Authenticate"))
			}
			_, err := e.refresh(tok.RefreshToken)
			if tc.wantRefreshDead {
				wantOAuthError(t, err, "invalid_grant")
			} else if err != nil {
				t.Errorf("refresh after revocation: %v", err)
			}
		})
	}
}

func TestRevocationNeedsClientAuthentication(t *testing.T) {
	e := newEnv(t, "", nil)
	tok, _ := e.codeFlow("alice", false)
	r := e.postForm("/revoke", url.Values{"token": {tok.RefreshToken}}, testClientID, "wrong")
	if r.status != http.StatusUnauthorized || r.json(t)["error"] != "invalid_client" {
		t.Fatalf("want 401 invalid_client, got %d %s", r.status, r.body)
	}
	if _, err := e.refresh(tok.RefreshToken); err != nil {
		t.Errorf("an unauthenticated revocation took effect: %v", err)
	}
}

func TestUserinfoRefusals(t *testing.T) {
	e := newEnv(t, "", nil)
	tok, _ := e.codeFlow("alice", false)
	cc := e.postForm("/token", url.Values{"grant_type": {"client_credentials"}}, testClientID, testClientSecret).json(t)
	cases := []struct {
		name       string
		header     string
		advance    time.Duration
		wantStatus int
		wantError  string // in WWW-Authenticate; "" means no error attribute
	}{
		{name: "valid token", header: "Bearer " + tok.AccessToken, wantStatus: 200},
		{name: "no token", wantStatus: 401},
		{name: "basic credentials", header: "Basic Zm9vOmJhcg==", wantStatus: 401},
		{name: "garbage token", header: "Bearer abc.def.ghi", wantStatus: 401, wantError: "invalid_token"},
		{name: "ID token instead of access token", header: "Bearer " + tok.rawID, wantStatus: 401, wantError: "invalid_token"},
		{name: "client credentials token has no user", header: "Bearer " + cc["access_token"].(string), wantStatus: 403, wantError: "insufficient_scope"},
		{name: "expired token", header: "Bearer " + tok.AccessToken, advance: testAccessTTL + time.Second, wantStatus: 401, wantError: "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(tc.advance)
			req, _ := http.NewRequest(http.MethodGet, e.url("/userinfo"), nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			r := do(t, http.DefaultClient, req)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantStatus == 200 {
				if r.json(t)["sub"] != "alice" {
					t.Errorf("userinfo = %s", r.body)
				}
				return
			}
			challenge := r.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(challenge, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
			}
			if tc.wantError != "" && !strings.Contains(challenge, `error="`+tc.wantError+`"`) {
				t.Errorf("WWW-Authenticate = %q, want error=%q", challenge, tc.wantError)
			}
		})
	}
}

// TestTokenEndpointClientAuthentication uses client_credentials to exercise
// client authentication and the generic token endpoint errors.
func TestTokenEndpointClientAuthentication(t *testing.T) {
	cases := []struct {
		name           string
		form           url.Values
		basicID        string
		basicSecret    string
		wantStatus     int
		wantError      string
		wantChallenged bool
	}{
		{name: "client_secret_basic", form: url.Values{}, basicID: testClientID, basicSecret: testClientSecret, wantStatus: 200},
		{name: "client_secret_post", form: url.Values{"client_id": {testClientID}, "client_secret": {testClientSecret}}, wantStatus: 200},
		{name: "basic with special characters", form: url.Values{}, basicID: "odd:client", basicSecret: "s3cr3t/+&=", wantStatus: 200},
		{name: "wrong secret (basic)", form: url.Values{}, basicID: testClientID, basicSecret: "nope", wantStatus: 401, wantError: "invalid_client", wantChallenged: true},
		{name: "wrong secret (post)", form: url.Values{"client_id": {testClientID}, "client_secret": {"nope"}}, wantStatus: 401, wantError: "invalid_client", wantChallenged: true},
		{name: "unknown client", form: url.Values{"client_id": {"nobody"}, "client_secret": {"x"}}, wantStatus: 401, wantError: "invalid_client", wantChallenged: true},
		{name: "no client authentication", form: url.Values{"client_id": {testClientID}}, wantStatus: 401, wantError: "invalid_client", wantChallenged: true},
		{name: "two methods at once", form: url.Values{"client_secret": {testClientSecret}}, basicID: testClientID, basicSecret: testClientSecret, wantStatus: 400, wantError: "invalid_request"},
		{name: "unsupported grant type", form: url.Values{"grant_type": {"password"}}, basicID: testClientID, basicSecret: testClientSecret, wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "openid scope without a user", form: url.Values{"scope": {"openid"}}, basicID: testClientID, basicSecret: testClientSecret, wantStatus: 400, wantError: "invalid_scope"},
	}
	e := newEnv(t, "", func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "odd:client", Secret: "s3cr3t/+&="})
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.form.Has("grant_type") {
				tc.form.Set("grant_type", "client_credentials")
			}
			r := e.postForm("/token", tc.form, tc.basicID, tc.basicSecret)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			body := r.json(t)
			if tc.wantStatus == 200 {
				if body["token_type"] != "Bearer" || body["access_token"] == nil || body["refresh_token"] != nil || body["id_token"] != nil {
					t.Errorf("client_credentials response = %v", body)
				}
				return
			}
			if body["error"] != tc.wantError {
				t.Errorf("error = %v, want %s", body["error"], tc.wantError)
			}
			if got := r.header.Get("WWW-Authenticate") != ""; got != tc.wantChallenged {
				t.Errorf("WWW-Authenticate present = %v, want %v", got, tc.wantChallenged)
			}
		})
	}
}

// TestResourceIndicators: RFC 8707 resource values become the access token
// audience.
func TestResourceIndicators(t *testing.T) {
	const api = "https://api.example.com/"
	cases := []struct {
		name        string
		authorize   []string // resource at the authorization request; nil: client_credentials
		token       []string // resource at the token request
		wantAud     any
		wantError   string
		clientCreds bool
	}{
		{name: "client credentials with a resource", clientCreds: true, token: []string{api}, wantAud: api},
		{name: "client credentials without a resource", clientCreds: true, wantAud: testClientID},
		{name: "client credentials with two resources", clientCreds: true, token: []string{api, "https://b.example/"}, wantAud: []any{api, "https://b.example/"}},
		{name: "client credentials with a bad resource", clientCreds: true, token: []string{"api"}, wantError: "invalid_target"},
		{name: "code flow, resource at authorize", authorize: []string{api}, wantAud: api},
		{name: "code flow, resource at both", authorize: []string{api}, token: []string{api}, wantAud: api},
		{name: "code flow, resource only at the token request", token: []string{api}, wantAud: api},
		{name: "code flow, unauthorized resource", authorize: []string{api}, token: []string{"https://other.example/"}, wantError: "invalid_target"},
	}
	e := newEnv(t, "", nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"resource": tc.token}
			if tc.clientCreds {
				form.Set("grant_type", "client_credentials")
			} else {
				f := newFlow()
				var opts []oauth2.AuthCodeOption
				for _, r := range tc.authorize {
					opts = append(opts, oauth2.SetAuthURLParam("resource", r))
				}
				params := e.login(newBrowser(t), e.authURL(f, opts...), "alice", false)
				form.Set("grant_type", "authorization_code")
				form.Set("code", params.Get("code"))
				form.Set("redirect_uri", testRedirectURI)
				form.Set("code_verifier", f.verifier)
			}
			r := e.postForm("/token", form, testClientID, testClientSecret)
			body := r.json(t)
			if tc.wantError != "" {
				if r.status != 400 || body["error"] != tc.wantError {
					t.Fatalf("want 400 %s, got %d %s", tc.wantError, r.status, r.body)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			checkClaims(t, "access token", e.accessTokenClaims(body["access_token"].(string)), map[string]any{"aud": tc.wantAud}, nil)
		})
	}
}

// TestShortLivedTokens: the login page's checkbox makes that login's access
// tokens live 10 seconds, refreshes included.
func TestShortLivedTokens(t *testing.T) {
	cases := []struct {
		shortLived bool
		wantTTL    time.Duration
	}{
		{shortLived: true, wantTTL: 10 * time.Second},
		{shortLived: false, wantTTL: testAccessTTL},
	}
	for _, tc := range cases {
		t.Run("short_lived="+map[bool]string{true: "on", false: "off"}[tc.shortLived], func(t *testing.T) {
			e := newEnv(t, "", nil)
			tok, _ := e.codeFlow("alice", tc.shortLived)
			check := func(when string, tok *oauth2.Token) {
				t.Helper()
				if tok.ExpiresIn != int64(tc.wantTTL/time.Second) {
					t.Errorf("%s: expires_in = %d, want %d", when, tok.ExpiresIn, int64(tc.wantTTL/time.Second))
				}
				at := e.accessTokenClaims(tok.AccessToken)
				if got := at["exp"].(float64) - at["iat"].(float64); got != tc.wantTTL.Seconds() {
					t.Errorf("%s: access token exp-iat = %v, want %v", when, got, tc.wantTTL.Seconds())
				}
			}
			check("login", tok.Token)

			e.clock.Advance(11 * time.Second)
			wantStatus := http.StatusOK
			if tc.shortLived {
				wantStatus = http.StatusUnauthorized
			}
			if r := e.userinfo(tok.AccessToken); r.status != wantStatus {
				t.Errorf("userinfo 11 s later: %d, want %d", r.status, wantStatus)
			}
			next, err := e.refresh(tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			check("refresh", next)
			if r := e.userinfo(next.AccessToken); r.status != http.StatusOK {
				t.Errorf("userinfo with the refreshed token: %d", r.status)
			}
		})
	}
}
