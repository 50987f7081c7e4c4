// Package api is the demo's protected API: the kind of service a single-page app calls
// through Gatehouse. It knows nothing about cookies or sessions. Every request must carry
// an OAuth access token in an Authorization: Bearer header, which Gatehouse adds when it
// forwards the browser's call. JWT access tokens are checked against the provider's
// published keys (signature, iss, exp); opaque tokens, which some providers issue, are
// checked by asking the provider's userinfo endpoint about them.
//
// The endpoints answer at the paths Gatehouse forwards, prefix included:
//
//	GET /api/me         the caller's claims and a fingerprint of the token (never the token)
//	GET /api/events     a server-sent-events stream, one event a second
//	GET /api/admin      only for members of the admin group
//	GET /client/status  what a client-credentials token (no user) says about itself
//
// The package is for the demo; a real API would add audience checks and its own
// authorization model.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Config configures the API.
type Config struct {
	// Issuer is the OpenID Connect provider whose tokens are accepted, compared exactly
	// with the tokens' iss claim. Its discovery document is fetched on the first request
	// (and again after a failure), so the API may start before the provider.
	Issuer string
	// HTTPClient talks to the provider (discovery, keys, userinfo). Default: a client
	// with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives one record per refused request and per stream. Default
	// slog.Default(). It never receives a token.
	Logger *slog.Logger
}

// Streams end after this long at the latest; the browser reconnects.
const maxStream = 5 * time.Minute

// New returns the API's handler. It is safe for concurrent use.
func New(cfg Config) http.Handler {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{log: cfg.Logger, auth: &authenticator{issuer: cfg.Issuer, client: cfg.HTTPClient}}
	mux := http.NewServeMux()
	mux.Handle("GET /api/me", s.authed(s.me))
	mux.Handle("GET /api/events", s.authed(s.events))
	mux.Handle("GET /api/admin", s.authed(s.admin))
	mux.Handle("GET /client/status", s.authed(s.clientStatus))
	mux.Handle("/", s.handle(func(http.ResponseWriter, *http.Request) error { return errNotFound }))
	return mux
}

type server struct {
	log  *slog.Logger
	auth *authenticator
}

// apiError is a failure with the status and JSON body the caller gets.
type apiError struct {
	status int
	code   string // "error" in the body
	reason string // "reason" in the body
	cause  error  // logged, never sent
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("api: %d %s", e.status, e.code)
	if e.reason != "" {
		msg += " (" + e.reason + ")"
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *apiError) Unwrap() error { return e.cause }

var (
	errNotFound     = &apiError{status: http.StatusNotFound, code: "not_found"}
	errMissingToken = &apiError{status: http.StatusUnauthorized, code: "invalid_token", reason: "missing_token"}
	errNotAdmin     = &apiError{status: http.StatusForbidden, code: "forbidden", reason: "not_admin"}
)

// handle adapts a handler that returns an error: the one place that writes error
// responses and logs their cause.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		ae, ok := errors.AsType[*apiError](err)
		if !ok {
			ae = &apiError{status: http.StatusInternalServerError, code: "internal_error", cause: err}
		}
		level := slog.LevelInfo
		if ae.status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", ae.status, "error", ae.code, "reason", ae.reason}
		if ae.cause != nil {
			attrs = append(attrs, "cause", ae.cause)
		}
		s.log.Log(r.Context(), level, "request refused", attrs...)
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		body := map[string]string{"error": ae.code}
		if ae.reason != "" {
			body["reason"] = ae.reason
		}
		writeJSON(w, ae.status, body)
	})
}

// authed authenticates the request's bearer token before calling h.
func (s *server) authed(h func(http.ResponseWriter, *http.Request, *caller) error) http.Handler {
	return s.handle(func(w http.ResponseWriter, r *http.Request) error {
		raw, ok := bearerToken(r)
		if !ok {
			return errMissingToken
		}
		c, err := s.auth.authenticate(r.Context(), raw)
		if err != nil {
			return err
		}
		return h(w, r, c)
	})
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// tokenInfo describes the token without revealing it.
type tokenInfo struct {
	Kind        string     `json:"kind"` // "jwt" or "opaque"
	Fingerprint string     `json:"fingerprint"`
	IssuedAt    *time.Time `json:"issued_at"`  // null when unknown (opaque tokens)
	ExpiresAt   *time.Time `json:"expires_at"` // null when unknown (opaque tokens)
}

func (c *caller) info() tokenInfo {
	return tokenInfo{Kind: c.kind, Fingerprint: c.fingerprint, IssuedAt: c.issuedAt, ExpiresAt: c.expiresAt}
}

// me is GET /api/me.
func (s *server) me(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, map[string]any{"claims": c.claims, "token": c.info()})
	return nil
}

// admin is GET /api/admin. Gatehouse's route rule guards it too; an API never relies on
// the gateway alone.
func (s *server) admin(w http.ResponseWriter, r *http.Request, c *caller) error {
	groups := stringsClaim(c.claims["groups"])
	if !slices.Contains(groups, "admin") {
		return errNotAdmin
	}
	name, _ := c.claims["name"].(string)
	if name == "" {
		name = c.subject()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"message": "Welcome to the admin API, " + name + ".",
		"sub":     c.subject(),
		"groups":  groups,
	})
	return nil
}

// clientStatus is GET /client/status: the claims that matter for a client-credentials
// token, to show that a route with token: client works without a user.
func (s *server) clientStatus(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"client_id": c.claims["client_id"],
		"scope":     c.claims["scope"],
		"exp":       c.claims["exp"],
		"sub":       c.claims["sub"],
		"token":     c.info(),
	})
	return nil
}

// events is GET /api/events: one event a second until the client goes away, the stream
// has lasted maxStream, or the token it was opened with expires. Ending at expiry makes
// the browser reconnect through Gatehouse, which refreshes the token, so the new token's
// fingerprint shows in the feed.
func (s *server) events(w http.ResponseWriter, r *http.Request, c *caller) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	end := time.NewTimer(maxStream)
	defer end.Stop()
	reason := "max_duration"
	if c.expiresAt != nil {
		if d := time.Until(*c.expiresAt); d < maxStream {
			end.Reset(max(d, 0))
			reason = "token_expired"
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	s.log.Info("event stream opened", "sub", c.subject(), "fingerprint", c.fingerprint)

	for n := 1; ; n++ {
		ev := map[string]any{"n": n, "time": time.Now().UTC(), "fingerprint": c.fingerprint, "sub": c.subject()}
		if err := writeEvent(w, rc, "tick", ev); err != nil {
			return nil // the client went away
		}
		select {
		case <-r.Context().Done():
			s.log.Info("event stream closed by the client", "sub", c.subject(), "events", n)
			return nil
		case <-end.C:
			writeEvent(w, rc, "end", map[string]any{"reason": reason, "events": n})
			s.log.Info("event stream ended", "sub", c.subject(), "reason", reason, "events", n)
			return nil
		case <-tick.C:
		}
	}
}

func writeEvent(w http.ResponseWriter, rc *http.ResponseController, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return err
	}
	return rc.Flush()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// stringsClaim reads a claim that is a list of strings or one space-separated string.
func stringsClaim(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
