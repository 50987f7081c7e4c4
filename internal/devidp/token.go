package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// token is the token endpoint (RFC 6749 §3.2).
func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	client, err := s.authenticateClient(r)
	if err != nil {
		return err
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 && name != "resource" {
			return errInvalidRequest("%s is given more than once", name)
		}
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "authorization_code":
		return s.codeGrant(w, r.PostForm, client)
	case "refresh_token":
		return s.refreshGrant(w, r.PostForm, client)
	case "client_credentials":
		return s.clientCredentialsGrant(w, r.PostForm, client)
	case "":
		return errInvalidRequest("grant_type is missing")
	default:
		return &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: "grant_type must be authorization_code, refresh_token or client_credentials"}
	}
}

// authenticateClient accepts client_secret_basic or client_secret_post, not both.
func (s *Server) authenticateClient(r *http.Request) (Client, error) {
	invalid := func(desc string) error {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: desc,
			challenge: `Basic realm="devidp", charset="UTF-8"`}
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") {
			return Client{}, errInvalidRequest("use one client authentication method, not both Basic and client_secret")
		}
		// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, invalid("the Basic credentials are not form-encoded correctly")
		}
		if form := r.PostForm.Get("client_id"); form != "" && form != id {
			return Client{}, errInvalidRequest("client_id in the body differs from the Basic credentials")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return Client{}, invalid("client authentication is required (client_secret_basic or client_secret_post)")
	}
	c, ok := s.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, invalid("unknown client or wrong secret")
	}
	return c, nil
}

func (s *Server) codeGrant(w http.ResponseWriter, form url.Values, client Client) error {
	code := form.Get("code")
	if code == "" {
		return errInvalidRequest("code is missing")
	}
	requested, oerr := parseResources(form["resource"])
	if oerr != nil {
		return oerr
	}
	now := s.now()
	st := s.st
	st.mu.Lock()
	c := st.codes[code]
	if c == nil || c.req.clientID != client.ID {
		st.mu.Unlock()
		return errInvalidGrant("unknown or expired authorization code")
	}
	if c.redeemed {
		revoked := st.revokeGrantLocked(c.grantID)
		st.mu.Unlock()
		s.log.Warn("devidp: authorization code replayed; the tokens issued from it are revoked",
			"client_id", client.ID, "sub", c.subject, "revoked", revoked)
		return errInvalidGrant("the authorization code was already used; the tokens issued from it are revoked")
	}
	c.redeemed = true // every attempt uses the code up, so it cannot be brute-forced
	if !now.Before(c.expires) {
		st.mu.Unlock()
		return errInvalidGrant("the authorization code has expired")
	}
	if form.Get("redirect_uri") != c.req.redirectURI {
		st.mu.Unlock()
		return errInvalidGrant("redirect_uri does not match the authorization request")
	}
	if err := checkVerifier(form.Get("code_verifier"), c.req.codeChallenge); err != nil {
		st.mu.Unlock()
		return err
	}
	aud, oerr := audience(requested, c.req.resources, client.ID)
	if oerr != nil {
		st.mu.Unlock()
		return oerr
	}
	g := &grant{
		id: randomToken(), clientID: client.ID, subject: c.subject, user: true, sid: c.sid,
		scopes: c.req.scopes, resources: c.req.resources, authTime: c.authTime, shortLived: c.shortLived,
	}
	st.grants[g.id] = g
	c.grantID = g.id
	ts := s.issueLocked(g, g.scopes, aud, now, slices.Contains(g.scopes, "offline_access"))
	ts.nonce = c.req.nonce
	st.mu.Unlock()
	s.log.Info("devidp: code exchanged for tokens", "client_id", client.ID, "sub", g.subject,
		"scope", strings.Join(g.scopes, " "), "refresh_token", ts.refresh != "")
	return s.writeTokens(w, ts)
}

// checkVerifier verifies PKCE S256 (RFC 7636 §4.6).
func checkVerifier(verifier, challenge string) error {
	if verifier == "" {
		return errInvalidGrant("code_verifier is missing (PKCE is required)")
	}
	if !verifierPattern.MatchString(verifier) {
		return errInvalidGrant("code_verifier must be 43 to 128 unreserved characters")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) != 1 {
		return errInvalidGrant("code_verifier does not match the code_challenge")
	}
	return nil
}

// audience picks the access token audience (RFC 8707): the requested
// resources, which must have been authorized; else the authorized ones; else
// the client itself.
func audience(requested, granted []string, clientID string) ([]string, *oauthError) {
	if len(requested) == 0 {
		requested = granted
	} else if len(granted) > 0 {
		for _, r := range requested {
			if !slices.Contains(granted, r) {
				return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_target",
					description: "resource " + r + " was not part of the authorization request"}
			}
		}
	}
	if len(requested) == 0 {
		return []string{clientID}, nil
	}
	return requested, nil
}

