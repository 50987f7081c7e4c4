package api_test

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/gatehouse-bff/gatehouse/examples/demo/api"
	"github.com/gatehouse-bff/gatehouse/internal/devidp"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

const (
	clientID     = "demo-client"
	clientSecret = "demo-secret"
	redirectURI  = "http://127.0.0.1:9080/bff/callback" // never called: the test reads the code from the redirect
)

// env is devidp and the API, each on its own loopback port.
type env struct {
	idp   *devidp.Server
	clock *testutil.Clock
	api   string // the API's base URL
}

func newEnv(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	e := &env{clock: &testutil.Clock{}}
	idpTS := httptest.NewUnstartedServer(nil)
	srv, err := devidp.New(devidp.Config{
		Listen:  idpTS.Listener.Addr().String(),
		Clients: []devidp.Client{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI}}},
		Users: map[string]devidp.User{
			"alice": {Claims: map[string]any{"name": "Alice Liddell", "email": "alice@example.com", "groups": []any{"admin", "staff"}}},
			"bob":   {Claims: map[string]any{"name": "Bob", "email": "bob@example.com", "groups": []any{"staff"}}},
		},
		Now:    e.clock.Now,
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.idp = srv
	idpTS.Config.Handler = srv.Handler()
	idpTS.Start()
	t.Cleanup(idpTS.Close)

	apiTS := httptest.NewServer(api.New(api.Config{Issuer: srv.Issuer(), Logger: log}))
	t.Cleanup(apiTS.Close)
	e.api = apiTS.URL
	return e
}

func (e *env) oauth() *oauth2.Config {
	iss := e.idp.Issuer()
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: iss + "/authorize", TokenURL: iss + "/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   []string{"openid", "profile", "email", "groups"},
	}
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// userToken logs user in at devidp (authorization code with PKCE) and returns the
// access token.
func (e *env) userToken(t *testing.T, user string) string {
	t.Helper()
	conf := e.oauth()
	verifier := oauth2.GenerateVerifier()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	page := get(t, noRedirect, conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)), nil)
	m := requestField.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		t.Fatalf("login page: %d\n%s", page.status, page.body)
	}
	resp, err := noRedirect.PostForm(e.idp.Issuer()+"/login", url.Values{"request": {m[1]}, "user": {user}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("login answered %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// clientToken returns a client-credentials access token.
func (e *env) clientToken(t *testing.T, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.idp.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	r := do(t, http.DefaultClient, req)
	if r.status != http.StatusOK {
		t.Fatalf("client credentials: %d %s", r.status, r.body)
	}
	return r.json(t)["access_token"].(string)
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, r.body)
	}
	return m
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, c *http.Client, u string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, c, req)
}

func (e *env) call(t *testing.T, path, token string) response {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return get(t, http.DefaultClient, e.api+path, h)
}

func TestMe(t *testing.T) {
	e := newEnv(t)
	token := e.userToken(t, "alice")
	r := e.call(t, "/api/me", token)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if strings.Contains(r.body, token) {
		t.Fatal("the response contains the token")
	}
	body := r.json(t)
	claims := body["claims"].(map[string]any)
	if claims["sub"] != "alice" || claims["name"] != "Alice Liddell" || claims["iss"] != e.idp.Issuer() {
		t.Errorf("claims = %v", claims)
	}
	info := body["token"].(map[string]any)
	if info["kind"] != "jwt" || !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(info["fingerprint"].(string)) {
		t.Errorf("token = %v", info)
	}
	exp, err := time.Parse(time.RFC3339, info["expires_at"].(string))
	if err != nil || time.Until(exp) < time.Minute || time.Until(exp) > devidp.DefaultAccessTokenTTL {
		t.Errorf("expires_at = %v (%v)", info["expires_at"], err)
	}
	if _, err := time.Parse(time.RFC3339, info["issued_at"].(string)); err != nil {
		t.Errorf("issued_at = %v", info["issued_at"])
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}

	// Another token gives another fingerprint: that is how the SPA shows a refresh.
	if other := e.call(t, "/api/me", e.userToken(t, "alice")).json(t)["token"].(map[string]any); other["fingerprint"] == info["fingerprint"] {
		t.Error("two tokens have the same fingerprint")
	}
}

func TestAdmin(t *testing.T) {
	e := newEnv(t)
	if r := e.call(t, "/api/admin", e.userToken(t, "alice")); r.status != http.StatusOK || !strings.Contains(r.body, "Alice Liddell") {
		t.Errorf("alice: %d %s", r.status, r.body)
	}
	r := e.call(t, "/api/admin", e.userToken(t, "bob"))
	if r.status != http.StatusForbidden || r.json(t)["reason"] != "not_admin" {
		t.Errorf("bob: %d %s", r.status, r.body)
	}
}

func TestClientStatus(t *testing.T) {
	e := newEnv(t)
	r := e.call(t, "/client/status", e.clientToken(t, "demo.status"))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	body := r.json(t)
	if body["client_id"] != clientID || body["scope"] != "demo.status" || body["sub"] != clientID {
		t.Errorf("body = %v", body)
	}
	if exp, ok := body["exp"].(float64); !ok || time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Errorf("exp = %v", body["exp"])
	}
}

