package idp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-bff/gatehouse/internal/dpop"
)

// Tokens is what the token endpoint handed out, with expiries on our clock.
type Tokens struct {
	AccessToken   string
	TokenType     string // "Bearer", or "DPoP" for a token bound to the request's DPoP key
	Expiry        time.Time
	RefreshToken  string    // empty when the provider issued none (or, on refresh, kept the old one)
	RefreshExpiry time.Time // zero when the provider does not say (refresh_expires_in)
	Scope         string
	IDToken       string // raw, when the response carried one
	// IDClaims are the claims of IDToken, verified, when a refresh response carried one
	// (Exchange returns them in its Identity instead).
	IDClaims map[string]any
}

// Identity is the verified result of a login.
type Identity struct {
	// Issuer is the ID token's iss: the configured issuer, or for a template issuer the
	// user's tenant's. Sessions record it, so that logouts and lists stay per tenant.
	Issuer  string
	Subject string
	SID     string         // the provider's session id ("sid"), if any
	Claims  map[string]any // ID token claims merged with userinfo
}

// Exchange redeems an authorization code with its PKCE verifier, verifies the ID token
// (signature, iss, aud, exp, and that its nonce equals nonce), checks at_hash, and
// fetches userinfo (unless disabled) and the claims of Config.DistributedClaims from
// their sources (OpenID Connect Core §5.6.2). Errors wrap ErrRefused, ErrInvalidToken or
// ErrUnavailable.
func (c *Client) Exchange(ctx context.Context, code, verifier, nonce string) (*Tokens, *Identity, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, nil, err
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	for k, v := range c.assertionParams(d) {
		opts = append(opts, oauth2.SetAuthURLParam(k, v[0]))
	}
	tok, err := d.oauth.Exchange(c.oauthContext(ctx), code, opts...)
	if err != nil {
		return nil, nil, c.classify("exchanging the authorization code", err)
	}
	tokens, err := c.tokens(ctx, tok)
	if err != nil {
		return nil, nil, err
	}
	if tokens.IDToken == "" {
		return nil, nil, fmt.Errorf("%w: the token response has no id_token (is the openid scope requested?)", ErrRefused)
	}
	idt, err := d.verifier.Verify(ctx, tokens.IDToken)
	if errors.Is(err, ErrUnavailable) {
		return nil, nil, fmt.Errorf("ID token: %w", err) // the provider's keys could not be loaded
	}
	if errors.Is(err, ErrTenantNotAllowed) {
		return nil, nil, fmt.Errorf("%w: ID token: %w", ErrInvalidToken, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ID token: %v", ErrInvalidToken, err)
	}
	if err := c.checkIssuedAt("ID token", idt.IssuedAt); err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, nil, fmt.Errorf("%w: ID token: nonce does not match this login", ErrInvalidToken)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tokens.AccessToken); err != nil {
			return nil, nil, fmt.Errorf("%w: ID token: at_hash does not match the access token", ErrInvalidToken)
		}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: ID token claims: %v", ErrInvalidToken, err)
	}
	id := &Identity{Issuer: idt.Issuer, Subject: idt.Subject, Claims: claims}
	id.SID, _ = claims["sid"].(string)
	if !c.cfg.SkipUserinfo && d.meta.UserinfoEndpoint != "" {
		uctx := ctx
		if tokens.TokenType == "DPoP" {
			uctx = WithBoundToken(ctx)
		}
		info, err := c.userinfo(uctx, d, tokens.AccessToken, idt.Subject)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range info {
			if k != "sub" {
				id.Claims[k] = v
			}
		}
	}
	if err := c.resolveDistributed(ctx, d, id.Claims, tokens.AccessToken, idt.Subject); err != nil {
		return nil, nil, err
	}
	return tokens, id, nil
}

func (c *Client) userinfo(ctx context.Context, d *discovered, accessToken, subject string) (map[string]any, error) {
	ui, err := d.provider.UserInfo(c.oauthContext(ctx), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: accessToken, TokenType: "Bearer"}))
	if err != nil {
		return nil, c.classifyUserinfo(d.meta.UserinfoEndpoint, err)
	}
	if ui.Subject != subject {
		return nil, fmt.Errorf("%w: userinfo is about another subject than the ID token", ErrInvalidToken)
	}
	claims := map[string]any{}
	if err := ui.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: userinfo claims: %v", ErrRefused, err)
	}
	return claims, nil
}

