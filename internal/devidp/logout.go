package devidp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// endSessionEndpoint is RP-Initiated Logout 1.0. It ends the browser's
// provider session (and the one id_token_hint names), notifies the clients
// over the back channel, and redirects to a registered
// post_logout_redirect_uri or shows a signed-out page.
func (s *Server) endSessionEndpoint(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "Bad request", "The logout request could not be parsed."}
	}
	q := r.Form
	var hint struct {
		Subject  string       `json:"sub"`
		SID      string       `json:"sid"`
		Audience jwt.Audience `json:"aud"`
	}
	if raw := q.Get("id_token_hint"); raw != "" {
		// An expired ID token is still a good hint (RP-Initiated Logout §2).
		if err := s.verifyOwn(raw, typIDToken, &hint); err != nil {
			return &pageError{http.StatusBadRequest, "Invalid id_token_hint",
				"The id_token_hint is not an ID token issued by this provider. Nobody was signed out."}
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" && len(hint.Audience) > 0 {
		clientID = hint.Audience[0]
	}
	if clientID != "" && len(hint.Audience) > 0 && !slices.Contains(hint.Audience, clientID) {
		return &pageError{http.StatusBadRequest, "client_id mismatch",
			"client_id is not an audience of the id_token_hint. Nobody was signed out."}
	}
	client, known := s.clients[clientID]
	if clientID != "" && !known {
		return &pageError{http.StatusBadRequest, "Unknown client",
			fmt.Sprintf("client_id %q is not registered with this provider. Nobody was signed out.", clientID)}
	}

	now := s.now()
	var ended []*session
	s.st.mu.Lock()
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess := s.st.sessionLocked(c.Value, now); sess != nil {
			ended = append(ended, s.st.endSessionLocked(sess))
		}
	}
	if hint.SID != "" {
		if sess := s.st.sessionBySIDLocked(hint.SID, now); sess != nil {
			ended = append(ended, s.st.endSessionLocked(sess))
		}
	}
	s.st.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: s.cookiePath(), MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	for _, sess := range ended {
		s.log.Info("devidp: provider session ended by RP-initiated logout", "sid", sess.sid, "sub", sess.subject, "client_id", clientID)
		s.backchannelLogout(context.WithoutCancel(r.Context()), sess)
	}

	plr := q.Get("post_logout_redirect_uri")
	if plr != "" && known && slices.Contains(client.PostLogoutRedirectURIs, plr) {
		u, _ := url.Parse(plr) // validated by New
		if state := q.Get("state"); state != "" {
			v := u.Query()
			v.Set("state", state)
			u.RawQuery = v.Encode()
		}
		status := http.StatusFound
		if r.Method == http.MethodPost {
			status = http.StatusSeeOther
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, u.String(), status)
		return nil
	}
	page := signedOutPage{Ended: len(ended)}
	switch {
	case plr != "" && !known:
		page.Problem = "Not redirecting to post_logout_redirect_uri: the request names no client (send client_id or id_token_hint)."
	case plr != "":
		page.Problem = fmt.Sprintf("Not redirecting to post_logout_redirect_uri %q: it is not registered for client %q.", plr, clientID)
	}
	if page.Problem != "" {
		s.log.Info("devidp: end_session without a valid post_logout_redirect_uri", "client_id", clientID, "post_logout_redirect_uri", plr)
	}
	s.render(w, http.StatusOK, "signedout", "Signed out", page)
	return nil
}

// sessionsPage lists the live provider sessions.
func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request) error {
	s.render(w, http.StatusOK, "sessions", "Sessions", s.sessionList(r, nil))
	return nil
}

