// Package idp is Gatehouse's one OpenID Connect client. It speaks to any provider that
// follows the specs (discovery, authorization code with PKCE, refresh, revocation,
// RP-initiated and back-channel logout), over golang.org/x/oauth2 and
// github.com/coreos/go-oidc/v3. Providers differ in details, and those differences are
// options of [Config], never code per vendor.
//
// A [Client] discovers the provider lazily: New never touches the network, so a gateway
// can start while its provider is down and report itself not ready until discovery
// succeeds. Every method that needs the provider's metadata tries discovery again (at
// most once per second) and returns an error wrapping [ErrUnavailable] until it works.
//
// Errors from the token endpoint are classified once, here: an error wrapping
// [ErrRefused] means the provider answered with a definitive refusal (a 4xx, such as
// invalid_grant from most providers or invalid_request from Dex); an error wrapping
// [ErrUnavailable] means try again later (network error, 5xx, 408, 429,
// temporarily_unavailable, slow_down; [RetryAfter] tells a busy provider's wait, which
// the Client honours itself before asking that endpoint again). The provider's error
// description never leaves this package in an error message.
package idp

import (
	"context"
	"crypto"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

var (
	// ErrRefused: the provider definitively refused (4xx from the token endpoint,
	// invalid ID token, wrong issuer): retrying the same request will not help.
	ErrRefused = errors.New("idp: refused by the provider")
	// ErrUnavailable: the provider could not be reached, answered 5xx, or is busy (408,
	// 429, temporarily_unavailable, slow_down); try later.
	ErrUnavailable = errors.New("idp: provider unavailable")
	// ErrInvalidToken: a token (ID token, logout token) failed verification.
	ErrInvalidToken = errors.New("idp: invalid token")
)

// Client authentication methods at the token endpoint.
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// Config describes the provider and this client's registration with it.
type Config struct {
	// Issuer is compared exactly with the discovery document and every token's "iss":
	// a trailing slash or a path matters.
	Issuer string
	// DiscoveryURL overrides where the metadata is read from. Default: Issuer without a
	// trailing slash, plus "/.well-known/openid-configuration".
	DiscoveryURL string

	ClientID     string
	ClientSecret string
	// ClientKey signs private_key_jwt client assertions (RFC 7523) when set; then
	// ClientSecret is not used. ClientKeyID is the key's "kid", ClientKeyAlg its JWS
	// algorithm (default RS256 for RSA keys, ES256 for P-256 keys).
	ClientKey    crypto.Signer
	ClientKeyID  string
	ClientKeyAlg string
	// AuthMethod is how the client authenticates at the token and revocation endpoints.
	// Default: private_key_jwt with a ClientKey, otherwise client_secret_basic unless the
	// provider only lists client_secret_post.
	AuthMethod string

	RedirectURL string
	Scopes      []string

	// EndSessionURL replaces the provider's end_session_endpoint, for providers that have
	// none in discovery or use other parameter names. It may hold the placeholders
	// {id_token_hint}, {client_id}, {post_logout_redirect_uri} and {state}, which are
	// replaced with query-escaped values; without placeholders the standard RP-initiated
	// logout parameters are added.
	EndSessionURL string
	// RequireIssuerParam refuses authorization responses without "iss" (RFC 9207) even
	// when the provider does not advertise authorization_response_iss_parameter_supported.
	RequireIssuerParam bool
	// SigningAlgs restricts the algorithms accepted on ID and logout tokens. Default:
	// what the provider advertises, among those go-oidc supports (never "none", never HMAC).
	SigningAlgs []string
	// ClockSkew tolerates a provider clock that runs ahead or behind when checking a
	// token's expiry. Default 0.
	ClockSkew time.Duration
	// SkipUserinfo does not call the userinfo endpoint after login.
	SkipUserinfo bool
	// DefaultTokenLifetime is assumed for access tokens whose response has no expires_in
	// and which are not JWTs with an "exp". Default 5 minutes.
	DefaultTokenLifetime time.Duration

	// HTTPClient makes every request to the provider. Default: a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Metadata is the part of the provider's discovery document that Gatehouse uses.
type Metadata struct {
	Issuer                       string   `json:"issuer"`
	AuthorizationEndpoint        string   `json:"authorization_endpoint"`
	TokenEndpoint                string   `json:"token_endpoint"`
	UserinfoEndpoint             string   `json:"userinfo_endpoint"`
	JWKSURI                      string   `json:"jwks_uri"`
	EndSessionEndpoint           string   `json:"end_session_endpoint"`
	RevocationEndpoint           string   `json:"revocation_endpoint"`
	TokenAuthMethods             []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethods         []string `json:"code_challenge_methods_supported"`
	IssuerParameterSupported     bool     `json:"authorization_response_iss_parameter_supported"`
	BackchannelLogoutSupported   bool     `json:"backchannel_logout_supported"`
	IDTokenSigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	RevocationEndpointAuthMethod []string `json:"revocation_endpoint_auth_methods_supported"`
}

// Client talks to one provider. Safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client

	pace pacer // per-endpoint Retry-After

	mu        sync.Mutex
	state     *discovered // nil until discovery succeeds
	lastTry   time.Time
	lastError error
}

// discovered is everything derived from the metadata; immutable once built.
type discovered struct {
	meta       Metadata
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier // ID tokens
	logout     *oidc.IDTokenVerifier // logout tokens
	oauth      *oauth2.Config
	authMethod string
	algs       []string // accepted JWS algorithms for ID and logout tokens
}

// New checks cfg and returns a Client. It does not contact the provider.
func New(cfg Config) (*Client, error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("idp: issuer is required"))
	} else if u, err := url.Parse(cfg.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, fmt.Errorf("idp: issuer %q is not an absolute URL", cfg.Issuer))
	}
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("idp: client_id is required"))
	}
	switch cfg.AuthMethod {
	case "", AuthClientSecretBasic, AuthClientSecretPost:
		if cfg.ClientKey == nil && cfg.ClientSecret == "" {
			errs = append(errs, errors.New("idp: a client secret or a client key is required"))
		}
	case AuthPrivateKeyJWT:
		if cfg.ClientKey == nil {
			errs = append(errs, errors.New("idp: private_key_jwt needs a client key"))
		}
	default:
		errs = append(errs, fmt.Errorf("idp: unknown client authentication method %q", cfg.AuthMethod))
	}
	if cfg.ClientKey != nil {
		if _, err := assertionAlg(cfg.ClientKey, cfg.ClientKeyAlg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, http: cfg.HTTPClient}
	if c.http == nil {
		c.http = &http.Client{Timeout: 10 * time.Second}
	}
	c.http = c.pacedClient(c.http) // honours the provider's Retry-After (pace.go)
	if c.cfg.DefaultTokenLifetime <= 0 {
		c.cfg.DefaultTokenLifetime = 5 * time.Minute
	}
	return c, nil
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// Issuer returns the configured issuer.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// Ready reports whether the provider's metadata is loaded, and the last discovery error.
func (c *Client) Ready() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != nil, c.lastError
}

