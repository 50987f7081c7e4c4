package gatehouse

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-bff/gatehouse/session"
)

// AdminHandler serves the admin listener: /healthz, /readyz, /metrics, and — when an
// admin token is configured — the session admin API under /admin/. Serve it on a
// separate, private address (loopback by default in the binary).
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	g.handleProbes(mux)
	if g.metrics.registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	}
	mux.Handle("GET /admin/sessions", g.adminAuth(g.adminListSessions))
	mux.Handle("DELETE /admin/sessions", g.adminAuth(g.adminEndSubject))
	mux.Handle("DELETE /admin/sessions/{sid}", g.adminAuth(g.adminEndSession))
	return mux
}

// HealthHandler serves only the probes: GET (and HEAD) /healthz, which answers while the
// process serves, and /readyz, which answers 200 {"ready":true} or 503 with the problems
// (the same as on AdminHandler). Every other path is 404. It exposes no data, so unlike
// AdminHandler it may listen on any address, for probes from Kubernetes or a load
// balancer.
func (g *Gateway) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	g.handleProbes(mux)
	return mux
}

// handleProbes registers /healthz and /readyz.
func (g *Gateway) handleProbes(mux *http.ServeMux) {
	registerProbes(mux, g.Ready, func() []string {
		if why := g.reloadFailure.Load(); why != nil {
			return []string{"configuration reload failed, the previous configuration is running: " + *why}
		}
		return nil
	})
}

// registerProbes registers /healthz (ok while the process runs) and /readyz (ready, or
// the problems; with warnings that do not make it unready, such as a failed reload).
func registerProbes(mux *http.ServeMux, ready func(context.Context) error, warnings func() []string) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{"ready": true}
		if ws := warnings(); len(ws) > 0 {
			// Still ready (the previous configuration runs), but the file needs fixing.
			body["warnings"] = ws
		}
		status := http.StatusOK
		if err := ready(r.Context()); err != nil {
			body["ready"], body["problems"] = false, strings.Split(err.Error(), "\n")
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	})
}

var errAdminAuth = &httpError{status: http.StatusUnauthorized, code: "unauthorized", reason: "admin_token", forceJSON: true}

// adminAuth requires Authorization: Bearer <admin token>; without a configured token
// the admin API does not exist.
func (g *Gateway) adminAuth(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.limitByIP(w, r, limitAdmin); err != nil {
			g.fail(w, r, jsonOnly(err))
			return
		}
		if g.config().Admin.Token == "" {
			g.fail(w, r, &httpError{status: http.StatusNotFound, code: "not_found", reason: "admin_api_disabled", forceJSON: true})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(g.config().Admin.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-admin"`)
			g.audit(r, evAdminDenied, nil, slog.String("route", r.URL.Path))
			g.fail(w, r, errAdminAuth)
			return
		}
		if err := h(w, r); err != nil {
			g.fail(w, r, jsonOnly(err))
		}
	})
}

func (g *Gateway) adminListSessions(w http.ResponseWriter, r *http.Request) error {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		return errBadRequest("sub_required", "GET /admin/sessions needs ?sub=<subject>.")
	}
	list, err := g.subjectSessions(r, sub, "")
	if err != nil {
		return err
	}
	out := make([]sessionInfo, 0, len(list))
	for _, s := range list {
		out = append(out, infoOf(s, ""))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sub": sub, "sessions": out})
	return nil
}

func (g *Gateway) adminEndSubject(w http.ResponseWriter, r *http.Request) error {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		return errBadRequest("sub_required", "DELETE /admin/sessions needs ?sub=<subject>.")
	}
	ended, err := g.endSubject(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"ended": ended})
	return nil
}

// endSubject ends the sessions of ?sub= in this app, and says how many.
func (g *Gateway) endSubject(r *http.Request) (int, error) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		return 0, errBadRequest("sub_required", "DELETE /admin/sessions needs ?sub=<subject>.")
	}
	list, err := g.subjectSessions(r, sub, "")
	if err != nil {
		return 0, err
	}
	ended := 0
	for _, s := range list {
		ok, err := g.sessions.End(r.Context(), s.Handle, session.ReasonRevoked)
		if err != nil {
			return ended, errStoreDown.with(err)
		}
		if ok {
			ended++
			g.audit(r, evSessionRevoked, s, slog.String("by", "admin"))
		}
	}
	g.metrics.sessions.WithLabelValues("revoked_by_admin").Add(float64(ended))
	g.log.Info("admin revoked a subject's sessions", "sessions_ended", ended)
	return ended, nil
}

func (g *Gateway) adminEndSession(w http.ResponseWriter, r *http.Request) error {
	sid := r.PathValue("sid")
	target, _ := g.sessions.Peek(r.Context(), sid) // for the audit log's subject
	if target == nil {
		target = &session.Session{Handle: sid}
	}
	ok, err := g.sessions.End(r.Context(), sid, session.ReasonRevoked)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		return errStoreDown.with(err)
	}
	if !ok {
		return errSessionNotFound
	}
	g.metrics.sessions.WithLabelValues("revoked_by_admin").Inc()
	g.log.Info("admin revoked a session", "session", sid)
	g.audit(r, evSessionRevoked, target, slog.String("by", "admin"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
