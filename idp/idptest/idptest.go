// Package idptest is a fake OpenID Connect provider over real HTTP (httptest), for
// tests of the protocol's edge cases that a real provider will not produce on demand:
// forged signatures, "alg: none", wrong audience or issuer, expired tokens, a wrong
// nonce, a missing iss parameter, token endpoint failures. Authorization is automatic:
// /authorize redirects straight back with a code for the configured user.
//
// It is a test double, not a provider: use npm oidc-provider (e2e/) or gatehouse devidp
// for anything else.
package idptest

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Provider is the fake. Change its knobs with Set; read counters with the methods.
type Provider struct {
	Server       *httptest.Server
	Issuer       string
	ClientID     string
	ClientSecret string
	Key          *rsa.PrivateKey // signs tokens; published in the JWKS
	KeyID        string
	ForgedKey    *rsa.PrivateKey // not in the JWKS

	mu      sync.Mutex
	knobs   Knobs
	codes   map[string]codeGrant
	grants  map[string]*grant // by refresh token
	revoked map[string]bool
	counts  map[string]int
	issued  []string // access tokens, in order
	secrets []string // every code and token handed out, in order
	now     func() time.Time
	forms   map[string]url.Values  // the last form posted to "token" and "revoke"
	jtis    map[string]bool        // client assertion ids seen, to refuse replays
	retired []jose.JSONWebKey      // earlier signing keys still published (RotateKey)
	headers map[string]http.Header // the last request's headers, by path
	pushed  map[string]pushedRequest
	// exchanged maps the tokens a token exchange issued to the audience (or resource)
	// they were issued for.
	exchanged map[string]string
	bound     map[string]string // DPoP-bound access token → jkt
}

// GrantTokenExchange is the grant_type of RFC 8693, as Count names it.
const GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// pushedRequest is an authorization request received at /par, until /authorize uses it.
type pushedRequest struct {
	params  url.Values
	expires time.Time
}