// sessionsLogout ends one provider session from the sessions page and sends
// the back-channel logout tokens, then shows what each client answered.
func (s *Server) sessionsLogout(w http.ResponseWriter, r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "Bad request", "The form could not be parsed."}
	}
	sid := r.PostForm.Get("sid")
	now := s.now()
	s.st.mu.Lock()
	var ended *session
	if sess := s.st.sessionBySIDLocked(sid, now); sess != nil {
		ended = s.st.endSessionLocked(sess)
	}
	s.st.mu.Unlock()
	if ended == nil {
		return &pageError{http.StatusNotFound, "No such session", "That provider session has already ended."}
	}
	s.log.Info("devidp: provider session ended from the sessions page", "sid", ended.sid, "sub", ended.subject)
	results := s.backchannelLogout(context.WithoutCancel(r.Context()), ended)
	s.render(w, http.StatusOK, "sessions", "Sessions", s.sessionList(r, &logoutResult{
		SID: ended.sid, Subject: ended.subject, Deliveries: results,
	}))
	return nil
}

func (s *Server) sessionList(r *http.Request, result *logoutResult) sessionsPage {
	var cookie string
	if c, err := r.Cookie(sessionCookie); err == nil {
		cookie = c.Value
	}
	now := s.now()
	page := sessionsPage{Result: result}
	s.st.mu.Lock()
	for _, sess := range s.st.sessions {
		if !now.Before(sess.expires) {
			continue
		}
		page.Sessions = append(page.Sessions, sessionRow{
			SID: sess.sid, Subject: sess.subject, AuthTime: sess.authTime.UTC().Format(time.RFC3339),
			Expires: sess.expires.UTC().Format(time.RFC3339), Clients: strings.Join(sess.clients, ", "),
			ShortLived: sess.shortLived, Current: sess.cookie == cookie, authTime: sess.authTime,
		})
	}
	s.st.mu.Unlock()
	slices.SortFunc(page.Sessions, func(a, b sessionRow) int { return b.authTime.Compare(a.authTime) })
	return page
}

// delivery is the outcome of one back-channel logout request.
type delivery struct {
	ClientID, URI string
	Status        int    // HTTP status the client answered; 0 when it did not answer
	Err           string // why it did not answer
}

// backchannelLogout sends a logout token (Back-Channel Logout 1.0 §2.5) to
// every client that took part in sess and has a back-channel logout URI, in
// parallel, and waits for the answers.
func (s *Server) backchannelLogout(ctx context.Context, sess *session) []delivery {
	var targets []Client
	for _, id := range sess.clients {
		if c, ok := s.clients[id]; ok && c.BackchannelLogoutURI != "" {
			targets = append(targets, c)
		}
	}
	results := make([]delivery, len(targets))
	var wg sync.WaitGroup
	for i, c := range targets {
		wg.Go(func() { results[i] = s.deliverLogout(ctx, c, sess) })
	}
	wg.Wait()
	return results
}

func (s *Server) deliverLogout(ctx context.Context, c Client, sess *session) delivery {
	d := delivery{ClientID: c.ID, URI: c.BackchannelLogoutURI}
	now := s.now()
	tok, err := s.sign(typLogoutToken, map[string]any{
		"iss": s.cfg.Issuer, "aud": c.ID, "iat": now.Unix(), "exp": now.Add(logoutTokenTTL).Unix(),
		"jti": randomToken(), "sid": sess.sid, "sub": sess.subject,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	})
	if err != nil {
		d.Err = err.Error()
		s.log.Error("devidp: back-channel logout not sent", "client_id", c.ID, "err", err)
		return d
	}
	ctx, cancel := context.WithTimeout(ctx, backchannelWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BackchannelLogoutURI,
		strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	if err != nil {
		d.Err = err.Error()
		s.log.Error("devidp: back-channel logout not sent", "client_id", c.ID, "err", err)
		return d
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.backchannel.Do(req)
	if err != nil {
		d.Err = err.Error()
		s.log.Warn("devidp: back-channel logout failed", "client_id", c.ID, "uri", c.BackchannelLogoutURI, "sid", sess.sid, "err", err)
		return d
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	d.Status = resp.StatusCode
	level := slog.LevelInfo
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "devidp: back-channel logout delivered", "client_id", c.ID,
		"uri", c.BackchannelLogoutURI, "sid", sess.sid, "status", resp.StatusCode)
	return d
}