// RefreshOptions are extra parameters of a refresh or client-credentials request.
type RefreshOptions struct {
	Resource string   // RFC 8707 resource indicator
	Audience string   // "audience" parameter (Auth0 and others)
	Scopes   []string // down-scoping
	// Issuer, on a refresh, is the session's issuer (Identity.Issuer at login): a new ID
	// token must name it, so that a template issuer's session stays in its tenant.
	// Empty: the configured issuer's rules only.
	Issuer string
}

func (o RefreshOptions) params(v url.Values) {
	if o.Resource != "" {
		v.Set("resource", o.Resource)
	}
	if o.Audience != "" {
		v.Set("audience", o.Audience)
	}
	if len(o.Scopes) > 0 {
		v.Set("scope", strings.Join(o.Scopes, " "))
	}
}

// Refresh uses a refresh token. The result's RefreshToken is the token to keep: the
// rotated one, or the old one when the provider did not rotate. A new ID token in the
// response is verified (signature, iss, aud, iat, and the same subject as before) and
// its claims returned in IDClaims; userinfo is not read (see SessionClaims), so that a
// failure there cannot lose a rotated refresh token.
func (c *Client) Refresh(ctx context.Context, refreshToken, subject string, opts RefreshOptions) (*Tokens, error) {
	if refreshToken == "" {
		return nil, fmt.Errorf("%w: no refresh token", ErrRefused)
	}
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	opts.params(params)
	tok, err := c.tokenRequest(ctx, d, params)
	if err != nil {
		return nil, c.classify("refreshing", err)
	}
	t, err := c.tokens(ctx, tok)
	if err != nil {
		return nil, err
	}
	if t.RefreshToken == "" {
		t.RefreshToken = refreshToken
	}
	if t.IDToken != "" {
		idt, err := d.verifier.Verify(ctx, t.IDToken)
		if errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("refreshed ID token: %w", err) // the provider's keys could not be loaded
		}
		if err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token: %v", ErrInvalidToken, err)
		}
		if err := c.checkIssuedAt("refreshed ID token", idt.IssuedAt); err != nil {
			return nil, err
		}
		if idt.Subject != subject {
			return nil, fmt.Errorf("%w: refreshed ID token is about another subject", ErrInvalidToken)
		}
		if opts.Issuer != "" && idt.Issuer != opts.Issuer {
			return nil, fmt.Errorf("%w: refreshed ID token is from another issuer (tenant) than the session", ErrInvalidToken)
		}
		t.IDClaims = map[string]any{}
		if err := idt.Claims(&t.IDClaims); err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token claims: %v", ErrInvalidToken, err)
		}
	}
	return t, nil
}

// SessionClaims rebuilds a session's claims the way Exchange builds them at login: the
// claims of idToken, the session's latest ID token, with userinfo read now with
// accessToken on top (unless SkipUserinfo, or the provider has none). idToken must be one
// that Exchange or Refresh verified when it came and the caller kept: it is not verified
// again, as its key may have rotated and it may have expired since, neither of which
// changes what it said. Errors wrap ErrRefused, ErrInvalidToken or ErrUnavailable.
func (c *Client) SessionClaims(ctx context.Context, idToken, accessToken, subject string) (map[string]any, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, err
	}
	claims, err := keptClaims(idToken, d.algs)
	if err != nil {
		return nil, err
	}
	if sub, _ := claims["sub"].(string); sub != subject {
		return nil, fmt.Errorf("%w: the kept ID token is about another subject", ErrInvalidToken)
	}
	if !c.cfg.SkipUserinfo && d.meta.UserinfoEndpoint != "" {
		info, err := c.userinfo(ctx, d, accessToken, subject)
		if err != nil {
			return nil, err
		}
		for k, v := range info {
			if k != "sub" {
				claims[k] = v
			}
		}
	}
	if err := c.resolveDistributed(ctx, d, claims, accessToken, subject); err != nil {
		return nil, err
	}
	return claims, nil
}

