package harness

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// relyingParty is a stand-in for Gatehouse: an httptest server on 127.0.0.1 with a redirect
// URI, a post-logout redirect URI and a back-channel logout endpoint.
type relyingParty struct {
	*httptest.Server
	mu             sync.Mutex
	logoutTokens   []string
	callbacks      []url.Values
	logoutReturns  []url.Values
	backchannelErr int // status to answer back-channel logouts with (0: 200)
}

func newRelyingParty(t *testing.T) *relyingParty {
	t.Helper()
	rp := &relyingParty{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		rp.mu.Lock()
		rp.callbacks = append(rp.callbacks, r.URL.Query())
		rp.mu.Unlock()
		io.WriteString(w, "callback reached")
	})
	mux.HandleFunc("GET /logout/callback", func(w http.ResponseWriter, r *http.Request) {
		rp.mu.Lock()
		rp.logoutReturns = append(rp.logoutReturns, r.URL.Query())
		rp.mu.Unlock()
		io.WriteString(w, "logged out")
	})
	mux.HandleFunc("POST /backchannel", func(w http.ResponseWriter, r *http.Request) {
		token := r.PostFormValue("logout_token")
		rp.mu.Lock()
		rp.logoutTokens = append(rp.logoutTokens, token)
		status := rp.backchannelErr
		rp.mu.Unlock()
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
	})
	rp.Server = httptest.NewServer(mux)
	t.Cleanup(rp.Close)
	return rp
}

func (rp *relyingParty) client(id string) Client {
	c := BFFClient(rp.URL)
	c.ClientID = id
	c.RedirectURIs = []string{rp.URL + "/callback"}
	c.PostLogoutRedirectURIs = []string{rp.URL + "/logout/callback"}
	c.BackchannelLogoutURI = rp.URL + "/backchannel"
	return c
}

func (rp *relyingParty) tokens() []string {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return slices.Clone(rp.logoutTokens)
}

// oidcClient bundles what a relying party knows about the provider.
type oidcClient struct {
	op       *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	meta     struct {
		EndSession    string `json:"end_session_endpoint"`
		Revocation    string `json:"revocation_endpoint"`
		Introspection string `json:"introspection_endpoint"`
		Userinfo      string `json:"userinfo_endpoint"`
		JWKS          string `json:"jwks_uri"`
	}
}

func discover(t *testing.T, p *Provider, rp *relyingParty, clientID string) *oidcClient {
	t.Helper()
	op, err := oidc.NewProvider(context.Background(), p.Issuer())
	if err != nil {
		t.Fatalf("discovery of %s: %v", p.Issuer(), err)
	}
	c := &oidcClient{op: op}
	c.conf = oauth2.Config{
		ClientID:     clientID,
		ClientSecret: "s3cret",
		Endpoint:     op.Endpoint(),
		RedirectURL:  rp.URL + "/callback",
		Scopes:       []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess, "groups"},
	}
	c.conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	c.verifier = op.Verifier(&oidc.Config{ClientID: clientID})
	if err := op.Claims(&c.meta); err != nil {
		t.Fatal(err)
	}
	return c
}

func randString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newBrowser(stopAt string) *http.Client {
	c := &http.Client{Jar: NewLoopbackJar(), Timeout: 15 * time.Second}
	if stopAt != "" {
		c.CheckRedirect = StopRedirectsAt(stopAt)
	}
	return c
}

type session struct {
	token   *oauth2.Token
	idToken *oidc.IDToken
	rawID   string
	code    string
	claims  struct {
		Email  string   `json:"email"`
		Name   string   `json:"name"`
		Groups []string `json:"groups"`
		SID    string   `json:"sid"`
	}
}

