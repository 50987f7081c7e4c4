package gatehouse

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-bff/gatehouse/idp"
	"github.com/gatehouse-bff/gatehouse/session"
)

// flow is a login in progress. It is sealed with a key that only the browser's flow
// cookie holds and stored under a hash of its state, so a store dump cannot complete it
// and a stolen state cannot either.
type flow struct {
	Verifier  string    `json:"v"`
	Nonce     string    `json:"n"`
	ReturnURL string    `json:"r"`
	Created   time.Time `json:"c"`
	// Previous is the public handle of the session the browser had when it started this
	// login, ended when the login completes. /bff/login is a same-site navigation that
	// carries the SameSite=Strict cookie; the callback, reached by a redirect from a
	// provider on another site, does not. Only a session whose cookie opened it at
	// /bff/login is recorded, and the flow is sealed, so a flow names no one else's session.
	Previous string `json:"p,omitempty"`
	// ACR and MaxAge (seconds; -1 for none) are a step-up request's: the callback refuses
	// a login that does not deliver them.
	ACR    []string `json:"a,omitempty"`
	MaxAge *int64   `json:"m,omitempty"`
	// Silent is a prompt=none login: a provider's "not without interaction" answer
	// returns to ReturnURL with ?error=… instead of ending on an error page.
	Silent bool `json:"s,omitempty"`
	// Frame is a /bff/silent-login flow, run in a hidden iframe: it ends on a page that
	// tells the parent frame whether the user is signed in (silentResultPage).
	Frame bool `json:"f,omitempty"`
	// Provider is the name of the provider the login went to ("" for the default): the
	// callback completes it with that provider only (mix-up defence).
	Provider string `json:"pv,omitempty"`
}

// stepUp is what the flow's login must deliver.
func (f *flow) stepUp() stepUp {
	su := stepUp{ACR: f.ACR}
	if f.MaxAge != nil {
		su.MaxAge, su.HasMaxAge = time.Duration(*f.MaxAge)*time.Second, true
	}
	return su
}

// maxFlowCookies bounds the flow cookies one browser may hold (one per tab logging in).
const maxFlowCookies = 8

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// handleLogin starts a login: GET /bff/login?returnUrl=/path. With prompt=none (taken
// whatever allowed_auth_params says, as the callback handles its answer) it is a silent
// login: the provider may not interact with the user, and a refusal returns to returnUrl
// with ?error=login_required (or the provider's other code) appended.
func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	q := r.URL.Query()
	silent := slices.Contains(strings.Fields(q.Get("prompt")), "none")
	f := flow{ReturnURL: g.returnPath(q.Get("returnUrl")), Silent: silent}
	switch name := q.Get("provider"); {
	case name != "":
		if g.providerNamed(name) == nil {
			return errBadRequest("login_unknown_provider", "This sign-in link names a sign-in service this application does not have. Please go back and try again.")
		}
		f.Provider = name
	case len(g.providers) > 1 && g.config().Login.Chooser && !silent:
		g.renderChooser(w, r, f.ReturnURL)
		return nil
	}
	return g.startLogin(w, r, q, f)
}

// handleSilentLogin starts a silent login for a hidden iframe: GET /bff/silent-login.
// The flow ends on a page that posts {source: "bff-silent-login", isLoggedIn} to the
// parent frame, which must be a page of this origin (Duende.BFF's contract).
func (g *Gateway) handleSilentLogin(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	return g.startLogin(w, r, url.Values{}, flow{ReturnURL: g.basePath + "/", Silent: true, Frame: true})
}