// keptClaims reads the claims of an ID token verified earlier (see SessionClaims).
func keptClaims(raw string, algs []string) (map[string]any, error) {
	allowed := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, a := range algs {
		allowed = append(allowed, jose.SignatureAlgorithm(a))
	}
	tok, err := jwt.ParseSigned(raw, allowed)
	if err != nil {
		return nil, fmt.Errorf("%w: kept ID token: %v", ErrInvalidToken, err)
	}
	claims := map[string]any{}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, fmt.Errorf("%w: kept ID token claims: %v", ErrInvalidToken, err)
	}
	return claims, nil
}

// ClientCredentials gets a token for the gateway's own client (no user).
func (c *Client) ClientCredentials(ctx context.Context, opts RefreshOptions) (*Tokens, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, err
	}
	params := url.Values{"grant_type": {"client_credentials"}}
	opts.params(params)
	tok, err := c.tokenRequest(ctx, d, params)
	if err != nil {
		return nil, c.classify("client credentials", err)
	}
	return c.tokens(ctx, tok)
}

// Token types of RFC 8693 §3.
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// ExchangeOptions describe the token a token exchange asks for (RFC 8693 §2.1).
type ExchangeOptions struct {
	RefreshOptions            // resource, audience, scope
	SubjectTokenType   string // default TokenTypeAccessToken
	RequestedTokenType string // default: none sent (the provider's choice, an access token)
}

// TokenExchange trades subjectToken, a token of the user's, for another token (RFC
// 8693): for another audience or resource, with fewer scopes. The answer must be a
// Bearer token; its refresh token, if any, is dropped (an exchanged token is exchanged
// again, from the user's current token).
func (c *Client) TokenExchange(ctx context.Context, subjectToken string, opts ExchangeOptions) (*Tokens, error) {
	if subjectToken == "" {
		return nil, fmt.Errorf("%w: token exchange: no subject token", ErrRefused)
	}
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, err
	}
	stt := opts.SubjectTokenType
	if stt == "" {
		stt = TokenTypeAccessToken
	}
	params := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {subjectToken}, "subject_token_type": {stt}}
	if opts.RequestedTokenType != "" {
		params.Set("requested_token_type", opts.RequestedTokenType)
	}
	opts.params(params)
	tok, err := c.tokenRequest(ctx, d, params)
	if err != nil {
		return nil, c.classify("token exchange", err)
	}
	t, err := c.tokens(ctx, tok)
	if err != nil {
		return nil, err
	}
	t.RefreshToken, t.RefreshExpiry, t.IDToken = "", time.Time{}, ""
	return t, nil
}

// tokenRequest posts params to the token endpoint with the client's authentication.
// x/oauth2's clientcredentials config is used as a generic token request: it lets the
// grant_type be set, which refresh requests with extra parameters (RFC 8707) need.
func (c *Client) tokenRequest(ctx context.Context, d *discovered, params url.Values) (*oauth2.Token, error) {
	for k, v := range c.assertionParams(d) {
		params[k] = v
	}
	cc := clientcredentials.Config{
		ClientID: d.oauth.ClientID, ClientSecret: d.oauth.ClientSecret, TokenURL: d.meta.TokenEndpoint,
		EndpointParams: params, AuthStyle: d.oauth.Endpoint.AuthStyle,
	}
	return cc.Token(c.oauthContext(ctx))
}

