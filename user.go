package gatehouse

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
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
	// Provider is the name of the provider the user signed in with, when it has one.
	Provider string `json:"provider,omitempty"`
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
	if g.config().Compat == CompatDuende {
		writeJSON(w, http.StatusOK, duendeClaims(s, g.sessions.IdleExpiry(s).Sub(now), g.basePath))
		return nil
	}
	acr, _ := s.Claims["acr"].(string)
	writeJSON(w, http.StatusOK, userResponse{
		Claims: s.Claims,
		SID:    s.Handle,
		Session: sessionTimes{
			CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
			ExpiresIn:     int64(s.ExpiresAt.Sub(now).Seconds()),
			IdleExpiresIn: int64(g.sessions.IdleExpiry(s).Sub(now).Seconds()),
		},
		LogoutURL: g.basePath + "/bff/logout?sid=" + url.QueryEscape(s.Handle),
		ACR:       acr,
		AuthTime:  authTimeUnix(s.Claims),
		Provider:  g.providerOf(s).name,
	})
	return nil
}

// duendeClaim is one entry of Duende.BFF's /bff/user answer.
type duendeClaim struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// duendeClaims is s as Duende.BFF's user endpoint shows a session: the claims as ASP.NET
// Core holds them (string values; one entry per element of an array; objects, numbers
// and booleans as their JSON text), sub first, the provider's sid, then the BFF's own:
// bff:logout_url (Gatehouse's GET /bff/logout?sid=…, the same CSRF defence) and
// bff:session_expires_in, the whole seconds until the session ends unless used.
func duendeClaims(s *session.Session, expiresIn time.Duration, basePath string) []duendeClaim {
	out := []duendeClaim{{Type: "sub", Value: s.Subject}}
	if s.ProviderSID != "" {
		out = append(out, duendeClaim{Type: "sid", Value: s.ProviderSID})
	}
	names := make([]string, 0, len(s.Claims))
	for name := range s.Claims {
		if name != "sub" && name != "sid" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		values, ok := s.Claims[name].([]any)
		if !ok {
			values = []any{s.Claims[name]}
		}
		for _, v := range values {
			out = append(out, duendeClaim{Type: name, Value: claimString(v)})
		}
	}
	return append(out,
		duendeClaim{Type: "bff:logout_url", Value: basePath + "/bff/logout?sid=" + url.QueryEscape(s.Handle)},
		duendeClaim{Type: "bff:session_expires_in", Value: max(int64(expiresIn/time.Second), 0)},
	)
}

// claimString is a claim value as a string claim holds it.
func claimString(v any) string {
	if str, ok := v.(string); ok {
		return str
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
