package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Fixed lifetimes of the things that are not tokens.
const (
	sessionTTL       = 12 * time.Hour
	loginRequestTTL  = 15 * time.Minute
	codeTTL          = time.Minute
	codeReplayWindow = 10 * time.Minute // a redeemed code is remembered this long to catch replays
	shortAccessTTL   = 10 * time.Second // the login page's "short-lived tokens" checkbox
	logoutTokenTTL   = 2 * time.Minute
	sweepInterval    = time.Minute
	backchannelWait  = 5 * time.Second
)

// sessionCookie must differ from Gatehouse's __Host-gatehouse* cookies: cookies
// ignore ports, so a provider and a gateway on one host share a cookie jar.
const sessionCookie = "devidp_session"

// Server is a development OpenID Connect provider. Its state lives in memory;
// all methods are safe for concurrent use.
type Server struct {
	cfg      Config
	clients  map[string]Client
	log      *slog.Logger
	now      func() time.Time
	basePath string // the issuer's path without a trailing slash
	endpoint string // the issuer without a trailing slash; endpoints are below it
	secure   bool   // https issuer: cookies get the Secure attribute

	key  *rsa.PrivateKey
	jwk  jose.JSONWebKey // public half, with kid
	jwks jose.JSONWebKeySet

	// backchannel delivers logout tokens. It never follows redirects, as the
	// back-channel logout spec asks.
	backchannel *http.Client

	st *store
}

// New validates cfg (every problem at once, joined) and generates a fresh
// RSA signing key. Tokens therefore do not survive a restart.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// Copy what the caller could still change: the server reads it unlocked.
	cfg.Clients = slices.Clone(cfg.Clients)
	for i, c := range cfg.Clients {
		cfg.Clients[i].RedirectURIs = slices.Clone(c.RedirectURIs)
		cfg.Clients[i].PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	}
	users := make(map[string]User, len(cfg.Users))
	for name, u := range cfg.Users {
		users[name] = User{Claims: maps.Clone(u.Claims)}
	}
	cfg.Users = users
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: generating signing key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)

	u, _ := url.Parse(cfg.Issuer) // validated above
	s := &Server{
		cfg:      cfg,
		clients:  make(map[string]Client, len(cfg.Clients)),
		log:      cfg.Logger.With("component", "devidp"),
		now:      cfg.Now,
		basePath: strings.TrimSuffix(u.Path, "/"),
		endpoint: strings.TrimSuffix(cfg.Issuer, "/"),
		secure:   u.Scheme == "https",
		key:      key,
		jwk:      jwk,
		jwks:     jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}},
		backchannel: &http.Client{
			Timeout: backchannelWait,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		st: newStore(),
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = c
	}
	if cfg.InsecureAllowAnyAddress {
		s.log.Warn("devidp: INSECURE: non-loopback listen addresses are allowed; anyone who can reach this provider can sign in as any user without a password",
			"listen", cfg.Listen, "issuer", cfg.Issuer)
	}
	return s, nil
}

// Issuer returns the issuer identifier exactly as it appears in tokens.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// Handler serves every endpoint below the issuer's path.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	b := s.basePath
	cop := http.NewCrossOriginProtection()
	mux.Handle("GET "+b+"/.well-known/openid-configuration", s.api(s.discovery))
	mux.Handle("GET "+b+"/jwks", s.api(s.keys))
	mux.Handle("GET "+b+"/authorize", s.page(s.authorize))
	mux.Handle("POST "+b+"/authorize", s.page(s.authorize))
	mux.Handle("POST "+b+"/login", cop.Handler(s.page(s.login)))
	mux.Handle("POST "+b+"/token", s.api(s.token))
	mux.Handle("GET "+b+"/userinfo", s.api(s.userinfo))
	mux.Handle("POST "+b+"/userinfo", s.api(s.userinfo))
	mux.Handle("POST "+b+"/revoke", s.api(s.revoke))
	mux.Handle("GET "+b+"/end_session", s.page(s.endSessionEndpoint))
	mux.Handle("POST "+b+"/end_session", s.page(s.endSessionEndpoint))
	mux.Handle("GET "+b+"/sessions", s.page(s.sessionsPage))
	mux.Handle("POST "+b+"/sessions/logout", cop.Handler(s.page(s.sessionsLogout)))
	mux.Handle("GET "+b+"/{$}", s.page(s.home))
	if b != "" {
		mux.Handle("GET "+b, http.RedirectHandler(b+"/", http.StatusFound))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.st.sweep(s.now())
		mux.ServeHTTP(w, r)
	})
}

// handlerFunc is an endpoint that returns its failure; page and api turn
// failures into responses in one place.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// pageError is a failure shown to a person as an HTML page.
type pageError struct {
	status        int
	title, detail string
}

func (e *pageError) Error() string { return fmt.Sprintf("devidp: %s: %s", e.title, e.detail) }

// oauthError is an RFC 6749 §5.2 error (also used for RFC 6750 bearer errors).
type oauthError struct {
	status      int
	code        string
	description string
	// challenge, when set, is the WWW-Authenticate header value.
	challenge string
}

func (e *oauthError) Error() string { return fmt.Sprintf("devidp: %s: %s", e.code, e.description) }

func errInvalidRequest(format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: fmt.Sprintf(format, args...)}
}

func errInvalidGrant(format string, args ...any) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", description: fmt.Sprintf(format, args...)}
}

// page adapts a handler whose audience is a browser.
func (s *Server) page(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var pe *pageError
		if !errors.As(err, &pe) {
			s.log.Error("devidp: internal error", "path", r.URL.Path, "err", err)
			pe = &pageError{status: http.StatusInternalServerError, title: "Internal error", detail: "Something went wrong; see the devidp log."}
		} else {
			s.log.Info("devidp: request refused", "path", r.URL.Path, "status", pe.status, "reason", pe.detail)
		}
		s.render(w, pe.status, "error", pe.title, pe)
	})
}

// api adapts a handler whose audience is a program; errors are JSON.
func (s *Server) api(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var oe *oauthError
		if !errors.As(err, &oe) {
			s.log.Error("devidp: internal error", "path", r.URL.Path, "err", err)
			oe = &oauthError{status: http.StatusInternalServerError, code: "server_error", description: "internal error; see the devidp log"}
		} else {
			s.log.Info("devidp: request refused", "path", r.URL.Path, "error", oe.code, "description", oe.description)
		}
		if oe.challenge != "" {
			w.Header().Set("WWW-Authenticate", oe.challenge)
		}
		writeJSON(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.description})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// randomToken returns 256 random bits as text, usable in URLs and cookies.
func randomToken() string {
	return rand.Text() + rand.Text()
}

// randomID returns 128 random bits as text, for public identifiers (sid).
func randomID() string { return rand.Text() }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
