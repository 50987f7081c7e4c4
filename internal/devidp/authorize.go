package devidp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// An S256 code_challenge is base64url(SHA-256(verifier)) without padding.
	challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	// RFC 7636 §4.1: code-verifier = 43*128unreserved.
	verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// authorize is the authorization endpoint (OIDC Core §3.1.2). Until the
// client and redirect_uri are known to be registered every failure is a page;
// after that failures go back to the client as error redirects.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "Bad request", "The authorization request could not be parsed."}
	}
	q := r.Form
	for _, p := range []string{"client_id", "redirect_uri"} {
		if len(q[p]) > 1 {
			return &pageError{http.StatusBadRequest, "Bad request", p + " is given more than once."}
		}
	}
	client, ok := s.clients[q.Get("client_id")]
	if !ok {
		return &pageError{http.StatusBadRequest, "Unknown client",
			fmt.Sprintf("client_id %q is not registered with this provider.", q.Get("client_id"))}
	}
	redirectURI := q.Get("redirect_uri")
	if !slices.Contains(client.RedirectURIs, redirectURI) {
		return &pageError{http.StatusBadRequest, "Unregistered redirect_uri",
			fmt.Sprintf("redirect_uri %q is not registered for client %q (registered: %s). "+
				"The provider never redirects to an unregistered URI.",
				redirectURI, client.ID, strings.Join(client.RedirectURIs, ", "))}
	}
	state := q.Get("state")
	req, prompt, oerr := parseAuthRequest(client, q)
	if oerr != nil {
		s.redirectError(w, r, redirectURI, state, oerr)
		return nil
	}
	now := s.now()
	if !prompt["login"] {
		if sess := s.currentSession(r, now); sess != nil && (req.maxAge < 0 || now.Sub(sess.authTime) <= req.maxAge) {
			return s.issueCode(w, r, req, sess.cookie, now)
		}
	}
	if prompt["none"] {
		s.redirectError(w, r, redirectURI, state, &oauthError{code: "login_required",
			description: "prompt=none, and there is no provider session that satisfies the request"})
		return nil
	}
	return s.showLogin(w, http.StatusOK, req, now, "")
}

// parseAuthRequest validates the parameters after client_id and redirect_uri.
func parseAuthRequest(client Client, q url.Values) (authRequest, map[string]bool, *oauthError) {
	for name, vs := range q {
		if len(vs) > 1 && name != "resource" {
			return authRequest{}, nil, errInvalidRequest("%s is given more than once", name)
		}
	}
	switch {
	case q.Has("request"):
		return authRequest{}, nil, &oauthError{code: "request_not_supported", description: "request objects are not supported"}
	case q.Has("request_uri"):
		return authRequest{}, nil, &oauthError{code: "request_uri_not_supported", description: "request_uri is not supported"}
	case q.Get("response_type") != "code":
		return authRequest{}, nil, &oauthError{code: "unsupported_response_type", description: "only response_type=code is supported"}
	case q.Get("response_mode") != "" && q.Get("response_mode") != "query":
		return authRequest{}, nil, errInvalidRequest("only response_mode=query is supported")
	case q.Get("code_challenge") == "":
		return authRequest{}, nil, errInvalidRequest("PKCE is required: send code_challenge with code_challenge_method=S256")
	case q.Get("code_challenge_method") != "S256":
		return authRequest{}, nil, errInvalidRequest("code_challenge_method must be S256; plain is not accepted")
	case !challengePattern.MatchString(q.Get("code_challenge")):
		return authRequest{}, nil, errInvalidRequest("code_challenge is not a base64url SHA-256 value")
	}
	prompt := map[string]bool{}
	for _, p := range strings.Fields(q.Get("prompt")) {
		prompt[p] = true
	}
	if prompt["none"] && len(prompt) > 1 {
		return authRequest{}, nil, errInvalidRequest("prompt=none cannot be combined with other values")
	}
	if prompt["select_account"] {
		prompt["login"] = true // choosing an account means logging in again
	}
	maxAge := time.Duration(-1)
	if q.Has("max_age") {
		n, err := strconv.Atoi(q.Get("max_age"))
		if err != nil || n < 0 {
			return authRequest{}, nil, errInvalidRequest("max_age must be a non-negative integer")
		}
		maxAge = time.Duration(n) * time.Second
	}
	resources, oerr := parseResources(q["resource"])
	if oerr != nil {
		return authRequest{}, nil, oerr
	}
	return authRequest{
		clientID:      client.ID,
		redirectURI:   q.Get("redirect_uri"),
		state:         q.Get("state"),
		nonce:         q.Get("nonce"),
		codeChallenge: q.Get("code_challenge"),
		scopes:        uniqueFields(q.Get("scope")),
		resources:     resources,
		maxAge:        maxAge,
	}, prompt, nil
}