// login runs the authorization code flow with PKCE and prompt=consent through the login form
// and returns the verified result. extra are additional authorization request parameters.
func (c *oidcClient) login(t *testing.T, browser *http.Client, user, password string, extra ...oauth2.AuthCodeOption) *session {
	t.Helper()
	ctx := context.Background()
	verifier, state, nonce := oauth2.GenerateVerifier(), randString(t), randString(t)
	opts := append([]oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce), oauth2.SetAuthURLParam("prompt", "consent"),
	}, extra...)
	authURL := c.conf.AuthCodeURL(state, opts...)

	resp := Login(t, browser, authURL, user, password)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login answered %d, want a 303 to the redirect_uri", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), c.conf.RedirectURL) {
		t.Fatalf("login redirected to %q, want the redirect_uri %s", resp.Header.Get("Location"), c.conf.RedirectURL)
	}
	q := loc.Query()
	if q.Get("state") != state {
		t.Fatalf("state = %q, want %q", q.Get("state"), state)
	}
	if q.Get("iss") != issuerOf(c) {
		t.Fatalf("iss = %q, want %q (RFC 9207)", q.Get("iss"), issuerOf(c))
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("no code in %v", q)
	}

	tok, err := c.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	s := &session{token: tok, code: code}
	s.rawID, _ = tok.Extra("id_token").(string)
	if s.rawID == "" {
		t.Fatal("no id_token in the token response")
	}
	s.idToken, err = c.verifier.Verify(ctx, s.rawID)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if s.idToken.Nonce != nonce {
		t.Fatalf("nonce = %q, want %q", s.idToken.Nonce, nonce)
	}
	if err := s.idToken.Claims(&s.claims); err != nil {
		t.Fatal(err)
	}
	return s
}

func issuerOf(c *oidcClient) string {
	var m struct {
		Issuer string `json:"issuer"`
	}
	_ = c.op.Claims(&m)
	return m.Issuer
}

// tokenResponse is a raw token endpoint answer.
type tokenResponse struct {
	status int
	body   map[string]any
}

func (r tokenResponse) str(k string) string { s, _ := r.body[k].(string); return s }

func postForm(t *testing.T, hc *http.Client, endpoint, clientID, secret string, form url.Values) (tokenResponse, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tokenResponse{}, err
	}
	defer resp.Body.Close()
	out := tokenResponse{status: resp.StatusCode, body: map[string]any{}}
	body, _ := io.ReadAll(resp.Body)
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out.body); err != nil {
			t.Fatalf("POST %s: status %d, not JSON: %q", endpoint, resp.StatusCode, body)
		}
	}
	return out, nil
}

func (c *oidcClient) token(t *testing.T, form url.Values) tokenResponse {
	t.Helper()
	r, err := postForm(t, http.DefaultClient, c.conf.Endpoint.TokenURL, c.conf.ClientID, c.conf.ClientSecret, form)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return r
}

func (c *oidcClient) refresh(t *testing.T, rt string) tokenResponse {
	t.Helper()
	return c.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func (c *oidcClient) userinfoStatus(t *testing.T, accessToken string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.meta.Userinfo, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c *oidcClient) introspect(t *testing.T, token string) bool {
	t.Helper()
	r, err := postForm(t, http.DefaultClient, c.meta.Introspection, c.conf.ClientID, c.conf.ClientSecret, url.Values{"token": {token}})
	if err != nil || r.status != 200 {
		t.Fatalf("introspection: %v %d %v", err, r.status, r.body)
	}
	active, _ := r.body["active"].(bool)
	return active
}

func wantError(t *testing.T, r tokenResponse, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %v, want %d %s", r.status, r.body, status, code)
	}
}