// Knobs change the fake's behaviour. The zero value is a correct provider.
type Knobs struct {
	Subject string         // default "alice"
	Claims  map[string]any // extra ID token and userinfo claims
	SID     string         // "sid" claim; default "provider-session-1"

	AccessTokenTTL time.Duration // default 1 minute
	OmitExpiresIn  bool
	RotateRefresh  bool // default false: the same refresh token keeps working
	NoRefreshToken bool
	TokenType      string // default "Bearer"

	// IDTokenMutate changes the ID token's claims before signing.
	IDTokenMutate func(claims map[string]any)
	// SignWith: "" (the published key), "forged" (an unpublished key), "none", "HS256"
	// (HMAC keyed with the client secret), "HS256-publickey" (HMAC keyed with the PEM of
	// the published RSA public key: the classic algorithm confusion).
	SignWith string
	// IssParam: "" sends the right iss on the authorization response; "omit" sends
	// none; anything else is sent as is.
	IssParam string
	// AdvertiseIss sets authorization_response_iss_parameter_supported (default true via New).
	AdvertiseIss bool
	// AuthorizeError makes /authorize answer with this error code.
	AuthorizeError string
	// TokenStatus forces the token endpoint to answer this status with TokenError.
	TokenStatus int
	TokenError  string
	// RefreshStatus forces only refresh requests to fail this way.
	RefreshStatus int
	RefreshError  string
	// UserinfoStatus forces userinfo to fail; UserinfoSubject makes it answer about
	// another subject.
	UserinfoStatus  int
	UserinfoSubject string
	// UserinfoOmit names claims that userinfo leaves out (a user removed from every
	// group, at a provider that then sends no groups claim at all).
	UserinfoOmit []string
	// NoEndSession and NoRevocation remove those endpoints from discovery.
	NoEndSession bool
	NoRevocation bool
	// TokenDelay delays token responses.
	TokenDelay time.Duration
	// DiscoveryStatus makes the discovery document answer this status instead.
	DiscoveryStatus int
	// JWKSURI replaces jwks_uri in discovery (a provider that moved its keys);
	// JWKSStatus makes /jwks answer this status instead of the keys.
	JWKSURI    string
	JWKSStatus int

	// ClientKey, when set, is the public key of the client's private_key_jwt assertions
	// (RFC 7523): the token and revocation endpoints then also accept a client that
	// sends a signed assertion (iss and sub the client id, aud the endpoint's URL, an
	// unexpired exp, a jti never seen before) and no secret.
	ClientKey crypto.PublicKey
	// AssertionIssuerAudience makes the fake accept client assertions whose aud is its
	// issuer identifier (RFC 7523bis) instead of the endpoint's URL.
	AssertionIssuerAudience bool
	// IDTokenOnRefresh adds an ID token (without nonce) to refresh responses.
	IDTokenOnRefresh bool
	// NoAccessToken leaves access_token out of successful token responses.
	NoAccessToken bool

	// RevokeStatus forces the revocation endpoint to answer this status, with
	// RevokeError as the error code when set.
	RevokeStatus int
	RevokeError  string

	jkt string // the token request's DPoP key, for issue
	// RetryAfter is sent as the Retry-After header of every forced failure (TokenStatus,
	// RefreshStatus, UserinfoStatus, RevokeStatus, PARStatus): delta-seconds or an HTTP-date.
	RetryAfter string

	// PAR advertises pushed_authorization_request_endpoint (RFC 9126): /par takes an
	// authenticated authorization request and answers a one-time request_uri, valid
	// 60 s, that /authorize then accepts in place of the parameters. RequirePAR also
	// advertises require_pushed_authorization_requests, and /authorize then refuses
	// requests that were not pushed.
	PAR        bool
	RequirePAR bool
	// PARStatus forces /par to answer this status, with PARError as the error code;
	// PARNoRequestURI makes it answer 201 without a request_uri.
	PARStatus       int
	PARError        string
	PARNoRequestURI bool

	// ExchangeStatus forces token exchange requests (RFC 8693) to answer this status,
	// with ExchangeError as the error code. Otherwise an exchange of a live access token
	// the fake issued answers a new token for the audience (or resource) asked for.
	ExchangeStatus int
	ExchangeError  string

	// DPoP makes the fake a DPoP server (RFC 9449): a token request with a valid proof
	// gets a token of type DPoP bound to the proof's key (BoundTo), and userinfo then
	// wants that token with the DPoP scheme and a proof for it; an invalid or replayed
	// proof is invalid_dpop_proof. DPoPNonce, when set, is the nonce every proof must
	// carry: a proof without it gets 400 use_dpop_nonce with the DPoP-Nonce header.
	DPoP      bool
	DPoPNonce string

	// Tenant makes the fake a multi-tenant provider like Microsoft Entra ID, signing in
	// a user of this tenant (a tenant id, a lower-case GUID): discovery, also served at
	// /common/v2.0/.well-known/openid-configuration (and under any other tenant path),
	// publishes IssuerTemplate as the issuer, and ID tokens, logout tokens and the
	// authorization response's iss name TenantIssuer(Tenant), with a "tid" claim.
	Tenant string

	// DistributedGroups makes the user's groups a distributed claim (OpenID Connect Core
	// §5.6.2), as Entra ID does past its group limit: the ID token carries
	// "_claim_names": {"groups": "src1"} and a "_claim_sources" endpoint, /groups, instead
	// of groups, and userinfo sends no groups. /groups answers these groups to a Bearer
	// access token the fake issued: as a JSON object when GroupsFormat is "", as a JWT
	// signed with the published key when it is "jwt", with an unpublished key when it is
	// "forged-jwt". GroupsStatus forces /groups to answer this status.
	DistributedGroups []string
	GroupsFormat      string
	GroupsStatus      int

	// MTLSAliases publishes mtls_endpoint_aliases (RFC 8705 §5) under /mtls/ for the
	// token, revocation, userinfo and PAR endpoints, where a client that sends only its
	// client_id is taken as authenticated by its TLS certificate (the fake does not
	// check one); the plain endpoints then refuse such a client.
	MTLSAliases bool
}

type codeGrant struct {
	challenge, nonce, redirect string
	extra                      url.Values
}

type grant struct {
	subject string
	rt      string
}