func (c *Client) oauthContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// tokens converts and checks a token response.
func (c *Client) tokens(ctx context.Context, tok *oauth2.Token) (*Tokens, error) {
	tt := "Bearer"
	switch {
	case tok.TokenType == "" || strings.EqualFold(tok.TokenType, "bearer"):
	case strings.EqualFold(tok.TokenType, "dpop") && dpop.FromContext(ctx) != nil:
		tt = "DPoP" // bound to the key the request's proof was made with
	default:
		return nil, fmt.Errorf("%w: token_type %q is not Bearer (nor DPoP for a request with a DPoP proof)", ErrRefused, tok.TokenType)
	}
	now := c.now()
	t := &Tokens{AccessToken: tok.AccessToken, TokenType: tt, RefreshToken: tok.RefreshToken}
	t.IDToken, _ = tok.Extra("id_token").(string)
	t.Scope, _ = tok.Extra("scope").(string)
	// expires_in is read from the raw response: x/oauth2 converts it with its own clock
	// (and its clientcredentials source drops ExpiresIn), and ours is Config.Now.
	expiresIn := number(tok.Extra("expires_in"))
	if expiresIn == 0 {
		expiresIn = tok.ExpiresIn
	}
	switch {
	case expiresIn > 0:
		t.Expiry = now.Add(time.Duration(expiresIn) * time.Second)
	case !tok.Expiry.IsZero():
		t.Expiry = tok.Expiry
	default:
		if exp, ok := jwtExpiry(tok.AccessToken); ok {
			t.Expiry = exp
		} else {
			t.Expiry = now.Add(c.cfg.DefaultTokenLifetime)
		}
	}
	if n := number(tok.Extra("refresh_expires_in")); n > 0 {
		t.RefreshExpiry = now.Add(time.Duration(n) * time.Second)
	}
	return t, nil
}

// jwtExpiry reads the "exp" of a JWT access token without verifying it: it only decides
// when to refresh, never whether to trust the token.
func jwtExpiry(raw string) (time.Time, bool) {
	if strings.Count(raw, ".") != 2 {
		return time.Time{}, false
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256,
		jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512})
	if err != nil {
		return time.Time{}, false
	}
	var cl jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&cl); err != nil || cl.Expiry == nil {
		return time.Time{}, false
	}
	return cl.Expiry.Time(), true
}

func number(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case string:
		i, _ := strconv.ParseInt(n, 10, 64)
		return i
	}
	return 0
}

// TokenError describes a refusal from the token endpoint (or an error answer of the
// userinfo or revocation endpoint). Code is the RFC 6749 error code (safe to log); the
// provider's description is kept out on purpose. RetryAfter is the wait the provider
// asked for (its Retry-After header, at most maxRetryAfter), or 0.
type TokenError struct {
	Op         string
	Status     int
	Code       string
	RetryAfter time.Duration
}

func (e *TokenError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("idp: %s: the provider answered %d %s", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("idp: %s: the provider answered %d", e.Op, e.Status)
}

// Unwrap classifies. A provider that is busy or down is not a provider that said no:
// 408, 429, any 5xx, and the codes temporarily_unavailable and slow_down (at any
// status: some providers send them with 400) are failures to try again (ErrUnavailable);
// any other 4xx (or an error in a 2xx body) is a refusal (ErrRefused).
func (e *TokenError) Unwrap() error {
	if e.busy() || e.Status >= 500 {
		return ErrUnavailable
	}
	return ErrRefused
}

// busy reports an answer that means "ask again later", as opposed to a crash (500).
func (e *TokenError) busy() bool {
	switch e.Code {
	case "temporarily_unavailable", "slow_down":
		return true
	}
	switch e.Status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true
	}
	return false
}

// RetryAfter reports whether err says the provider is busy (it answered 408, 429 or 503,
// or temporarily_unavailable or slow_down, or it asked to wait and the wait is not over,
// so it was not asked at all), and how long it asked to wait (0 when it did not say).
func RetryAfter(err error) (time.Duration, bool) {
	var we *waitError
	if errors.As(err, &we) {
		return we.wait, true
	}
	var te *TokenError
	if errors.As(err, &te) && te.busy() {
		return te.RetryAfter, true
	}
	return 0, false
}

func (c *Client) classify(op string, err error) error {
	var we *waitError
	if errors.As(err, &we) {
		return fmt.Errorf("idp: %s: %w", op, we)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		te := &TokenError{Op: op, Status: http.StatusBadRequest, Code: safeCode(re.ErrorCode)}
		if re.Response != nil {
			te.Status = re.Response.StatusCode
			c.pace.answered(re.Response, te.busy(), c.now())
			te.RetryAfter = retryAfter(re.Response.Header, c.now())
		}
		return te
	}
	// x/oauth2 (internal/token.go, doTokenRoundTrip) reports a 2xx answer without an
	// access_token with a plain errors.New: v0.37.0 exports no sentinel or type for it.
	if strings.Contains(err.Error(), "server response missing access_token") {
		return fmt.Errorf("%w: %s: the response has no access_token", ErrRefused, op)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, redactURLError(err))
}

