package gatehouse

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
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
	// redirect, when set, answers with a redirect there instead of a body (a person's
	// navigation that needs a login).
	redirect string
	// For people.
	title   string
	message string
	// retryAfter, when set, is sent as Retry-After (whole seconds, rounded up): the
	// provider asked to wait that long.
	retryAfter time.Duration
	// cause is logged, never shown.
	cause error
	level slog.Level
	// sess is the session the request had, if any, for the audit log.
	sess *session.Session
	// stepUp, when set, is the login an action needs (401 step_up_required): its JSON
	// names it and the login_url that asks for it, returning to stepUpReturn.
	stepUp       *stepUp
	stepUpReturn string
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

// storeRetryAfter is the Retry-After of a 503 store_unavailable: the store fails fast
// (each call is bounded by its timeout), so a client may ask again soon.
const storeRetryAfter = time.Second

var (
	errNotFound = &httpError{status: http.StatusNotFound, code: "not_found",
		title: "Not found", message: "There is nothing at this address."}
	errMethod = &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
		title: "Method not allowed", message: "This address does not accept this kind of request."}
	errBadPath = &httpError{status: http.StatusBadRequest, code: "bad_request", reason: "invalid_path",
		title: "Bad request", message: "The address is not valid."}
	errStoreDown = &httpError{status: http.StatusServiceUnavailable, code: "unavailable", reason: "store_unavailable",
		title: "Temporarily unavailable", message: "Sign-in is temporarily unavailable. Please try again in a moment.", level: slog.LevelError,
		retryAfter: storeRetryAfter}
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

// providerDown is errProviderDown (503, try again) for err, with the provider's
// Retry-After when it sent one.
func providerDown(err error) *httpError {
	he := errProviderDown.with(err)
	he.retryAfter, _ = idp.RetryAfter(err)
	return he
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
		if id := requestID(r); id != "" {
			attrs = append(attrs, "request_id", id)
		}
		if he.reason != "" {
			attrs = append(attrs, "reason", he.reason)
		}
		if he.cause != nil {
			attrs = append(attrs, "cause", he.cause.Error())
		}
		g.log.Log(r.Context(), level, "request failed", attrs...)
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((he.retryAfter+time.Second-1)/time.Second)))
	}
	if he.redirect != "" {
		target := he.redirect
		if strings.HasPrefix(target, "/bff/") {
			target = g.basePath + target // an app on a path prefix has its /bff/ there
		}
		http.Redirect(w, r, target, he.status)
		return
	}
	if wantsHTML(r) && !he.forceJSON {
		g.writePage(w, he, requestID(r))
		return
	}
	g.writeJSONError(w, he, requestID(r))
}

// jsonOnly marks an error to be rendered as JSON even for a navigation: for endpoints
// that are APIs whatever the browser asks for.
func jsonOnly(err error) error {
	var he *httpError
	if errors.As(err, &he) {
		c := *he
		c.forceJSON = true
		return &c
	}
	return err
}

// failUpstream renders a forward that failed (upstream.Config.ErrorHandler): always
// JSON, as the call was an API's. A browser that went away gets no body.
func (g *Gateway) failUpstream(w http.ResponseWriter, r *http.Request, err error) {
	he := &httpError{status: http.StatusBadGateway, code: "bad_gateway", reason: "upstream_unreachable",
		title: "Not available", message: "The service behind this address cannot be reached right now.", level: slog.LevelWarn}
	switch {
	case errors.Is(err, upstream.ErrClientGone):
		// Nobody reads an answer. 499 in the access log, as nginx.
		w.WriteHeader(499)
		return
	case errors.Is(err, upstream.ErrTimeout):
		he = &httpError{status: http.StatusGatewayTimeout, code: "gateway_timeout", reason: "upstream_timeout",
			title: "Not available", message: "The service behind this address did not answer in time.", level: slog.LevelWarn}
	case errors.Is(err, upstream.ErrBodyTooLarge):
		he = errBodyTooLarge
	}
	g.fail(w, r, jsonOnly(he.with(err)))
}

// writeJSONError writes he's body; id, the request id, lets a user's report be matched
// with the logs.
func (g *Gateway) writeJSONError(w http.ResponseWriter, he *httpError, id string) {
	body := map[string]any{"error": he.code}
	if id != "" {
		body["request_id"] = id
	}
	if he.reason != "" {
		body["reason"] = he.reason
	}
	if he.login {
		body["login_url"] = g.basePath + "/bff/login"
	}
	if he.stepUp != nil {
		he.stepUpFields(body)
		if u, ok := body["login_url"].(string); ok && strings.HasPrefix(u, "/bff/") {
			body["login_url"] = g.basePath + u
		}
		w.Header().Set("WWW-Authenticate", he.stepUp.challenge())
	}
	writeJSON(w, he.status, body)
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
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>{{range .Choices}}<p><a href="{{.Href}}">{{.Text}}</a></p>{{end}}{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}{{if .Code}}<p class="code">Error code: {{.Code}}{{if .RequestID}} · request id {{.RequestID}}{{end}}</p>{{end}}</body></html>
`))

type page struct {
	Title, Message, Link, LinkText, Code string
	Refresh                              string
	RequestID                            string // on error pages, for a support request
	Choices                              []pageLink
}

// pageLink is a link of a page's list (the login chooser's providers).
type pageLink struct{ Href, Text string }

func (g *Gateway) writePage(w http.ResponseWriter, he *httpError, id string) {
	p := page{Title: he.title, Message: he.message, Code: he.code, RequestID: id}
	if he.reason != "" {
		p.Code += " (" + he.reason + ")"
	}
	if he.status == http.StatusUnauthorized || he.status == http.StatusBadRequest && strings.HasPrefix(he.reason, "login_") {
		p.Link, p.LinkText = g.basePath+"/bff/login", "Sign in again"
	} else {
		p.Link, p.LinkText = g.basePath+"/", "Go to the start page"
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
