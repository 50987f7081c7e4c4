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
// Once loaded, the metadata is read again every [Config.MetadataRefresh] and after a token
// that no published key verifies (at most every [RediscoverInterval]); a failed refresh
// keeps the metadata loaded before. Tokens are verified with a key set of this package
// that fetches the JWKS again only within bounds ([KeyRefetchInterval],
// [UnknownKeyRefetchInterval], [KeyMaxAge]), never once per bad token.
//
// A multi-tenant provider (Microsoft Entra ID's common endpoint) is an issuer template
// with the path segment {tenantid} ([TenantPlaceholder]): its discovery document names the
// template, and each token's "iss" names the token's tenant ("tid"); [Client.IssuerMatches]
// tells whether a recorded issuer is this provider's.
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
	"log/slog"
	"maps"
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
	// RFC 8705: the client authenticates with the TLS client certificate of the HTTP
	// client's transport (a PKI certificate, or a self-signed one registered at the
	// provider); the requests carry client_id and no secret.
	AuthTLSClient           = "tls_client_auth"
	AuthSelfSignedTLSClient = "self_signed_tls_client_auth"
)

// The audiences a client assertion may name (Config.AssertionAudience).
const (
	AssertionAudienceEndpoint = "endpoint"
	AssertionAudienceIssuer   = "issuer"
)

// When logins use pushed authorization requests (RFC 9126).
const (
	// PARAuto pushes when the provider advertises pushed_authorization_request_endpoint.
	PARAuto = "auto"
	// PARAlways pushes, and refuses a provider that advertises no PAR endpoint.
	PARAlways = "always"
	// PARNever sends the parameters in the authorization URL, unless the provider says
	// require_pushed_authorization_requests.
	PARNever = "never"
)

// Config describes the provider and this client's registration with it.
type Config struct {
	// Issuer is compared exactly with the discovery document and every token's "iss":
	// a trailing slash or a path matters. An issuer holding TenantPlaceholder as a path
	// segment is a multi-tenant template (see tenant.go): the discovery document must
	// name the template, each token's iss the template filled with its "tid".
	Issuer string
	// DiscoveryURL overrides where the metadata is read from. Default: Issuer without a
	// trailing slash, plus "/.well-known/openid-configuration"; for a template issuer,
	// with DiscoveryTenant ("common") in place of TenantPlaceholder.
	DiscoveryURL string
	// AllowedTenants, with a template issuer, are the only tenant ids (lower-case GUIDs)
	// whose tokens are accepted. Empty: every tenant.
	AllowedTenants []string

	ClientID     string
	ClientSecret string
	// ClientKey signs private_key_jwt client assertions (RFC 7523) when set; then
	// ClientSecret is not used. ClientKeyID is the key's "kid", ClientKeyAlg its JWS
	// algorithm (default RS256 for RSA keys, ES256 for P-256 keys).
	ClientKey    crypto.Signer
	ClientKeyID  string
	ClientKeyAlg string
	// AssertionAudience is the "aud" of client assertions: AssertionAudienceEndpoint (the
	// default, ""): the URL of the endpoint the assertion is sent to, which every provider
	// accepts; AssertionAudienceIssuer: the issuer identifier, as RFC 7523bis asks, for
	// providers that accept it (oidc-provider, Keycloak).
	AssertionAudience string
	// AuthMethod is how the client authenticates at the token and revocation endpoints.
	// Default: private_key_jwt with a ClientKey, otherwise client_secret_basic unless the
	// provider only lists client_secret_post.
	AuthMethod string

	RedirectURL string
	Scopes      []string

	// PAR says when the authorization request is pushed to the provider first (RFC
	// 9126), so that the browser's redirect carries only client_id and request_uri:
	// PARAuto (the default, ""), PARAlways or PARNever. A provider whose metadata says
	// require_pushed_authorization_requests gets pushed requests whatever this says.
	PAR string

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
	// TrustedAudiences may appear in the "aud" of ID and logout tokens next to ClientID
	// (some providers add their own APIs or a project id). Any other audience is refused,
	// as OpenID Connect Core §3.1.3.7 requires; so is an "azp" other than ClientID.
	TrustedAudiences []string
	// SkipUserinfo does not call the userinfo endpoint after login.
	SkipUserinfo bool
	// DistributedClaims are claims read from their source when the ID token or userinfo
	// holds a distributed or aggregated claim for them (OpenID Connect Core §5.6.2:
	// "_claim_names" naming a "_claim_sources" entry), such as an Entra ID token over
	// the group limit: the endpoint is fetched with the source's access_token or the
	// user's access token (Bearer), within 10 s and 1 MiB, and may answer a JSON object
	// or a JWT signed with the provider's keys. Default: none (the pointer is dropped).
	DistributedClaims []string
	// GraphGroups reads the groups claim of an Entra ID user over the group limit (an
	// overage: "_claim_names" naming groups, or "hasgroups": true) from Microsoft Graph's
	// POST /v1.0/me/getMemberObjects with the user's access token, which must then be a
	// token for Graph (scope GroupMember.Read.All or Directory.Read.All). GraphURL is Graph's
	// base URL (default https://graph.microsoft.com).
	GraphGroups bool
	GraphURL    string
	// DefaultTokenLifetime is assumed for access tokens whose response has no expires_in
	// and which are not JWTs with an "exp". Default 5 minutes.
	DefaultTokenLifetime time.Duration

	// MetadataRefresh is how often the discovery document is read again while serving
	// (lazily, by the first call after the period; a failed refresh keeps the old
	// metadata). Default 1 hour.
	MetadataRefresh time.Duration
	// Logger receives failed metadata refreshes. Default: discarded.
	Logger *slog.Logger

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
	// MTLSEndpointAliases are the endpoints to use with a TLS client certificate (RFC
	// 8705 §5), when the provider serves them elsewhere.
	MTLSEndpointAliases struct {
		TokenEndpoint      string `json:"token_endpoint"`
		RevocationEndpoint string `json:"revocation_endpoint"`
		UserinfoEndpoint   string `json:"userinfo_endpoint"`
		PAREndpoint        string `json:"pushed_authorization_request_endpoint"`
	} `json:"mtls_endpoint_aliases"`
	PAREndpoint string `json:"pushed_authorization_request_endpoint"`
	RequirePAR  bool   `json:"require_pushed_authorization_requests"`
}

