package devidp

import (
	"slices"
	"sync"
	"time"
)

// store is all provider state. Every field of it and of the records it points
// to is guarded by mu; callers copy records out before unlocking.
type store struct {
	mu        sync.Mutex
	sessions  map[string]*session      // by cookie value
	logins    map[string]*loginRequest // login forms being shown, by id
	codes     map[string]*authCode     // by code
	grants    map[string]*grant        // by id
	refresh   map[string]*refreshToken // by token
	access    map[string]*accessToken  // by jti
	lastSweep time.Time
}

func newStore() *store {
	return &store{
		sessions: map[string]*session{},
		logins:   map[string]*loginRequest{},
		codes:    map[string]*authCode{},
		grants:   map[string]*grant{},
		refresh:  map[string]*refreshToken{},
		access:   map[string]*accessToken{},
	}
}

// session is a provider (single sign-on) session, named by the browser's
// devidp_session cookie. Its sid is the public name put in ID tokens.
type session struct {
	cookie     string
	sid        string
	subject    string
	authTime   time.Time
	shortLived bool
	expires    time.Time
	clients    []string // clients that took part, for back-channel logout
}

func (s *session) clone() *session {
	c := *s
	c.clients = slices.Clone(s.clients)
	return &c
}

// authRequest is a validated authorization request.
type authRequest struct {
	clientID, redirectURI, state, nonce, codeChallenge string
	scopes, resources                                  []string
	maxAge                                             time.Duration // < 0: none given
}

// loginRequest is an authorization request waiting for the login form.
type loginRequest struct {
	req     authRequest
	expires time.Time
}

type authCode struct {
	req        authRequest
	sid        string
	subject    string
	authTime   time.Time
	shortLived bool
	expires    time.Time
	redeemed   bool
	grantID    string // set once redeemed
}

// grant is everything issued from one authorization code (and its refreshes)
// or one client_credentials request. Revoking it revokes all its tokens.
type grant struct {
	id         string
	clientID   string
	subject    string
	user       bool // false for client_credentials: the subject is the client
	sid        string
	scopes     []string
	resources  []string
	authTime   time.Time
	shortLived bool
	revoked    bool
	expires    time.Time // latest expiry of anything issued from it
}

type refreshToken struct {
	grantID string
	expires time.Time
	rotated bool // used once already; another use means it leaked
}

type accessToken struct {
	grantID string
	expires time.Time
	revoked bool
}

// sessionLocked returns the live session of a cookie value, or nil.
func (st *store) sessionLocked(cookie string, now time.Time) *session {
	sess := st.sessions[cookie]
	if sess == nil || !now.Before(sess.expires) {
		return nil
	}
	return sess
}

// grantLocked returns a grant that may still be used, or nil.
func (st *store) grantLocked(id string) *grant {
	g := st.grants[id]
	if g == nil || g.revoked {
		return nil
	}
	return g
}

// revokeGrantLocked revokes a grant; its tokens fail from now on because every
// lookup goes through the grant.
func (st *store) revokeGrantLocked(id string) bool {
	g := st.grants[id]
	if g == nil || g.revoked {
		return false
	}
	g.revoked = true
	return true
}

// endSessionLocked removes a session and revokes the grants made in it, and
// returns the removed session.
func (st *store) endSessionLocked(sess *session) *session {
	delete(st.sessions, sess.cookie)
	for id, g := range st.grants {
		if g.sid == sess.sid {
			st.revokeGrantLocked(id)
		}
	}
	return sess.clone()
}

// sessionBySIDLocked finds a live session by its public sid.
func (st *store) sessionBySIDLocked(sid string, now time.Time) *session {
	for _, sess := range st.sessions {
		if sess.sid == sid && now.Before(sess.expires) {
			return sess
		}
	}
	return nil
}

// issueLocked records an access token (and a refresh token when refreshTTL > 0)
// for grant g and returns the access token's jti and the refresh token.
func (st *store) issueLocked(g *grant, accessExp time.Time, refreshExp time.Time, withRefresh bool) (jti, refresh string) {
	jti = randomToken()
	st.access[jti] = &accessToken{grantID: g.id, expires: accessExp}
	g.expires = later(g.expires, accessExp)
	if withRefresh {
		refresh = randomToken()
		st.refresh[refresh] = &refreshToken{grantID: g.id, expires: refreshExp}
		g.expires = later(g.expires, refreshExp)
	}
	return jti, refresh
}

// sweep drops expired state, at most once per sweepInterval. Revoked grants
// and rotated refresh tokens stay until they expire so reuse is still caught.
func (st *store) sweep(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if now.Sub(st.lastSweep) < sweepInterval && !now.Before(st.lastSweep) {
		return
	}
	st.lastSweep = now
	for k, v := range st.sessions {
		if !now.Before(v.expires) {
			delete(st.sessions, k)
		}
	}
	for k, v := range st.logins {
		if !now.Before(v.expires) {
			delete(st.logins, k)
		}
	}
	for k, v := range st.codes {
		if !now.Before(v.expires.Add(codeReplayWindow)) {
			delete(st.codes, k)
		}
	}
	for k, v := range st.refresh {
		if !now.Before(v.expires) {
			delete(st.refresh, k)
		}
	}
	for k, v := range st.access {
		if !now.Before(v.expires) {
			delete(st.access, k)
		}
	}
	for k, v := range st.grants {
		if !now.Before(v.expires) {
			delete(st.grants, k)
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
