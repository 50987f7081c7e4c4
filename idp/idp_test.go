package idp_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/idp/idptest"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// redirectURL is where the fake sends the browser back. Nothing listens there: the
// tests read the redirect instead of following it.
const redirectURL = "http://127.0.0.1:1/callback"

// newClient returns a Client registered with the fake provider as its default client.
func newClient(t *testing.T, p *idptest.Provider, mutate ...func(*idp.Config)) *idp.Client {
	t.Helper()
	cfg := idp.Config{
		Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
		RedirectURL: redirectURL, Scopes: []string{"openid", "profile", "email"},
		HTTPClient: p.Server.Client(),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := idp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// at fixes the client's clock.
func at(now time.Time) func(*idp.Config) {
	return func(c *idp.Config) { c.Now = func() time.Time { return now } }
}

// reset puts the fake's knobs back to a correct provider.
func reset(p *idptest.Provider) {
	p.Set(func(k *idptest.Knobs) { *k = idptest.Knobs{AdvertiseIss: true} })
}

// closedURL is the URL of a loopback port that nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// sentinels are the package's error classes; an error wraps at most one.
var sentinels = []error{idp.ErrRefused, idp.ErrUnavailable, idp.ErrInvalidToken}

// wantErr checks that err is nil when want is nil, and otherwise wraps want and none of
// the other classes, and carries none of the provider's error description.
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want one wrapping %q", err, want)
	}
	for _, other := range sentinels {
		if other != want && errors.Is(err, other) {
			t.Fatalf("error %v wraps %q as well as %q", err, other, want)
		}
	}
	if strings.Contains(err.Error(), "secret-looking") {
		t.Fatalf("the provider's error description leaked into %q", err)
	}
}

// wantTokenError checks that err is a *idp.TokenError with this status and code.
func wantTokenError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var te *idp.TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *idp.TokenError", err, err)
	}
	if te.Status != status || te.Code != code {
		t.Fatalf("TokenError status %d code %q, want %d %q", te.Status, te.Code, status, code)
	}
}

// authorization is the result of one trip through the fake's /authorize.
type authorization struct {
	state, nonce, verifier string
	code                   string
	iss                    string
	issPresent             bool
}