// TB is the part of testing.TB that New uses, so that examples can start the fake too.
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// New starts the fake provider. The client is "gatehouse-test" / "test-secret".
func New(t TB) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{
		ClientID: "gatehouse-test", ClientSecret: "test-secret", Key: key, KeyID: "test-key", ForgedKey: forged,
		codes: map[string]codeGrant{}, grants: map[string]*grant{}, revoked: map[string]bool{}, counts: map[string]int{},
		pushed: map[string]pushedRequest{}, knobs: Knobs{AdvertiseIss: true}, now: time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /groups", p.groups)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /revoke", p.revoke)
	mux.HandleFunc("POST /par", p.par)
	mux.HandleFunc("POST /mtls/token", p.token)
	mux.HandleFunc("POST /mtls/revoke", p.revoke)
	mux.HandleFunc("POST /mtls/par", p.par)
	mux.HandleFunc("GET /mtls/userinfo", p.userinfo)
	mux.HandleFunc("GET /end_session", func(w http.ResponseWriter, r *http.Request) {
		p.count("end_session")
		fmt.Fprintln(w, "signed out")
	})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.headers == nil {
			p.headers = map[string]http.Header{}
		}
		p.headers[r.URL.Path] = r.Header.Clone()
		p.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	p.Issuer = p.Server.URL
	t.Cleanup(p.Server.Close)
	return p
}

// IssuerTemplate is the fake's multi-tenant issuer (see Knobs.Tenant):
// <server>/{tenantid}/v2.0.
func (p *Provider) IssuerTemplate() string { return p.Server.URL + "/{tenantid}/v2.0" }

// TenantIssuer is the issuer of one tenant: IssuerTemplate with tid in place of
// {tenantid}.
func (p *Provider) TenantIssuer(tid string) string { return p.Server.URL + "/" + tid + "/v2.0" }

// issuerFor is the iss of tokens and authorization responses under k.
func (p *Provider) issuerFor(k Knobs) string {
	if k.Tenant != "" {
		return p.TenantIssuer(k.Tenant)
	}
	return p.Issuer
}

// Set changes the knobs.
func (p *Provider) Set(f func(k *Knobs)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.knobs)
}

// Count returns how many requests of a kind the fake served: "authorize",
// "authorization_code", "refresh_token", "client_credentials", "userinfo", "revoke",
// "end_session", "discovery", "jwks", "par".
func (p *Provider) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// ExchangedFor returns the audience (or resource) a token exchange issued token for,
// and whether the fake issued it.
func (p *Provider) ExchangedFor(token string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	aud, ok := p.exchanged[token]
	return aud, ok
}

// AccessTokens returns the user access tokens issued so far, oldest first.
func (p *Provider) AccessTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// IssuedSecrets returns every authorization code, access, refresh, ID and client
// credentials token the fake handed out, oldest first: what must never appear in a
// gateway's logs or responses.
func (p *Provider) IssuedSecrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.secrets...)
}

// Revoked reports whether a token was revoked at /revoke.
func (p *Provider) Revoked(token string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revoked[token]
}

// LastForm returns the form of the last request to an endpoint, "token", "revoke" or "par",
// or nil if there was none.
func (p *Provider) LastForm(endpoint string) url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.forms[endpoint])
}

// LastHeader returns the named header of the last request to path ("/token",
// "/userinfo", "/revoke", "/jwks", "/.well-known/openid-configuration"), or "".
func (p *Provider) LastHeader(path, name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.headers[path].Get(name)
}

// recordForm keeps a copy of a parsed request form for LastForm.
func (p *Provider) recordForm(endpoint string, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.forms == nil {
		p.forms = map[string]url.Values{}
	}
	p.forms[endpoint] = maps.Clone(r.PostForm)
}

// RevokeAll makes every refresh token invalid (as if an admin revoked the grants).
func (p *Provider) RevokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rt := range p.grants {
		p.revoked[rt] = true
	}
}

func (p *Provider) count(kind string) {
	p.mu.Lock()
	p.counts[kind]++
	p.mu.Unlock()
}

func (p *Provider) knobsCopy() Knobs {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.knobs
	k.Claims = maps.Clone(k.Claims)
	if k.Subject == "" {
		k.Subject = "alice"
	}
	if k.SID == "" {
		k.SID = "provider-session-1"
	}
	if k.AccessTokenTTL == 0 {
		k.AccessTokenTTL = time.Minute
	}
	if k.TokenType == "" {
		k.TokenType = "Bearer"
	}
	return k
}