// safeCode keeps an error code only if it looks like one (RFC 6749 §5.2 charset, short).
func safeCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	for _, r := range code {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return ""
		}
	}
	return code
}

// Revoke revokes a token at the provider's revocation endpoint (RFC 7009). It does
// nothing when the provider has none.
func (c *Client) Revoke(ctx context.Context, token, hint string) error {
	d, err := c.discovered(ctx)
	if err != nil {
		return err
	}
	if d.meta.RevocationEndpoint == "" || token == "" {
		return nil
	}
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.meta.RevocationEndpoint, nil)
	if err != nil {
		return err
	}
	c.authenticate(req, form, d, d.meta.RevocationEndpoint)
	body := form.Encode()
	req.Body = readCloser(body)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		var we *waitError
		if errors.As(err, &we) {
			return fmt.Errorf("idp: revocation: %w", we)
		}
		return fmt.Errorf("%w: revocation: %v", ErrUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	te := &TokenError{Op: "revocation", Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header, c.now())}
	if resp.StatusCode == http.StatusBadRequest {
		// RFC 7009 §2.2.1: an error response in the token endpoint's format.
		var body struct {
			Error string `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body) == nil {
			te.Code = safeCode(body.Error)
		}
		c.pace.answered(resp, te.busy(), c.now())
	}
	return te
}

// authenticate adds the client's authentication to a request for one of the provider's
// endpoints other than the token endpoint (revocation, pushed authorization), in the
// token endpoint's manner: HTTP Basic, the form, or a client assertion for that endpoint.
func (c *Client) authenticate(req *http.Request, form url.Values, d *discovered, endpoint string) {
	switch d.authMethod {
	case AuthClientSecretBasic:
		// RFC 6749 §2.3.1: both parts form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret))
	case AuthClientSecretPost:
		form.Set("client_id", c.cfg.ClientID)
		form.Set("client_secret", c.cfg.ClientSecret)
	case AuthTLSClient, AuthSelfSignedTLSClient:
		form.Set("client_id", c.cfg.ClientID) // the TLS handshake authenticates
	default:
		form.Set("client_id", c.cfg.ClientID)
		maps.Copy(form, c.assertionParamsFor(endpoint))
	}
}

// EndSessionURL builds the RP-initiated logout URL (OpenID Connect RP-Initiated Logout
// 1.0), or reports false when the provider has no end-session endpoint and none is
// configured.
func (c *Client) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirect, state string) (string, bool, error) {
	endpoint := c.cfg.EndSessionURL
	if endpoint == "" {
		d, err := c.discovered(ctx)
		if err != nil {
			return "", false, err
		}
		endpoint = d.meta.EndSessionEndpoint
	}
	if endpoint == "" {
		return "", false, nil
	}
	if strings.Contains(endpoint, "{") {
		r := strings.NewReplacer(
			"{id_token_hint}", url.QueryEscape(idTokenHint),
			"{client_id}", url.QueryEscape(c.cfg.ClientID),
			"{post_logout_redirect_uri}", url.QueryEscape(postLogoutRedirect),
			"{state}", url.QueryEscape(state),
		)
		return r.Replace(endpoint), true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("idp: end-session URL: %w", err)
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", c.cfg.ClientID)
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String(), true, nil
}

// LogoutToken is a verified back-channel logout token.
type LogoutToken struct {
	Issuer   string // its iss: the configured issuer, or a template's filled with its tid
	Subject  string
	SID      string
	JTI      string
	IssuedAt time.Time
	Expiry   time.Time
}

// VerifyLogoutToken verifies a back-channel logout token (OpenID Connect Back-Channel
// Logout 1.0 §2.6): signature with the provider's keys, iss (for a template issuer: the
// template filled with the token's tid, an allowed tenant), aud (the client, or trusted
// audiences besides it), azp when present (the client), iat, exp, the events claim, sub
// and/or sid, jti, and no nonce. The "typ" header is checked by checkLogoutTyp. An error
// wraps ErrInvalidToken, or ErrUnavailable when the provider's keys cannot be loaded.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	d, err := c.discovered(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkLogoutTyp(raw, d.algs); err != nil {
		return nil, err
	}
	lt, err := d.verifier.VerifyLogout(ctx, raw)
	if errors.Is(err, ErrUnavailable) {
		return nil, fmt.Errorf("logout token: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: logout token: %v", ErrInvalidToken, err)
	}
	if err := c.checkIssuedAt("logout token", lt.IssuedAt); err != nil {
		return nil, err
	}
	return &LogoutToken{Issuer: lt.Issuer, Subject: lt.Subject, SID: lt.SessionID, JTI: lt.TokenID, IssuedAt: lt.IssuedAt, Expiry: lt.Expiry}, nil
}

// logoutTokenTypes are the "typ" header values accepted on logout tokens, compared
// case-insensitively (RFC 7515 §4.1.9): logout+jwt (Back-Channel Logout 1.0 §2.4), its
// full media type, and JWT (Auth0 types every token so). A token without typ is accepted
// too (Dex omits it); an empty or non-string typ, or any other (an access token's at+jwt),
// is refused.
var logoutTokenTypes = []string{"logout+jwt", "application/logout+jwt", "JWT"}

// checkLogoutTyp looks at the header only; the signature is verified by go-oidc next.
func checkLogoutTyp(raw string, algs []string) error {
	var allowed []jose.SignatureAlgorithm
	for _, a := range algs {
		allowed = append(allowed, jose.SignatureAlgorithm(a))
	}
	jws, err := jose.ParseSignedCompact(raw, allowed)
	if err != nil {
		return fmt.Errorf("%w: logout token: malformed: %v", ErrInvalidToken, err)
	}
	if len(jws.Signatures) != 1 {
		return fmt.Errorf("%w: logout token: want exactly one signature", ErrInvalidToken)
	}
	v, present := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]
	if !present {
		return nil
	}
	typ, _ := v.(string)
	for _, t := range logoutTokenTypes {
		if strings.EqualFold(typ, t) {
			return nil
		}
	}
	return fmt.Errorf("%w: logout token: typ %q", ErrInvalidToken, typ)
}

// classifyUserinfo turns a go-oidc userinfo error into ours without its text, which
// carries the provider's response body. go-oidc formats HTTP failures as "<status>: …".
func (c *Client) classifyUserinfo(endpoint string, err error) error {
	var we *waitError
	if errors.As(err, &we) {
		return fmt.Errorf("idp: userinfo: %w", we)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: userinfo: %v", ErrUnavailable, redactURLError(err))
	}
	// go-oidc's Provider.UserInfo returns fmt.Errorf("%s: %s", resp.Status, body) for a
	// non-200 answer: v3.21.0 has no typed error with the status (only IssuerMismatchError
	// and TokenExpiredError), so the status is read back from the text. 401 from most
	// providers, 403 from some: the access token was refused. Its Retry-After, if any,
	// was recorded by the transport (pace.go).
	code, _, _ := strings.Cut(err.Error(), " ")
	status, convErr := strconv.Atoi(code)
	if convErr != nil {
		return fmt.Errorf("%w: userinfo: unreadable response", ErrRefused)
	}
	te := &TokenError{Op: "userinfo", Status: status}
	if u, err := url.Parse(endpoint); err == nil && te.busy() {
		te.RetryAfter = c.pace.wait(u, c.now())
	}
	return te
}

// checkIssuedAt refuses a token issued in the future (go-oidc checks exp, not iat): more
// than the clock skew plus a minute ahead of this clock. A token without iat is refused
// too, as OpenID Connect Core §2 makes iat required.
func (c *Client) checkIssuedAt(what string, iat time.Time) error {
	if iat.IsZero() {
		return fmt.Errorf("%w: %s: no iat", ErrInvalidToken, what)
	}
	if iat.After(c.now().Add(c.cfg.ClockSkew + time.Minute)) {
		return fmt.Errorf("%w: %s: issued in the future (iat %s)", ErrInvalidToken, what, iat.UTC().Format(time.RFC3339))
	}
	return nil
}
