package devidp

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// accessClaims are the access token claims the provider itself reads back.
type accessClaims struct {
	Subject  string `json:"sub"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

var errTokenInactive = errors.New("devidp: the access token is expired or revoked")

// activeAccessToken returns the claims of a live access token of this
// provider and whether its grant has a user.
func (s *Server) activeAccessToken(raw string, now time.Time) (accessClaims, bool, error) {
	var ac accessClaims
	if err := s.verifyOwn(raw, typAccessToken, &ac); err != nil {
		return ac, false, err
	}
	if !now.Before(time.Unix(ac.Expiry, 0)) {
		return ac, false, errTokenInactive
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	at := s.st.access[ac.ID]
	if at == nil || at.revoked {
		return ac, false, errTokenInactive
	}
	g := s.st.grantLocked(at.grantID)
	if g == nil {
		return ac, false, errTokenInactive
	}
	return ac, g.user, nil
}

// userinfo is the UserInfo endpoint (OIDC Core §5.3); the access token comes
// in the Authorization header (RFC 6750 §2.1).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) error {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_request",
			description: "send the access token as Authorization: Bearer", challenge: `Bearer realm="devidp"`}
	}
	ac, user, err := s.activeAccessToken(strings.TrimSpace(raw), s.now())
	if err != nil {
		desc := "the access token is invalid, expired or revoked"
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_token", description: desc,
			challenge: fmt.Sprintf(`Bearer realm="devidp", error="invalid_token", error_description=%q`, desc)}
	}
	scopes := strings.Fields(ac.Scope)
	if !user || !slices.Contains(scopes, "openid") {
		desc := "userinfo needs a user's access token with the openid scope"
		return &oauthError{status: http.StatusForbidden, code: "insufficient_scope", description: desc,
			challenge: fmt.Sprintf(`Bearer realm="devidp", error="insufficient_scope", scope="openid", error_description=%q`, desc)}
	}
	claims := s.claimsForScopes(ac.Subject, scopes)
	claims["sub"] = ac.Subject
	writeJSON(w, http.StatusOK, claims)
	return nil
}