func (s *Server) refreshGrant(w http.ResponseWriter, form url.Values, client Client) error {
	raw := form.Get("refresh_token")
	if raw == "" {
		return errInvalidRequest("refresh_token is missing")
	}
	requested, oerr := parseResources(form["resource"])
	if oerr != nil {
		return oerr
	}
	now := s.now()
	st := s.st
	st.mu.Lock()
	rt := st.refresh[raw]
	var g *grant
	if rt != nil {
		g = st.grants[rt.grantID]
	}
	if g == nil || g.clientID != client.ID {
		st.mu.Unlock()
		return errInvalidGrant("unknown, expired or revoked refresh token")
	}
	if rt.rotated {
		revoked := st.revokeGrantLocked(g.id)
		st.mu.Unlock()
		s.log.Warn("devidp: rotated refresh token reused; the whole grant is revoked",
			"client_id", client.ID, "sub", g.subject, "revoked", revoked)
		return errInvalidGrant("the refresh token was already used; the grant is revoked")
	}
	if g.revoked || !now.Before(rt.expires) {
		st.mu.Unlock()
		return errInvalidGrant("unknown, expired or revoked refresh token")
	}
	scopes := g.scopes
	if form.Has("scope") {
		scopes = uniqueFields(form.Get("scope"))
		for _, sc := range scopes {
			if !slices.Contains(g.scopes, sc) {
				st.mu.Unlock()
				return &oauthError{status: http.StatusBadRequest, code: "invalid_scope",
					description: "scope " + sc + " was not granted"}
			}
		}
	}
	aud, oerr := audience(requested, g.resources, client.ID)
	if oerr != nil {
		st.mu.Unlock()
		return oerr
	}
	rt.rotated = true
	ts := s.issueLocked(g, scopes, aud, now, true)
	st.mu.Unlock()
	s.log.Info("devidp: tokens refreshed", "client_id", client.ID, "sub", g.subject)
	return s.writeTokens(w, ts)
}

func (s *Server) clientCredentialsGrant(w http.ResponseWriter, form url.Values, client Client) error {
	scopes := uniqueFields(form.Get("scope"))
	for _, sc := range []string{"openid", "offline_access"} {
		if slices.Contains(scopes, sc) {
			return &oauthError{status: http.StatusBadRequest, code: "invalid_scope",
				description: "scope " + sc + " needs a user; client_credentials has none"}
		}
	}
	requested, oerr := parseResources(form["resource"])
	if oerr != nil {
		return oerr
	}
	aud, _ := audience(requested, nil, client.ID)
	now := s.now()
	g := &grant{id: randomToken(), clientID: client.ID, subject: client.ID, scopes: scopes, resources: requested}
	s.st.mu.Lock()
	s.st.grants[g.id] = g
	ts := s.issueLocked(g, scopes, aud, now, false)
	s.st.mu.Unlock()
	s.log.Info("devidp: client credentials token issued", "client_id", client.ID, "aud", strings.Join(aud, " "))
	return s.writeTokens(w, ts)
}

// tokenSet is what one token response carries, copied out of the store.
type tokenSet struct {
	grant             grant
	scopes, audience  []string
	jti               string
	issuedAt, expires time.Time // of the access token
	refresh, nonce    string
}

// issueLocked records new tokens for g; the caller holds st.mu.
func (s *Server) issueLocked(g *grant, scopes, aud []string, now time.Time, withRefresh bool) tokenSet {
	ttl := s.cfg.AccessTokenTTL
	if g.shortLived {
		ttl = shortAccessTTL
	}
	jti, refresh := s.st.issueLocked(g, now.Add(ttl), now.Add(s.cfg.RefreshTokenTTL), withRefresh)
	return tokenSet{grant: *g, scopes: scopes, audience: aud, jti: jti, issuedAt: now, expires: now.Add(ttl), refresh: refresh}
}

// writeTokens signs the access token (RFC 9068) and, for openid requests, the
// ID token, and writes the token response.
func (s *Server) writeTokens(w http.ResponseWriter, ts tokenSet) error {
	g := ts.grant
	at := map[string]any{
		"iss": s.cfg.Issuer, "sub": g.subject, "aud": audClaim(ts.audience),
		"exp": ts.expires.Unix(), "iat": ts.issuedAt.Unix(), "jti": ts.jti,
		"client_id": g.clientID, "scope": strings.Join(ts.scopes, " "),
	}
	if g.user {
		at["auth_time"] = g.authTime.Unix()
		user := s.userClaims(g.subject)
		for _, name := range accessTokenClaims {
			if v, ok := user[name]; ok {
				at[name] = v
			}
		}
	}
	accessToken, err := s.sign(typAccessToken, at)
	if err != nil {
		return err
	}
	resp := map[string]any{
		"access_token": accessToken,
		"token_type":   "Bearer",
		"expires_in":   int64(ts.expires.Sub(ts.issuedAt) / time.Second),
		"scope":        strings.Join(ts.scopes, " "),
	}
	if ts.refresh != "" {
		resp["refresh_token"] = ts.refresh
	}
	if g.user && slices.Contains(ts.scopes, "openid") {
		id := s.claimsForScopes(g.subject, ts.scopes)
		id["iss"] = s.cfg.Issuer
		id["sub"] = g.subject
		id["aud"] = g.clientID
		id["iat"] = ts.issuedAt.Unix()
		id["exp"] = ts.issuedAt.Add(s.cfg.IDTokenTTL).Unix()
		id["auth_time"] = g.authTime.Unix()
		id["sid"] = g.sid
		id["at_hash"] = halfHash(accessToken)
		// OIDC Core §12.2: an ID token from a refresh carries no nonce.
		if ts.nonce != "" {
			id["nonce"] = ts.nonce
		}
		if resp["id_token"], err = s.sign(typIDToken, id); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func audClaim(aud []string) any {
	if len(aud) == 1 {
		return aud[0]
	}
	return aud
}