// authorize starts a login as a browser would and reads the provider's redirect.
func authorize(t *testing.T, p *idptest.Provider, c *idp.Client) authorization {
	t.Helper()
	a := authorization{state: rand.Text(), nonce: rand.Text(), verifier: rand.Text() + rand.Text()}
	target, err := c.AuthCodeURL(t.Context(), a.state, a.nonce, a.verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	loc := follow(t, p, target)
	q := loc.Query()
	if q.Get("state") != a.state {
		t.Fatalf("the provider returned state %q, want %q", q.Get("state"), a.state)
	}
	a.code, a.iss, a.issPresent = q.Get("code"), q.Get("iss"), q.Has("iss")
	if a.code == "" {
		t.Fatalf("no code in the redirect %s", loc)
	}
	return a
}

// follow requests target from the fake and returns where it redirects to.
func follow(t *testing.T, p *idptest.Provider, target string) *url.URL {
	t.Helper()
	browser := &http.Client{
		Transport:     p.Server.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := browser.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the provider answered %s to %s", resp.Status, target)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// login runs a whole authorization code flow.
func login(t *testing.T, p *idptest.Provider, c *idp.Client) (*idp.Tokens, *idp.Identity, error) {
	t.Helper()
	a := authorize(t, p, c)
	return c.Exchange(t.Context(), a.code, a.verifier, a.nonce)
}

func mustLogin(t *testing.T, p *idptest.Provider, c *idp.Client) *idp.Tokens {
	t.Helper()
	tokens, _, err := login(t, p, c)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestNewChecksConfig(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok := idp.Config{Issuer: "https://idp.example", ClientID: "gatehouse", ClientSecret: "s"}
	for _, tc := range []struct {
		name   string
		mutate func(*idp.Config)
		want   []string // every problem the error must list; none for a valid config
	}{
		{"valid with a secret", func(*idp.Config) {}, nil},
		{"valid with a key", func(c *idp.Config) { c.ClientSecret, c.ClientKey = "", ecKey }, nil},
		{"valid post", func(c *idp.Config) { c.AuthMethod = idp.AuthClientSecretPost }, nil},
		{"everything missing", func(c *idp.Config) { *c = idp.Config{} },
			[]string{"issuer is required", "client_id is required", "a client secret or a client key is required"}},
		{"relative issuer", func(c *idp.Config) { c.Issuer = "idp.example" }, []string{"not an absolute URL"}},
		{"private_key_jwt without a key", func(c *idp.Config) { c.AuthMethod = idp.AuthPrivateKeyJWT }, []string{"private_key_jwt needs a client key"}},
		{"unknown method", func(c *idp.Config) { c.AuthMethod = "client_secret_jwt" }, []string{`unknown client authentication method "client_secret_jwt"`}},
		{"valid tls_client_auth", func(c *idp.Config) { c.AuthMethod, c.ClientSecret = idp.AuthTLSClient, "" }, nil},
		{"unknown PAR mode", func(c *idp.Config) { c.PAR = "sometimes" }, []string{`par is "sometimes"`}},
		{"Ed25519 key", func(c *idp.Config) { c.ClientKey = edKey }, []string{"not supported"}},
		{"algorithm that does not fit the key", func(c *idp.Config) { c.ClientKey, c.ClientKeyAlg = ecKey, "RS256" }, []string{"does not fit the key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			c, err := idp.New(cfg)
			if len(tc.want) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewDoesNotContactTheProvider(t *testing.T) {
	c, err := idp.New(idp.Config{Issuer: closedURL(t), ClientID: "gatehouse", ClientSecret: "s"})
	if err != nil {
		t.Fatalf("New with an unreachable provider: %v", err)
	}
	if ready, err := c.Ready(); ready || err != nil {
		t.Fatalf("Ready() = %v, %v before any discovery; want false, nil", ready, err)
	}
}

func TestDiscovery(t *testing.T) {
	p := idptest.New(t)

	t.Run("ready after discovery", func(t *testing.T) {
		c := newClient(t, p)
		if ready, err := c.Ready(); ready || err != nil {
			t.Fatalf("Ready() = %v, %v before discovery", ready, err)
		}
		if err := c.Discover(t.Context()); err != nil {
			t.Fatal(err)
		}
		if ready, err := c.Ready(); !ready || err != nil {
			t.Fatalf("Ready() = %v, %v after discovery", ready, err)
		}
		m, err := c.Metadata(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if m.Issuer != p.Issuer || m.TokenEndpoint != p.Issuer+"/token" || m.JWKSURI != p.Issuer+"/jwks" ||
			m.RevocationEndpoint != p.Issuer+"/revoke" || m.EndSessionEndpoint != p.Issuer+"/end_session" ||
			!m.IssuerParameterSupported || !slices.Equal(m.IDTokenSigningAlgs, []string{"RS256"}) {
			t.Fatalf("metadata %+v does not describe the fake", m)
		}
	})

	t.Run("provider down", func(t *testing.T) {
		down := closedURL(t)
		c, err := idp.New(idp.Config{
			Issuer: down, DiscoveryURL: down + "/.well-known/openid-configuration?token=discovery-secret",
			ClientID: "gatehouse", ClientSecret: "s",
		})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Discover(t.Context())
		wantErr(t, err, idp.ErrUnavailable)
		if strings.Contains(err.Error(), "discovery-secret") {
			t.Fatalf("the discovery URL's query leaked into %q", err)
		}
		ready, last := c.Ready()
		if ready || !errors.Is(last, idp.ErrUnavailable) {
			t.Fatalf("Ready() = %v, %v; want false and the discovery error", ready, last)
		}
		// Every method that needs the metadata reports the provider unavailable.
		ctx := t.Context()
		_, err = c.AuthCodeURL(ctx, "s", "n", "v", nil)
		wantErr(t, err, idp.ErrUnavailable)
		_, _, err = c.Exchange(ctx, "code", "v", "n")
		wantErr(t, err, idp.ErrUnavailable)
		_, err = c.Refresh(ctx, "rt", "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrUnavailable)
		_, err = c.ClientCredentials(ctx, idp.RefreshOptions{})
		wantErr(t, err, idp.ErrUnavailable)
		wantErr(t, c.Revoke(ctx, "rt", ""), idp.ErrUnavailable)
		wantErr(t, c.CheckIssuerParam(ctx, down, true), idp.ErrUnavailable)
		_, err = c.VerifyLogoutToken(ctx, "a.b.c")
		wantErr(t, err, idp.ErrUnavailable)
		_, err = c.Metadata(ctx)
		wantErr(t, err, idp.ErrUnavailable)
	})

	t.Run("issuer must match exactly", func(t *testing.T) {
		// Discovery is read from the same place (the trailing slash is trimmed there),
		// but the document's issuer has no slash.
		c := newClient(t, p, func(c *idp.Config) { c.Issuer = p.Issuer + "/" })
		err := c.Discover(t.Context())
		wantErr(t, err, idp.ErrRefused)
		if !strings.Contains(err.Error(), "must match exactly") {
			t.Fatalf("error %q does not explain the mismatch", err)
		}
		if ready, _ := c.Ready(); ready {
			t.Fatal("ready with a mismatched issuer")
		}
	})

	for _, tc := range []struct {
		name   string
		status int
		doc    string // %[1]s is the server's URL
		want   error
		msg    string
	}{
		{"another issuer", 200, `{"issuer":"https://evil.example","authorization_endpoint":"%[1]s/a","token_endpoint":"%[1]s/t","jwks_uri":"%[1]s/k"}`,
			idp.ErrRefused, "must match exactly"},
		{"endpoints missing", 200, `{"issuer":"%[1]s","authorization_endpoint":"%[1]s/a"}`, idp.ErrRefused, "metadata lacks"},
		{"no PKCE S256", 200, `{"issuer":"%[1]s","authorization_endpoint":"%[1]s/a","token_endpoint":"%[1]s/t","jwks_uri":"%[1]s/k","code_challenge_methods_supported":["plain"]}`,
			idp.ErrRefused, "PKCE S256"},
		{"not JSON", 200, `<html>sign in</html>`, idp.ErrUnavailable, "not a JSON metadata document"},
		{"not found", 404, `{}`, idp.ErrUnavailable, "404"},
		{"server error", 503, `{}`, idp.ErrUnavailable, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, tc.doc, "http://"+r.Host)
			}))
			defer srv.Close()
			c, err := idp.New(idp.Config{Issuer: srv.URL, ClientID: "gatehouse", ClientSecret: "s", HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Discover(t.Context())
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
			if tc.name == "endpoints missing" && (!strings.Contains(err.Error(), "token_endpoint") || !strings.Contains(err.Error(), "jwks_uri")) {
				t.Fatalf("error %q does not name both missing endpoints", err)
			}
		})
	}
}

// A provider that is down is asked again at most once a second by the methods that need
// it; Discover asks at once.
func TestDiscoveryRetriesAtMostOncePerSecond(t *testing.T) {
	p := idptest.New(t)
	target, _ := url.Parse(p.Issuer)
	var down atomic.Bool
	var hits atomic.Int32
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	discoveryURL := srv.URL + "/.well-known/openid-configuration"
	clk := testutil.ClockAt(time.Now())
	c := newClient(t, p, func(c *idp.Config) { c.DiscoveryURL, c.Now = discoveryURL, clk.Now })

	down.Store(true)
	step := func(name string, wantHits int32, want error) {
		t.Helper()
		_, err := c.AuthCodeURL(t.Context(), "state", "nonce", "verifier", nil)
		wantErr(t, err, want)
		if got := hits.Load(); got != wantHits {
			t.Fatalf("%s: %d discovery requests, want %d", name, got, wantHits)
		}
	}
	step("first try", 1, idp.ErrUnavailable)
	step("within the second", 1, idp.ErrUnavailable)
	clk.Advance(2 * time.Second)
	step("a second later", 2, idp.ErrUnavailable)
	down.Store(false)
	step("up again, but within the second", 2, idp.ErrUnavailable)
	if err := c.Discover(t.Context()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if hits.Load() != 3 {
		t.Fatalf("Discover did not ask the provider at once (%d requests)", hits.Load())
	}
	if ready, err := c.Ready(); !ready || err != nil {
		t.Fatalf("Ready() = %v, %v after discovery", ready, err)
	}
	step("discovered", 3, nil)
	if name := c.EndpointName(mustParse(t, discoveryURL)); name != "discovery" {
		t.Fatalf("EndpointName(configured discovery URL) = %q", name)
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAuthCodeURL(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	verifier := rand.Text() + rand.Text()
	extra := url.Values{
		"prompt":   {"login"},
		"resource": {"https://api.example/a", "https://api.example/b"},
		// Not overridable: the flow's own parameters win.
		"state": {"evil"}, "nonce": {"evil"}, "client_id": {"evil"}, "redirect_uri": {"https://evil.example/cb"},
		"scope": {"admin"}, "code_challenge": {"evil"}, "code_challenge_method": {"plain"}, "response_type": {"token"},
	}
	raw, err := c.AuthCodeURL(t.Context(), "the-state", "the-nonce", verifier, extra)
	if err != nil {
		t.Fatal(err)
	}
	u := mustParse(t, raw)
	if got := u.Scheme + "://" + u.Host + u.Path; got != p.Issuer+"/authorize" {
		t.Fatalf("the URL goes to %s, want the authorization endpoint", got)
	}
	sum := sha256.Sum256([]byte(verifier))
	q := u.Query()
	for name, want := range map[string][]string{
		"response_type":         {"code"},
		"client_id":             {p.ClientID},
		"redirect_uri":          {redirectURL},
		"scope":                 {"openid profile email"},
		"state":                 {"the-state"},
		"nonce":                 {"the-nonce"},
		"code_challenge_method": {"S256"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"prompt":                {"login"},
		"resource":              {"https://api.example/a", "https://api.example/b"},
	} {
		if !slices.Equal(q[name], want) {
			t.Errorf("%s = %q, want %q", name, q[name], want)
		}
	}
	if strings.Contains(raw, verifier) {
		t.Error("the PKCE verifier itself is in the URL")
	}
	// The fake, which checks PKCE S256 and the client, accepts the request.
	if loc := follow(t, p, raw); loc.Query().Get("code") == "" || loc.Query().Get("state") != "the-state" {
		t.Fatalf("the provider did not answer with a code: %s", loc)
	}
}

func TestCheckIssuerParam(t *testing.T) {
	p := idptest.New(t)
	for _, tc := range []struct {
		name      string
		advertise bool
		require   bool
		iss       string // "issuer" stands for the fake's issuer
		present   bool
		want      error
	}{
		{"match", true, false, "issuer", true, nil},
		{"match, not advertised", false, false, "issuer", true, nil},
		{"another issuer", true, false, "https://evil.example", true, idp.ErrRefused},
		{"another issuer, not advertised", false, false, "https://evil.example", true, idp.ErrRefused},
		{"trailing slash", true, false, "issuer/", true, idp.ErrRefused},
		{"empty but present", false, false, "", true, idp.ErrRefused},
		{"missing while advertised", true, false, "", false, idp.ErrRefused},
		{"missing while required", false, true, "", false, idp.ErrRefused},
		{"missing, neither advertised nor required", false, false, "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(func(k *idptest.Knobs) { k.AdvertiseIss = tc.advertise })
			defer reset(p)
			c := newClient(t, p, func(c *idp.Config) { c.RequireIssuerParam = tc.require })
			iss := strings.Replace(tc.iss, "issuer", p.Issuer, 1)
			wantErr(t, c.CheckIssuerParam(t.Context(), iss, tc.present), tc.want)
		})
	}
	t.Run("the provider's own response", func(t *testing.T) {
		c := newClient(t, p)
		a := authorize(t, p, c)
		if !a.issPresent {
			t.Fatal("the fake sent no iss")
		}
		wantErr(t, c.CheckIssuerParam(t.Context(), a.iss, a.issPresent), nil)
	})
}

func TestExchange(t *testing.T) {
	p := idptest.New(t)
	now := time.Now()

	t.Run("good", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.Claims = map[string]any{"tenant": "acme"} })
		defer reset(p)
		c := newClient(t, p, at(now))
		before := p.Count("userinfo")
		tokens, id, err := login(t, p, c)
		if err != nil {
			t.Fatal(err)
		}
		issued := p.AccessTokens()
		if tokens.AccessToken == "" || tokens.AccessToken != issued[len(issued)-1] {
			t.Errorf("access token %q is not the one the provider issued", tokens.AccessToken)
		}
		if tokens.TokenType != "Bearer" || !strings.HasPrefix(tokens.RefreshToken, "rt-") || strings.Count(tokens.IDToken, ".") != 2 {
			t.Errorf("tokens %+v lack a type, refresh token or ID token", tokens)
		}
		if want := now.Add(time.Minute); !tokens.Expiry.Equal(want) {
			t.Errorf("expiry %s, want %s (expires_in on the client's clock)", tokens.Expiry, want)
		}
		if id.Subject != "alice" || id.SID != "provider-session-1" {
			t.Errorf("identity %q / %q, want alice / provider-session-1", id.Subject, id.SID)
		}
		for name, want := range map[string]any{"name": "Alice Example", "email": "alice@example.com", "tenant": "acme", "email_verified": true} {
			if id.Claims[name] != want {
				t.Errorf("claim %s = %v, want %v", name, id.Claims[name], want)
			}
		}
		if _, ok := id.Claims["groups"]; !ok {
			t.Error("the userinfo claims were not merged")
		}
		if p.Count("userinfo") != before+1 {
			t.Error("userinfo was not called once")
		}
		form := p.LastForm("token")
		if form.Get("grant_type") != "authorization_code" || form.Get("code_verifier") == "" || form.Get("redirect_uri") != redirectURL {
			t.Errorf("token request %v", form)
		}
	})

	t.Run("skip userinfo", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.UserinfoStatus = 500 })
		defer reset(p)
		c := newClient(t, p, func(c *idp.Config) { c.SkipUserinfo = true })
		before := p.Count("userinfo")
		_, id, err := login(t, p, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := id.Claims["groups"]; ok || p.Count("userinfo") != before {
			t.Fatal("userinfo was called")
		}
	})

	type tokenErr struct {
		status int
		code   string
	}
	skew := func(d time.Duration) func(*idp.Config) { return func(c *idp.Config) { c.ClockSkew = d } }
	claim := func(name string, v any) func(k *idptest.Knobs) {
		return func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { c[name] = v } }
	}
	for _, tc := range []struct {
		name  string
		knobs func(k *idptest.Knobs)
		cfg   func(*idp.Config)
		want  error
		msg   string    // our own message, when the class alone could hide the reason
		te    *tokenErr // a *idp.TokenError is expected
	}{
		// OpenID Connect Core §3.1.3.7: an audience the client does not trust, or an azp
		// other than the client, makes the ID token someone else's.
		{name: "audience array with us", knobs: claim("aud", []string{"gatehouse-test"})},
		{name: "audience array with us and an untrusted audience", knobs: claim("aud", []string{"other", "gatehouse-test"}), want: idp.ErrInvalidToken, msg: `audience "other"`},
		{name: "audience array with us and a trusted audience", knobs: claim("aud", []string{"project-1", "gatehouse-test"}),
			cfg: func(c *idp.Config) { c.TrustedAudiences = []string{"project-1"} }},
		{name: "trusted audience without us", knobs: claim("aud", []string{"project-1"}),
			cfg: func(c *idp.Config) { c.TrustedAudiences = []string{"project-1"} }, want: idp.ErrInvalidToken},
		{name: "azp of this client", knobs: claim("azp", "gatehouse-test")},
		{name: "azp of another client", knobs: claim("azp", "other"), want: idp.ErrInvalidToken, msg: "azp is not this client"},
		{name: "azp of a trusted audience", knobs: claim("azp", "project-1"),
			cfg: func(c *idp.Config) { c.TrustedAudiences = []string{"project-1"} }, want: idp.ErrInvalidToken},
		{name: "azp not a string", knobs: claim("azp", 7), want: idp.ErrInvalidToken},
		{name: "wrong audience", knobs: claim("aud", "someone-else"), want: idp.ErrInvalidToken},
		{name: "audience array without us", knobs: claim("aud", []string{"a", "b"}), want: idp.ErrInvalidToken},
		{name: "wrong issuer", knobs: claim("iss", "https://evil.example"), want: idp.ErrInvalidToken},
		{name: "expired", knobs: claim("exp", time.Now().Add(-time.Minute).Unix()), want: idp.ErrInvalidToken},
		{name: "expired within the clock skew", knobs: claim("exp", time.Now().Add(-30*time.Second).Unix()), cfg: skew(2 * time.Minute)},
		{name: "expired by the client's clock", cfg: at(time.Now().Add(2 * time.Hour)), want: idp.ErrInvalidToken},
		{name: "iat in the future", knobs: claim("iat", time.Now().Add(2*time.Hour).Unix()), want: idp.ErrInvalidToken, msg: "issued in the future"},
		{name: "iat a little ahead", knobs: claim("iat", time.Now().Add(30*time.Second).Unix())},
		{name: "iat ahead within the skew", knobs: claim("iat", time.Now().Add(150*time.Second).Unix()), cfg: skew(2 * time.Minute)},
		{name: "iat ahead beyond the skew", knobs: claim("iat", time.Now().Add(5*time.Minute).Unix()), cfg: skew(2 * time.Minute),
			want: idp.ErrInvalidToken, msg: "issued in the future"},
		{name: "no iat", knobs: func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { delete(c, "iat") } },
			want: idp.ErrInvalidToken, msg: "no iat"},
		{name: "wrong nonce", knobs: claim("nonce", "other"), want: idp.ErrInvalidToken, msg: "nonce"},
		{name: "no nonce", knobs: func(k *idptest.Knobs) { k.IDTokenMutate = func(c map[string]any) { delete(c, "nonce") } },
			want: idp.ErrInvalidToken, msg: "nonce"},
		{name: "forged signature", knobs: func(k *idptest.Knobs) { k.SignWith = "forged" }, want: idp.ErrInvalidToken},
		{name: "alg none", knobs: func(k *idptest.Knobs) { k.SignWith = "none" }, want: idp.ErrInvalidToken},
		{name: "HS256 with the client secret", knobs: func(k *idptest.Knobs) { k.SignWith = "HS256" }, want: idp.ErrInvalidToken},
		{name: "HS256 with the public key", knobs: func(k *idptest.Knobs) { k.SignWith = "HS256-publickey" }, want: idp.ErrInvalidToken},
		{name: "algorithm not allowed", cfg: func(c *idp.Config) { c.SigningAlgs = []string{"ES256"} }, want: idp.ErrInvalidToken},
		{name: "at_hash mismatch", knobs: claim("at_hash", "AAAAAAAAAAAAAAAAAAAAAA"), want: idp.ErrInvalidToken, msg: "at_hash"},
		{name: "userinfo about another subject", knobs: func(k *idptest.Knobs) { k.UserinfoSubject = "mallory" },
			want: idp.ErrInvalidToken, msg: "another subject"},
		{name: "userinfo 401", knobs: func(k *idptest.Knobs) { k.UserinfoStatus = 401 }, want: idp.ErrRefused, te: &tokenErr{401, ""}},
		{name: "userinfo 403", knobs: func(k *idptest.Knobs) { k.UserinfoStatus = 403 }, want: idp.ErrRefused, te: &tokenErr{403, ""}},
		{name: "userinfo 502", knobs: func(k *idptest.Knobs) { k.UserinfoStatus = 502 }, want: idp.ErrUnavailable, te: &tokenErr{502, ""}},
		{name: "token endpoint refuses", knobs: func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 400, "invalid_grant" },
			want: idp.ErrRefused, te: &tokenErr{400, "invalid_grant"}},
		{name: "token endpoint fails", knobs: func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 500, "server_error" },
			want: idp.ErrUnavailable, te: &tokenErr{500, "server_error"}},
		{name: "error in a 200 body", knobs: func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 200, "invalid_grant" },
			want: idp.ErrRefused, te: &tokenErr{200, "invalid_grant"}},
		{name: "token type not Bearer", knobs: func(k *idptest.Knobs) { k.TokenType = "DPoP" }, want: idp.ErrRefused, msg: "token_type"},
		{name: "token type in lower case", knobs: func(k *idptest.Knobs) { k.TokenType = "bearer" }},
		// x/oauth2 reports this with an untyped error: the test guards the text match.
		{name: "no access token", knobs: func(k *idptest.Knobs) { k.NoAccessToken = true }, want: idp.ErrRefused, msg: "no access_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.knobs != nil {
				p.Set(tc.knobs)
			}
			defer reset(p)
			var mutate []func(*idp.Config)
			if tc.cfg != nil {
				mutate = append(mutate, tc.cfg)
			}
			c := newClient(t, p, mutate...)
			tokens, id, err := login(t, p, c)
			wantErr(t, err, tc.want)
			if tc.want == nil {
				if tokens == nil || id == nil || id.Subject != "alice" {
					t.Fatalf("tokens %v, identity %v", tokens, id)
				}
				return
			}
			if tokens != nil || id != nil {
				t.Fatal("results returned with an error")
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
			if tc.te != nil {
				wantTokenError(t, err, tc.te.status, tc.te.code)
			}
		})
	}
}