// Client talks to one provider. Safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client

	pace   pacer      // per-endpoint Retry-After
	nonces dpopNonces // per-origin DPoP-Nonce

	mu         sync.Mutex
	state      *discovered // nil until discovery succeeds
	lastTry    time.Time
	lastError  error
	refreshing bool // a refresh of a loaded state is running
}

// RediscoverInterval bounds how often a token that no published key verifies makes the
// Client read the discovery document again (the provider may have moved its JWKS).
const RediscoverInterval = time.Minute

// discovered is everything derived from the metadata; immutable once built (its key
// set caches keys by itself).
type discovered struct {
	meta       Metadata
	loaded     time.Time
	provider   *oidc.Provider
	keys       *keySet
	verifier   *verifier // ID tokens and logout tokens
	oauth      *oauth2.Config
	authMethod string
	algs       []string // accepted JWS algorithms for ID and logout tokens
	par        bool     // authorization requests are pushed to meta.PAREndpoint
}

// New checks cfg and returns a Client. It does not contact the provider.
func New(cfg Config) (*Client, error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("idp: issuer is required"))
	} else if u, err := url.Parse(cfg.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, fmt.Errorf("idp: issuer %q is not an absolute URL", cfg.Issuer))
	}
	if err := CheckIssuerTemplate(cfg.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("idp: issuer: %w", err))
	}
	for _, t := range cfg.AllowedTenants {
		if !IsTenantID(t) {
			errs = append(errs, fmt.Errorf("idp: allowed tenant %q is not a tenant id (a lower-case GUID)", t))
		}
	}
	if len(cfg.AllowedTenants) > 0 && !strings.Contains(cfg.Issuer, TenantPlaceholder) {
		errs = append(errs, fmt.Errorf("idp: allowed tenants need an issuer with %s", TenantPlaceholder))
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
	case AuthTLSClient, AuthSelfSignedTLSClient:
		// The certificate is the HTTP client's; nothing to check here.
	default:
		errs = append(errs, fmt.Errorf("idp: unknown client authentication method %q", cfg.AuthMethod))
	}
	switch cfg.AssertionAudience {
	case "", AssertionAudienceEndpoint, AssertionAudienceIssuer:
	default:
		errs = append(errs, fmt.Errorf("idp: client assertion audience is %q; want endpoint or issuer", cfg.AssertionAudience))
	}
	switch cfg.PAR {
	case "", PARAuto, PARAlways, PARNever:
	default:
		errs = append(errs, fmt.Errorf("idp: par is %q; want auto, always or never", cfg.PAR))
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
	if c.cfg.MetadataRefresh <= 0 {
		c.cfg.MetadataRefresh = time.Hour
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
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
	if d := c.state; d != nil {
		due := c.now().Sub(d.loaded) >= c.cfg.MetadataRefresh && c.now().Sub(c.lastTry) >= RediscoverInterval
		c.mu.Unlock()
		if due {
			return c.refresh(ctx, d, "periodic"), nil
		}
		return d, nil
	}
	defer c.mu.Unlock()
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
	d, err := c.discover(ctx, nil)
	if err != nil {
		c.lastError = err
		return err
	}
	c.state, c.lastError = d, nil
	return nil
}

// refresh reads the metadata again while old is serving, and returns the state to use:
// the new one, or old when the refresh fails (logged; the Client stays ready) or another
// caller is refreshing already. The caller that refreshes waits for it; the others do not.
func (c *Client) refresh(ctx context.Context, old *discovered, why string) *discovered {
	c.mu.Lock()
	if c.refreshing || c.state != old {
		d := c.state
		c.mu.Unlock()
		return d
	}
	c.refreshing, c.lastTry = true, c.now()
	c.mu.Unlock()

	d, err := c.discover(context.WithoutCancel(ctx), old)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshing = false
	if err != nil {
		c.cfg.Logger.Warn("provider metadata refresh failed; keeping the metadata loaded before", "issuer", c.cfg.Issuer, "why", why, "error", err)
		return c.state
	}
	c.state = d
	return d
}

// discover reads the metadata and builds a state from it. A refresh passes the state it
// replaces: its key set (cached keys and fetch bounds) carries over when the JWKS is
// still at the same URL, and is marked for a fetch so that removed keys go.
func (c *Client) discover(ctx context.Context, old *discovered) (*discovered, error) {
	where := c.cfg.DiscoveryURL
	if where == "" {
		where = strings.TrimSuffix(c.cfg.Issuer, "/") + "/.well-known/openid-configuration"
		where = strings.Replace(where, TenantPlaceholder, DiscoveryTenant, 1)
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
		// A template issuer too: Entra publishes it literally, with {tenantid}.
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
	par, err := c.usePAR(meta)
	if err != nil {
		return nil, err
	}

	pc := oidc.ProviderConfig{
		IssuerURL: meta.Issuer, AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint,
		UserInfoURL: meta.UserinfoEndpoint, JWKSURL: meta.JWKSURI, Algorithms: c.signingAlgs(meta),
	}
	// The context only carries our HTTP client, for userinfo; tokens are verified with
	// our own key set, whose JWKS fetches are bounded (keyset.go).
	octx := oidc.ClientContext(context.Background(), c.http)
	p := pc.NewProvider(octx)
	now := func() time.Time { return c.now().Add(-c.cfg.ClockSkew) }
	ks := newKeySet(meta.JWKSURI, c.http, c.now)
	if old != nil && old.meta.JWKSURI == meta.JWKSURI {
		ks = old.keys
		ks.expire()
	}
	d := &discovered{
		meta:     meta,
		loaded:   c.now(),
		provider: p,
		keys:     ks,
		algs:     pc.Algorithms,
		par:      par,
	}
	// Audiences are checked by checkAudience too, stricter than go-oidc's membership test.
	// A template issuer's tokens name their tenant's issuer: checkTokenIssuer checks it
	// instead of go-oidc. Every other issuer keeps go-oidc's exact check.
	d.verifier = &verifier{c: c, d: d, v: oidc.NewVerifier(meta.Issuer, ks, &oidc.Config{ClientID: c.cfg.ClientID,
		SupportedSigningAlgs: pc.Algorithms, Now: now, SkipIssuerCheck: c.IsTemplate()})}
	d.authMethod = c.authMethod(meta)
	if d.authMethod == AuthTLSClient || d.authMethod == AuthSelfSignedTLSClient {
		// RFC 8705 §5: with a client certificate, the provider's mTLS aliases.
		a := meta.MTLSEndpointAliases
		for _, e := range []struct {
			to    *string
			alias string
		}{{&d.meta.TokenEndpoint, a.TokenEndpoint},
			{&d.meta.RevocationEndpoint, a.RevocationEndpoint}, {&d.meta.UserinfoEndpoint, a.UserinfoEndpoint},
			{&d.meta.PAREndpoint, a.PAREndpoint}} {
			if e.alias != "" {
				*e.to = e.alias
			}
		}
		pc.TokenURL, pc.UserInfoURL = d.meta.TokenEndpoint, d.meta.UserinfoEndpoint
		d.provider = pc.NewProvider(octx)
	}
	d.oauth = &oauth2.Config{
		ClientID: c.cfg.ClientID, RedirectURL: c.cfg.RedirectURL, Scopes: c.cfg.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: d.meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
	}
	switch d.authMethod {
	case AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLSClient:
	default:
		d.oauth.ClientSecret = c.cfg.ClientSecret
	}
	if d.authMethod == AuthClientSecretBasic {
		d.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return d, nil
}

// usePAR decides from the metadata whether logins push their authorization requests.
func (c *Client) usePAR(meta Metadata) (bool, error) {
	switch {
	case meta.PAREndpoint == "" && meta.RequirePAR:
		return false, fmt.Errorf("%w: discovery: the provider requires pushed authorization requests but advertises no pushed_authorization_request_endpoint", ErrRefused)
	case meta.PAREndpoint == "" && c.cfg.PAR == PARAlways:
		return false, fmt.Errorf("%w: discovery: par is always, but the provider advertises no pushed_authorization_request_endpoint", ErrRefused)
	case meta.PAREndpoint == "":
		return false, nil
	}
	return meta.RequirePAR || c.cfg.PAR != PARNever, nil
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
// PKCE S256, state and nonce, plus extra parameters (provider quirks, prompt, …). With
// pushed authorization requests (Config.PAR) it first posts the parameters to the
// provider, authenticated as at the token endpoint, and the URL then carries only
// client_id and the request_uri the provider returned.
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
		case "state", "nonce", "code_challenge", "code_challenge_method", "client_id", "redirect_uri", "response_type", "scope", "request_uri", "request":
			continue // never overridable
		}
		q[k] = vs // several values allowed: resource (RFC 8707) may repeat
	}
	if d.par {
		uri, err := c.pushAuthorization(ctx, d, q)
		if err != nil {
			return "", err
		}
		// RFC 9126 §4: client_id and request_uri only; the rest is the provider's to recall.
		q = url.Values{"client_id": {c.cfg.ClientID}, "request_uri": {uri}}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// maxRequestURI bounds the request_uri a provider may hand back: it goes into a URL.
const maxRequestURI = 2048

// pushAuthorization posts an authorization request's parameters to the PAR endpoint
// (RFC 9126 §2) and returns the request_uri of the answer.
func (c *Client) pushAuthorization(ctx context.Context, d *discovered, params url.Values) (string, error) {
	form := maps.Clone(params)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.meta.PAREndpoint, nil)
	if err != nil {
		return "", fmt.Errorf("idp: pushed authorization request endpoint: %w", err)
	}
	c.authenticate(req, form, d, d.meta.PAREndpoint)
	body := form.Encode()
	req.Body = readCloser(body)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var we *waitError
		if errors.As(err, &we) {
			return "", fmt.Errorf("idp: pushed authorization request: %w", we)
		}
		return "", fmt.Errorf("%w: pushed authorization request: %v", ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	var answer struct {
		RequestURI string          `json:"request_uri"`
		ExpiresIn  json.RawMessage `json:"expires_in"`
		Error      string          `json:"error"`
	}
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, 16<<10)).Decode(&answer)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		// RFC 9126 §2.3: errors in the token endpoint's format.
		te := &TokenError{Op: "pushed authorization request", Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header, c.now())}
		if decodeErr == nil {
			te.Code = safeCode(answer.Error)
		}
		c.pace.answered(resp, te.busy(), c.now())
		return "", te
	}
	if decodeErr != nil || answer.RequestURI == "" || len(answer.RequestURI) > maxRequestURI {
		return "", fmt.Errorf("%w: pushed authorization request: the answer has no usable request_uri", ErrRefused)
	}
	return answer.RequestURI, nil
}

