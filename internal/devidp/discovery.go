package devidp

import (
	"net/http"
	"slices"
	"sort"
)

// discovery serves OpenID Connect Discovery 1.0 metadata.
func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) error {
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	claims := []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash"}
	for _, cs := range scopeClaims {
		claims = append(claims, cs...)
	}
	sort.Strings(claims)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         s.cfg.Issuer,
		"authorization_endpoint":                         s.endpoint + "/authorize",
		"token_endpoint":                                 s.endpoint + "/token",
		"userinfo_endpoint":                              s.endpoint + "/userinfo",
		"jwks_uri":                                       s.endpoint + "/jwks",
		"revocation_endpoint":                            s.endpoint + "/revoke",
		"end_session_endpoint":                           s.endpoint + "/end_session",
		"scopes_supported":                               []string{"openid", "profile", "email", "address", "phone", "groups", "offline_access"},
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"token_endpoint_auth_methods_supported":          authMethods,
		"revocation_endpoint_auth_methods_supported":     authMethods,
		"code_challenge_methods_supported":               []string{"S256"},
		"prompt_values_supported":                        []string{"none", "login", "consent", "select_account"},
		"claims_supported":                               slices.Compact(claims),
		"claims_parameter_supported":                     false,
		"request_parameter_supported":                    false,
		"request_uri_parameter_supported":                false,
		"authorization_response_iss_parameter_supported": true,
		"backchannel_logout_supported":                   true,
		"backchannel_logout_session_supported":           true,
		"frontchannel_logout_supported":                  false,
	})
	return nil
}

// keys serves the JWK set with the public signing key.
func (s *Server) keys(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, s.jwks)
	return nil
}