func TestExchangeBindsTheLogin(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	ctx := t.Context()

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		a := authorize(t, p, c)
		_, _, err := c.Exchange(ctx, a.code, a.verifier+"x", a.nonce)
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 400, "invalid_grant")
	})
	t.Run("nonce of another login", func(t *testing.T) {
		a := authorize(t, p, c)
		_, _, err := c.Exchange(ctx, a.code, a.verifier, "another-nonce")
		wantErr(t, err, idp.ErrInvalidToken)
	})
	t.Run("code used twice", func(t *testing.T) {
		a := authorize(t, p, c)
		if _, _, err := c.Exchange(ctx, a.code, a.verifier, a.nonce); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Exchange(ctx, a.code, a.verifier, a.nonce)
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 400, "invalid_grant")
	})
}

func TestRefresh(t *testing.T) {
	p := idptest.New(t)
	now := time.Now()
	c := newClient(t, p, at(now))
	ctx := t.Context()
	rt := mustLogin(t, p, c).RefreshToken

	t.Run("ok, not rotated", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.AccessTokenTTL = 5 * time.Minute })
		defer reset(p)
		before := p.Count("refresh_token")
		got, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{
			Resource: "https://api.example", Audience: "api", Scopes: []string{"openid", "email"},
		})
		if err != nil {
			t.Fatal(err)
		}
		issued := p.AccessTokens()
		if got.AccessToken != issued[len(issued)-1] || got.RefreshToken != rt {
			t.Errorf("tokens %+v: want the new access token and the same refresh token", got)
		}
		if want := now.Add(5 * time.Minute); !got.Expiry.Equal(want) {
			t.Errorf("expiry %s, want %s", got.Expiry, want)
		}
		if p.Count("refresh_token") != before+1 {
			t.Error("the token endpoint was not asked once")
		}
		form := p.LastForm("token")
		for name, want := range map[string]string{
			"grant_type": "refresh_token", "refresh_token": rt, "resource": "https://api.example",
			"audience": "api", "scope": "openid email",
		} {
			if form.Get(name) != want {
				t.Errorf("token request %s = %q, want %q", name, form.Get(name), want)
			}
		}
	})

	t.Run("provider keeps the refresh token without sending it", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.NoRefreshToken = true })
		defer reset(p)
		got, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.RefreshToken != rt {
			t.Fatalf("refresh token %q, want the one still valid", got.RefreshToken)
		}
	})

	t.Run("no expires_in", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.OmitExpiresIn = true })
		defer reset(p)
		for _, tc := range []struct {
			lifetime, want time.Duration
		}{{0, 5 * time.Minute}, {7 * time.Minute, 7 * time.Minute}} {
			c := newClient(t, p, at(now), func(c *idp.Config) { c.DefaultTokenLifetime = tc.lifetime })
			got, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Expiry.Equal(now.Add(tc.want)) {
				t.Errorf("DefaultTokenLifetime %s: expiry %s, want %s later", tc.lifetime, got.Expiry, tc.want)
			}
		}
	})

	t.Run("rotated", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.RotateRefresh = true })
		defer reset(p)
		old := mustLogin(t, p, c).RefreshToken
		got, err := c.Refresh(ctx, old, "alice", idp.RefreshOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.RefreshToken == old || !strings.HasPrefix(got.RefreshToken, "rt-") {
			t.Fatalf("refresh token %q, want a new one", got.RefreshToken)
		}
		_, err = c.Refresh(ctx, old, "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 400, "invalid_grant")
		if _, err := c.Refresh(ctx, got.RefreshToken, "alice", idp.RefreshOptions{}); err != nil {
			t.Fatalf("the rotated refresh token does not work: %v", err)
		}
	})

	t.Run("no refresh token", func(t *testing.T) {
		before := p.Count("refresh_token")
		_, err := c.Refresh(ctx, "", "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
		if p.Count("refresh_token") != before {
			t.Fatal("an empty refresh token was sent")
		}
	})

	t.Run("unknown refresh token", func(t *testing.T) {
		_, err := c.Refresh(ctx, "rt-unknown", "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 400, "invalid_grant")
	})

	for _, tc := range []struct {
		name   string
		status int
		code   string
		want   error
		wantTE string // the Code kept in the TokenError
	}{
		{"invalid_grant", 400, "invalid_grant", idp.ErrRefused, "invalid_grant"},
		{"invalid_request (Dex)", 400, "invalid_request", idp.ErrRefused, "invalid_request"},
		{"invalid_client", 401, "invalid_client", idp.ErrRefused, "invalid_client"},
		{"forbidden without a code", 403, "", idp.ErrRefused, ""},
		{"server error", 500, "server_error", idp.ErrUnavailable, "server_error"},
		{"temporarily unavailable", 503, "temporarily_unavailable", idp.ErrUnavailable, "temporarily_unavailable"},
		{"code with a control character", 400, "invalid\x01grant", idp.ErrRefused, ""},
		{"code with a quote", 400, `invalid"grant`, idp.ErrRefused, ""},
		{"overlong code", 400, strings.Repeat("x", 65), idp.ErrRefused, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(func(k *idptest.Knobs) { k.RefreshStatus, k.RefreshError = tc.status, tc.code })
			defer reset(p)
			got, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
			if got != nil {
				t.Fatal("tokens returned with an error")
			}
			wantErr(t, err, tc.want)
			wantTokenError(t, err, tc.status, tc.wantTE)
		})
	}

	t.Run("no access token", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.NoAccessToken = true })
		defer reset(p)
		_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
	})

	t.Run("slow provider", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.TokenDelay = 300 * time.Millisecond })
		defer reset(p)
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrUnavailable)
	})

	t.Run("grants revoked at the provider", func(t *testing.T) {
		p.RevokeAll()
		_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 400, "invalid_grant")
	})
}