// RotateKey starts signing with a new key under a new kid, and publishes it next to the
// old one, which keeps verifying until DropRetiredKeys. It returns the new kid.
func (p *Provider) RotateKey() string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retired = append(p.retired, jose.JSONWebKey{Key: &p.Key.PublicKey, KeyID: p.KeyID, Algorithm: "RS256", Use: "sig"})
	p.Key, p.KeyID = key, "key-"+random()
	return p.KeyID
}

// DropRetiredKeys stops publishing the keys that RotateKey replaced.
func (p *Provider) DropRetiredKeys() {
	p.mu.Lock()
	p.retired = nil
	p.mu.Unlock()
}

// SignWithKey signs claims as an RS256 JWT with any key and kid ("" omits the kid), for
// tokens the provider did not issue.
func (p *Provider) SignWithKey(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	opts := &jose.SignerOptions{}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return raw
}

func (p *Provider) signingKey() (*rsa.PrivateKey, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Key, p.KeyID
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	p.count("discovery")
	k := p.knobsCopy()
	if k.DiscoveryStatus != 0 {
		writeJSON(w, k.DiscoveryStatus, map[string]string{"error": "unavailable"})
		return
	}
	iss := p.Issuer
	if k.Tenant != "" {
		iss = p.IssuerTemplate() // published literally, as Entra does
	}
	meta := map[string]any{
		"issuer": iss, "authorization_endpoint": p.Issuer + "/authorize", "token_endpoint": p.Issuer + "/token",
		"userinfo_endpoint": p.Issuer + "/userinfo", "jwks_uri": p.Issuer + "/jwks",
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post"},
		"authorization_response_iss_parameter_supported": k.AdvertiseIss,
		"backchannel_logout_supported":                   true,
	}
	if !k.NoEndSession {
		meta["end_session_endpoint"] = p.Issuer + "/end_session"
	}
	if k.JWKSURI != "" {
		meta["jwks_uri"] = k.JWKSURI
	}
	if !k.NoRevocation {
		meta["revocation_endpoint"] = p.Issuer + "/revoke"
	}
	if k.PAR || k.RequirePAR {
		meta["pushed_authorization_request_endpoint"] = p.Issuer + "/par"
	}
	if k.MTLSAliases {
		meta["mtls_endpoint_aliases"] = map[string]string{"token_endpoint": p.Issuer + "/mtls/token",
			"revocation_endpoint": p.Issuer + "/mtls/revoke", "userinfo_endpoint": p.Issuer + "/mtls/userinfo",
			"pushed_authorization_request_endpoint": p.Issuer + "/mtls/par"}
	}
	if k.RequirePAR {
		meta["require_pushed_authorization_requests"] = true
	}
	writeJSON(w, http.StatusOK, meta)
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	p.count("jwks")
	if status := p.knobsCopy().JWKSStatus; status != 0 {
		writeJSON(w, status, map[string]string{"error": "unavailable"})
		return
	}
	key, kid := p.signingKey()
	p.mu.Lock()
	keys := append([]jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}, p.retired...)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: keys})
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	p.count("authorize")
	q := r.URL.Query()
	k := p.knobsCopy()
	if uri := q.Get("request_uri"); uri != "" {
		p.mu.Lock()
		pr, ok := p.pushed[uri]
		delete(p.pushed, uri) // one use
		p.mu.Unlock()
		if !ok || p.now().After(pr.expires) || q.Get("client_id") != pr.params.Get("client_id") || len(q) != 2 {
			http.Error(w, "invalid_request_uri", http.StatusBadRequest)
			return
		}
		q = pr.params
	} else if k.RequirePAR {
		http.Error(w, "this provider requires pushed authorization requests", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != p.ClientID || redirect == "" {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(redirect)
	rq := back.Query()
	rq.Set("state", q.Get("state"))
	switch k.IssParam {
	case "":
		rq.Set("iss", p.issuerFor(k))
	case "omit":
	default:
		rq.Set("iss", k.IssParam)
	}
	if k.AuthorizeError != "" {
		rq.Set("error", k.AuthorizeError)
		rq.Set("error_description", "<script>alert('provider text')</script>")
	} else {
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			http.Error(w, "PKCE S256 required", http.StatusBadRequest)
			return
		}
		code := random()
		p.mu.Lock()
		p.codes[code] = codeGrant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: redirect, extra: q}
		p.secrets = append(p.secrets, code)
		p.mu.Unlock()
		rq.Set("code", code)
	}
	back.RawQuery = rq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// LastAuthorizeParams returns the query of the last authorization request.
func (p *Provider) LastAuthorizeParams() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.codes {
		return c.extra
	}
	return nil
}