// CheckIssuerParam applies RFC 9207 to an authorization response's "iss" parameter
// (given as present/value): when present it must equal the issuer exactly (for a template
// issuer: the template filled with a tenant id, one of AllowedTenants when set; the ID
// token then says which tenant it is); when absent it is an error if the provider
// advertises the parameter or the config requires it.
func (c *Client) CheckIssuerParam(ctx context.Context, iss string, present bool) error {
	d, err := c.discovered(ctx)
	if err != nil {
		return err
	}
	if present && c.IsTemplate() {
		tid, ok := c.tenantOf(iss)
		if !ok {
			return fmt.Errorf("%w: the authorization response came from another issuer (mix-up attack?)", ErrRefused)
		}
		if !c.tenantAllowed(tid) {
			return fmt.Errorf("%w: %w: the authorization response names tenant %s", ErrRefused, ErrTenantNotAllowed, tid)
		}
		return nil
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

// verifier checks ID or logout tokens against one state: go-oidc's checks with our key
// set, then the audience rules (checkAudience). When no published key verified the
// signature, the provider may have moved its keys: the metadata is read again (at most
// every RediscoverInterval) and, if it names another JWKS, the token is checked once more.
type verifier struct {
	c *Client
	d *discovered
	v *oidc.IDTokenVerifier
}

// errKeysUnavailable: the provider's keys could not be loaded at all.
var errKeysUnavailable = fmt.Errorf("%w: the provider's signing keys could not be loaded", ErrUnavailable)

// Verify verifies an ID token.
func (v *verifier) Verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	var idt *oidc.IDToken
	err := v.run(ctx, func(ctx context.Context, w *verifier) (err error) {
		if idt, err = w.v.Verify(ctx, raw); err != nil {
			return err
		}
		var cl tokenClaims
		if err := idt.Claims(&cl); err != nil {
			return err
		}
		return w.c.checkClaims(idt.Issuer, idt.Audience, cl)
	})
	return idt, err
}

// VerifyLogout verifies a back-channel logout token.
func (v *verifier) VerifyLogout(ctx context.Context, raw string) (*oidc.LogoutToken, error) {
	var lt *oidc.LogoutToken
	err := v.run(ctx, func(ctx context.Context, w *verifier) (err error) {
		if lt, err = w.v.VerifyLogout(ctx, raw); err != nil {
			return err
		}
		var cl tokenClaims
		if err := lt.Claims(&cl); err != nil {
			return err
		}
		return w.c.checkClaims(lt.Issuer, lt.Audience, cl)
	})
	return lt, err
}

func (v *verifier) run(ctx context.Context, check func(context.Context, *verifier) error) error {
	report := &verifyReport{}
	err := check(context.WithValue(ctx, verifyReportKey{}, report), v)
	switch {
	case err == nil:
		return nil
	case report.unavailable:
		return errKeysUnavailable
	case !report.noKey:
		return err
	}
	d := v.c.rediscoverFor(ctx, v.d)
	if d == v.d || d.keys == v.d.keys {
		return err // same JWKS: the key set has already fetched it again, within its bounds
	}
	report = &verifyReport{}
	if err := check(context.WithValue(ctx, verifyReportKey{}, report), d.verifier); err != nil {
		if report.unavailable {
			return errKeysUnavailable
		}
		return err
	}
	return nil
}

// rediscoverFor reads the metadata again after a token that no key of d verified, at most
// every RediscoverInterval, and returns the state to use.
func (c *Client) rediscoverFor(ctx context.Context, d *discovered) *discovered {
	c.mu.Lock()
	cur, due := c.state, c.now().Sub(c.lastTry) >= RediscoverInterval
	c.mu.Unlock()
	if cur != d || !due {
		return cur
	}
	return c.refresh(ctx, d, "a token signed with an unknown key")
}

// tokenClaims are the claims of an ID or logout token that checkClaims reads.
type tokenClaims struct {
	AZP json.RawMessage `json:"azp"`
	TID json.RawMessage `json:"tid"`
}

// checkClaims applies the checks go-oidc leaves to us: the audience rules, and the
// issuer of a template (go-oidc checked a plain issuer exactly).
func (c *Client) checkClaims(iss string, aud []string, cl tokenClaims) error {
	if err := c.checkAudience(aud, cl.AZP); err != nil {
		return err
	}
	if c.IsTemplate() {
		return c.checkTokenIssuer(iss, cl.TID)
	}
	return nil
}

// checkAudience applies OpenID Connect Core §3.1.3.7 beyond go-oidc's membership test:
// every audience must be the client or a trusted one, and azp, when present, the client.
func (c *Client) checkAudience(aud []string, azp json.RawMessage) error {
	for _, a := range aud {
		if a != c.cfg.ClientID && !contains(c.cfg.TrustedAudiences, a) {
			return fmt.Errorf("audience %q is neither this client nor a trusted audience", a)
		}
	}
	if len(azp) > 0 {
		var s string
		if json.Unmarshal(azp, &s) != nil || s != c.cfg.ClientID {
			return errors.New("azp is not this client")
		}
	}
	return nil
}