// startLogin makes the authorization request for f (its ReturnURL, Silent and Frame set
// by the caller), with the login parameters q allows, and redirects the browser to it.
func (g *Gateway) startLogin(w http.ResponseWriter, r *http.Request, q url.Values, f flow) error {
	cfg := g.config()
	f.Verifier, f.Nonce, f.Created = oauth2.GenerateVerifier(), randomString(24), g.now()
	// A step-up (RFC 9470): acr_values and max_age are taken whatever
	// allowed_auth_params says, because the callback then holds the login to them.
	su, ok := parseStepUp(q.Get("acr_values"), q.Get("max_age"), q.Has("max_age"))
	if !ok {
		return errBadRequest("login_invalid_step_up", "This sign-in link asks for a sign-in strength Gatehouse cannot read. Please go back and try again.")
	}
	f.ACR = su.ACR
	if su.HasMaxAge {
		n := int64(su.MaxAge / time.Second)
		f.MaxAge = &n
	}
	if c := g.sessionCookie(r); c != "" {
		// Best effort: a store that cannot answer now fails the PutFlow below anyway.
		if prev, err := g.sessions.Load(r.Context(), c); err == nil && prev.Frontend == g.name {
			f.Previous = prev.Handle
		}
	}
	// After the per-client limits (which refuse before this handler runs), so that what
	// they refuse takes nothing from everyone's bucket; before the authorization request,
	// which with PAR is a request to the provider: the bucket bounds those too.
	if err := g.limitPendingFlows(w, r); err != nil {
		return err
	}
	state := randomString(24)
	pv := g.providerNamed(f.Provider)
	if f.Provider == "" {
		f.Provider = g.sessionProviderName(pv)
	}
	params := g.authParams(q, pv)
	su.params(params)
	if f.Silent {
		// none may not be combined with any other prompt value (OIDC Core §3.1.2.1), so
		// it replaces a configured prompt=consent for this login.
		params.Set("prompt", "none")
	}
	authURL, err := pv.idp.AuthCodeURL(r.Context(), state, f.Nonce, f.Verifier, params)
	if err != nil {
		return authorizationFailed(err)
	}
	plain, _ := json.Marshal(f)
	key, err := g.sessions.PutFlow(r.Context(), state, plain, cfg.Session.FlowTimeout)
	if err != nil {
		return errStoreDown.with(err)
	}

	// One cookie per flow lets several tabs log in at once; past a handful the oldest
	// logins are abandoned anyway, so clear them rather than grow the Cookie header.
	var flows []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, cfg.Cookie.Name+"-flow-") {
			flows = append(flows, c.Name)
		}
	}
	if len(flows) >= maxFlowCookies {
		for _, name := range flows {
			g.clearCookie(w, name, http.SameSiteLaxMode)
		}
	}
	g.setFlowCookie(w, g.flowCookieName(state), base64.RawURLEncoding.EncodeToString(key))
	g.metrics.logins.WithLabelValues("started").Inc()
	if f.Silent {
		g.audit(r, evLoginStarted, nil, slog.Bool("silent", true))
	} else {
		g.audit(r, evLoginStarted, nil)
	}

	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, authURL, http.StatusFound)
	return nil
}

// authorizationFailed answers a login whose authorization request could not be made: 503
// (with the provider's Retry-After) when discovery or a pushed request could not reach a
// provider that is down or busy, 502 when the provider refused the pushed request.
func authorizationFailed(err error) *httpError {
	var te *idp.TokenError
	if errors.As(err, &te) && errors.Is(err, idp.ErrRefused) {
		return providerError(err)
	}
	return providerDown(err)
}

// authParams merges the configured authorization parameters with those the login
// request may pass through. prompt values are combined (prompt=consent from config plus
// prompt=login from the SPA gives "consent login"); others from the request win.
func (g *Gateway) authParams(q url.Values, pv *provider) url.Values {
	run := g.current()
	pcfg := g.cfgOf(pv)
	out := url.Values{}
	for k, v := range pcfg.AuthParams {
		out.Set(k, v)
	}
	// RFC 8707: the resources that routes will ask tokens for are named at authorization,
	// so that the grant covers them and the refresh requests for them are allowed.
	for _, r := range run.routes {
		if r.Resource != "" && !slices.Contains(out["resource"], r.Resource) {
			out.Add("resource", r.Resource)
		}
	}
	for _, name := range pcfg.AllowedAuthParams {
		v := q.Get(name)
		if v == "" || len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			continue
		}
		switch name {
		case "max_age":
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				continue
			}
		case "prompt":
			words := strings.Fields(out.Get("prompt"))
			for _, p := range strings.Fields(v) {
				if !slices.Contains([]string{"none", "login", "consent", "select_account", "create"}, p) {
					continue
				}
				if !slices.Contains(words, p) {
					words = append(words, p)
				}
			}
			if len(words) > 0 {
				out.Set("prompt", strings.Join(words, " "))
			}
			continue
		}
		out.Set(name, v)
	}
	return out
}

var (
	errLoginNoFlow = errBadRequest("login_no_flow",
		"This sign-in did not start in this browser, or it took too long. Please sign in again.")
	errLoginUsed = errBadRequest("login_replayed",
		"This sign-in was already completed or has expired. Please sign in again.")
	errLoginMalformed = errBadRequest("login_invalid_response",
		"The sign-in service sent an incomplete answer. Please sign in again.")
)

// takeFlow finds the flow a callback completes, checks that this browser started it,
// and consumes it: a flow completes once, even when two callbacks race.
func (g *Gateway) takeFlow(w http.ResponseWriter, r *http.Request, state string) (*flow, error) {
	if state == "" || len(state) > 128 {
		return nil, errLoginMalformed
	}
	name := g.flowCookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return nil, errLoginNoFlow
	}
	g.clearCookie(w, name, http.SameSiteLaxMode)
	key, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(key) != session.KeySize {
		return nil, errLoginNoFlow
	}
	plain, err := g.sessions.TakeFlow(r.Context(), state, key)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, errLoginUsed
	case errors.Is(err, session.ErrDecrypt):
		return nil, errLoginNoFlow
	case err != nil:
		return nil, errStoreDown.with(err)
	}
	var f flow
	if err := json.Unmarshal(plain, &f); err != nil {
		return nil, errLoginNoFlow
	}
	if g.now().Sub(f.Created) > g.config().Session.FlowTimeout {
		return nil, errLoginUsed
	}
	return &f, nil
}