func (p *Provider) clientOK(r *http.Request) bool {
	if p.knobsCopy().MTLSAliases && strings.HasPrefix(r.URL.Path, "/mtls/") {
		_, _, basic := r.BasicAuth()
		return !basic && r.PostForm.Get("client_id") == p.ClientID && !r.PostForm.Has("client_secret") && !r.PostForm.Has("client_assertion")
	}
	if key := p.knobsCopy().ClientKey; key != nil && r.PostForm.Has("client_assertion") {
		return p.assertionOK(r, key)
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == p.ClientID && secret == p.ClientSecret
}

// assertionOK checks a private_key_jwt client authentication (RFC 7523 §3). A request
// that also carries a secret uses two methods at once, which RFC 6749 §2.3 forbids.
func (p *Provider) assertionOK(r *http.Request, key crypto.PublicKey) bool {
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") {
		return false
	}
	if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return false
	}
	if id := r.PostForm.Get("client_id"); id != "" && id != p.ClientID {
		return false
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.RS384,
		jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512})
	if err != nil {
		return false
	}
	var cl jwt.Claims
	if err := tok.Claims(key, &cl); err != nil || cl.ID == "" || cl.Expiry == nil {
		return false
	}
	aud := p.Issuer + r.URL.Path
	if p.knobsCopy().AssertionIssuerAudience {
		aud = p.Issuer
	}
	want := jwt.Expected{Issuer: p.ClientID, Subject: p.ClientID, AnyAudience: jwt.Audience{aud}, Time: p.now()}
	if cl.Validate(want) != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.jtis == nil {
		p.jtis = map[string]bool{}
	}
	if p.jtis[cl.ID] {
		return false
	}
	p.jtis[cl.ID] = true
	return true
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.recordForm("token", r)
	grantType := r.PostForm.Get("grant_type")
	p.count(grantType)
	k := p.knobsCopy()
	if k.TokenDelay > 0 {
		time.Sleep(k.TokenDelay)
	}
	if !p.clientOK(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	jkt, ok := p.dpopTokenRequest(w, r, k)
	if !ok {
		return
	}
	k.jkt = jkt
	if k.TokenStatus != 0 {
		retryAfter(w, k)
		writeJSON(w, k.TokenStatus, map[string]string{"error": k.TokenError, "error_description": "forced failure with secret-looking text"})
		return
	}
	switch grantType {
	case "authorization_code":
		code := r.PostForm.Get("code")
		p.mu.Lock()
		c, ok := p.codes[code]
		delete(p.codes, code)
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		switch {
		case !ok:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE"})
			return
		case r.PostForm.Get("redirect_uri") != c.redirect:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri"})
			return
		}
		p.issue(w, k, c.nonce, true, "")
	case "refresh_token":
		if k.RefreshStatus != 0 {
			retryAfter(w, k)
			writeJSON(w, k.RefreshStatus, map[string]string{"error": k.RefreshError})
			return
		}
		rt := r.PostForm.Get("refresh_token")
		p.mu.Lock()
		g, ok := p.grants[rt]
		bad := !ok || p.revoked[rt]
		if ok && !bad && k.RotateRefresh {
			p.revoked[rt] = true // used once
		}
		p.mu.Unlock()
		if bad {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		if k.RotateRefresh {
			p.issue(w, k, "", k.IDTokenOnRefresh, "")
		} else {
			p.issue(w, k, "", k.IDTokenOnRefresh, g.rt)
		}
	case GrantTokenExchange:
		if k.ExchangeStatus != 0 {
			retryAfter(w, k)
			writeJSON(w, k.ExchangeStatus, map[string]string{"error": k.ExchangeError})
			return
		}
		subject := r.PostForm.Get("subject_token")
		p.mu.Lock()
		live := slices.Contains(p.issued, subject) && !p.revoked[subject]
		p.mu.Unlock()
		if r.PostForm.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token" || !live {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		aud := r.PostForm.Get("audience")
		if aud == "" {
			aud = r.PostForm.Get("resource")
		}
		tok := "xt-" + random()
		p.mu.Lock()
		if p.exchanged == nil {
			p.exchanged = map[string]string{}
		}
		p.exchanged[tok] = aud
		p.secrets = append(p.secrets, tok)
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": k.TokenType,
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
			"expires_in":        int(k.AccessTokenTTL.Seconds()), "scope": r.PostForm.Get("scope")})
	case "client_credentials":
		tok := "client-" + random()
		p.mu.Lock()
		p.secrets = append(p.secrets, tok)
		p.mu.Unlock()
		resp := map[string]any{"token_type": k.TokenType, "expires_in": int(k.AccessTokenTTL.Seconds()), "scope": r.PostForm.Get("scope")}
		if !k.NoAccessToken {
			resp["access_token"] = tok
		}
		writeJSON(w, http.StatusOK, resp)
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

// issue answers a token request. keepRT reuses a refresh token instead of a new one.
func (p *Provider) issue(w http.ResponseWriter, k Knobs, nonce string, withID bool, keepRT string) {
	at := "at-" + random()
	resp := map[string]any{"token_type": k.TokenType}
	if !k.NoAccessToken {
		resp["access_token"] = at
		p.mu.Lock()
		p.issued = append(p.issued, at)
		if k.jkt != "" {
			if p.bound == nil {
				p.bound = map[string]string{}
			}
			p.bound[at] = k.jkt
			resp["token_type"] = "DPoP"
		}
		p.mu.Unlock()
	}
	if !k.OmitExpiresIn {
		resp["expires_in"] = int(k.AccessTokenTTL.Seconds())
	}
	if !k.NoRefreshToken {
		rt := keepRT
		if rt == "" {
			rt = "rt-" + random()
			p.mu.Lock()
			p.grants[rt] = &grant{subject: k.Subject, rt: rt}
			p.mu.Unlock()
		}
		resp["refresh_token"] = rt
	}
	if withID {
		resp["id_token"] = p.IDToken(k, nonce)
	}
	p.mu.Lock()
	for _, name := range []string{"access_token", "refresh_token", "id_token"} {
		if v, _ := resp[name].(string); v != "" {
			p.secrets = append(p.secrets, v)
		}
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// IDToken signs an ID token with the current knobs.
func (p *Provider) IDToken(k Knobs, nonce string) string {
	now := p.now()
	claims := map[string]any{"iss": p.issuerFor(k), "sub": k.Subject, "aud": p.ClientID, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "nonce": nonce, "sid": k.SID, "auth_time": now.Unix(),
		"name": "Alice Example", "email": "alice@example.com"}
	if k.Tenant != "" {
		claims["tid"] = k.Tenant
	}
	if k.DistributedGroups != nil {
		claims["_claim_names"] = map[string]any{"groups": "src1"}
		claims["_claim_sources"] = map[string]any{"src1": map[string]any{"endpoint": p.Issuer + "/groups"}}
	}
	maps.Copy(claims, k.Claims)
	if k.IDTokenMutate != nil {
		k.IDTokenMutate(claims)
	}
	return p.sign(k.SignWith, claims, "")
}

// LogoutToken signs a back-channel logout token. mutate may change the claims; typ sets
// the typ header ("" omits it).
func (p *Provider) LogoutToken(sub, sid, typ string, mutate func(map[string]any)) string {
	now := p.now()
	k := p.knobsCopy()
	claims := map[string]any{"iss": p.issuerFor(k), "aud": p.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": random(), "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	if k.Tenant != "" {
		claims["tid"] = k.Tenant
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	if mutate != nil {
		mutate(claims)
	}
	return p.sign(k.SignWith, claims, typ)
}

// SignWithForgedKey signs claims with a key that is not in the JWKS.
func (p *Provider) sign(how string, claims map[string]any, typ string) string {
	switch how {
	case "none":
		header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		body, _ := json.Marshal(claims)
		return header + "." + base64.RawURLEncoding.EncodeToString(body) + "."
	case "HS256":
		// An attacker who knows the client secret signing with it as an HMAC key. Signed
		// by hand: go-jose refuses HMAC keys shorter than the hash, and client secrets
		// often are.
		return hmacJWT([]byte(p.ClientSecret), "", claims)
	case "HS256-publickey":
		// An attacker signing with the published RSA public key as an HMAC secret.
		der, _ := x509.MarshalPKIXPublicKey(&p.Key.PublicKey)
		return hmacJWT(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), p.KeyID, claims)
	}
	key, kid := p.signingKey()
	if how == "forged" {
		key = p.ForgedKey
	}
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return raw
}

// hmacJWT signs claims as an HS256 JWS with key, whatever its length.
func hmacJWT(key []byte, kid string, claims map[string]any) string {
	header := map[string]any{"alg": "HS256", "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	p.count("userinfo")
	k := p.knobsCopy()
	if !p.dpopUserinfo(r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if k.UserinfoStatus != 0 {
		retryAfter(w, k)
		w.WriteHeader(k.UserinfoStatus)
		return
	}
	sub := k.Subject
	if k.UserinfoSubject != "" {
		sub = k.UserinfoSubject
	}
	claims := map[string]any{"sub": sub, "email": "alice@example.com", "email_verified": true, "groups": []string{"staff"}}
	maps.Copy(claims, k.Claims)
	for _, name := range k.UserinfoOmit {
		delete(claims, name)
	}
	if k.DistributedGroups != nil {
		delete(claims, "groups")
	}
	writeJSON(w, http.StatusOK, claims)
}

// groups is the source of distributed groups (Knobs.DistributedGroups).
func (p *Provider) groups(w http.ResponseWriter, r *http.Request) {
	p.count("groups")
	k := p.knobsCopy()
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	live := ok && slices.Contains(p.issued, token) && !p.revoked[token]
	p.mu.Unlock()
	switch {
	case !live:
		w.WriteHeader(http.StatusUnauthorized)
		return
	case k.GroupsStatus != 0:
		w.WriteHeader(k.GroupsStatus)
		return
	}
	claims := map[string]any{"groups": k.DistributedGroups}
	if k.GroupsFormat != "" {
		claims["sub"], claims["iss"], claims["iat"] = k.Subject, p.issuerFor(k), p.now().Unix()
		w.Header().Set("Content-Type", "application/jwt")
		fmt.Fprint(w, p.sign(strings.TrimSuffix(k.GroupsFormat, "-jwt"), claims, "JWT"))
		return
	}
	writeJSON(w, http.StatusOK, claims)
}

func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.recordForm("revoke", r)
	p.count("revoke")
	if !p.clientOK(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if k := p.knobsCopy(); k.RevokeStatus != 0 {
		retryAfter(w, k)
		writeJSON(w, k.RevokeStatus, map[string]string{"error": k.RevokeError})
		return
	}
	p.mu.Lock()
	p.revoked[r.PostForm.Get("token")] = true
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// par is the pushed authorization request endpoint (RFC 9126 §2).
func (p *Provider) par(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.recordForm("par", r)
	p.count("par")
	k := p.knobsCopy()
	if !p.clientOK(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if k.PARStatus != 0 {
		retryAfter(w, k)
		writeJSON(w, k.PARStatus, map[string]string{"error": k.PARError})
		return
	}
	if r.PostForm.Has("request_uri") {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	params := maps.Clone(r.PostForm)
	for _, auth := range []string{"client_secret", "client_assertion", "client_assertion_type"} {
		delete(params, auth)
	}
	if params.Get("client_id") == "" {
		params.Set("client_id", p.ClientID) // authenticated with HTTP Basic
	}
	if k.PARNoRequestURI {
		writeJSON(w, http.StatusCreated, map[string]any{"expires_in": 60})
		return
	}
	uri := "urn:ietf:params:oauth:request_uri:" + random()
	p.mu.Lock()
	p.pushed[uri] = pushedRequest{params: params, expires: p.now().Add(time.Minute)}
	p.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": 60})
}

func retryAfter(w http.ResponseWriter, k Knobs) {
	if k.RetryAfter != "" {
		w.Header().Set("Retry-After", k.RetryAfter)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func random() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