// TestProvider drives one provider through everything Gatehouse's e2e tests rely on.
func TestProvider(t *testing.T) {
	rp := newRelyingParty(t)
	p := StartProvider(t, ProviderConfig{
		Clients:   []Client{rp.client("bff")},
		Resources: []Resource{{Resource: "https://orders.example", Scope: "orders:read", AccessTokenFormat: "jwt", AccessTokenTTL: 30 * time.Second}},
	})
	c := discover(t, p, rp, "bff")
	if c.meta.EndSession == "" || c.meta.Revocation == "" || c.meta.Introspection == "" {
		t.Fatalf("discovery lacks endpoints: %+v", c.meta)
	}
	callback := rp.URL + "/callback"

	var seenMu sync.Mutex
	var seen []string // every secret a client got from the provider
	see := func(values ...string) {
		seenMu.Lock()
		defer seenMu.Unlock()
		for _, v := range values {
			if v != "" {
				seen = append(seen, v)
			}
		}
	}
	seeResponse := func(r tokenResponse) { see(r.str("access_token"), r.str("refresh_token"), r.str("id_token")) }

	t.Run("code flow, ID token claims, refresh rotation and reuse detection", func(t *testing.T) {
		p.Reset(t)
		s := c.login(t, newBrowser(callback), DefaultUser, DefaultPassword)
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		if s.idToken.Subject != "alice" || s.claims.Email != "alice@example.com" || s.claims.Name != "Alice" ||
			!slices.Equal(s.claims.Groups, []string{"admin", "staff"}) || s.claims.SID == "" {
			t.Fatalf("ID token claims = sub %q %+v", s.idToken.Subject, s.claims)
		}
		if !strings.EqualFold(s.token.TokenType, "bearer") || s.token.RefreshToken == "" {
			t.Fatalf("token response: type %q, refresh token %t", s.token.TokenType, s.token.RefreshToken != "")
		}
		if st := c.userinfoStatus(t, s.token.AccessToken); st != 200 {
			t.Fatalf("userinfo = %d", st)
		}

		rt0 := s.token.RefreshToken
		r1 := c.refresh(t, rt0)
		seeResponse(r1)
		r2 := c.refresh(t, r1.str("refresh_token"))
		seeResponse(r2)
		rt1, rt2 := r1.str("refresh_token"), r2.str("refresh_token")
		if r1.status != 200 || r2.status != 200 || rt1 == "" || rt2 == "" || rt1 == rt0 || rt2 == rt1 {
			t.Fatalf("refreshes did not rotate: %d %d", r1.status, r2.status)
		}
		if r2.str("id_token") == "" {
			t.Fatal("refresh response without id_token")
		}
		if st := c.userinfoStatus(t, r2.str("access_token")); st != 200 {
			t.Fatalf("userinfo with refreshed token = %d", st)
		}

		// Reusing a rotated refresh token is refused and revokes the whole grant.
		wantError(t, c.refresh(t, rt0), 400, "invalid_grant")
		wantError(t, c.refresh(t, rt2), 400, "invalid_grant")
		if st := c.userinfoStatus(t, r2.str("access_token")); st != 401 {
			t.Fatalf("userinfo after grant revocation = %d, want 401", st)
		}

		st := p.Stats(t)
		if st.TokenRequests["authorization_code"] != 1 || st.TokenRequests["refresh_token"] != 4 ||
			st.TokenResponses["200"] != 3 || st.TokenResponses["400"] != 2 || st.Logins != 1 {
			t.Fatalf("stats = %+v", st)
		}
	})

	t.Run("authorization code replay", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		authURL := c.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "consent"))
		resp := Login(t, newBrowser(callback), authURL, DefaultUser, DefaultPassword)
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		code := loc.Query().Get("code")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback}, "code_verifier": {verifier}}
		first := c.token(t, form)
		seeResponse(first)
		see(code)
		if first.status != 200 {
			t.Fatalf("first exchange: %d %v", first.status, first.body)
		}
		wantError(t, c.token(t, form), 400, "invalid_grant")
		if c.introspect(t, first.str("access_token")) {
			t.Fatal("access token still active after the code was replayed")
		}
		// PKCE is required: an exchange without the verifier fails.
		resp = Login(t, newBrowser(callback), c.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "consent")), DefaultUser, DefaultPassword)
		resp.Body.Close()
		loc, _ = url.Parse(resp.Header.Get("Location"))
		see(loc.Query().Get("code"))
		wantError(t, c.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {callback}}), 400, "invalid_grant")
		// And an authorization request without code_challenge is refused outright.
		resp, err := newBrowser(callback).Get(c.conf.AuthCodeURL("st"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ = url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("error") != "invalid_request" {
			t.Fatalf("authorization without PKCE: %d %s", resp.StatusCode, redact(loc.String()))
		}
	})

	t.Run("wrong password and cancel", func(t *testing.T) {
		browser := newBrowser(callback)
		authURL := c.conf.AuthCodeURL("st2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		resp := Login(t, browser, authURL, DefaultUser, "not-the-password")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "Invalid username or password") ||
			!strings.Contains(string(body), `name="password"`) || strings.Contains(string(body), "not-the-password") {
			t.Fatalf("wrong password: %d\n%s", resp.StatusCode, body)
		}
		resp = AbortLogin(t, browser, authURL)
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if q := loc.Query(); q.Get("error") != "access_denied" || q.Get("state") != "st2" || q.Get("iss") != p.Issuer() {
			t.Fatalf("cancel redirected to %s", loc)
		}
		if st := p.Stats(t); st.FailedLogins < 1 {
			t.Fatalf("failed logins not counted: %+v", st)
		}
	})

	t.Run("token endpoint faults", func(t *testing.T) {
		p.Reset(t)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		cc := func() (tokenResponse, error) {
			r, err := postForm(t, hc, c.conf.Endpoint.TokenURL, "bff", "s3cret", url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"}})
			seeResponse(r)
			return r, err
		}

		p.SetTokenEndpointMode(t, Mode503, 0)
		r, err := cc()
		if err != nil || r.status != 503 || r.str("error") != "temporarily_unavailable" {
			t.Fatalf("503 mode: %v %d %v", err, r.status, r.body)
		}
		// Other endpoints are unaffected.
		if resp, err := http.Get(p.DiscoveryURL()); err != nil || resp.StatusCode != 200 {
			t.Fatalf("discovery during token faults: %v", err)
		} else {
			resp.Body.Close()
		}

		p.SetTokenEndpointMode(t, Mode429, 2*time.Second)
		r, err = cc()
		if err != nil || r.status != 429 || r.str("error") != "temporarily_unavailable" {
			t.Fatalf("429 mode: %v %d %v", err, r.status, r.body)
		}

		p.SetTokenEndpointMode(t, ModeReset, 0)
		if r, err := cc(); err == nil {
			t.Fatalf("reset mode answered %d", r.status)
		}

		p.SetTokenEndpointMode(t, ModeDelay, 400*time.Millisecond)
		start := time.Now()
		r, err = cc()
		if err != nil || r.status != 200 || time.Since(start) < 400*time.Millisecond {
			t.Fatalf("delay mode: %v %d after %s", err, r.status, time.Since(start))
		}

		p.SetTokenEndpointMode(t, ModeNormal, 0)
		r, err = cc()
		if err != nil || r.status != 200 || r.str("access_token") == "" || !strings.EqualFold(r.str("token_type"), "bearer") {
			t.Fatalf("normal mode: %v %d %v", err, r.status, r.body)
		}

		st := p.Stats(t)
		if st.TokenRequests["client_credentials"] != 5 || st.TokenResponses["503"] != 1 || st.TokenResponses["429"] != 1 ||
			st.TokenResponses["reset"] != 1 || st.TokenResponses["200"] != 2 {
			t.Fatalf("stats = %+v", st)
		}
	})

	t.Run("revoke grants", func(t *testing.T) {
		p.Reset(t)
		s := c.login(t, newBrowser(callback), DefaultUser, DefaultPassword)
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		if !c.introspect(t, s.token.AccessToken) {
			t.Fatal("fresh access token inactive")
		}
		if n := p.RevokeGrants(t, "alice"); n < 1 {
			t.Fatalf("revoked %d grants", n)
		}
		if c.introspect(t, s.token.AccessToken) || c.introspect(t, s.token.RefreshToken) {
			t.Fatal("tokens still active after revoke-grants")
		}
		if st := c.userinfoStatus(t, s.token.AccessToken); st != 401 {
			t.Fatalf("userinfo = %d, want 401", st)
		}
		wantError(t, c.refresh(t, s.token.RefreshToken), 400, "invalid_grant")

		// RFC 7009 revocation is counted.
		s = c.login(t, newBrowser(callback), DefaultUser, DefaultPassword)
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		r, err := postForm(t, http.DefaultClient, c.meta.Revocation, "bff", "s3cret", url.Values{"token": {s.token.RefreshToken}, "token_type_hint": {"refresh_token"}})
		if err != nil || r.status != 200 {
			t.Fatalf("revocation: %v %d", err, r.status)
		}
		wantError(t, c.refresh(t, s.token.RefreshToken), 400, "invalid_grant")
		if st := p.Stats(t); st.Revocations != 1 {
			t.Fatalf("revocations = %d", st.Revocations)
		}
	})

	t.Run("resource indicators", func(t *testing.T) {
		ctx := context.Background()
		keys := oidc.NewRemoteKeySet(ctx, c.meta.JWKS)
		checkJWT := func(raw string) {
			t.Helper()
			if _, err := keys.VerifySignature(ctx, raw); err != nil {
				t.Fatalf("resource access token signature: %v", err)
			}
			tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				jwt.Claims
				Scope string `json:"scope"`
			}
			if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
				t.Fatal(err)
			}
			if !claims.Audience.Contains("https://orders.example") || claims.Issuer != p.Issuer() || claims.Scope != "orders:read" {
				t.Fatalf("resource token claims = %+v", claims)
			}
			if typ, _ := tok.Headers[0].ExtraHeaders["typ"].(string); typ != "at+jwt" {
				t.Fatalf("typ = %q", typ)
			}
		}

		r := c.token(t, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://orders.example"}, "scope": {"orders:read"}})
		seeResponse(r)
		if r.status != 200 {
			t.Fatalf("client_credentials with resource: %d %v", r.status, r.body)
		}
		checkJWT(r.str("access_token"))
		wantError(t, c.token(t, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://unknown.example"}}), 400, "invalid_target")

		// Authorization with a resource: the code gives a normal opaque, userinfo-capable token
		// without a resource parameter, and the refresh token a JWT for the resource with one.
		s := c.login(t, newBrowser(callback), DefaultUser, DefaultPassword,
			oauth2.SetAuthURLParam("resource", "https://orders.example"),
			oauth2.SetAuthURLParam("scope", "openid email offline_access orders:read"))
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		if strings.Count(s.token.AccessToken, ".") == 2 {
			t.Fatal("access token without a resource parameter is a JWT")
		}
		if st := c.userinfoStatus(t, s.token.AccessToken); st != 200 {
			t.Fatalf("userinfo = %d", st)
		}
		r = c.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.token.RefreshToken}, "resource": {"https://orders.example"}})
		seeResponse(r)
		if r.status != 200 {
			t.Fatalf("refresh with resource: %d %v", r.status, r.body)
		}
		checkJWT(r.str("access_token"))
	})

	t.Run("back-channel logout through end_session with logout=yes", func(t *testing.T) {
		p.Reset(t)
		browser := newBrowser(rp.URL + "/")
		s := c.login(t, browser, DefaultUser, DefaultPassword)
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		before := len(rp.tokens())

		endSession := c.meta.EndSession + "?" + url.Values{
			"id_token_hint":            {s.rawID},
			"post_logout_redirect_uri": {rp.URL + "/logout/callback"},
			"state":                    {"bye"},
		}.Encode()
		resp := ConfirmLogout(t, browser, endSession)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != rp.URL+"/logout/callback?state=bye" {
			t.Fatalf("logout answered %d %q", resp.StatusCode, loc)
		}

		tokens := rp.tokens()[before:]
		if len(tokens) != 1 {
			t.Fatalf("%d back-channel logouts, want 1", len(tokens))
		}
		see(tokens...)
		lt, err := c.verifier.VerifyLogout(context.Background(), tokens[0])
		if err != nil {
			t.Fatalf("VerifyLogout: %v", err)
		}
		if lt.Subject != "alice" || lt.SessionID != s.claims.SID {
			t.Fatalf("logout token sub %q sid %q, want alice %q", lt.Subject, lt.SessionID, s.claims.SID)
		}
		st := p.Stats(t)
		if len(st.Backchannel) != 1 || st.Backchannel[0].Status != 200 || st.Backchannel[0].ClientID != "bff" ||
			st.Backchannel[0].SID != s.claims.SID || st.Backchannel[0].Sub != "alice" {
			t.Fatalf("stats.backchannel = %+v", st.Backchannel)
		}
		// oidc-provider keeps offline_access grants on logout ("persistsLogout"): the refresh
		// token still works. Gatehouse revokes it itself (RFC 7009) when it logs out.
		if r := c.refresh(t, s.token.RefreshToken); r.status != 200 {
			t.Fatalf("refresh after logout: %d %v", r.status, r.body)
		} else {
			seeResponse(r)
		}
		// The provider session is gone: the next login shows the form again.
		s2 := c.login(t, browser, DefaultUser, DefaultPassword)
		see(s2.code, s2.token.AccessToken, s2.token.RefreshToken, s2.rawID)

		// The provider reports what the client answered.
		rp.mu.Lock()
		rp.backchannelErr = http.StatusBadRequest
		rp.mu.Unlock()
		defer func() { rp.mu.Lock(); rp.backchannelErr = 0; rp.mu.Unlock() }()
		resp = ConfirmLogout(t, browser, c.meta.EndSession+"?client_id=bff")
		resp.Body.Close()
		st = p.Stats(t)
		if n := len(st.Backchannel); n != 2 || st.Backchannel[1].Status != 400 {
			t.Fatalf("stats.backchannel = %+v", st.Backchannel)
		}
		see(rp.tokens()...)
	})

	t.Run("end-sessions control endpoint", func(t *testing.T) {
		p.Reset(t)
		s := c.login(t, newBrowser(callback), "alice@example.com", DefaultPassword) // login by email works too
		see(s.code, s.token.AccessToken, s.token.RefreshToken, s.rawID)
		before := len(rp.tokens())
		sessions, bc := p.EndSessions(t, "alice")
		if sessions < 1 || bc < 1 {
			t.Fatalf("end-sessions: %d sessions, %d back-channel logouts", sessions, bc)
		}
		tokens := rp.tokens()[before:]
		see(tokens...)
		found := false
		for _, raw := range tokens {
			lt, err := c.verifier.VerifyLogout(context.Background(), raw)
			if err != nil {
				t.Fatalf("VerifyLogout: %v", err)
			}
			found = found || lt.SessionID == s.claims.SID
		}
		if !found {
			t.Fatalf("no logout token for sid %q among %d", s.claims.SID, len(tokens))
		}
		wantError(t, c.refresh(t, s.token.RefreshToken), 400, "invalid_grant")
		if n := len(p.Stats(t).Backchannel); n != len(tokens) {
			t.Fatalf("stats list %d back-channel calls, the client got %d", n, len(tokens))
		}
	})

	t.Run("token log holds every secret handed out", func(t *testing.T) {
		logged := p.IssuedTokens(t)
		kinds := map[string]bool{}
		values := map[string]bool{}
		for _, s := range logged {
			kinds[s.Kind] = true
			values[s.Value] = true
		}
		for _, k := range []string{"access_token", "refresh_token", "id_token", "authorization_code", "logout_token"} {
			if !kinds[k] {
				t.Errorf("no %s in the token log", k)
			}
		}
		seenMu.Lock()
		defer seenMu.Unlock()
		for _, v := range seen {
			if !values[v] {
				t.Errorf("secret %.12s… missing from the token log", v)
			}
		}
		if len(p.IssuedSecrets(t)) != len(logged) {
			t.Error("IssuedSecrets and IssuedTokens disagree")
		}
		t.Logf("%d secrets logged, %d seen by the client", len(logged), len(seen))
	})

	t.Run("clean stop", func(t *testing.T) {
		p.Stop(t)
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p.Port()), time.Second); err == nil {
			conn.Close()
			t.Fatal("provider still listening after Stop")
		}
	})
}

