package gatehouse

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/ratelimit"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// Config configures a Gateway. Field comments give the YAML key of the binary's config
// file (see docs/configuration.md) and the default. Validation errors name fields by
// those keys, so a library user and a YAML user read the same messages.
//
// Each field's `gatehouse` tag is its YAML key and what Gateway.Reload does with a
// change: "key" needs a restart (Reload reports it), "key,live" is applied while
// serving, "-" is a dependency Reload neither compares nor replaces.
type Config struct {
	// PublicURL is the origin the browser uses (public_url), e.g. https://app.example.com.
	// It is the base of the redirect URI and decides the cookie policy. It must be https,
	// or http on a loopback host for local development.
	PublicURL string `gatehouse:"public_url"`

	Provider ProviderConfig `gatehouse:"provider"`
	// Providers are the app's providers when it has several (providers): users choose
	// one with /bff/login?provider=<name>; the first is the default. Set either Provider
	// or Providers. Each is a confidential client of its own, with the same redirect URI
	// (<public_url>/bff/callback) and back-channel logout URI.
	Providers []ProviderConfig `gatehouse:"providers"`
	// Login is how /bff/login starts a login (login).
	Login LoginConfig `gatehouse:"login,live"`
	// Name names the app (the frontend) among those of a Multi (name); sessions record
	// it and open only in the app of that name. "" for a gateway of one app.
	Name     string         `gatehouse:"name"`
	Session  SessionConfig  `gatehouse:"session"`
	Cookie   CookieConfig   `gatehouse:"cookie"`
	CSRF     CSRFConfig     `gatehouse:"csrf"`
	Routes   []Route        `gatehouse:"routes,live"`
	Frontend FrontendConfig `gatehouse:"frontend"`
	Admin    AdminConfig    `gatehouse:"admin"`
	// Server bounds what one client can hold of the server: body read deadlines and
	// connections per client network (server:). See deadlines.go and connlimit.go.
	Server ServerConfig `gatehouse:"server"`

	// TrustedProxies are the addresses (proxies, load balancers) whose X-Forwarded-For
	// and X-Forwarded-Proto headers are believed (trusted_proxies). Default: none.
	TrustedProxies []netip.Prefix `gatehouse:"trusted_proxies"`
	// WebSocketOrigins are extra origins allowed to open WebSockets through routes
	// (websocket_origins). The public origin is always allowed.
	WebSocketOrigins []string `gatehouse:"websocket_origins,live"`

	// StripRequestHeaders are request headers removed before forwarding to routes
	// (strip_request_headers), in addition to the built-in list of other gateways'
	// identity headers (upstream.DefaultStripHeaders): names, or prefixes followed by "*"
	// such as X-Tenant-*. Default: none.
	StripRequestHeaders []string `gatehouse:"strip_request_headers"`
	// AllowRequestHeaders are entries of the strip lists the browser may send to routes
	// after all (allow_request_headers), e.g. Remote-User. Weaker: an upstream that also
	// sits behind another gateway may take them for who the user is. Forwarding headers
	// and method or path overrides (X-Forwarded-*, X-HTTP-Method-Override, …) are removed
	// whatever this says. Default: none.
	AllowRequestHeaders []string `gatehouse:"allow_request_headers"`

	// Identity signs the identity assertions of routes with identity.assertion
	// (identity:); see IdentityConfig.
	Identity IdentityConfig `gatehouse:"identity"`

	// Logger receives structured logs; it never receives a token, secret or cookie value.
	// Default: slog.Default().
	Logger *slog.Logger `gatehouse:"-"`
	// AuditLogger receives the audit events (logins, logouts, refreshes, expired and
	// revoked sessions, back-channel logouts, CSRF refusals, rate limiting, denied
	// routes), one record each, with no token, code, secret or cookie value. Default:
	// JSON lines on standard error. See docs/operations.md.
	AuditLogger *slog.Logger `gatehouse:"-"`
	// AccessLogger, when not nil, receives one record per request: request id, kind,
	// route, method, path (never the query), status, bytes, duration_ms, upstream_ms,
	// client ip, a keyed hash of the session handle, and the subject when
	// Log.AccessSubject is set. Default: nil, no access log. See docs/operations.md.
	AccessLogger *slog.Logger `gatehouse:"-"`
	// Log is what the access log records (log).
	Log LogConfig `gatehouse:"log"`
	// RateLimits bound logins, callbacks, back-channel logouts, session management and
	// the admin API per client IP (and per user for session management) (rate_limits).
	RateLimits RateLimitConfig `gatehouse:"rate_limits,live"`
	// RateLimiter keeps the rate limits' buckets. Default: in this process's memory. The
	// binary shares them through Redis when the session store is Redis.
	RateLimiter ratelimit.Limiter `gatehouse:"-"`
	// InsecureDiagnostics serves GET /bff/diagnostics, a page for developers about the
	// configuration, the provider and the caller's session (insecure_diagnostics). It is
	// refused unless public_url is a loopback address.
	InsecureDiagnostics bool `gatehouse:"insecure_diagnostics,live"`
	// Compat answers the session endpoints in another BFF's shape, so that an SPA
	// written for it runs unchanged (compat): "" (Gatehouse's own) or CompatDuende.
	Compat string `gatehouse:"compat,live"`
	// ForwardAuth is how /bff/auth, the forward-auth endpoint an ingress asks, answers
	// (forward_auth). See forwardauth.go.
	ForwardAuth ForwardAuthConfig `gatehouse:"forward_auth,live"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `gatehouse:"-"`
	// ProviderHTTPClient makes the requests to the identity provider. Default: a client
	// with a 10 s timeout.
	ProviderHTTPClient *http.Client `gatehouse:"-"`
	// UpstreamTransport carries proxied requests. Default: a transport tuned for many
	// concurrent requests to few upstreams.
	UpstreamTransport http.RoundTripper `gatehouse:"-"`
	// UpstreamTransportMode is how every route without its own choice carries its HTTP/1.1
	// requests (upstream_transport): TransportFast or TransportStandard. Default:
	// TransportFast, or TransportStandard when UpstreamTransport is set (a RoundTripper of
	// the embedder's own then carries every request, as it asks). See Route.Transport.
	UpstreamTransportMode TransportMode `gatehouse:"upstream_transport,live"`
	// TracerProvider, when not nil, traces requests with OpenTelemetry: a server span per
	// request, child spans for the flows (login, callback, code exchange, refresh,
	// revocation, session store operations) and client spans for every request to the
	// provider and the upstreams, which carry the W3C traceparent. No span holds a
	// cookie, token, code, state or query string. Default nil: no tracing, and nothing
	// on the request path is wrapped. See docs/operations.md, "Tracing".
	TracerProvider trace.TracerProvider `gatehouse:"-"`
	// Propagator reads the trace context of requests from TrustedProxies (anyone else's
	// request starts a new trace) and writes it on requests to the provider and the
	// upstreams. Default: W3C Trace Context (traceparent, tracestate).
	Propagator propagation.TextMapPropagator `gatehouse:"-"`
	// Metrics registers Gatehouse's Prometheus metrics. Default: a private registry,
	// served by the admin handler.
	Metrics prometheus.Registerer `gatehouse:"-"`
}

// LoginConfig is how /bff/login starts a login (login:).
type LoginConfig struct {
	// Chooser, with several providers, shows a page listing them when /bff/login names
	// none (chooser). Default false: the first provider is used.
	Chooser bool `gatehouse:"chooser"`
}

// IdentityConfig is how Gatehouse signs the identity assertions it sends upstreams
// (identity:): the X-Gatehouse-Assertion JWT of routes with identity.assertion, whose
// public keys are published at /.well-known/gatehouse/jwks.json.
type IdentityConfig struct {
	// SigningKey signs the assertions (signing_key_file: PEM PKCS#8 or a JWK): an EC
	// P-256 key (ES256) or an Ed25519 key (EdDSA). Default: a key generated at start,
	// which is another one on every replica and after every restart; replicas behind one
	// address should share a file. Reload applies a change at once: the new key signs,
	// and the replaced one stays published for twice AssertionTTL and a minute.
	SigningKey crypto.Signer `gatehouse:"signing_key_file,live"`
	// PublishKeys are more public keys published in the JWKS, never signing
	// (publish_keys_file: PEM public or private keys, or a JWK Set): the next key of a
	// rotation across replicas, published by every replica before any signs with it.
	// EC P-256 or Ed25519. Reload applies a change at once.
	PublishKeys []crypto.PublicKey `gatehouse:"publish_keys_file,live"`
	// Algorithm of a generated key (algorithm): ES256 (default) or EdDSA. With
	// SigningKey, the key's type decides, and Algorithm must agree when set.
	Algorithm string `gatehouse:"algorithm"`
	// AssertionTTL is how long an assertion is valid (assertion_ttl). Default and
	// maximum 60 s, minimum 1 s.
	AssertionTTL time.Duration `gatehouse:"assertion_ttl,live"`
}

// RouteIdentity tells a route's upstream who the user is, for upstreams that cannot
// validate an access token (routes[].identity:). Without a session (token: none or an
// optional route, nobody logged in) nothing is set; browser-sent headers of these names
// never pass either way.
type RouteIdentity struct {
	// Headers maps a header name to the session claim it carries (headers), e.g.
	// {X-User: preferred_username, X-Groups: groups}. Strings are sent as they are,
	// numbers and booleans in their JSON form, arrays of those joined with "," (an
	// element with a comma is then ambiguous: read the assertion instead). A value with
	// control characters (CR, LF, …) or an object leaves its header out, with a warning.
	Headers map[string]string
	// Assertion adds X-Gatehouse-Assertion (assertion): a JWT signed by the gateway
	// (identity.signing_key_file) with iss = public_url, aud = Audience, sub, iat, exp
	// (identity.assertion_ttl), jti and the Claims.
	Assertion bool
	// Audience is the assertion's aud (audience). Default: the route's upstream URL as
	// configured (or public_url + path for a route without upstream).
	Audience string
	// Claims are the session claims copied into the assertion, with their JSON types
	// (claims). Default: the claims Headers names. iss, aud, sub, iat, exp, nbf and jti
	// are the gateway's own.
	Claims []string
}

// LogConfig is what the access log records (log:).
type LogConfig struct {
	// AccessSubject adds the session's subject to access records (access_subject).
	// Default false: the subject is personal data, and the session hash already groups
	// a session's requests.
	AccessSubject bool `gatehouse:"access_subject"`
}

// ProviderConfig is the OpenID Connect provider and this gateway's client registration
// (provider:).
type ProviderConfig struct {
	// Name tells the app's providers apart (name): /bff/login?provider=<name>, the
	// sessions' provider, /bff/user's provider. Required when there are several.
	Name string `gatehouse:"name"`
	// Label is what the login chooser shows for it (label). Default: Name.
	Label string `gatehouse:"label"`
	// Issuer is compared exactly, a trailing slash matters (issuer). A path segment
	// {tenantid} makes it a multi-tenant template (Entra ID's
	// https://login.microsoftonline.com/{tenantid}/v2.0): each token's iss must be the
	// template with the token's tid claim in its place, and sessions record that issuer.
	Issuer string `gatehouse:"issuer"`
	// DiscoveryURL is where the metadata is read (discovery_url). Default
	// <issuer>/.well-known/openid-configuration, with {tenantid} replaced by common.
	DiscoveryURL string `gatehouse:"discovery_url"`
	// AllowedTenants, with a {tenantid} issuer, are the only tenants (lower-case GUIDs)
	// whose users may sign in and whose logout tokens are accepted (allowed_tenants).
	// Default: every tenant.
	AllowedTenants []string `gatehouse:"allowed_tenants"`
	ClientID       string   `gatehouse:"client_id"`     // client_id
	ClientSecret   string   `gatehouse:"client_secret"` // client_secret (or client_secret_file)
	// ClientKey enables private_key_jwt (client_key_file, PEM); ClientKeyID is its kid
	// (client_key_id), ClientKeyAlg its algorithm (client_key_alg, default by key type).
	ClientKey    crypto.Signer `gatehouse:"client_key_file"`
	ClientKeyID  string        `gatehouse:"client_key_id"`
	ClientKeyAlg string        `gatehouse:"client_key_alg"`
	// ClientAssertionAudience is the aud of client assertions (client_assertion_audience):
	// "endpoint" (default: the URL the assertion is sent to) or "issuer" (RFC 7523bis).
	ClientAssertionAudience string `gatehouse:"client_assertion_audience"`
	// AuthMethod: client_secret_basic, client_secret_post, private_key_jwt,
	// tls_client_auth or self_signed_tls_client_auth (token_endpoint_auth_method).
	// Default: chosen from the credentials and discovery.
	AuthMethod string `gatehouse:"token_endpoint_auth_method"`
	// TLSClientCertificate is presented to the provider in every TLS handshake
	// (tls_client_cert_file, tls_client_key_file): the credential of tls_client_auth and
	// self_signed_tls_client_auth (RFC 8705). TLSRootCAs replaces the system roots for
	// the provider's certificate (tls_ca_file). Both apply to the default provider
	// client, or to ProviderHTTPClient's transport when it is an *http.Transport.
	TLSClientCertificate *tls.Certificate `gatehouse:"tls_client_cert_file"`
	TLSRootCAs           *x509.CertPool   `gatehouse:"tls_ca_file"`
	// PAR is when logins push their authorization request to the provider first (RFC
	// 9126, par): "auto" (default: when the provider advertises an endpoint), "always"
	// (refuse a provider without one) or "never" (unless the provider requires it).
	PAR string `gatehouse:"par"`
	// DPoP asks for sender-constrained tokens (RFC 9449, dpop): each session gets its
	// own key pair at login, kept only in its sealed record, and every token request of
	// the session carries a proof of it. Routes that send such a token need DPoP too.
	DPoP bool `gatehouse:"dpop"`
	// Scopes requested at login (scopes). Default: openid profile email offline_access.
	Scopes []string `gatehouse:"scopes"`
	// AuthParams are extra authorization request parameters (auth_params), e.g.
	// {prompt: consent} for providers that only grant offline_access with consent, or
	// {audience: …} for Auth0.
	AuthParams map[string]string `gatehouse:"auth_params"`
	// AllowedAuthParams may be passed through from /bff/login's query string
	// (allowed_auth_params); only prompt, max_age, acr_values, login_hint, ui_locales and
	// display are eligible.
	AllowedAuthParams []string `gatehouse:"allowed_auth_params"`
	// EndSessionURL replaces the provider's end_session_endpoint (end_session_url); it
	// may use {id_token_hint}, {client_id}, {post_logout_redirect_uri}, {state}.
	EndSessionURL string `gatehouse:"end_session_url"`
	// OmitIDTokenHint sends RP-initiated logout with client_id only, without the ID
	// token as id_token_hint (omit_id_token_hint): the ID token then never travels
	// through the browser, at the price of a confirmation page at some providers.
	OmitIDTokenHint bool `gatehouse:"omit_id_token_hint"`
	// RequireIssuerParam refuses authorization responses without iss (RFC 9207) even if
	// the provider does not advertise it (require_iss_param).
	RequireIssuerParam bool `gatehouse:"require_iss_param"`
	// SigningAlgs limits ID/logout token algorithms (signing_algs). Default: advertised.
	SigningAlgs []string `gatehouse:"signing_algs"`
	// ClockSkew tolerated on token expiry (clock_skew). Default 0.
	ClockSkew time.Duration `gatehouse:"clock_skew"`
	// TrustedAudiences may appear in the aud of ID and logout tokens besides client_id
	// (trusted_audiences): some providers add a project id or their own API. Any other
	// audience, or an azp other than client_id, is refused. Default: none.
	TrustedAudiences []string `gatehouse:"trusted_audiences"`
	// SkipUserinfo does not call userinfo after login (skip_userinfo).
	SkipUserinfo bool `gatehouse:"skip_userinfo"`
	// DistributedClaims are read from their source when the ID token or userinfo points
	// to one (distributed_claims; OpenID Connect Core §5.6.2 "_claim_names" and
	// "_claim_sources"), e.g. [groups] for Entra ID's group overage. Default: none.
	DistributedClaims []string `gatehouse:"distributed_claims"`
	// GraphGroups reads the groups of an Entra ID user over the group limit (an overage
	// pointer, or hasgroups) from Microsoft Graph (POST /v1.0/me/getMemberObjects) with
	// the user's access token, which must be a Graph token that may read memberships
	// (graph_groups). GraphURL is Graph's base URL (graph_url; default
	// https://graph.microsoft.com, e.g. https://graph.microsoft.us for US Government).
	GraphGroups bool   `gatehouse:"graph_groups"`
	GraphURL    string `gatehouse:"graph_url"`
	// DefaultTokenLifetime is assumed for access tokens of unknown lifetime
	// (default_token_lifetime). Default 5 minutes.
	DefaultTokenLifetime time.Duration `gatehouse:"default_token_lifetime"`
	// RefreshLead refreshes an access token this long before it expires (refresh_lead).
	// Default 30 s; never more than half the token's lifetime.
	RefreshLead time.Duration `gatehouse:"refresh_lead"`
	// ClaimsMaxAge is how old a session's claims may be at a refresh before the refresh
	// re-reads userinfo, even when the provider returned no new ID token
	// (claims_max_age). Default 15 minutes. A refresh that returns an ID token always
	// replaces the claims.
	ClaimsMaxAge time.Duration `gatehouse:"claims_max_age"`
	// BackchannelLogoutAllSessions makes a back-channel logout that names a subject end
	// every session of that subject, not only those of the named provider session
	// (backchannel_logout_all_sessions).
	BackchannelLogoutAllSessions bool `gatehouse:"backchannel_logout_all_sessions"`
}

// SessionConfig configures server-side sessions (session:).
type SessionConfig struct {
	// Store keeps the sessions (store: memory, bolt://…, redis://…). Default: a new
	// in-memory store, closed by Gateway.Close.
	Store session.Store `gatehouse:"-"`
	// Keys is the server key ring, newest first, each 32 bytes (keys / keys_file). It
	// seals session metadata and logout state: the first key seals, all of them open.
	// Default: a key derived from the client secret (or client key), so replicas sharing
	// a store agree without configuration; New then logs a warning. Reload applies a
	// change at once.
	Keys [][]byte `gatehouse:"keys,live"`
	// AcceptKeys open and find what Keys does but never seal (accept_keys /
	// accept_keys_file): a key every replica accepts before any makes it primary rotates
	// the ring with no one logged out. Reload applies a change at once.
	AcceptKeys [][]byte `gatehouse:"accept_keys,live"`
	// IdleTimeout ends unused sessions (idle_timeout). Default 30 minutes.
	IdleTimeout time.Duration `gatehouse:"idle_timeout"`
	// AbsoluteTimeout ends sessions this long after login (absolute_timeout). Default 12 h.
	AbsoluteTimeout time.Duration `gatehouse:"absolute_timeout"`
	// FlowTimeout is how long a started login may take (flow_timeout). Default 10 minutes.
	FlowTimeout time.Duration `gatehouse:"flow_timeout,live"`
	// MaxPendingFlows bounds the logins in progress, whoever starts them
	// (max_pending_flows): at most this many flows are started in any flow_timeout, so at
	// most this many flow records are held. The count is a token bucket of the RateLimiter,
	// so it holds across the replicas that share it (the binary shares it through Redis
	// when the store is Redis). Half of it may start at once, the other half over a
	// flow_timeout. Past it /bff/login answers 503 with Retry-After. Default 20 000; at
	// least 2.
	MaxPendingFlows int `gatehouse:"max_pending_flows,live"`
	// BindUserAgent ends a session used by another browser than the one that logged in
	// (bind_user_agent): its User-Agent, version numbers aside, must not change. Off by
	// default.
	BindUserAgent bool `gatehouse:"bind_user_agent"`
	// BindIPv4Prefix and BindIPv6Prefix end a session used from another network than the
	// one it logged in from: the client address masked to this many bits must not change
	// (bind_ipv4_prefix, e.g. 24; bind_ipv6_prefix, e.g. 64). 0, the default, does not
	// bind. Behind a proxy, set trusted_proxies so that the client's address is known.
	BindIPv4Prefix int `gatehouse:"bind_ipv4_prefix"`
	BindIPv6Prefix int `gatehouse:"bind_ipv6_prefix"`
}

// RateLimitConfig bounds the endpoints an attacker can call without a session
// (rate_limits:). Each is a token bucket per client IP, except Sessions, which is per
// user. A refused request gets 429 with Retry-After and a rate_limited audit event.
type RateLimitConfig struct {
	Login RateLimit // login: GET /bff/login. Default 60/min, burst 60.
	// LoginPer48 is a second login bucket for IPv6 clients, per /48 (login_per_48), taken
	// besides the /64's: whoever holds a /48 holds 65 536 /64s. Default 120/min, burst 120.
	LoginPer48  RateLimit
	Callback    RateLimit // callback: GET /bff/callback. Default 60/min, burst 60.
	Backchannel RateLimit // backchannel: POST /bff/backchannel. Default 600/min, burst 200.
	Admin       RateLimit // admin: /admin/* on the admin listener. Default 60/min, burst 30.
	Sessions    RateLimit // sessions: /bff/sessions, per user. Default 30/min, burst 20.
	// InsecureDisable turns rate limiting off (insecure_disable), e.g. behind an edge that
	// limits already.
	InsecureDisable bool
}

// RateLimit is a token bucket: Burst requests at once, refilled at PerMinute.
type RateLimit struct {
	PerMinute float64 // per_minute
	Burst     int     // burst
}

// CookieConfig configures the session cookie (cookie:).
type CookieConfig struct {
	// Name of the session cookie (name). Default __Host-gatehouse. It must keep the
	// __Host- prefix unless AllowNonHostPrefix.
	Name string `gatehouse:"name"`
	// SameSite is Strict by default (same_site: strict|lax).
	SameSite http.SameSite `gatehouse:"same_site"`
	// AllowNonHostPrefix permits a name without the __Host- prefix
	// (allow_non_host_prefix). Weaker: a sibling subdomain could then overwrite it.
	AllowNonHostPrefix bool `gatehouse:"allow_non_host_prefix"`
}

// CSRFConfig configures the CSRF defences (csrf:).
type CSRFConfig struct {
	Header string `gatehouse:"header"` // header (default X-CSRF)
	Value  string `gatehouse:"value"`  // value (default 1)
	// TrustedOrigins may make cross-origin state-changing requests (trusted_origins).
	TrustedOrigins []string `gatehouse:"trusted_origins"`
}

// TokenMode says which access token a route attaches.
type TokenMode string

const (
	TokenUser         TokenMode = "user"           // the session's token; 401 without a session
	TokenClient       TokenMode = "client"         // the gateway's own client-credentials token
	TokenUserOrClient TokenMode = "user_or_client" // the session's token, else the client's
	TokenUserOrNone   TokenMode = "user_or_none"   // the session's token, else none
	TokenNone         TokenMode = "none"           // no token
	// TokenExchange sends a token obtained by exchanging the user's (RFC 8693) for the
	// route's Exchange; 401 without a session.
	TokenExchange TokenMode = "exchange"
)

// ExchangeConfig describes the token a route with token: exchange gets (exchange:):
// the session's access token (or ID token) traded at the provider's token endpoint for
// one with this audience, resource and scopes (RFC 8693). It is kept in the session
// until it expires and then exchanged again, once, even under concurrent requests.
type ExchangeConfig struct {
	Audience string   `gatehouse:"audience"` // audience parameter
	Resource string   `gatehouse:"resource"` // resource parameter (an absolute URI)
	Scopes   []string `gatehouse:"scopes"`   // scope parameter
	// RequestedTokenType is sent as requested_token_type when set (requested_token_type),
	// e.g. urn:ietf:params:oauth:token-type:jwt. The answer must still be a Bearer token.
	RequestedTokenType string `gatehouse:"requested_token_type"`
	// SubjectToken is what is exchanged (subject_token): "access_token" (default) or
	// "id_token".
	SubjectToken string `gatehouse:"subject_token"`
}

// Route sends requests under a path prefix to an upstream API (routes:).
type Route struct {
	Path string // path prefix, e.g. /api/ (matches /api and /api/…, never /apix)
	// Upstream is the upstream base URL; its path is prepended. A route without one is a
	// forward-auth-only route: an ingress asks /bff/auth about it (forwardauth.go), and the
	// direct proxy answers 404.
	Upstream string
	Token    TokenMode // token; default user
	// StripPrefix removes Path before forwarding (strip_prefix).
	StripPrefix bool
	// Methods allowed (methods). Default: any.
	Methods []string
	// Timeout for the upstream's response headers (timeout). Default 30 s. Streams
	// (SSE, WebSockets) may last longer once the headers arrived.
	Timeout time.Duration
	// Headers are set on every forwarded request (headers).
	Headers map[string]string
	// Require are rules on the session's claims; all must hold (require). A route with
	// rules needs a session.
	Require []Rule
	// Audience and Resource ask the provider for a token for this API (audience /
	// resource, RFC 8707). One token per session per audience is kept.
	Audience string
	Resource string
	// Scopes down-scope the token for this route (scopes).
	Scopes []string
	// Exchange is the token of a route with Token TokenExchange (exchange).
	Exchange *ExchangeConfig
	// DPoP sends a DPoP-bound token as "Authorization: DPoP" with a fresh proof for each
	// request (dpop). A route without it refuses (502) to forward a bound token: the
	// upstream could not use it.
	DPoP bool `gatehouse:"dpop"`
	// Identity sets headers from the session's claims and a signed identity assertion
	// for an upstream that cannot read tokens (identity). Default: none.
	Identity *RouteIdentity
	// ForwardCookies are browser cookies passed to the upstream (forward_cookies).
	// Gatehouse's own cookies never are. Default: none.
	ForwardCookies []string
	// MaxBody bounds a request's body, in bytes (max_body: 10MiB). A larger declared
	// Content-Length gets 413 before the upstream is called; a chunked body is cut off at
	// the limit. Default 10 MiB.
	MaxBody int64
	// BodyTimeout is how long a request body may take to arrive, from the end of the
	// request's headers (body_timeout). Default: Timeout. A body still arriving then is
	// cut off and its connection closed.
	BodyTimeout time.Duration
	// Transport is how the route carries its HTTP/1.1 requests (upstream_transport):
	// TransportStandard (net/http's Transport) or TransportFast (valyala/fasthttp's
	// request and response handling over Gatehouse's own connection pool; WebSocket and
	// other upgrades, and non-HTTP(S) schemes, still take the standard path).
	// Default: Config.UpstreamTransportMode. docs/configuration.md lists the differences.
	Transport TransportMode `gatehouse:"upstream_transport"`
	// Streaming marks a route whose request bodies are streams without an end (uploads of
	// unknown length, client streams): once a request passed the route's checks and is
	// forwarded, its body has no read deadline (streaming); until then it has
	// server.body_timeout. WebSocket upgrades never have one.
	Streaming bool
}

// ForwardAuthConfig is how /bff/auth answers an ingress (forward_auth:).
type ForwardAuthConfig struct {
	// RedirectNavigations sends a person's page navigation without a session to
	// /bff/login?returnUrl=<original URI> (redirect_navigations) with a 302. nginx's
	// auth_request cannot pass a redirect on: to it (X-Original-URI or X-Original-URL)
	// Gatehouse answers 401, and the shipped nginx configuration's error_page asks again
	// in the X-Forwarded-Uri convention, whose answer reaches the browser. Default false:
	// 401 JSON, with login_url, for every request without a session.
	RedirectNavigations bool `gatehouse:"redirect_navigations"`
}

// DefaultMaxPendingFlows is session.max_pending_flows when none is set: bursts of 10 000
// logins, 10 000 per flow_timeout sustained, and some 8 MB of flow records at most.
const DefaultMaxPendingFlows = 20_000

// TransportMode is how a route's requests reach its upstream: Route.Transport.
type TransportMode string

// The transport modes.
const (
	TransportStandard TransportMode = "standard"
	TransportFast     TransportMode = "fast"
)

func (m TransportMode) valid() bool { return m == "" || m == TransportStandard || m == TransportFast }

// fastByDefault reports whether a route without its own upstream_transport takes the
// fast path: yes unless the global mode says standard, or, with no global mode, the
// embedder gave its own UpstreamTransport (which the fast path would bypass).
func (c *Config) fastByDefault() bool {
	switch c.UpstreamTransportMode {
	case TransportFast:
		return true
	case TransportStandard:
		return false
	}
	return c.UpstreamTransport == nil
}

// DefaultMaxBody is a route's request body limit when none is set.
const DefaultMaxBody = 10 << 20

// Rule requires a claim to contain values (require: - claim: groups, contains: [admin]).
// A claim that is an array contains its elements; a string claim contains its
// space-separated words (as "scope" does). The claim "scope" falls back to the scope the
// access token was granted.
type Rule struct {
	Claim    string
	Contains []string // all of these (contains)
	AnyOf    []string // at least one of these (any_of)

	// ACR and MaxAge, each a rule of its own (without Claim), ask for a login of one of
	// these acr values (acr) or no older than this (max_age). When they do not hold the
	// SPA gets 401 step_up_required with a login_url that asks the provider for it (RFC
	// 9470), instead of 403.
	ACR    []string
	MaxAge time.Duration
}

// FrontendConfig serves the SPA from the same origin (frontend:).
type FrontendConfig struct {
	// Dir is a directory of static files (dir), with index.html served for paths that
	// are not files (client-side routes).
	Dir string `gatehouse:"dir"`
	// FS serves the SPA from a file system instead of a directory, e.g. an embed.FS
	// (library only).
	FS fs.FS `gatehouse:"-"`
	// Upstream is a development server to proxy instead (upstream), e.g. Vite on
	// http://127.0.0.1:5173, including its hot-reload WebSocket.
	Upstream string `gatehouse:"upstream"`
	// CSP is the Content-Security-Policy of what Gatehouse serves (csp). Default a strict
	// same-origin policy; see docs/configuration.md.
	CSP string `gatehouse:"csp"`
	// RequireLogin redirects navigations to the SPA to login when there is no session
	// (require_login).
	RequireLogin bool `gatehouse:"require_login"`
}

// AdminConfig configures the admin API (admin:). The admin handler itself is
// Gateway.AdminHandler; the binary serves it on admin.listen.
type AdminConfig struct {
	// Token guards /admin/* (token / token_file). Without it the admin API is off;
	// /healthz, /readyz and /metrics stay available.
	Token string `gatehouse:"token"`
}

// ServerConfig bounds what one client can hold of the server (server:). The binary's
// other server settings (timeouts of headers and idle connections, shutdown) are the
// http.Server's; these two the Gateway enforces itself, so library users get them too.
type ServerConfig struct {
	// BodyTimeout is how long the body of a request to /bff/* or the frontend may take
	// to arrive, from the end of its headers (body_timeout). Default 10 s. Routes have
	// their own (routes[].body_timeout, default their timeout).
	BodyTimeout time.Duration `gatehouse:"body_timeout,live"`
	// MaxConnectionsPerClient is how many connections one client network (an IPv4
	// address, an IPv6 /64) may hold open at once on a listener wrapped by
	// Gateway.LimitListener (max_connections_per_client). Default 256. Connections from
	// trusted_proxies are not counted.
	MaxConnectionsPerClient int `gatehouse:"max_connections_per_client"`
}

var eligibleAuthParams = []string{"prompt", "max_age", "acr_values", "login_hint", "ui_locales", "display"}

// CompatDuende (compat: duende) makes /bff/user answer as Duende.BFF's user endpoint does:
// an array of {type, value} claims with bff:logout_url and bff:session_expires_in.
const CompatDuende = "duende"

// DefaultCSP is the Content-Security-Policy of pages Gatehouse serves when none is set.
const DefaultCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AuditLogger == nil {
		c.AuditLogger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	rl := &c.RateLimits
	for _, d := range []struct {
		l         *RateLimit
		perMinute float64
		burst     int
	}{{&rl.Login, 60, 60}, {&rl.LoginPer48, 120, 120}, {&rl.Callback, 60, 60}, {&rl.Backchannel, 600, 200}, {&rl.Admin, 60, 30}, {&rl.Sessions, 30, 20}} {
		if d.l.PerMinute == 0 {
			d.l.PerMinute = d.perMinute
		}
		if d.l.Burst == 0 {
			d.l.Burst = d.burst
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	// Providers is the whole list from here on, and Provider its first (the default).
	providers := c.Providers
	if len(providers) == 0 {
		providers = []ProviderConfig{c.Provider}
	}
	providers = slices.Clone(providers)
	for i := range providers {
		p := &providers[i]
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"openid", "profile", "email", "offline_access"}
		}
		if p.RefreshLead <= 0 {
			p.RefreshLead = 30 * time.Second
		}
		if p.ClaimsMaxAge <= 0 {
			p.ClaimsMaxAge = 15 * time.Minute
		}
	}
	if c.Provider.Issuer == "" || len(c.Providers) == 0 || sameProvider(c.Provider, c.Providers[0]) {
		c.Provider = providers[0]
	}
	c.Providers = providers
	if c.Session.IdleTimeout <= 0 {
		c.Session.IdleTimeout = 30 * time.Minute
	}
	if c.Session.AbsoluteTimeout <= 0 {
		c.Session.AbsoluteTimeout = 12 * time.Hour
	}
	if c.Session.FlowTimeout <= 0 {
		c.Session.FlowTimeout = 10 * time.Minute
	}
	if c.Session.MaxPendingFlows == 0 {
		c.Session.MaxPendingFlows = DefaultMaxPendingFlows
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = "__Host-gatehouse"
	}
	if c.Cookie.SameSite == 0 || c.Cookie.SameSite == http.SameSiteDefaultMode {
		c.Cookie.SameSite = http.SameSiteStrictMode
	}
	if c.CSRF.Header == "" {
		c.CSRF.Header = "X-CSRF"
	}
	if c.CSRF.Value == "" {
		c.CSRF.Value = "1"
	}
	if c.Frontend.CSP == "" {
		// frame-src: /bff/silent-login runs in a hidden frame of the SPA's pages, and
		// its navigation passes through the provider.
		c.Frontend.CSP = DefaultCSP + "; frame-src 'self'"
		var origins []string
		for _, p := range c.Providers {
			if u, err := url.Parse(p.Issuer); err == nil && u.Scheme != "" && u.Host != "" && !slices.Contains(origins, u.Scheme+"://"+u.Host) {
				origins = append(origins, u.Scheme+"://"+u.Host)
				c.Frontend.CSP += " " + u.Scheme + "://" + u.Host
			}
		}
	}
	c.Server = c.Server.withDefaults()
	if c.Identity.AssertionTTL == 0 {
		c.Identity.AssertionTTL = MaxAssertionTTL
	}
	routes := make([]Route, len(c.Routes))
	for i, r := range c.Routes {
		if r.Token == "" {
			r.Token = TokenUser
		}
		if r.Timeout <= 0 {
			r.Timeout = 30 * time.Second
		}
		if r.MaxBody == 0 {
			r.MaxBody = DefaultMaxBody
		}
		for j, m := range r.Methods {
			r.Methods = slices.Clone(r.Methods)
			r.Methods[j] = strings.ToUpper(m)
		}
		routes[i] = r
	}
	c.Routes = routes
	return c
}

// Validate checks c (with defaults applied) and returns every problem at once, each
// naming its field by its YAML key. It changes nothing.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	pub, err := url.Parse(c.PublicURL)
	switch {
	case c.PublicURL == "":
		bad("public_url", "is required (the origin browsers use, e.g. https://app.example.com)")
	case err != nil || pub.Host == "" || (pub.Scheme != "https" && pub.Scheme != "http"):
		bad("public_url", "%q is not an absolute http(s) URL", c.PublicURL)
	case pub.RawQuery != "" || pub.Fragment != "" || pub.User != nil:
		bad("public_url", "must be an origin, or an origin and a path, without user, query or fragment")
	case pub.Path != "" && pub.Path != "/" && (pub.Path != path.Clean(pub.Path) && pub.Path != path.Clean(pub.Path)+"/" || strings.ContainsAny(pub.Path, "%*{}")):
		bad("public_url", "path %q is not a clean path (no dot segments, escapes or doubled slashes)", pub.Path)
	case pub.Path != "" && pub.Path != "/" && (strings.HasPrefix(pub.Path, "/bff/") || pub.Path == "/bff"):
		bad("public_url", "path %q would hide Gatehouse's own /bff/ endpoints", pub.Path)
	case pub.Scheme == "http" && !isLoopbackHost(pub.Hostname()):
		bad("public_url", "http is only allowed on a loopback host (127.0.0.1, ::1, localhost): browsers drop Secure cookies on other http origins")
	}

	if len(c.Providers) > 0 && c.Provider.Issuer != "" && !sameProvider(c.Provider, c.Providers[0]) {
		bad("providers", "set either provider (one) or providers (several), not both")
	}
	names := map[string]bool{}
	for i, p := range c.Providers {
		pf := "provider."
		if len(c.Providers) > 1 {
			pf = fmt.Sprintf("providers[%d].", i)
			switch {
			case !validName(p.Name):
				bad(pf+"name", "%q is not a name (letters, digits, - and _, at most 64)", p.Name)
			case names[p.Name]:
				bad(pf+"name", "%q names another provider too", p.Name)
			}
			names[p.Name] = true
		}
		// A {tenantid} template is checked as the URL of one tenant.
		oneTenant := strings.Replace(p.Issuer, idp.TenantPlaceholder, idp.DiscoveryTenant, 1)
		if p.Issuer == "" {
			bad(pf+"issuer", "is required")
		} else if err := idp.CheckIssuerTemplate(p.Issuer); err != nil {
			bad(pf+"issuer", "%v", err)
		} else if u, err := url.Parse(oneTenant); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad(pf+"issuer", "%q is not an absolute http(s) URL", p.Issuer)
		} else if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			bad(pf+"issuer", "http is only allowed on a loopback host; use https")
		}
		for _, t := range p.AllowedTenants {
			if !idp.IsTenantID(t) {
				bad(pf+"allowed_tenants", "%q is not a tenant id (a lower-case GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)", t)
			}
		}
		if len(p.AllowedTenants) > 0 && !strings.Contains(p.Issuer, idp.TenantPlaceholder) {
			bad(pf+"allowed_tenants", "needs an issuer with %s (a multi-tenant provider)", idp.TenantPlaceholder)
		}
		if p.ClientID == "" {
			bad(pf+"client_id", "is required")
		}
		if p.GraphURL != "" {
			if u, err := url.Parse(p.GraphURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
				bad(pf+"graph_url", "%q is not an https URL", p.GraphURL)
			}
		}
		if p.DPoP && p.GraphGroups {
			bad(pf+"graph_groups", "needs a Bearer access token for Graph; with dpop the user's token is bound")
		}
		for _, n := range p.DistributedClaims {
			if n == "" || strings.HasPrefix(n, "_claim_") {
				bad(pf+"distributed_claims", "%q is not a claim name", n)
			}
		}
		for _, a := range p.TrustedAudiences {
			if strings.TrimSpace(a) == "" {
				bad(pf+"trusted_audiences", "holds an empty audience")
			}
		}
		switch p.AuthMethod {
		case "", "client_secret_basic", "client_secret_post":
			if p.ClientSecret == "" && p.ClientKey == nil {
				bad(pf+"client_secret", "is required (or client_key_file for private_key_jwt, or a TLS client certificate with tls_client_auth): Gatehouse is a confidential client")
			}
		case "private_key_jwt":
			if p.ClientKey == nil {
				bad(pf+"client_key_file", "is required for private_key_jwt")
			}
		case "tls_client_auth", "self_signed_tls_client_auth":
			if p.TLSClientCertificate == nil && c.ProviderHTTPClient == nil {
				bad(pf+"tls_client_cert_file", "is required for %s (with tls_client_key_file)", p.AuthMethod)
			}
		default:
			bad(pf+"token_endpoint_auth_method", "%q is not one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, self_signed_tls_client_auth", p.AuthMethod)
		}
		switch p.ClientAssertionAudience {
		case "", "endpoint", "issuer":
		default:
			bad(pf+"client_assertion_audience", "%q is not endpoint or issuer", p.ClientAssertionAudience)
		}
		switch p.PAR {
		case "", "auto", "always", "never":
		default:
			bad(pf+"par", "%q is not one of auto, always, never", p.PAR)
		}
		if !slices.Contains(p.Scopes, "openid") {
			bad(pf+"scopes", "must include openid")
		}
		for _, a := range p.AllowedAuthParams {
			if !slices.Contains(eligibleAuthParams, a) {
				bad(pf+"allowed_auth_params", "%q cannot be passed through (allowed: %s)", a, strings.Join(eligibleAuthParams, ", "))
			}
		}
		for k := range p.AuthParams {
			switch k {
			case "state", "nonce", "code_challenge", "code_challenge_method", "client_id", "redirect_uri", "response_type", "scope":
				bad(pf+"auth_params", "%q is set by Gatehouse itself and cannot be overridden", k)
			}
		}
		if p.EndSessionURL != "" {
			if u, err := url.Parse(strings.NewReplacer("{", "", "}", "").Replace(p.EndSessionURL)); err != nil || u.Host == "" {
				bad(pf+"end_session_url", "%q is not an absolute URL", p.EndSessionURL)
			}
		}
		if p.ClockSkew < 0 || p.ClockSkew > 5*time.Minute {
			bad(pf+"clock_skew", "must be between 0 and 5m")
		}

	}

	s := c.Session
	seenKeys := map[string]string{}
	for _, l := range []struct {
		name string
		keys [][]byte
	}{{"session.keys", s.Keys}, {"session.accept_keys", s.AcceptKeys}} {
		for i, k := range l.keys {
			field := fmt.Sprintf("%s[%d]", l.name, i)
			if len(k) != session.KeySize {
				bad(field, "is %d bytes, want %d (generate one with `gatehouse keygen`)", len(k), session.KeySize)
			} else if first, ok := seenKeys[string(k)]; ok {
				bad(field, "repeats %s", first)
			} else {
				seenKeys[string(k)] = field
			}
		}
	}
	if s.AbsoluteTimeout < s.IdleTimeout {
		bad("session.absolute_timeout", "(%s) is shorter than idle_timeout (%s)", s.AbsoluteTimeout, s.IdleTimeout)
	}
	if s.MaxPendingFlows < 2 {
		bad("session.max_pending_flows", "must be at least 2 (default %d)", DefaultMaxPendingFlows)
	}
	if s.BindIPv4Prefix < 0 || s.BindIPv4Prefix > 32 {
		bad("session.bind_ipv4_prefix", "must be between 0 (off) and 32")
	}
	if s.BindIPv6Prefix < 0 || s.BindIPv6Prefix > 128 {
		bad("session.bind_ipv6_prefix", "must be between 0 (off) and 128")
	}

	for _, l := range []struct {
		name string
		l    RateLimit
	}{{"login", c.RateLimits.Login}, {"login_per_48", c.RateLimits.LoginPer48}, {"callback", c.RateLimits.Callback}, {"backchannel", c.RateLimits.Backchannel},
		{"admin", c.RateLimits.Admin}, {"sessions", c.RateLimits.Sessions}} {
		if l.l.PerMinute < 0 {
			bad("rate_limits."+l.name+".per_minute", "must be positive")
		}
		if l.l.Burst < 0 {
			bad("rate_limits."+l.name+".burst", "must be positive")
		}
	}
	if c.Compat != "" && c.Compat != CompatDuende {
		bad("compat", "%q is not one of: %s", c.Compat, CompatDuende)
	}
	if !c.UpstreamTransportMode.valid() {
		bad("upstream_transport", "%q must be standard or fast", c.UpstreamTransportMode)
	}
	if c.InsecureDiagnostics && (pub == nil || !isLoopbackHost(pub.Hostname())) {
		bad("insecure_diagnostics", "is only allowed when public_url is a loopback address (it shows configuration details)")
	}

	basePath := ""
	if pub != nil {
		basePath = strings.TrimSuffix(pub.Path, "/")
	}

	ck := c.Cookie
	if !strings.HasPrefix(ck.Name, "__Host-") && !ck.AllowNonHostPrefix {
		bad("cookie.name", "%q lacks the __Host- prefix (set cookie.allow_non_host_prefix to accept the weaker cookie)", ck.Name)
	}
	if !validCookieName(ck.Name) {
		bad("cookie.name", "%q is not a valid cookie name", ck.Name)
	}
	if ck.SameSite != http.SameSiteStrictMode && ck.SameSite != http.SameSiteLaxMode {
		bad("cookie.same_site", "must be strict or lax (none would send the cookie on cross-site requests)")
	}

	if !validHeaderName(c.CSRF.Header) {
		bad("csrf.header", "%q is not a valid header name", c.CSRF.Header)
	}
	for _, o := range append(slices.Clone(c.CSRF.TrustedOrigins), c.WebSocketOrigins...) {
		if u, err := url.Parse(o); err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			bad("csrf.trusted_origins", "%q is not an origin (scheme://host[:port])", o)
		}
	}
	stripProblems, allowProblems := upstream.CheckHeaderRules(c.StripRequestHeaders, c.AllowRequestHeaders)
	for _, p := range stripProblems {
		bad("strip_request_headers", "%s", p)
	}
	for _, p := range allowProblems {
		bad("allow_request_headers", "%s", p)
	}

	seen := map[string]int{}
	for i, r := range c.Routes {
		f := func(name string) string { return fmt.Sprintf("routes[%d].%s", i, name) }
		switch {
		case r.Path == "" || r.Path[0] != '/':
			bad(f("path"), "%q must start with /", r.Path)
		case routePrefix(r.Path) == "/bff/" || strings.HasPrefix(routePrefix(r.Path), "/bff/") || routePrefix(r.Path) == "/":
			bad(f("path"), "%q would shadow Gatehouse's own endpoints or the whole site", r.Path)
		case cleanPath(r.Path) != r.Path:
			bad(f("path"), "%q is not a clean path", r.Path)
		case basePath != "" && !strings.HasPrefix(routePrefix(r.Path), basePath+"/"):
			bad(f("path"), "%q is not under public_url's path %s: requests outside it go to other apps", r.Path, basePath)
		case basePath != "" && strings.HasPrefix(routePrefix(r.Path), basePath+"/bff/"):
			bad(f("path"), "%q would shadow Gatehouse's own endpoints", r.Path)
		}
		if j, dup := seen[routePrefix(r.Path)]; dup {
			bad(f("path"), "%q repeats routes[%d]", r.Path, j)
		}
		seen[routePrefix(r.Path)] = i
		if r.Upstream == "" {
			// A forward-auth-only route: the ingress forwards, with the token Gatehouse gives
			// it in a header. A DPoP proof is bound to the upstream's URL, which Gatehouse
			// does not know then.
			if r.DPoP {
				bad(f("dpop"), "needs an upstream: forward-auth (a route without upstream) cannot send DPoP proofs")
			}
			if len(c.TrustedProxies) == 0 {
				bad(f("upstream"), "is required unless trusted_proxies lists the ingress that asks /bff/auth about the route (forward-auth)")
			}
		} else if u, err := url.Parse(r.Upstream); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.User != nil {
			bad(f("upstream"), "%q is not an absolute http(s) URL without query or credentials", r.Upstream)
		}
		switch r.Token {
		case TokenUser, TokenClient, TokenUserOrClient, TokenUserOrNone, TokenNone, TokenExchange:
		default:
			bad(f("token"), "%q is not one of user, client, user_or_client, user_or_none, none, exchange", r.Token)
		}
		switch x := r.Exchange; {
		case x == nil && r.Token == TokenExchange:
			bad(f("exchange"), "is required with token: exchange (audience, resource or scopes of the token to get)")
		case x == nil:
		case r.Token != TokenExchange:
			bad(f("exchange"), "needs token: exchange")
		case r.Audience != "" || r.Resource != "" || len(r.Scopes) > 0:
			bad(f("token"), "exchange takes its audience, resource and scopes in exchange:, not on the route")
		case x.Audience == "" && x.Resource == "" && len(x.Scopes) == 0:
			bad(f("exchange"), "needs audience, resource or scopes: what the exchanged token is for")
		default:
			if x.Resource != "" {
				if u, err := url.Parse(x.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
					bad(f("exchange.resource"), "%q must be an absolute URI without fragment (RFC 8707)", x.Resource)
				}
			}
			if x.SubjectToken != "" && x.SubjectToken != "access_token" && x.SubjectToken != "id_token" {
				bad(f("exchange.subject_token"), "%q is not access_token or id_token", x.SubjectToken)
			}
			if t := x.RequestedTokenType; t != "" && !strings.HasPrefix(t, "urn:") {
				bad(f("exchange.requested_token_type"), "%q is not a token type URI (urn:ietf:params:oauth:token-type:…)", t)
			}
		}
		if (r.Audience != "" || r.Resource != "" || len(r.Scopes) > 0) && r.Token == TokenNone {
			bad(f("token"), "none cannot be combined with audience, resource or scopes")
		}
		if r.Resource != "" {
			if u, err := url.Parse(r.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
				bad(f("resource"), "%q must be an absolute URI without fragment (RFC 8707)", r.Resource)
			}
		}
		if r.MaxBody < 0 {
			bad(f("max_body"), "must be a positive size such as 10MiB")
		}
		if !r.Transport.valid() {
			bad(f("upstream_transport"), "%q must be standard or fast", r.Transport)
		}
		if r.BodyTimeout < 0 || r.BodyTimeout > 0 && r.Streaming {
			bad(f("body_timeout"), "must be a positive duration, and cannot be combined with streaming")
		}
		for _, m := range r.Methods {
			if !validMethod(m) {
				bad(f("methods"), "%q is not an HTTP method", m)
			}
		}
		for h := range r.Headers {
			switch {
			case !validHeaderName(h):
				bad(f("headers"), "%q is not a valid header name", h)
			case strings.EqualFold(h, "Authorization") || strings.EqualFold(h, "Cookie") || strings.EqualFold(h, "Host") ||
				len(h) >= len("X-Gatehouse-") && strings.EqualFold(h[:len("X-Gatehouse-")], "X-Gatehouse-"):
				bad(f("headers"), "%q is managed by Gatehouse", h)
			}
		}
		for j, rule := range r.Require {
			at := fmt.Sprintf("require[%d]", j)
			kinds := 0
			for _, set := range []bool{rule.Claim != "", len(rule.ACR) > 0, rule.MaxAge != 0} {
				if set {
					kinds++
				}
			}
			switch {
			case rule.Claim == "" && (len(rule.Contains) > 0 || len(rule.AnyOf) > 0):
				bad(f(at+".claim"), "is required with contains or any_of")
			case kinds == 0:
				bad(f(at), "needs claim (with contains or any_of), acr or max_age")
			case kinds > 1:
				bad(f(at), "is one rule: claim, acr or max_age, not several (write one rule each)")
			case rule.Claim != "" && len(rule.Contains) == 0 && len(rule.AnyOf) == 0:
				bad(f(at), "needs contains or any_of")
			case rule.MaxAge < 0 || rule.MaxAge > maxStepUpAge:
				bad(f(at+".max_age"), "must be between 1s and 366 days")
			case rule.MaxAge != 0 && rule.MaxAge < time.Second:
				bad(f(at+".max_age"), "must be at least 1s")
			}
			if su, ok := parseStepUp(strings.Join(rule.ACR, " "), "", false); !ok || !slices.Equal(su.ACR, rule.ACR) {
				bad(f(at+".acr"), "holds a value that is empty, repeated, has spaces or quotes, or too many values")
			}
		}
		if len(r.Require) > 0 && (r.Token == TokenClient || r.Token == TokenNone) {
			bad(f("require"), "rules on the user's claims need a route whose token involves the user")
		}
		for _, name := range r.ForwardCookies {
			if !validCookieName(name) || name == ck.Name || strings.HasPrefix(name, ck.Name+"-") {
				bad(f("forward_cookies"), "%q cannot be forwarded", name)
			}
		}
	}

	errs = append(errs, c.Server.check()...)
	errs = append(errs, c.checkIdentity()...)

	fe := c.Frontend
	if (fe.Dir != "") && fe.Upstream != "" || fe.FS != nil && (fe.Dir != "" || fe.Upstream != "") {
		bad("frontend", "set one of dir, upstream (or FS), not several")
	}
	if fe.Upstream != "" {
		if u, err := url.Parse(fe.Upstream); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			bad("frontend.upstream", "%q is not an absolute http(s) URL", fe.Upstream)
		}
	}
	return errors.Join(errs...)
}

// routePrefix normalises a route path to the prefix it matches: "/api" and "/api/" both
// become "/api/".
// sameProvider reports whether a and b are the same provider entry (Provider after
// withDefaults is a copy of Providers[0]).
func sameProvider(a, b ProviderConfig) bool {
	return a.Name == b.Name && a.Issuer == b.Issuer && a.ClientID == b.ClientID
}

// validName is a frontend or provider name: it appears in URLs, logs and metrics.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func routePrefix(p string) string {
	if !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

func isLoopbackHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func validCookieName(s string) bool {
	return s != "" && validToken(s)
}

func validHeaderName(s string) bool {
	return s != "" && validToken(s)
}

func validMethod(s string) bool {
	return s != "" && validToken(s)
}

// validToken reports whether s is an RFC 7230 token.
func validToken(s string) bool {
	for _, r := range s {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}
