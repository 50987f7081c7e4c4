package gatehouse

import (
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

type userResponse struct {
	Claims    map[string]any `json:"claims"`
	SID       string         `json:"sid"`
	Session   sessionTimes   `json:"session"`
	LogoutURL string         `json:"logout_url"`
	// ACR and AuthTime are the login's strength and time (the acr and auth_time
	// claims), when the provider sent them: what step-up compares.
	ACR      string `json:"acr,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
}

type sessionTimes struct {
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	ExpiresIn     int64     `json:"expires_in"`
	IdleExpiresIn int64     `json:"idle_expires_in"`
}

// handleUser answers GET /bff/user: who is logged in. Never a token.
func (g *Gateway) handleUser(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	if r.URL.Query().Get("slide") != "false" {
		s = g.touch(r.Context(), s)
	}
	now := g.now()
	acr, _ := s.Claims["acr"].(string)
	writeJSON(w, http.StatusOK, userResponse{
		Claims: s.Claims,
		SID:    s.Handle,
		Session: sessionTimes{
			CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
			ExpiresIn:     int64(s.ExpiresAt.Sub(now).Seconds()),
			IdleExpiresIn: int64(g.sessions.IdleExpiry(s).Sub(now).Seconds()),
		},
		LogoutURL: "/bff/logout?sid=" + url.QueryEscape(s.Handle),
		ACR:       acr,
		AuthTime:  authTimeUnix(s.Claims),
	})
	return nil
}
