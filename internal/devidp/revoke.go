package devidp

import "net/http"

// revoke is the revocation endpoint (RFC 7009). Revoking a refresh token ends
// its whole grant; revoking an access token ends only that token. Tokens that
// are unknown or belong to another client are ignored, and the answer is 200
// either way, so the endpoint reveals nothing about them.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return errInvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	client, err := s.authenticateClient(r)
	if err != nil {
		return err
	}
	raw := r.PostForm.Get("token")
	if raw == "" {
		return errInvalidRequest("token is missing")
	}
	var what string
	s.st.mu.Lock()
	if rt := s.st.refresh[raw]; rt != nil {
		if g := s.st.grants[rt.grantID]; g != nil && g.clientID == client.ID {
			s.st.revokeGrantLocked(g.id)
			what = "refresh token (whole grant)"
		}
	}
	s.st.mu.Unlock()

	var ac accessClaims
	if what == "" && s.verifyOwn(raw, typAccessToken, &ac) == nil {
		s.st.mu.Lock()
		if at := s.st.access[ac.ID]; at != nil && ac.ClientID == client.ID {
			at.revoked = true
			what = "access token"
		}
		s.st.mu.Unlock()
	}
	if what != "" {
		s.log.Info("devidp: token revoked", "client_id", client.ID, "token", what)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}