func TestRefreshVerifiesANewIDToken(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	rt := mustLogin(t, p, c).RefreshToken
	for _, tc := range []struct {
		name    string
		knobs   func(k *idptest.Knobs)
		subject string
		want    error
		msg     string
	}{
		{"good", nil, "alice", nil, ""},
		{"about another subject", nil, "bob", idp.ErrInvalidToken, "another subject"},
		{"forged signature", func(k *idptest.Knobs) { k.SignWith = "forged" }, "alice", idp.ErrInvalidToken, ""},
		{"wrong audience", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(c map[string]any) { c["aud"] = "someone-else" }
		}, "alice", idp.ErrInvalidToken, ""},
		{"iat in the future", func(k *idptest.Knobs) {
			k.IDTokenMutate = func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }
		}, "alice", idp.ErrInvalidToken, "issued in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(func(k *idptest.Knobs) { k.IDTokenOnRefresh = true })
			if tc.knobs != nil {
				p.Set(tc.knobs)
			}
			defer reset(p)
			got, err := c.Refresh(t.Context(), rt, tc.subject, idp.RefreshOptions{})
			wantErr(t, err, tc.want)
			if tc.want == nil {
				if strings.Count(got.IDToken, ".") != 2 {
					t.Fatalf("the refreshed ID token %q is not kept", got.IDToken)
				}
				return
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestRefreshProviderGone(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	rt := mustLogin(t, p, c).RefreshToken
	p.Server.Close()
	_, err := c.Refresh(t.Context(), rt, "alice", idp.RefreshOptions{})
	wantErr(t, err, idp.ErrUnavailable)
	var te *idp.TokenError
	if errors.As(err, &te) {
		t.Fatalf("a network error became a provider answer: %v", te)
	}
	if strings.Contains(err.Error(), rt) {
		t.Fatal("the refresh token is in the error")
	}
}

func TestClientCredentials(t *testing.T) {
	p := idptest.New(t)
	now := time.Now()
	c := newClient(t, p, at(now))
	ctx := t.Context()

	t.Run("ok", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.TokenType = "bearer"; k.AccessTokenTTL = 10 * time.Minute })
		defer reset(p)
		before := p.Count("client_credentials")
		got, err := c.ClientCredentials(ctx, idp.RefreshOptions{Scopes: []string{"api:read", "api:write"}, Resource: "https://api.example"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.AccessToken, "client-") || got.TokenType != "Bearer" || got.RefreshToken != "" {
			t.Errorf("tokens %+v", got)
		}
		if got.Scope != "api:read api:write" {
			t.Errorf("scope %q", got.Scope)
		}
		if !got.Expiry.Equal(now.Add(10 * time.Minute)) {
			t.Errorf("expiry %s, want 10 minutes after %s", got.Expiry, now)
		}
		if p.Count("client_credentials") != before+1 {
			t.Error("the token endpoint was not asked once")
		}
		if form := p.LastForm("token"); form.Get("grant_type") != "client_credentials" || form.Get("resource") != "https://api.example" {
			t.Errorf("token request %v", form)
		}
	})
	for _, tc := range []struct {
		name  string
		knobs func(k *idptest.Knobs)
		want  error
	}{
		{"refused", func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 400, "unauthorized_client" }, idp.ErrRefused},
		{"failing", func(k *idptest.Knobs) { k.TokenStatus, k.TokenError = 502, "" }, idp.ErrUnavailable},
		{"not Bearer", func(k *idptest.Knobs) { k.TokenType = "mac" }, idp.ErrRefused},
		{"no access token", func(k *idptest.Knobs) { k.NoAccessToken = true }, idp.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(tc.knobs)
			defer reset(p)
			got, err := c.ClientCredentials(ctx, idp.RefreshOptions{})
			wantErr(t, err, tc.want)
			if got != nil {
				t.Fatal("tokens returned with an error")
			}
		})
	}
}