// TestIssuerVariants: an issuer with a trailing slash and one with a path both work for
// discovery, login, the ID token and logout.
func TestIssuerVariants(t *testing.T) {
	for _, tc := range []struct{ name, path string }{
		{"trailing slash", "/"},
		{"path", "/oidc"},
		{"path with trailing slash", "/idp/realm/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rp := newRelyingParty(t)
			p := StartProvider(t, ProviderConfig{IssuerPath: tc.path, Clients: []Client{rp.client("bff")}})
			if !strings.HasSuffix(p.Issuer(), tc.path) {
				t.Fatalf("issuer %q", p.Issuer())
			}
			c := discover(t, p, rp, "bff")
			if issuerOf(c) != p.Issuer() {
				t.Fatalf("discovery issuer %q, want %q", issuerOf(c), p.Issuer())
			}
			wantPrefix := strings.TrimSuffix(p.Issuer(), "/") + "/"
			for _, ep := range []string{c.conf.Endpoint.AuthURL, c.conf.Endpoint.TokenURL, c.meta.EndSession, c.meta.JWKS} {
				if !strings.HasPrefix(ep, wantPrefix) {
					t.Fatalf("endpoint %s not under the issuer %s", ep, p.Issuer())
				}
			}
			browser := newBrowser(rp.URL + "/")
			s := c.login(t, browser, DefaultUser, DefaultPassword)
			if s.idToken.Issuer != p.Issuer() {
				t.Fatalf("ID token iss %q", s.idToken.Issuer)
			}
			r := c.refresh(t, s.token.RefreshToken)
			if r.status != 200 {
				t.Fatalf("refresh: %d %v", r.status, r.body)
			}
			resp := ConfirmLogout(t, browser, c.meta.EndSession+"?"+url.Values{
				"id_token_hint": {s.rawID}, "post_logout_redirect_uri": {rp.URL + "/logout/callback"}, "state": {"s"},
			}.Encode())
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || len(rp.tokens()) != 1 {
				t.Fatalf("logout: %d, %d back-channel logouts", resp.StatusCode, len(rp.tokens()))
			}
			if _, err := c.verifier.VerifyLogout(context.Background(), rp.tokens()[0]); err != nil {
				t.Fatalf("VerifyLogout: %v", err)
			}
		})
	}
}