// Metadata returns the discovered metadata, discovering it if needed.
func (c *Client) Metadata(ctx context.Context) (Metadata, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return Metadata{}, err
	}
	return d.meta, nil
}

// Discover loads the provider's metadata now, whatever the time since the last try.
func (c *Client) Discover(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != nil {
		return nil
	}
	return c.discoverLocked(ctx)
}

func (c *Client) discovered(ctx context.Context) (*discovered, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != nil {
		return c.state, nil
	}
	if c.now().Sub(c.lastTry) < time.Second && c.lastError != nil {
		return nil, c.lastError
	}
	if err := c.discoverLocked(ctx); err != nil {
		return nil, err
	}
	return c.state, nil
}

func (c *Client) discoverLocked(ctx context.Context) error {
	c.lastTry = c.now()
	d, err := c.discover(ctx)
	if err != nil {
		c.lastError = err
		return err
	}
	c.state, c.lastError = d, nil
	return nil
}

func (c *Client) discover(ctx context.Context) (*discovered, error) {
	where := c.cfg.DiscoveryURL
	if where == "" {
		where = strings.TrimSuffix(c.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, fmt.Errorf("idp: discovery URL: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery: %v", ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: discovery: reading the document: %v", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: discovery: %s answered %s", ErrUnavailable, where, resp.Status)
	}
	var meta Metadata
	if err := json.Unmarshal(body, &meta); err != nil {
		return nil, fmt.Errorf("%w: discovery: %s is not a JSON metadata document", ErrUnavailable, where)
	}
	if meta.Issuer != c.cfg.Issuer {
		// Compared exactly, as OpenID Connect Discovery requires: a trailing slash matters.
		return nil, fmt.Errorf("%w: discovery: the provider's issuer is %q, configured issuer is %q (they must match exactly)", ErrRefused, meta.Issuer, c.cfg.Issuer)
	}
	var missing []string
	for name, v := range map[string]string{"authorization_endpoint": meta.AuthorizationEndpoint, "token_endpoint": meta.TokenEndpoint, "jwks_uri": meta.JWKSURI} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: discovery: metadata lacks %s", ErrRefused, strings.Join(missing, ", "))
	}
	if len(meta.CodeChallengeMethods) > 0 && !contains(meta.CodeChallengeMethods, "S256") {
		return nil, fmt.Errorf("%w: discovery: the provider does not support PKCE S256", ErrRefused)
	}

	pc := oidc.ProviderConfig{
		IssuerURL: meta.Issuer, AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint,
		UserInfoURL: meta.UserinfoEndpoint, JWKSURL: meta.JWKSURI, Algorithms: c.signingAlgs(meta),
	}
	// The context only carries our HTTP client; go-oidc keeps it for JWKS refreshes.
	octx := oidc.ClientContext(context.Background(), c.http)
	p := pc.NewProvider(octx)
	now := func() time.Time { return c.now().Add(-c.cfg.ClockSkew) }
	d := &discovered{
		meta:     meta,
		provider: p,
		algs:     pc.Algorithms,
		verifier: p.VerifierContext(octx, &oidc.Config{ClientID: c.cfg.ClientID, SupportedSigningAlgs: pc.Algorithms, Now: now}),
		logout:   p.VerifierContext(octx, &oidc.Config{ClientID: c.cfg.ClientID, SupportedSigningAlgs: pc.Algorithms, Now: now}),
	}
	d.authMethod = c.authMethod(meta)
	d.oauth = &oauth2.Config{
		ClientID: c.cfg.ClientID, RedirectURL: c.cfg.RedirectURL, Scopes: c.cfg.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}
	if d.authMethod != AuthPrivateKeyJWT {
		d.oauth.ClientSecret = c.cfg.ClientSecret
	}
	if d.authMethod == AuthClientSecretBasic {
		d.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return d, nil
}

func (c *Client) signingAlgs(meta Metadata) []string {
	if len(c.cfg.SigningAlgs) > 0 {
		return c.cfg.SigningAlgs
	}
	supported := map[string]bool{"RS256": true, "RS384": true, "RS512": true, "ES256": true, "ES384": true,
		"ES512": true, "PS256": true, "PS384": true, "PS512": true, "EdDSA": true}
	var algs []string
	for _, a := range meta.IDTokenSigningAlgs {
		if supported[a] {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	return algs
}

func (c *Client) authMethod(meta Metadata) string {
	switch {
	case c.cfg.AuthMethod != "":
		return c.cfg.AuthMethod
	case c.cfg.ClientKey != nil:
		return AuthPrivateKeyJWT
	case len(meta.TokenAuthMethods) > 0 && !contains(meta.TokenAuthMethods, AuthClientSecretBasic) && contains(meta.TokenAuthMethods, AuthClientSecretPost):
		return AuthClientSecretPost
	default:
		return AuthClientSecretBasic
	}
}

// AuthCodeURL returns the provider URL that starts a login: authorization code flow with
// PKCE S256, state and nonce, plus extra parameters (provider quirks, prompt, …).
func (c *Client) AuthCodeURL(ctx context.Context, state, nonce, verifier string, extra url.Values) (string, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce)}
	u, err := url.Parse(d.oauth.AuthCodeURL(state, opts...))
	if err != nil {
		return "", fmt.Errorf("idp: authorization endpoint: %w", err)
	}
	q := u.Query()
	for k, vs := range extra {
		switch k {
		case "state", "nonce", "code_challenge", "code_challenge_method", "client_id", "redirect_uri", "response_type", "scope":
			continue // never overridable
		}
		q[k] = vs // several values allowed: resource (RFC 8707) may repeat
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// CheckIssuerParam applies RFC 9207 to an authorization response's "iss" parameter
// (given as present/value): when present it must equal the issuer exactly; when absent it
// is an error if the provider advertises the parameter or the config requires it.
func (c *Client) CheckIssuerParam(ctx context.Context, iss string, present bool) error {
	d, err := c.discovered(ctx)
	if err != nil {
		return err
	}
	if present {
		if subtle.ConstantTimeCompare([]byte(iss), []byte(d.meta.Issuer)) != 1 {
			return fmt.Errorf("%w: the authorization response came from another issuer (mix-up attack?)", ErrRefused)
		}
		return nil
	}
	if d.meta.IssuerParameterSupported || c.cfg.RequireIssuerParam {
		return fmt.Errorf("%w: the authorization response lacks the iss parameter", ErrRefused)
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// redactURLError keeps the operation and cause of a *url.Error but drops its URL, which
// may carry a query string.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
