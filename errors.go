package gatehouse

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// httpError is what a handler returns when a request fails: one place (fail) turns it
// into a JSON body for API callers or a small page for people, and logs its cause.
// Neither the body nor the page ever carries the cause's text.
type httpError struct {
	status int
	code   string // JSON "error"
	reason string // JSON "reason"
	login  bool   // add "login_url"
	// forceJSON renders JSON even for a navigation (endpoints that are APIs).
	forceJSON bool
	// For people.
	title   string
	message string
	// cause is logged, never shown.
	cause error
	level slog.Level
	// sess is the session the request had, if any, for the audit log.
	sess *session.Session
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return e.code + ": " + e.cause.Error()
	}
	return e.code + ": " + e.reason
}

func (e *httpError) Unwrap() error { return e.cause }

func (e *httpError) with(cause error) *httpError {
	c := *e
	c.cause = cause
	return &c
}

// withSession records the request's session on err, when it is an httpError, for the
// audit log.
func withSession(err error, s *session.Session) error {
	var he *httpError
	if errors.As(err, &he) {
		return he.of(s)
	}
	return err
}

// of records the request's session for the audit log.
func (e *httpError) of(s *session.Session) *httpError {
	c := *e
	c.sess = s
	return &c
}

var (
	errNotFound = &httpError{status: http.StatusNotFound, code: "not_found",
		title: "Not found", message: "There is nothing at this address."}
	errMethod = &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
		title: "Method not allowed", message: "This address does not accept this kind of request."}
	errBadPath = &httpError{status: http.StatusBadRequest, code: "bad_request", reason: "invalid_path",
		title: "Bad request", message: "The address is not valid."}
	errStoreDown = &httpError{status: http.StatusServiceUnavailable, code: "unavailable", reason: "store_unavailable",
		title: "Temporarily unavailable", message: "Sign-in is temporarily unavailable. Please try again in a moment.", level: slog.LevelError}
	errProviderDown = &httpError{status: http.StatusServiceUnavailable, code: "unavailable", reason: "provider_unavailable",
		title: "Temporarily unavailable", message: "The sign-in service cannot be reached right now. Please try again in a moment.", level: slog.LevelWarn}
	errProviderBadGateway = &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "provider_unavailable",
		title: "Temporarily unavailable", message: "The sign-in service cannot be reached right now. Please try again in a moment.", level: slog.LevelWarn}
	errBodyTooLarge = &httpError{status: http.StatusRequestEntityTooLarge, code: "payload_too_large", reason: "max_body",
		title: "Too large", message: "The request is larger than this service accepts.", level: slog.LevelInfo}
	errForbiddenClaims = &httpError{status: http.StatusForbidden, code: "forbidden", reason: "claims",
		title: "Access denied", message: "Your account does not have access to this."}
)

func errUnauthenticated(reason string) *httpError {
	return &httpError{status: http.StatusUnauthorized, code: "unauthenticated", reason: reason, login: true,
		title: "Not signed in", message: "You are not signed in, or your session has ended."}
}

func errCSRF(reason string) *httpError {
	return &httpError{status: http.StatusForbidden, code: "csrf_rejected", reason: reason,
		title: "Request refused", message: "This request did not come from this application, so it was refused.", level: slog.LevelWarn}
}

func errBadRequest(reason, message string) *httpError {
	return &httpError{status: http.StatusBadRequest, code: "bad_request", reason: reason,
		title: "Bad request", message: message, level: slog.LevelInfo}
}

// sessionError maps the session layer's reasons to responses.
func sessionError(err error) *httpError {
	switch {
	case errors.Is(err, session.ErrNoSession):
		return errUnauthenticated("no_session")
	case errors.Is(err, session.ErrExpired):
		return errUnauthenticated("session_expired")
	case errors.Is(err, session.ErrRevoked):
		return errUnauthenticated("session_revoked")
	case errors.Is(err, session.ErrRefreshFailed):
		return errUnauthenticated("refresh_failed")
	default:
		return errStoreDown.with(err)
	}
}