func TestClientSecretMethods(t *testing.T) {
	p := idptest.New(t)
	for _, tc := range []struct {
		method       string
		secretInBody bool
	}{
		{"", false}, // default: client_secret_basic, as the fake advertises both
		{idp.AuthClientSecretBasic, false},
		{idp.AuthClientSecretPost, true},
	} {
		t.Run("method "+tc.method, func(t *testing.T) {
			c := newClient(t, p, func(c *idp.Config) { c.AuthMethod = tc.method })
			tokens := mustLogin(t, p, c)
			if got := p.LastForm("token").Has("client_secret"); got != tc.secretInBody {
				t.Errorf("token request carries client_secret: %v, want %v", got, tc.secretInBody)
			}
			if err := c.Revoke(t.Context(), tokens.RefreshToken, "refresh_token"); err != nil {
				t.Fatal(err)
			}
			if got := p.LastForm("revoke").Has("client_secret"); got != tc.secretInBody {
				t.Errorf("revocation request carries client_secret: %v, want %v", got, tc.secretInBody)
			}
			if !p.Revoked(tokens.RefreshToken) {
				t.Error("the token was not revoked")
			}
		})
		t.Run("method "+tc.method+" wrong secret", func(t *testing.T) {
			c := newClient(t, p, func(c *idp.Config) { c.AuthMethod, c.ClientSecret = tc.method, "wrong" })
			_, err := c.ClientCredentials(t.Context(), idp.RefreshOptions{})
			wantErr(t, err, idp.ErrRefused)
			wantTokenError(t, err, 401, "invalid_client")
			err = c.Revoke(t.Context(), "rt-whatever", "")
			wantErr(t, err, idp.ErrRefused)
			wantTokenError(t, err, 401, "")
		})
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	p := idptest.New(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		alg     string
		wantAlg jose.SignatureAlgorithm
	}{
		{"RSA default", rsaKey, "", jose.RS256},
		{"RSA PS256", rsaKey, "PS256", jose.PS256},
		{"P-256", ecKey(elliptic.P256()), "", jose.ES256},
		{"P-384", ecKey(elliptic.P384()), "", jose.ES384},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(func(k *idptest.Knobs) { k.ClientKey = tc.key.Public() })
			defer reset(p)
			// The secret is configured too: the fake refuses a request that sends both.
			c := newClient(t, p, func(c *idp.Config) { c.ClientKey, c.ClientKeyID, c.ClientKeyAlg = tc.key, "client-key-1", tc.alg })
			tokens := mustLogin(t, p, c)
			form := p.LastForm("token")
			if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form.Has("client_secret") {
				t.Fatalf("token request %v does not authenticate with an assertion alone", form)
			}
			jws, err := jose.ParseSignedCompact(form.Get("client_assertion"), []jose.SignatureAlgorithm{tc.wantAlg})
			if err != nil {
				t.Fatalf("assertion not signed with %s: %v", tc.wantAlg, err)
			}
			if kid := jws.Signatures[0].Header.KeyID; kid != "client-key-1" {
				t.Errorf("assertion kid %q", kid)
			}
			// Each request signs a fresh assertion: the fake refuses a jti it has seen.
			for range 2 {
				if _, err := c.Refresh(t.Context(), tokens.RefreshToken, "alice", idp.RefreshOptions{}); err != nil {
					t.Fatalf("refresh: %v", err)
				}
			}
			if _, err := c.ClientCredentials(t.Context(), idp.RefreshOptions{}); err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			if err := c.Revoke(t.Context(), tokens.RefreshToken, "refresh_token"); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if !p.Revoked(tokens.RefreshToken) || !p.LastForm("revoke").Has("client_assertion") {
				t.Fatal("the revocation did not authenticate with an assertion")
			}
		})
	}
	t.Run("unregistered key", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.ClientKey = rsaKey.Public() })
		defer reset(p)
		c := newClient(t, p, func(c *idp.Config) { c.ClientKey = ecKey(elliptic.P256()) })
		_, err := c.ClientCredentials(t.Context(), idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
		wantTokenError(t, err, 401, "invalid_client")
	})
}