// parseResources checks RFC 8707 resource indicators: absolute URIs without
// a fragment.
func parseResources(vs []string) ([]string, *oauthError) {
	var out []string
	for _, v := range vs {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(v, "#") {
			return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_target",
				description: fmt.Sprintf("resource %q is not an absolute URI without a fragment", v)}
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func uniqueFields(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// login receives the login form.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "Bad request", "The login form could not be parsed."}
	}
	now := s.now()
	s.st.mu.Lock()
	lr := s.st.logins[r.PostForm.Get("request")]
	if lr != nil && now.Before(lr.expires) {
		delete(s.st.logins, r.PostForm.Get("request"))
	} else {
		lr = nil
	}
	s.st.mu.Unlock()
	if lr == nil {
		return &pageError{http.StatusBadRequest, "Login expired",
			"This login form is no longer valid (already used or too old). Start the login again from the application."}
	}
	req := lr.req
	if r.PostForm.Has("cancel") {
		s.redirectError(w, r, req.redirectURI, req.state, &oauthError{code: "access_denied", description: "the user cancelled the login"})
		return nil
	}
	user := r.PostForm.Get("user")
	if user == "" {
		user = strings.TrimSpace(r.PostForm.Get("login"))
	}
	if !userNamePattern.MatchString(user) {
		return s.showLogin(w, http.StatusBadRequest, req, now, "Enter a user name of 1 to 64 letters, digits or ._@+-")
	}
	shortLived := r.PostForm.Get("short_lived") != ""

	var oldCookie string
	if c, err := r.Cookie(sessionCookie); err == nil {
		oldCookie = c.Value
	}
	s.st.mu.Lock()
	var ended *session
	sess := s.st.sessionLocked(oldCookie, now)
	if sess != nil && sess.subject != user {
		ended = s.st.endSessionLocked(sess)
		sess = nil
	}
	if sess == nil {
		sess = &session{cookie: randomToken(), sid: randomID(), subject: user}
		s.st.sessions[sess.cookie] = sess
	}
	sess.authTime, sess.shortLived, sess.expires = now, shortLived, now.Add(sessionTTL)
	cookie := sess.cookie
	s.st.mu.Unlock()

	if ended != nil {
		s.log.Info("devidp: provider session replaced by a login as another user", "sid", ended.sid, "sub", ended.subject)
		s.backchannelLogout(context.WithoutCancel(r.Context()), ended)
	}
	s.log.Info("devidp: user logged in", "sub", user, "short_lived_tokens", shortLived, "client_id", req.clientID)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: cookie, Path: s.cookiePath(), MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	return s.issueCode(w, r, req, cookie, now)
}

func (s *Server) showLogin(w http.ResponseWriter, status int, req authRequest, now time.Time, problem string) error {
	id := randomToken()
	s.st.mu.Lock()
	s.st.logins[id] = &loginRequest{req: req, expires: now.Add(loginRequestTTL)}
	s.st.mu.Unlock()
	var users []loginUser
	for _, name := range sortedKeys(s.cfg.Users) {
		display, _ := s.cfg.Users[name].Claims["name"].(string)
		users = append(users, loginUser{Name: name, Display: display})
	}
	s.render(w, status, "login", "Sign in", loginPage{
		RequestID: id, ClientID: req.clientID, Scopes: strings.Join(req.scopes, " "),
		Users: users, Problem: problem, ShortTTL: shortAccessTTL.String(),
	})
	return nil
}

// issueCode issues an authorization code for the session's user and sends
// the browser back to the client.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req authRequest, cookie string, now time.Time) error {
	code := randomToken()
	s.st.mu.Lock()
	sess := s.st.sessionLocked(cookie, now)
	if sess != nil {
		if !slices.Contains(sess.clients, req.clientID) {
			sess.clients = append(sess.clients, req.clientID)
		}
		s.st.codes[code] = &authCode{
			req: req, sid: sess.sid, subject: sess.subject, authTime: sess.authTime,
			shortLived: sess.shortLived, expires: now.Add(codeTTL),
		}
	}
	s.st.mu.Unlock()
	if sess == nil {
		return &pageError{http.StatusBadRequest, "Session ended", "The provider session ended during the login. Start again."}
	}
	s.log.Info("devidp: authorization code issued", "client_id", req.clientID, "sub", sess.subject, "sid", sess.sid)
	s.redirect(w, r, req.redirectURI, url.Values{"code": {code}}, req.state)
	return nil
}

// currentSession returns a copy of the browser's live provider session, or nil.
func (s *Server) currentSession(r *http.Request, now time.Time) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if sess := s.st.sessionLocked(c.Value, now); sess != nil {
		return sess.clone()
	}
	return nil
}

// redirectError sends an authorization error response (RFC 6749 §4.1.2.1).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state string, e *oauthError) {
	s.log.Info("devidp: authorization refused", "error", e.code, "description", e.description)
	s.redirect(w, r, redirectURI, url.Values{"error": {e.code}, "error_description": {e.description}}, state)
}

// redirect sends an authorization response with state and iss (RFC 9207).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, _ := url.Parse(redirectURI) // registered URIs are validated by New
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), status)
}

func (s *Server) cookiePath() string {
	if s.basePath == "" {
		return "/"
	}
	return s.basePath
}