// TestClientAuthMethods: client_secret_post and private_key_jwt clients.
func TestClientAuthMethods(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: key.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})

	rp := newRelyingParty(t)
	post := rp.client("post")
	post.TokenEndpointAuthMethod = "client_secret_post"
	pk := rp.client("pkjwt")
	pk.ClientSecret = ""
	pk.TokenEndpointAuthMethod = "private_key_jwt"
	pk.JWKS = jwks
	pk.Extra = map[string]any{"token_endpoint_auth_signing_alg": "RS256"}
	p := StartProvider(t, ProviderConfig{Clients: []Client{post, pk}})
	c := discover(t, p, rp, "post")

	// client_secret_post: credentials in the body. (oidc-provider treats client_secret_basic
	// and client_secret_post as interchangeable, so Basic would be accepted too.)
	r, err := postForm(t, http.DefaultClient, c.conf.Endpoint.TokenURL, "", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"post"}, "client_secret": {"s3cret"},
	})
	if err != nil || r.status != 200 {
		t.Fatalf("client_secret_post: %v %d %v", err, r.status, r.body)
	}
	r, _ = postForm(t, http.DefaultClient, c.conf.Endpoint.TokenURL, "", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"post"}, "client_secret": {"wrong"},
	})
	wantError(t, r, 401, "invalid_client")

	// private_key_jwt.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: "pkjwt", Subject: "pkjwt", Audience: jwt.Audience{p.Issuer()}, ID: randString(t),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	r, err = postForm(t, http.DefaultClient, c.conf.Endpoint.TokenURL, "", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pkjwt"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	})
	if err != nil || r.status != 200 || r.str("access_token") == "" {
		t.Fatalf("private_key_jwt: %v %d %v", err, r.status, r.body)
	}
	// The same assertion again is a replay.
	r, _ = postForm(t, http.DefaultClient, c.conf.Endpoint.TokenURL, "", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pkjwt"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	})
	wantError(t, r, 401, "invalid_client")
}

