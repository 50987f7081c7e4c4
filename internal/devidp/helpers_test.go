package devidp

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

const (
	testClientID     = "gatehouse-demo"
	testClientSecret = "demo-secret"
	testRedirectURI  = "http://127.0.0.1:9080/bff/callback"
	testPostLogout   = "http://127.0.0.1:9080/bff/logout/callback"
	testAccessTTL    = time.Minute
)

// clock is a settable time source shared by the provider and the relying
// party's verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running provider plus a relying party configured for it.
type env struct {
	t        *testing.T
	srv      *Server
	ts       *httptest.Server
	clock    *clock
	logs     *testutil.SyncBuffer
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

func testConfig() Config {
	return Config{
		AccessTokenTTL: testAccessTTL,
		Clients: []Client{{
			ID: testClientID, Secret: testClientSecret,
			RedirectURIs:           []string{testRedirectURI},
			PostLogoutRedirectURIs: []string{testPostLogout},
		}},
		Users: map[string]User{
			"alice": {Claims: map[string]any{"name": "Alice Liddell", "email": "alice@example.com", "groups": []any{"admin", "staff"}}},
			"bob":   {Claims: map[string]any{"name": "Bob", "email": "bob@example.com", "groups": []any{"staff"}}},
		},
	}
}

// newEnv starts a provider on a loopback port; issuerPath is appended to
// "http://<addr>" to make the issuer.
func newEnv(t *testing.T, issuerPath string, configure func(*Config)) *env {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	cfg := testConfig()
	e := &env{t: t, ts: ts, clock: newClock(), logs: &testutil.SyncBuffer{}}
	cfg.Listen = ts.Listener.Addr().String()
	cfg.Issuer = "http://" + cfg.Listen + issuerPath
	cfg.Now = e.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), e.logs), nil))
	if configure != nil {
		configure(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(ts.Close)

	e.provider, err = oidc.NewProvider(t.Context(), srv.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	e.verifier = e.provider.Verifier(&oidc.Config{ClientID: testClientID, Now: e.clock.Now})
	ep := e.provider.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	e.oauth = &oauth2.Config{
		ClientID: testClientID, ClientSecret: testClientSecret, Endpoint: ep, RedirectURL: testRedirectURI,
		Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess},
	}
	return e
}

func (e *env) url(path string) string { return strings.TrimSuffix(e.srv.Issuer(), "/") + path }

// response is an HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) location(t *testing.T) *url.URL {
	t.Helper()
	loc := r.header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location header; status %d, body:\n%s", r.status, r.body)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	return u
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.body)
	}
	return m
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// browser is a cookie-keeping HTTP client that does not follow redirects, so
// each hop can be inspected.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return do(b.t, b.c, req)
}

func (b *browser) post(u string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(b.t, b.c, req)
}

var loginRequestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// loginForm returns the hidden request id of a login page.
func loginForm(t *testing.T, r response) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("want the login page (200), got %d; Location %q; body:\n%s", r.status, r.header.Get("Location"), r.body)
	}
	m := loginRequestField.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no login form in:\n%s", r.body)
	}
	return m[1]
}

// login opens authURL, signs in as user on the login page and returns the
// authorization response sent to the client's redirect URI.
func (e *env) login(b *browser, authURL, user string, shortLived bool) url.Values {
	e.t.Helper()
	id := loginForm(e.t, b.get(authURL))
	form := url.Values{"request": {id}, "login": {user}}
	if shortLived {
		form.Set("short_lived", "on")
	}
	r := b.post(e.url("/login"), form)
	if r.status != http.StatusSeeOther {
		e.t.Fatalf("login: want 303, got %d:\n%s", r.status, r.body)
	}
	return callbackParams(e.t, r)
}

// callbackParams checks that r redirects to the client's redirect URI and
// returns its query.
func callbackParams(t *testing.T, r response) url.Values {
	t.Helper()
	loc := r.location(t)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirectURI {
		t.Fatalf("redirected to %q, want the redirect URI %q", got, testRedirectURI)
	}
	return loc.Query()
}

// flow is one authorization request's secrets.
type flow struct {
	verifier, nonce, state string
}

func newFlow() flow {
	return flow{verifier: oauth2.GenerateVerifier(), nonce: rand16(), state: rand16()}
}

func rand16() string { return randomID()[:16] }

func (e *env) authURL(f flow, opts ...oauth2.AuthCodeOption) string {
	opts = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier), oidc.Nonce(f.nonce)}, opts...)
	return e.oauth.AuthCodeURL(f.state, opts...)
}

// tokens is a token response with a verified ID token.
type tokens struct {
	*oauth2.Token
	rawID string
	id    *oidc.IDToken
}

// codeFlow logs user in through a fresh browser and exchanges the code.
func (e *env) codeFlow(user string, shortLived bool) (tokens, *browser) {
	e.t.Helper()
	b := newBrowser(e.t)
	f := newFlow()
	params := e.login(b, e.authURL(f), user, shortLived)
	return e.exchange(f, params), b
}

func (e *env) exchange(f flow, params url.Values) tokens {
	e.t.Helper()
	if params.Get("state") != f.state {
		e.t.Fatalf("state = %q, want %q", params.Get("state"), f.state)
	}
	if params.Get("iss") != e.srv.Issuer() {
		e.t.Fatalf("iss = %q, want %q", params.Get("iss"), e.srv.Issuer())
	}
	tok, err := e.oauth.Exchange(e.t.Context(), params.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return e.verifyTokens(tok, f.nonce)
}

func (e *env) verifyTokens(tok *oauth2.Token, nonce string) tokens {
	e.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return tokens{Token: tok}
	}
	id, err := e.verifier.Verify(e.t.Context(), raw)
	if err != nil {
		e.t.Fatalf("ID token: %v", err)
	}
	if id.Nonce != nonce {
		e.t.Fatalf("ID token nonce = %q, want %q", id.Nonce, nonce)
	}
	if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
		e.t.Fatalf("at_hash: %v", err)
	}
	return tokens{Token: tok, rawID: raw, id: id}
}

// refresh uses a refresh token as x/oauth2 would.
func (e *env) refresh(refreshToken string) (*oauth2.Token, error) {
	return e.oauth.TokenSource(e.t.Context(), &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// userinfo calls the userinfo endpoint with an access token.
func (e *env) userinfo(accessToken string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url("/userinfo"), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return do(e.t, http.DefaultClient, req)
}

// postForm posts a form to an endpoint with optional Basic credentials.
func (e *env) postForm(path string, form url.Values, basicUser, basicPassword string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPassword))
	}
	return do(e.t, http.DefaultClient, req)
}

// accessTokenClaims verifies an access token against the JWKS as an API would
// and returns its claims.
func (e *env) accessTokenClaims(raw string) map[string]any {
	e.t.Helper()
	payload, err := oidc.NewRemoteKeySet(e.t.Context(), e.url("/jwks")).VerifySignature(e.t.Context(), raw)
	if err != nil {
		e.t.Fatalf("access token signature: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		e.t.Fatal(err)
	}
	return claims
}

// wantOAuthError asserts an x/oauth2 token endpoint error code.
func wantOAuthError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if err == nil {
		t.Fatalf("want %s, got success", code)
	}
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Fatalf("want error %s, got %v", code, err)
	}
}