func TestRevoke(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	ctx := t.Context()

	t.Run("refresh token", func(t *testing.T) {
		rt := mustLogin(t, p, c).RefreshToken
		if err := c.Revoke(ctx, rt, "refresh_token"); err != nil {
			t.Fatal(err)
		}
		form := p.LastForm("revoke")
		if form.Get("token") != rt || form.Get("token_type_hint") != "refresh_token" {
			t.Errorf("revocation request %v", form)
		}
		if !p.Revoked(rt) {
			t.Fatal("not revoked")
		}
		_, err := c.Refresh(ctx, rt, "alice", idp.RefreshOptions{})
		wantErr(t, err, idp.ErrRefused)
	})
	t.Run("without hint", func(t *testing.T) {
		access := mustLogin(t, p, c).AccessToken
		if err := c.Revoke(ctx, access, ""); err != nil {
			t.Fatal(err)
		}
		if p.LastForm("revoke").Has("token_type_hint") || !p.Revoked(access) {
			t.Fatalf("revocation request %v", p.LastForm("revoke"))
		}
	})
	t.Run("empty token", func(t *testing.T) {
		before := p.Count("revoke")
		if err := c.Revoke(ctx, "", "refresh_token"); err != nil || p.Count("revoke") != before {
			t.Fatalf("Revoke(\"\") = %v after %d requests", err, p.Count("revoke")-before)
		}
	})
	t.Run("no revocation endpoint", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.NoRevocation = true })
		defer reset(p)
		c := newClient(t, p)
		before := p.Count("revoke")
		if err := c.Revoke(ctx, "rt-x", ""); err != nil || p.Count("revoke") != before {
			t.Fatalf("Revoke = %v after %d requests, want nil and none", err, p.Count("revoke")-before)
		}
	})
	t.Run("provider gone", func(t *testing.T) {
		p := idptest.New(t)
		c := newClient(t, p)
		if err := c.Discover(ctx); err != nil {
			t.Fatal(err)
		}
		p.Server.Close()
		wantErr(t, c.Revoke(ctx, "rt-x", ""), idp.ErrUnavailable)
	})
}