// TestLoopbackJar: Secure cookies set over http://127.0.0.1 come back over http.
func TestLoopbackJar(t *testing.T) {
	jar := NewLoopbackJar()
	for _, raw := range []string{"http://127.0.0.1:9080/bff/user", "http://localhost:9080/"} {
		u, _ := url.Parse(raw)
		jar.SetCookies(u, []*http.Cookie{{Name: "__Host-gatehouse", Value: "v", Path: "/", Secure: true, HttpOnly: true}})
		if got := jar.Cookies(u); len(got) != 1 || got[0].Value != "v" {
			t.Fatalf("%s: cookies = %v", raw, got)
		}
	}
	other, _ := url.Parse("http://example.com/")
	jar.SetCookies(other, []*http.Cookie{{Name: "s", Value: "v", Path: "/", Secure: true}})
	if got := jar.Cookies(other); len(got) != 0 {
		t.Fatalf("secure cookie sent over http to a non-loopback host: %v", got)
	}
}

// TestParseForms covers the form extractor on the shapes the provider produces.
func TestParseForms(t *testing.T) {
	page := `<form method="post" action="/oidc/session/end/confirm" id="op.logoutForm"><input type="hidden" name="xsrf" value="a&amp;b"/>
<button type="submit" name="logout" value="yes">Yes</button><button type="submit">No</button></form>
<form method='POST' action=/x><input name=login value='bob'><input type=password name=password>
<input type=checkbox name=remember checked><input type=checkbox name=nope><textarea name=t>hi &lt;there&gt;</textarea>
<select name=s><option value=1>one<option value=2 selected>two</select><input type=submit value=Go></form>`
	forms := parseForms(page)
	if len(forms) != 2 {
		t.Fatalf("%d forms", len(forms))
	}
	v := forms[0].values(nil)
	if forms[0].action != "/oidc/session/end/confirm" || v.Get("xsrf") != "a&b" || v.Get("logout") != "yes" {
		t.Fatalf("logout form: %+v %v", forms[0], v)
	}
	v = forms[1].values(nil)
	want := url.Values{"login": {"bob"}, "password": {""}, "remember": {"on"}, "t": {"hi <there>"}, "s": {"2"}}
	if forms[1].method != "POST" || forms[1].action != "/x" || v.Encode() != want.Encode() {
		t.Fatalf("second form: %+v %v", forms[1], v)
	}
}

