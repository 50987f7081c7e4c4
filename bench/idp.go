package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/devidp"
	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// benchIDP is `gatehouse devidp` embedded in the runner, behind a recorder that counts
// token requests by grant type and keeps the tokens it issued: the runner needs the
// access token of each logged-in session (the upstream checks it on every request) and
// the number of refresh calls in the refresh storm.
type benchIDP struct {
	issuer string
	srv    *http.Server
	h      http.Handler

	mu     sync.Mutex
	grants map[string]int
	last   issued // tokens of the last successful token response
}

type issued struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

const (
	benchClientID     = "gatehouse-bench"
	benchClientSecret = "bench-secret-not-for-production"
	benchUser         = "alice"
)

// startIDP serves a development provider on 127.0.0.1 whose client accepts the given
// gateway origins as redirect targets.
// extraRedirects are further redirect URIs (the mod_auth_openidc peers').
func startIDP(gatewayOrigins []string, extraRedirects ...string) (*benchIDP, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	issuer := "http://" + ln.Addr().String()
	var redirects, logouts []string
	for _, o := range gatewayOrigins {
		redirects = append(redirects, o+"/bff/callback")
		logouts = append(logouts, o+"/bff/logout/callback")
	}
	redirects = append(redirects, extraRedirects...)
	d, err := devidp.New(devidp.Config{
		Issuer: issuer, Listen: ln.Addr().String(),
		Clients: []devidp.Client{{ID: benchClientID, Secret: benchClientSecret, RedirectURIs: redirects, PostLogoutRedirectURIs: logouts}},
		Users: map[string]devidp.User{benchUser: {Claims: map[string]any{
			"name": "Alice Liddell", "email": "alice@example.com", "groups": []any{"admin", "staff"},
		}}},
		// Long enough that no token expires during the throughput rounds: the upstream
		// expects one token per session. The refresh storm uses short-lived tokens.
		AccessTokenTTL: 6 * time.Hour,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	b := &benchIDP{issuer: issuer, h: d.Handler(), grants: map[string]int{}}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *benchIDP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/token") {
		b.h.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	cw := &captureWriter{ResponseWriter: w, status: http.StatusOK}
	b.h.ServeHTTP(cw, r)
	var t issued
	json.Unmarshal(cw.buf.Bytes(), &t)
	b.mu.Lock()
	b.grants[form.Get("grant_type")]++
	if cw.status == http.StatusOK && t.AccessToken != "" {
		b.last = t
	}
	b.mu.Unlock()
}

// grantCount is how many token requests of a grant type the provider has answered.
func (b *benchIDP) grantCount(grant string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.grants[grant]
}

func (b *benchIDP) lastIssued() issued {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *benchIDP) close() { b.srv.Close() }

type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) { c.status = code; c.ResponseWriter.WriteHeader(code) }
func (c *captureWriter) Write(p []byte) (int, error) {
	c.buf.Write(p)
	return c.ResponseWriter.Write(p)
}

// navigator is a browser for the login flows: a cookie jar, and nav, which makes one
// navigation (GET, or POST of form) without following redirects and returns the answer
// and its body.
func navigator() (http.CookieJar, func(method, target string, form url.Values) (*http.Response, []byte, error)) {
	jar := testutil.NewLoopbackJar()
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	nav := func(method, target string, form url.Values) (*http.Response, []byte, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, target, body)
		if err != nil {
			return nil, nil, err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, data, nil
	}
	return jar, nav
}

var requestIDRe = regexp.MustCompile(`name="request" value="([^"]+)"`)

// login signs in at a gateway through the development provider's login form, as a
// browser would, and returns the session cookie's value and the tokens the provider
// issued for it. shortLived asks for 10-second access tokens.
func login(b *benchIDP, gateway string, shortLived bool) (string, issued, error) {
	jar, nav := navigator()
	resp, _, err := nav("GET", gateway+"/bff/login", nil)
	if err != nil {
		return "", issued{}, err
	}
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(authURL, b.issuer) {
		return "", issued{}, fmt.Errorf("/bff/login: status %d, Location %q", resp.StatusCode, authURL)
	}
	resp, page, err := nav("GET", authURL, nil)
	if err != nil {
		return "", issued{}, err
	}
	m := requestIDRe.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		return "", issued{}, fmt.Errorf("provider login page: status %d", resp.StatusCode)
	}
	form := url.Values{"request": {string(m[1])}, "user": {benchUser}}
	if shortLived {
		form.Set("short_lived", "on")
	}
	resp, _, err = nav("POST", b.issuer+"/login", form)
	if err != nil {
		return "", issued{}, err
	}
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, gateway+"/bff/callback") {
		return "", issued{}, fmt.Errorf("provider login: status %d, Location %q", resp.StatusCode, callback)
	}
	resp, body, err := nav("GET", callback, nil)
	if err != nil {
		return "", issued{}, err
	}
	if resp.StatusCode >= 400 {
		return "", issued{}, fmt.Errorf("/bff/callback: status %d: %s", resp.StatusCode, body)
	}
	tokens := b.lastIssued()
	u, _ := url.Parse(gateway)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "__Host-gatehouse" && ck.Value != "" {
			return ck.Value, tokens, nil
		}
	}
	return "", issued{}, fmt.Errorf("/bff/callback set no session cookie")
}
