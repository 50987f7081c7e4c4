package gatehouse

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse-bff/gatehouse/session"
)

// endpoint is one of Gatehouse's own /bff/ endpoints. What used to be written inside
// each handler (which methods, JSON or a page, rate limits, the origin checks, the
// session) is declared here, and serveBFF applies it in one order for all of them:
// method, rate limit by client, origin, session, rate limit by user, handler.
type endpoint struct {
	// methods allowed. GET never implies HEAD: a HEAD must not start or complete a
	// login, or end a session.
	methods []string
	// api endpoints answer JSON, errors included, even to a navigation.
	api bool
	// limit is the rate limit (per client network) taken before anything else.
	limit string
	// origin is the CSRF defence the endpoint needs.
	origin originCheck
	// session is loaded through the gate before the handler; sessionNone: not loaded.
	session need
	// userLimit is a rate limit per user, taken once the session is known.
	userLimit string
	// enabled, when set, hides the endpoint (404) while it returns false.
	enabled func(*Gateway) bool
	// span, when set, names the child span the handler runs in when tracing is on.
	span   string
	handle func(g *Gateway, w http.ResponseWriter, r *http.Request, s *session.Session) error
}

// originCheck is the CSRF defence of an endpoint.
type originCheck int

const (
	// originAny: none (top-level navigations from the provider, server-to-server calls).
	originAny originCheck = iota
	// originSame: reads must come from our origin (checkSameOrigin); any other method
	// needs the full CSRF check.
	originSame
	// originWrites: only methods other than GET need the CSRF check (a GET carries its
	// own defence, checked by the handler).
	originWrites
)

// endpoints are Gatehouse's /bff/ endpoints by path. "{sid}" is a path value.
var endpoints = map[string]*endpoint{
	"/bff/login": {methods: []string{"GET"}, limit: limitLogin, span: "login", handle: (*Gateway).handleLogin},
	// A hidden iframe of the app's own pages: a cross-origin framing (Sec-Fetch-Site) is
	// refused before a login starts.
	"/bff/silent-login":    {methods: []string{"GET"}, limit: limitLogin, origin: originSame, span: "login", handle: (*Gateway).handleSilentLogin},
	"/bff/callback":        {methods: []string{"GET"}, limit: limitCallback, span: "callback", handle: (*Gateway).handleCallback},
	"/bff/user":            {methods: []string{"GET"}, api: true, origin: originSame, session: sessionRequired, handle: (*Gateway).handleUser},
	"/bff/logout":          {methods: []string{"GET", "POST"}, origin: originWrites, session: sessionOptional, span: "logout", handle: (*Gateway).handleLogout},
	"/bff/logout/callback": {methods: []string{"GET"}, handle: (*Gateway).handleLogoutCallback},
	"/bff/sessions": {methods: []string{"GET", "DELETE"}, api: true, origin: originSame, session: sessionRequired,
		userLimit: limitSessions, handle: (*Gateway).handleSessions},
	"/bff/sessions/{sid}": {methods: []string{"DELETE"}, api: true, origin: originSame, session: sessionRequired,
		userLimit: limitSessions, handle: (*Gateway).handleSessionDelete},
	// Back-channel logout is rate-limited by the handler, on tokens that fail only: the
	// provider's address is shared by all its tenants, and valid logouts must not queue
	// behind anyone's flood.
	"/bff/backchannel": {methods: []string{"POST"}, api: true, span: "backchannel_logout", handle: (*Gateway).handleBackchannel},
	"/bff/diagnostics": {methods: []string{"GET"}, api: true, origin: originSame,
		enabled: func(g *Gateway) bool { return g.config().InsecureDiagnostics }, handle: (*Gateway).handleDiagnostics},
	"/bff/client.js": {methods: []string{"GET", "HEAD"}, handle: (*Gateway).handleClientJS},
}

// lookupEndpoint finds the endpoint for a cleaned /bff/ path, setting its path values.
func lookupEndpoint(r *http.Request, p string) *endpoint {
	if e, ok := endpoints[p]; ok {
		return e
	}
	if sid, ok := strings.CutPrefix(p, "/bff/sessions/"); ok && sid != "" && !strings.Contains(sid, "/") {
		r.SetPathValue("sid", sid)
		return endpoints["/bff/sessions/{sid}"]
	}
	return nil
}

func (g *Gateway) serveBFF(w http.ResponseWriter, r *http.Request, p string) {
	e := lookupEndpoint(r, p)
	if e == nil || e.enabled != nil && !e.enabled(g) {
		g.fail(w, r, errNotFound)
		return
	}
	if !slices.Contains(e.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(e.methods, ", "))
		g.fail(w, r, errMethod)
		return
	}
	if err := g.serveEndpoint(w, r, e); err != nil {
		g.auditFailure(r, p, err)
		if e.api {
			err = jsonOnly(err)
		}
		g.fail(w, r, err)
	}
}

func (g *Gateway) serveEndpoint(w http.ResponseWriter, r *http.Request, e *endpoint) error {
	if e.limit != "" {
		if err := g.limitByIP(w, r, e.limit); err != nil {
			return err
		}
	}
	switch {
	case e.origin == originAny:
	case r.Method != http.MethodGet:
		if err := g.checkCSRF(r); err != nil {
			return err
		}
	case e.origin == originSame:
		if err := g.checkSameOrigin(r); err != nil {
			return err
		}
	}
	var s *session.Session
	if e.session != sessionNone {
		var err error
		if s, err = g.gate(w, r, e.session); err != nil {
			return err
		}
	}
	if e.userLimit != "" {
		if err := g.limitBySubject(w, r, e.userLimit, s); err != nil {
			return err
		}
	}
	if e.span != "" && g.tracing.tracer != nil {
		ctx, span := g.tracing.tracer.Start(r.Context(), e.span)
		err := e.handle(g, w, r.WithContext(ctx), s)
		endSpan(span, err)
		return err
	}
	return e.handle(g, w, r, s)
}