// providerError maps the idp package's classification to responses.
func providerError(err error) *httpError {
	if errors.Is(err, idp.ErrUnavailable) {
		return errProviderBadGateway.with(err)
	}
	return &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "provider_error",
		title: "Sign-in failed", message: "The sign-in service gave an answer Gatehouse cannot use.", cause: err, level: slog.LevelWarn}
}

// fail renders err and logs its cause.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, code: "internal_error",
			title: "Something went wrong", message: "Gatehouse could not handle this request.", cause: err, level: slog.LevelError}
	}
	if he.cause != nil || he.level >= slog.LevelWarn {
		level := he.level
		if level == 0 && he.status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{"status", he.status, "error", he.code, "method", r.Method, "path", r.URL.Path}
		if he.reason != "" {
			attrs = append(attrs, "reason", he.reason)
		}
		if he.cause != nil {
			attrs = append(attrs, "cause", he.cause.Error())
		}
		g.log.Log(r.Context(), level, "request failed", attrs...)
	}
	if wantsHTML(r) && !he.forceJSON {
		g.writePage(w, he)
		return
	}
	g.writeJSONError(w, he)
}

func (g *Gateway) writeJSONError(w http.ResponseWriter, he *httpError) {
	body := map[string]string{"error": he.code}
	if he.reason != "" {
		body["reason"] = he.reason
	}
	if he.login {
		body["login_url"] = "/bff/login"
	}
	writeJSON(w, he.status, body)
}

// wantsHTML tells a person's navigation from an API call: Sec-Fetch-Mode says so in
// every current browser; without it, an Accept preferring HTML does.
func wantsHTML(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

const pageStyle = `body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}` +
	`h1{font-size:1.4rem}a{color:#0645ad}.code{color:#777;font-size:.85rem}`

// pageCSP allows nothing but the page's own style block, by hash.
var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>{{if .Refresh}}<meta http-equiv="refresh" content="0;url={{.Refresh}}">{{end}}<style>` + pageStyle + `</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}{{if .Code}}<p class="code">Error code: {{.Code}}</p>{{end}}</body></html>
`))

type page struct {
	Title, Message, Link, LinkText, Code string
	Refresh                              string
}

func (g *Gateway) writePage(w http.ResponseWriter, he *httpError) {
	p := page{Title: he.title, Message: he.message, Code: he.code}
	if he.reason != "" {
		p.Code += " (" + he.reason + ")"
	}
	if he.status == http.StatusUnauthorized || he.status == http.StatusBadRequest && strings.HasPrefix(he.reason, "login_") {
		p.Link, p.LinkText = "/bff/login", "Sign in again"
	} else {
		p.Link, p.LinkText = "/", "Go to the start page"
	}
	if p.Title == "" {
		p.Title, p.Message = http.StatusText(he.status), "The request could not be handled."
	}
	g.renderPage(w, he.status, p)
}

func (g *Gateway) renderPage(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	pageTemplate.Execute(w, p)
}

// localPath returns p if it is a local path safe to redirect to after login or logout,
// else "/". Local means: one leading slash, then neither a slash nor a backslash, no
// control characters, and the same after percent-decoding (browsers treat "/\evil" and
// "/%2F%2Fevil" variants inconsistently, so none passes). The query and fragment are kept
// as given, minus control characters.
func localPath(p string) string {
	if p == "" || len(p) > 2048 {
		return "/"
	}
	pathPart, rest := p, ""
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		pathPart, rest = p[:i], p[i:]
	}
	local := func(s string) bool {
		if len(s) == 0 || s[0] != '/' || len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return false
		}
		return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' })
	}
	// Decode repeatedly: every decoded form must still be local.
	for s, i := pathPart, 0; ; i++ {
		if !local(s) || i == 4 {
			return "/"
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "/"
		}
		if d == s {
			break
		}
		s = d
	}
	if strings.ContainsFunc(rest, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return p
}
