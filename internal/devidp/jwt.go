package devidp

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JOSE "typ" header values.
const (
	typIDToken     = "JWT"
	typAccessToken = "at+jwt"     // RFC 9068
	typLogoutToken = "logout+jwt" // OpenID Connect Back-Channel Logout 1.0 §2.4
)

// sign serializes claims as a compact RS256 JWS with the given typ.
func (s *Server) sign(typ string, claims map[string]any) (string, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: s.key, KeyID: s.jwk.KeyID, Algorithm: string(jose.RS256)},
	}, opts)
	if err != nil {
		return "", fmt.Errorf("devidp: signer: %w", err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("devidp: signing %s: %w", typ, err)
	}
	return tok, nil
}

var errBadToken = errors.New("devidp: not a token from this provider")

// verifyOwn checks that raw is a JWT this provider signed, with header typ
// and our issuer, and decodes its claims. Expiry is the caller's business:
// an expired ID token is still a fine id_token_hint.
func (s *Server) verifyOwn(raw, typ string, claims any) error {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return errBadToken
	}
	if got, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); got != typ {
		return errBadToken
	}
	var std jwt.Claims
	if err := tok.Claims(&s.key.PublicKey, &std, claims); err != nil {
		return errBadToken
	}
	if std.Issuer != s.cfg.Issuer {
		return errBadToken
	}
	return nil
}

// halfHash is the at_hash of an RS256 ID token (OIDC Core §3.1.3.6).
func halfHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// scopeClaims says which standard claims each scope releases (OIDC Core §5.4).
// Claims not listed here are released with "profile".
var scopeClaims = map[string][]string{
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":   {"email", "email_verified"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
	"groups":  {"groups"},
}

// accessTokenClaims are copied from the user into every access token so that
// a demo API can show and authorize on them without calling userinfo.
var accessTokenClaims = []string{"name", "email", "groups"}

// userClaims is every claim of a user: the configured ones, or defaults for
// a user name that is not configured.
func (s *Server) userClaims(subject string) map[string]any {
	u, known := s.cfg.Users[subject]
	claims := maps.Clone(u.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	if !known {
		claims["name"] = subject
		claims["email"] = subject + "@example.com"
	}
	if _, ok := claims["preferred_username"]; !ok {
		claims["preferred_username"] = subject
	}
	if _, ok := claims["email"]; ok {
		if _, ok := claims["email_verified"]; !ok {
			claims["email_verified"] = true
		}
	}
	return claims
}

// claimsForScopes picks the user's claims that the scopes release.
func (s *Server) claimsForScopes(subject string, scopes []string) map[string]any {
	all := s.userClaims(subject)
	released := map[string]bool{}
	for _, sc := range scopes {
		for _, c := range scopeClaims[sc] {
			released[c] = true
		}
	}
	out := map[string]any{}
	for name, v := range all {
		if released[name] || (!isScopedClaim(name) && slices.Contains(scopes, "profile")) {
			out[name] = v
		}
	}
	return out
}

func isScopedClaim(name string) bool {
	for _, cs := range scopeClaims {
		if slices.Contains(cs, name) {
			return true
		}
	}
	return false
}