// readEvent reads one server-sent event.
func readEvent(t *testing.T, br *bufio.Reader) (name string, data map[string]any) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		}
	}
}

func openStream(t *testing.T, e *env, token string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.api+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body)
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	token := e.userToken(t, "bob")
	fp := e.call(t, "/api/me", token).json(t)["token"].(map[string]any)["fingerprint"]
	br := openStream(t, e, token)
	for want := 1.0; want <= 2; want++ {
		name, ev := readEvent(t, br)
		if name != "tick" || ev["n"] != want || ev["sub"] != "bob" || ev["fingerprint"] != fp {
			t.Fatalf("event %v: %s %v", want, name, ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
			t.Errorf("time = %v", ev["time"])
		}
	}
}

// A stream ends when its token expires, so that the browser reconnects with a fresh one.
func TestEventsEndWhenTheTokenExpires(t *testing.T) {
	e := newEnv(t)
	e.clock.Advance(-devidp.DefaultAccessTokenTTL + 2*time.Second) // tokens issued now live ~2 s
	token := e.userToken(t, "bob")
	e.clock.Advance(devidp.DefaultAccessTokenTTL - 2*time.Second)

	br := openStream(t, e, token)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		name, ev := readEvent(t, br)
		if name == "end" {
			if ev["reason"] != "token_expired" {
				t.Errorf("end event = %v", ev)
			}
			if _, err := br.ReadString('\n'); err != io.EOF {
				t.Errorf("the stream continues after the end event (%v)", err)
			}
			return
		}
	}
	t.Fatal("the stream did not end")
}

func TestRefused(t *testing.T) {
	e := newEnv(t)
	good := e.userToken(t, "alice")

	e.clock.Advance(-2 * devidp.DefaultAccessTokenTTL)
	expired := e.clientToken(t, "")
	e.clock.Advance(2 * devidp.DefaultAccessTokenTTL)

	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"staff"`, `"root"`, 1))) + "." + parts[2]

	other := newEnv(t) // another provider: right shape, wrong issuer and keys
	for name, tc := range map[string]struct {
		token, reason string
	}{
		"missing":      {"", "missing_token"},
		"expired":      {expired, "expired"},
		"forged":       {forge(t, e.idp.Issuer()), "invalid"},
		"tampered":     {tampered, "invalid"},
		"other issuer": {other.userToken(t, "alice"), "invalid"},
		"garbage jwt":  {"a.b.c", "invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/api/me", "/api/events", "/api/admin", "/client/status"} {
				r := e.call(t, path, tc.token)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("%s: status %d: %s", path, r.status, r.body)
				}
				body := r.json(t)
				if body["error"] != "invalid_token" || body["reason"] != tc.reason {
					t.Errorf("%s: body = %v", path, body)
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("%s: WWW-Authenticate = %q", path, r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
}

// forge signs a well-formed access token for issuer with a key the provider never had.
func forge(t *testing.T, issuer string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "forged"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(map[string]any{
		"iss": issuer, "sub": "alice", "aud": clientID, "groups": []string{"admin"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	r := e.call(t, "/api/nope", e.userToken(t, "alice"))
	if r.status != http.StatusNotFound || r.json(t)["error"] != "not_found" {
		t.Errorf("%d %s", r.status, r.body)
	}
}

// Opaque tokens are checked at the provider's userinfo endpoint. devidp issues JWTs only,
// so a stand-in provider with discovery and userinfo plays an opaque-token issuer.
func TestOpaqueToken(t *testing.T) {
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": idp.URL, "authorization_endpoint": idp.URL + "/auth", "token_endpoint": idp.URL + "/token",
			"jwks_uri": idp.URL + "/jwks", "userinfo_endpoint": idp.URL + "/me",
		})
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer opaque-token-of-carol" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write([]byte(`{"sub":"carol","name":"Carol","groups":["admin"]}`))
	})
	apiTS := httptest.NewServer(api.New(api.Config{Issuer: idp.URL, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}))
	t.Cleanup(apiTS.Close)
	e := &env{api: apiTS.URL}

	r := e.call(t, "/api/me", "opaque-token-of-carol")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	body := r.json(t)
	info := body["token"].(map[string]any)
	if body["claims"].(map[string]any)["sub"] != "carol" || info["kind"] != "opaque" || info["expires_at"] != nil || len(info["fingerprint"].(string)) != 8 {
		t.Errorf("body = %v", body)
	}
	if r := e.call(t, "/api/admin", "opaque-token-of-carol"); r.status != http.StatusOK {
		t.Errorf("admin: %d %s", r.status, r.body)
	}
	r = e.call(t, "/api/me", "someone-elses-token")
	if r.status != http.StatusUnauthorized || r.json(t)["reason"] != "rejected_by_provider" {
		t.Errorf("unknown opaque token: %d %s", r.status, r.body)
	}
}

// Until the provider answers, requests get 503 and the API keeps trying.
func TestProviderDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	apiTS := httptest.NewServer(api.New(api.Config{Issuer: down.URL, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}))
	t.Cleanup(apiTS.Close)
	down.Close()
	e := &env{api: apiTS.URL}
	r := e.call(t, "/api/me", "whatever")
	if r.status != http.StatusServiceUnavailable || r.json(t)["reason"] != "provider_unavailable" {
		t.Errorf("%d %s", r.status, r.body)
	}
}