func TestEndSessionURL(t *testing.T) {
	p := idptest.New(t)
	ctx := t.Context()

	t.Run("discovered", func(t *testing.T) {
		c := newClient(t, p)
		raw, ok, err := c.EndSessionURL(ctx, "the.id.token", "https://app.example/bye", "st")
		if err != nil || !ok {
			t.Fatalf("EndSessionURL = %v, %v", ok, err)
		}
		u := mustParse(t, raw)
		if got := u.Scheme + "://" + u.Host + u.Path; got != p.Issuer+"/end_session" {
			t.Fatalf("the URL goes to %s", got)
		}
		want := url.Values{"id_token_hint": {"the.id.token"}, "client_id": {p.ClientID},
			"post_logout_redirect_uri": {"https://app.example/bye"}, "state": {"st"}}
		if u.RawQuery != want.Encode() {
			t.Fatalf("query %q, want %q", u.RawQuery, want.Encode())
		}
		raw, _, _ = c.EndSessionURL(ctx, "", "", "")
		if got := mustParse(t, raw).Query(); len(got) != 1 || got.Get("client_id") != p.ClientID {
			t.Fatalf("without hint, redirect and state: query %v, want client_id only", got)
		}
	})
	t.Run("none", func(t *testing.T) {
		p.Set(func(k *idptest.Knobs) { k.NoEndSession = true })
		defer reset(p)
		raw, ok, err := newClient(t, p).EndSessionURL(ctx, "hint", "", "")
		if raw != "" || ok || err != nil {
			t.Fatalf("EndSessionURL = %q, %v, %v; want none", raw, ok, err)
		}
	})
	t.Run("template", func(t *testing.T) {
		c := newClient(t, p, func(c *idp.Config) {
			c.EndSessionURL = "https://idp.example/logout?hint={id_token_hint}&cid={client_id}&to={post_logout_redirect_uri}&s={state}"
		})
		raw, ok, err := c.EndSessionURL(ctx, "a b", "https://app.example/bye?x=1&y=2", "s&t")
		if err != nil || !ok {
			t.Fatalf("EndSessionURL = %v, %v", ok, err)
		}
		q := mustParse(t, raw).Query()
		if q.Get("hint") != "a b" || q.Get("cid") != p.ClientID || q.Get("to") != "https://app.example/bye?x=1&y=2" || q.Get("s") != "s&t" || len(q) != 4 {
			t.Fatalf("placeholders not replaced with escaped values: %s", raw)
		}
	})
	t.Run("configured without placeholders", func(t *testing.T) {
		c := newClient(t, p, func(c *idp.Config) { c.EndSessionURL = "https://idp.example/logout?tenant=acme" })
		raw, _, err := c.EndSessionURL(ctx, "hint", "https://app.example/bye", "")
		if err != nil {
			t.Fatal(err)
		}
		q := mustParse(t, raw).Query()
		if q.Get("tenant") != "acme" || q.Get("id_token_hint") != "hint" || q.Get("post_logout_redirect_uri") != "https://app.example/bye" || q.Has("state") {
			t.Fatalf("query %v", q)
		}
	})
	t.Run("configured, provider down", func(t *testing.T) {
		c, err := idp.New(idp.Config{Issuer: closedURL(t), ClientID: "gatehouse", ClientSecret: "s", EndSessionURL: "https://idp.example/logout"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.EndSessionURL(ctx, "", "", ""); !ok || err != nil {
			t.Fatalf("a configured URL needs no discovery: %v, %v", ok, err)
		}
	})
	t.Run("discovered, provider down", func(t *testing.T) {
		c, err := idp.New(idp.Config{Issuer: closedURL(t), ClientID: "gatehouse", ClientSecret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		_, ok, err := c.EndSessionURL(ctx, "", "", "")
		wantErr(t, err, idp.ErrUnavailable)
		if ok {
			t.Fatal("ok with an error")
		}
	})
}

func TestVerifyLogoutToken(t *testing.T) {
	p := idptest.New(t)
	c := newClient(t, p)
	ctx := t.Context()
	claim := func(name string, v any) func(map[string]any) { return func(c map[string]any) { c[name] = v } }
	drop := func(name string) func(map[string]any) { return func(c map[string]any) { delete(c, name) } }
	signWith := func(how string) func(k *idptest.Knobs) { return func(k *idptest.Knobs) { k.SignWith = how } }

	t.Run("good", func(t *testing.T) {
		before := time.Now().Truncate(time.Second)
		raw := p.LogoutToken("alice", "sid-1", "logout+jwt", nil)
		lt, err := c.VerifyLogoutToken(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		if lt.Subject != "alice" || lt.SID != "sid-1" || lt.JTI == "" {
			t.Fatalf("logout token %+v", lt)
		}
		if lt.IssuedAt.Before(before) || lt.Expiry.Sub(lt.IssuedAt) != 2*time.Minute {
			t.Fatalf("iat %s, exp %s", lt.IssuedAt, lt.Expiry)
		}
		// Replay detection is the caller's business (it keeps the jti): the same token
		// verifies again, with the same jti.
		again, err := c.VerifyLogoutToken(ctx, raw)
		if err != nil || again.JTI != lt.JTI {
			t.Fatalf("second verification: %v, jti %q vs %q", err, again.JTI, lt.JTI)
		}
	})

	for _, tc := range []struct {
		name     string
		sub, sid string
		typ      string
		mutate   func(map[string]any)
		knobs    func(k *idptest.Knobs)
		want     error
	}{
		{name: "sid only", sid: "sid-1"},
		{name: "sub only", sub: "alice"},
		{name: "no typ", sub: "alice", typ: ""},
		{name: "typ JWT", sub: "alice", typ: "JWT"},
		{name: "typ application/logout+jwt", sub: "alice", typ: "application/logout+jwt"},
		{name: "audience array with us", sub: "alice", mutate: claim("aud", []string{"gatehouse-test"})},
		{name: "audience array with us and an untrusted audience", sub: "alice", mutate: claim("aud", []string{"other", "gatehouse-test"}), want: idp.ErrInvalidToken},
		{name: "azp of this client", sub: "alice", mutate: claim("azp", "gatehouse-test")},
		{name: "azp of another client", sub: "alice", mutate: claim("azp", "other"), want: idp.ErrInvalidToken},
		{name: "typ of an access token", sub: "alice", typ: "at+jwt", want: idp.ErrInvalidToken},
		{name: "neither sub nor sid", want: idp.ErrInvalidToken},
		{name: "no events", sub: "alice", mutate: drop("events"), want: idp.ErrInvalidToken},
		{name: "another event only", sub: "alice", want: idp.ErrInvalidToken,
			mutate: claim("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}})},
		{name: "nonce present", sub: "alice", mutate: claim("nonce", "n"), want: idp.ErrInvalidToken},
		{name: "wrong audience", sub: "alice", mutate: claim("aud", "someone-else"), want: idp.ErrInvalidToken},
		{name: "wrong issuer", sub: "alice", mutate: claim("iss", "https://evil.example"), want: idp.ErrInvalidToken},
		{name: "expired", sub: "alice", mutate: claim("exp", time.Now().Add(-time.Minute).Unix()), want: idp.ErrInvalidToken},
		{name: "no exp", sub: "alice", mutate: drop("exp"), want: idp.ErrInvalidToken},
		{name: "no iat", sub: "alice", mutate: drop("iat"), want: idp.ErrInvalidToken},
		{name: "iat in the future", sub: "alice", mutate: claim("iat", time.Now().Add(time.Hour).Unix()), want: idp.ErrInvalidToken},
		{name: "no jti", sub: "alice", mutate: drop("jti"), want: idp.ErrInvalidToken},
		{name: "forged signature", sub: "alice", knobs: signWith("forged"), want: idp.ErrInvalidToken},
		{name: "alg none", sub: "alice", knobs: signWith("none"), want: idp.ErrInvalidToken},
		{name: "HS256 with the client secret", sub: "alice", knobs: signWith("HS256"), want: idp.ErrInvalidToken},
		{name: "HS256 with the public key", sub: "alice", knobs: signWith("HS256-publickey"), want: idp.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.knobs != nil {
				p.Set(tc.knobs)
			}
			defer reset(p)
			lt, err := c.VerifyLogoutToken(ctx, p.LogoutToken(tc.sub, tc.sid, tc.typ, tc.mutate))
			wantErr(t, err, tc.want)
			if tc.want == nil && (lt.Subject != tc.sub || lt.SID != tc.sid) {
				t.Fatalf("logout token %+v, want sub %q sid %q", lt, tc.sub, tc.sid)
			}
			if tc.want != nil && lt != nil {
				t.Fatal("a token returned with an error")
			}
		})
	}

	t.Run("an ID token is not a logout token", func(t *testing.T) {
		_, err := c.VerifyLogoutToken(ctx, p.IDToken(idptest.Knobs{Subject: "alice"}, "nonce"))
		wantErr(t, err, idp.ErrInvalidToken)
	})
	t.Run("not a JWT", func(t *testing.T) {
		_, err := c.VerifyLogoutToken(ctx, "not-a-jwt")
		wantErr(t, err, idp.ErrInvalidToken)
	})
}

func TestEndpointName(t *testing.T) {
	p := idptest.New(t)
	p.Set(func(k *idptest.Knobs) { k.PAR = true })
	c := newClient(t, p)
	name := func(raw string) string { return c.EndpointName(mustParse(t, raw)) }

	if got := name(p.Issuer + "/token"); got != "other" {
		t.Errorf("before discovery, the token endpoint is %q, want other", got)
	}
	if got := name(p.Issuer + "/.well-known/openid-configuration"); got != "discovery" {
		t.Errorf("before discovery, the discovery document is %q", got)
	}
	if err := c.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	for raw, want := range map[string]string{
		p.Issuer + "/.well-known/openid-configuration": "discovery",
		p.Issuer + "/token":                            "token",
		p.Issuer + "/jwks":                             "jwks",
		p.Issuer + "/userinfo":                         "userinfo",
		p.Issuer + "/revoke":                           "revocation",
		p.Issuer + "/end_session?id_token_hint=x":      "end_session",
		p.Issuer + "/par":                              "par",
		p.Issuer + "/authorize":                        "other",
		p.Issuer + "/token/extra":                      "other",
		"http://127.0.0.2:1/token":                     "other",
	} {
		if got := name(raw); got != want {
			t.Errorf("EndpointName(%s) = %q, want %q", raw, got, want)
		}
	}
	if got := c.EndpointName(nil); got != "other" {
		t.Errorf("EndpointName(nil) = %q", got)
	}
}