// TestMissingSetupFailsLoudly: without node the harness fails (never skips) and says what to do.
func TestMissingSetupFailsLoudly(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		CheckNodeSetup(ft)
	}()
	if !ft.failed || ft.skipped || !strings.Contains(ft.msg, "npm ci --prefix e2e") {
		t.Fatalf("failed=%t skipped=%t msg=%q", ft.failed, ft.skipped, ft.msg)
	}
}

type fakeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

var errFatal = errors.New("fatal")

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	panic(errFatal)
}
func (f *fakeTB) Skip(...any)          { f.skipped = true; panic(errFatal) }
func (f *fakeTB) Skipf(string, ...any) { f.skipped = true; panic(errFatal) }
func (f *fakeTB) SkipNow()             { f.skipped = true; panic(errFatal) }

// TestProviderACR: with ACRValues the provider advertises them, every ID token carries acr
// and auth_time, acr_values asks for a class the user may reach (and brings the login page
// back when the provider session has a weaker one), a user without it gets the weakest, and
// access tokens carry the acr for introspection, also after a refresh.
func TestProviderACR(t *testing.T) {
	rp := newRelyingParty(t)
	users := DefaultUsers()
	users[0].ACR = []string{"silver", "gold"} // alice; bob has no list: silver only
	p := StartProvider(t, ProviderConfig{ACRValues: []string{"silver", "gold"}, Clients: []Client{rp.client("bff")}, Users: users})
	c := discover(t, p, rp, "bff")
	var meta struct {
		ACRValues []string `json:"acr_values_supported"`
	}
	if err := c.op.Claims(&meta); err != nil || !slices.Equal(meta.ACRValues, []string{"silver", "gold"}) {
		t.Fatalf("acr_values_supported = %q (%v)", meta.ACRValues, err)
	}
	callback := rp.URL + "/callback"
	acrOf := func(t *testing.T, s *session) (string, int64) {
		t.Helper()
		var claims struct {
			ACR      string `json:"acr"`
			AuthTime int64  `json:"auth_time"`
		}
		if err := s.idToken.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		return claims.ACR, claims.AuthTime
	}
	tokenACR := func(t *testing.T, token string) string {
		t.Helper()
		r, err := postForm(t, http.DefaultClient, c.meta.Introspection, "bff", "s3cret", url.Values{"token": {token}})
		if err != nil || r.status != 200 || r.body["active"] != true {
			t.Fatalf("introspection: %v %d %v", err, r.status, r.body)
		}
		return r.str("acr")
	}

	browser := newBrowser(callback)
	s := c.login(t, browser, DefaultUser, DefaultPassword)
	if acr, at := acrOf(t, s); acr != "silver" || at == 0 {
		t.Fatalf("a plain login: acr %q, auth_time %d; want silver and a time", acr, at)
	}
	if got := tokenACR(t, s.token.AccessToken); got != "silver" {
		t.Fatalf("the access token's acr = %q", got)
	}
	// The same browser asks for gold: c.login fails unless the login form is shown again.
	s = c.login(t, browser, DefaultUser, DefaultPassword, oauth2.SetAuthURLParam("acr_values", "gold"))
	if acr, _ := acrOf(t, s); acr != "gold" {
		t.Fatalf("a login with acr_values=gold: acr %q", acr)
	}
	if got := tokenACR(t, s.token.AccessToken); got != "gold" {
		t.Fatalf("the gold access token's acr = %q", got)
	}
	r := c.refresh(t, s.token.RefreshToken)
	if r.status != 200 || tokenACR(t, r.str("access_token")) != "gold" {
		t.Fatalf("after a refresh: %d, acr %q", r.status, tokenACR(t, r.str("access_token")))
	}

	s = c.login(t, newBrowser(callback), "bob", "builder", oauth2.SetAuthURLParam("acr_values", "gold"))
	if acr, _ := acrOf(t, s); acr != "silver" {
		t.Fatalf("bob asked for gold: acr %q, want silver (the weaker acr a provider may return)", acr)
	}
}
