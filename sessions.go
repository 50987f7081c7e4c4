package gatehouse

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse-bff/gatehouse/session"
)

type sessionInfo struct {
	SID        string    `json:"sid"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	UserAgent  string    `json:"user_agent,omitempty"`
	IP         string    `json:"ip,omitempty"`
	Current    bool      `json:"current"`
	// Frontend and Provider name the app and the provider of the session, in a gateway
	// of several apps or providers.
	Frontend string `json:"frontend,omitempty"`
	Provider string `json:"provider,omitempty"`
}

func infoOf(s *session.Session, current string) sessionInfo {
	return sessionInfo{SID: s.Handle, CreatedAt: s.CreatedAt.UTC(), LastSeenAt: s.LastSeen.UTC(), ExpiresAt: s.ExpiresAt.UTC(),
		UserAgent: s.UserAgent, IP: s.IP, Current: s.Handle == current, Frontend: s.Frontend, Provider: s.Provider}
}

// subjectSessions lists the live sessions of a subject at our provider, newest first:
// those at issuer when it is given (the caller's own, which for a multi-tenant provider
// names the tenant), otherwise at any issuer the provider's matches.
func (g *Gateway) subjectSessions(r *http.Request, subject, issuer string) ([]*session.Session, error) {
	list, err := g.sessions.ListSubject(r.Context(), subject)
	if errors.Is(err, session.ErrNoIndex) {
		return nil, &httpError{status: http.StatusNotImplemented, code: "not_implemented", reason: "store_cannot_list",
			title: "Not available", message: "This installation's session store cannot list sessions."}
	}
	if err != nil {
		return nil, errStoreDown.with(err)
	}
	list = slices.DeleteFunc(list, func(x *session.Session) bool {
		return (issuer != "" && x.Issuer != issuer) || x.Frontend != g.name || g.providerOf(x) == nil || !g.providerOf(x).idp.IssuerMatches(x.Issuer)
	})
	slices.SortFunc(list, func(a, b *session.Session) int { return b.LastSeen.Compare(a.LastSeen) })
	return list, nil
}

// handleSessions: GET /bff/sessions lists the caller's sessions; DELETE
// /bff/sessions?others=true ends all but the current one.
func (g *Gateway) handleSessions(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	list, err := g.subjectSessions(r, s.Subject, s.Issuer)
	if err != nil {
		return err
	}
	if r.Method == http.MethodDelete {
		if r.URL.Query().Get("others") != "true" {
			return errBadRequest("others_required", "DELETE /bff/sessions needs ?others=true.")
		}
		ended := 0
		for _, other := range list {
			if other.Handle == s.Handle {
				continue
			}
			ok, err := g.sessions.End(r.Context(), other.Handle, session.ReasonRevoked)
			if err != nil {
				return errStoreDown.with(err)
			}
			if ok {
				ended++
				g.audit(r, evSessionRevoked, other, slog.String("by", "user"), slog.String("reason", "other_sessions"))
			}
		}
		g.metrics.sessions.WithLabelValues("revoked_by_user").Add(float64(ended))
		writeJSON(w, http.StatusOK, map[string]int{"ended": ended})
		return nil
	}
	out := make([]sessionInfo, 0, len(list))
	for _, x := range list {
		out = append(out, infoOf(x, s.Handle))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

var errSessionNotFound = &httpError{status: http.StatusNotFound, code: "not_found", reason: "session",
	title: "Not found", message: "There is no such session.", forceJSON: true}

// handleSessionDelete: DELETE /bff/sessions/{sid} ends one of the caller's sessions.
func (g *Gateway) handleSessionDelete(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	sid := r.PathValue("sid")
	target, err := g.sessions.Peek(r.Context(), sid)
	if errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrDecrypt) {
		return errSessionNotFound
	}
	if err != nil {
		return errStoreDown.with(err)
	}
	// Someone else's session looks exactly like a missing one.
	if target.Subject != s.Subject || target.Issuer != s.Issuer {
		return errSessionNotFound
	}
	if _, err := g.sessions.End(r.Context(), sid, session.ReasonRevoked); err != nil {
		return errStoreDown.with(err)
	}
	g.metrics.sessions.WithLabelValues("revoked_by_user").Inc()
	g.audit(r, evSessionRevoked, target, slog.String("by", "user"))
	if sid == s.Handle {
		g.clearSessionCookie(w)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
