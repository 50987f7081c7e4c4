package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-bff/gatehouse/internal/testutil"
)

// chaosSession is one login of one user.
type chaosSession struct {
	user      string
	cookie    string
	started   time.Time
	endingAt  time.Time // when the end was asked for (under mu: the WebSocket's reader reads it)
	endedAt   time.Time // ended on purpose (zero: should still be valid at the end)
	endHow    string    // logout, backchannel, admin
	ambiguous string    // an end that may or may not have happened (its request failed)
	endVia    int       // the replica an admin revocation was sent to (-1: none, or another kind of end)

	mu         sync.Mutex
	ws         net.Conn
	wsReplica  int       // the replica the last WebSocket went through
	wsClosedAt time.Time // the last WebSocket's close, seen by its reader
}

// recorder keeps every outcome and a dump of every answer (for the token leak check).
type recorder struct {
	mu       sync.Mutex
	outcomes []outcome
	dump     *bufio.Writer
	dumpFile *os.File
	sessions []*chaosSession
	counts   map[string]int // actions done: logins, logouts, reloads, …
	wsDrops  []wsDrop       // WebSockets closed while their session was live
	loginErr map[string]int // failures of a login outside the gateway (the provider's pages)
}

func (r *recorder) add(o outcome, head http.Header, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = append(r.outcomes, o)
	if r.dump != nil {
		for k, v := range head {
			fmt.Fprintf(r.dump, "%s: %s\n", k, strings.Join(v, ","))
		}
		r.dump.Write(body)
		r.dump.WriteByte('\n')
	}
}

func (r *recorder) count(what string) {
	r.mu.Lock()
	r.counts[what]++
	r.mu.Unlock()
}

type wsDrop struct {
	at, opened time.Time
	replica    int
}

// chaosUser is one simulated user: a browser with a cookie jar.
type chaosUser struct {
	id   string
	run  *chaosRun
	c    *http.Client // follows the provider's redirects, stops at the gateways'
	gw   *http.Client // the gateways: never follows a redirect
	jar  http.CookieJar
	sess *chaosSession
	ends chan string // the scheduler asks for a logout, a back-channel logout or an admin revocation
}

var (
	loginActionRe = regexp.MustCompile(`<form method="post" action="([^"]+)" id="login-form"`)
	formActionRe  = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	xsrfRe        = regexp.MustCompile(`name="xsrf" value="([^"]+)"`)
)

func newChaosUser(run *chaosRun, i int) *chaosUser {
	jar := testutil.NewLoopbackJar()
	lbHost := strings.TrimPrefix(run.e.lb.url, "http://")
	c := &http.Client{Jar: jar, Transport: run.transport, Timeout: 15 * time.Second,
		// Follow the provider's redirects as a browser would; stop at every one back to
		// the gateways, so that each gateway answer is recorded.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == lbHost || len(via) > 15 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	gw := &http.Client{Jar: jar, Transport: run.transport, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &chaosUser{id: userID(i), run: run, c: c, gw: gw, jar: jar, ends: make(chan string, 1)}
}

// do sends one request to the gateways and records its outcome.
func (u *chaosUser) do(op, method, target string, nav bool, body io.Reader, hdr ...string) (outcome, []byte, *http.Response) {
	if strings.HasPrefix(target, "/") {
		target = u.run.e.lb.url + target
	}
	req, _ := http.NewRequest(method, target, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if nav {
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
	} else if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	o := outcome{At: time.Now(), Op: op, Nav: nav, Replica: -1}
	if s := u.sess; s != nil && !s.endedAt.IsZero() {
		o.Ended = true
	}
	resp, err := u.gw.Do(req)
	o.Dur = time.Since(o.At)
	if err != nil {
		o.Err = shortErr(err)
		u.run.rec.add(o, nil, nil)
		return o, nil, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o.Status = resp.StatusCode
	o.JSON = strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	o.RetryAfter = resp.Header.Get("Retry-After") != ""
	o.Balancer = resp.Header.Get("X-Chaos-Balancer") != ""
	if r, err := strconv.Atoi(resp.Header.Get("X-Chaos-Replica")); err == nil {
		o.Replica = r
	}
	if o.JSON && o.Status >= 300 {
		var e struct{ Error, Reason string }
		json.Unmarshal(data, &e)
		o.Code, o.Reason = e.Error, e.Reason
	}
	u.run.rec.add(o, resp.Header, data)
	return o, data, resp
}

func (u *chaosUser) api(op string) outcome {
	o, _, _ := u.do(op, "GET", "/api/orders", false, nil, "X-CSRF", "1")
	return o
}

// login goes through /bff/login, the provider's login form and /bff/callback.
func (u *chaosUser) login() bool {
	u.jar = testutil.NewLoopbackJar()
	u.c.Jar = u.jar
	u.gw.Jar = u.jar
	u.sess = nil
	o, _, resp := u.do("login", "GET", "/bff/login?returnUrl=/", true, nil)
	if resp == nil || o.Status != http.StatusFound && o.Status != http.StatusSeeOther {
		return false
	}
	fail := func(what string) bool {
		u.run.rec.mu.Lock()
		u.run.rec.loginErr[what]++
		u.run.rec.mu.Unlock()
		return false
	}
	// The provider: its login page, then the form.
	page, err := u.c.Get(resp.Header.Get("Location"))
	if err != nil {
		return fail("provider login page: " + shortErr(err))
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := loginActionRe.FindSubmatch(body)
	if m == nil {
		return fail(fmt.Sprintf("provider login page: status %d, no form", page.StatusCode))
	}
	action, _ := page.Request.URL.Parse(html.UnescapeString(string(m[1])))
	post, err := u.c.PostForm(action.String(), url.Values{"login": {u.id}, "password": {chaosPassword}})
	if err != nil {
		return fail("provider login form: " + shortErr(err))
	}
	post.Body.Close()
	callback := post.Header.Get("Location")
	if !strings.HasPrefix(callback, u.run.e.lb.url+"/bff/callback") {
		return fail(fmt.Sprintf("provider login form: status %d", post.StatusCode))
	}
	o, _, cb := u.do("callback", "GET", callback, true, nil)
	if cb == nil || o.Status >= 400 {
		return false // a 200 page that navigates on (for SameSite=Strict) or a redirect
	}
	for _, ck := range cb.Cookies() {
		if ck.Name == "__Host-gatehouse" && ck.Value != "" {
			u.sess = &chaosSession{user: u.id, cookie: ck.Value, started: time.Now(), endVia: -1}
			u.run.rec.mu.Lock()
			u.run.rec.sessions = append(u.run.rec.sessions, u.sess)
			u.run.rec.counts["logins"]++
			u.run.rec.mu.Unlock()
			return true
		}
	}
	return fail("callback set no session cookie")
}

// openWS opens the session's WebSocket (through the balancer) and watches it.
func (u *chaosUser) openWS() {
	s := u.sess
	o := outcome{At: time.Now(), Op: "ws", Replica: -1}
	c, status, replica, err := openWebSocket(u.run.e.lb.url, s.cookie)
	o.Replica = replica
	o.Dur = time.Since(o.At)
	o.Status = status
	if status == 101 {
		o.Status = 200 // counted as a success
	}
	if err != nil && status == 0 {
		o.Err = shortErr(err)
	}
	if err != nil && status == 101 {
		// The handshake passed, the echo through the tunnel did not.
		o.Op, o.Status, o.Err = "ws-echo", 0, shortErr(err)
	}
	if o.Status >= 300 {
		o.JSON = true // the handshake's error body is not read; its status is what counts
		o.Code = map[int]string{502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}[o.Status]
	}
	u.run.rec.add(o, nil, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.ws, s.wsReplica = c, replica
	s.mu.Unlock()
	go func() {
		io.Copy(io.Discard, c)
		now := time.Now()
		s.mu.Lock()
		if s.ws == c {
			s.ws = nil
			s.wsClosedAt = now
		}
		s.mu.Unlock()
		s.mu.Lock()
		ending := !s.endingAt.IsZero()
		s.mu.Unlock()
		if !ending && !u.run.stopping() {
			u.run.rec.mu.Lock()
			u.run.rec.wsDrops = append(u.run.rec.wsDrops, wsDrop{at: now, opened: o.At, replica: replica})
			u.run.rec.mu.Unlock()
		}
	}()
}

func (s *chaosSession) wsOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ws != nil
}

// loop is the user's life until the run stops: log in, hold a WebSocket, call the API
// about once a second with a burst when the access token expires, poll /bff/user, and
// end the session when the scheduler says so (then log in again).
func (u *chaosUser) loop(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second + time.Duration(mathrand.IntN(200))*time.Millisecond)
	defer tick.Stop()
	n := 0
	lastBurst := 0
	for {
		select {
		case <-stop:
			return
		case how := <-u.ends:
			if u.sess != nil {
				u.end(how)
				u.sess = nil
				time.Sleep(time.Second)
			}
			continue
		case <-tick.C:
		}
		n++
		if u.sess == nil {
			if !u.login() {
				time.Sleep(2 * time.Second)
			}
			continue
		}
		if !u.sess.wsOpen() {
			u.openWS()
		}
		u.api("api")
		if n%5 == 0 {
			u.do("user", "GET", "/bff/user?slide=false", false, nil)
		}
		// A burst of concurrent calls when the access token expires.
		age := int(time.Since(u.sess.started).Seconds())
		if period := age / chaosTokenTTL; period > lastBurst && age%chaosTokenTTL <= 1 {
			lastBurst = period
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() { defer wg.Done(); u.api("burst") }()
			}
			wg.Wait()
		} else if age < chaosTokenTTL {
			lastBurst = 0
		}
	}
}

// end ends the session on purpose, as the scheduler asked.
func (u *chaosUser) end(how string) {
	s := u.sess
	ok := false
	s.mu.Lock()
	s.endingAt = time.Now()
	s.mu.Unlock()
	switch how {
	case "logout":
		o, body, _ := u.do("logout", "POST", "/bff/logout", false, nil, "X-CSRF", "1")
		ok = o.Status == http.StatusOK
		if ok {
			// Then the provider's end-session page, as the SPA would navigate there: it
			// sends back-channel logouts for what is left.
			var r struct {
				RedirectURL string `json:"redirect_url"`
			}
			json.Unmarshal(body, &r)
			u.providerLogout(r.RedirectURL)
		}
	case "backchannel":
		// The provider ends the user's sessions and sends a back-channel logout.
		ctl := fmt.Sprintf("http://127.0.0.1:%d/__test/end-sessions?sub=%s", u.run.e.provPort, u.id)
		before := u.run.backchannelOK(u.id)
		resp, err := http.Post(ctl, "text/plain", nil)
		if err == nil {
			resp.Body.Close()
			ok = u.run.backchannelOK(u.id) > before
		}
	case "admin":
		r := u.run.e.replicas[mathrand.IntN(len(u.run.e.replicas))]
		s.endVia = r.i
		req, _ := http.NewRequest("DELETE", r.admin+"/admin/sessions?sub="+u.id, nil)
		req.Header.Set("Authorization", "Bearer "+chaosAdminToken)
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			ok = resp.StatusCode/100 == 2
		}
	}
	now := time.Now()
	u.run.rec.mu.Lock()
	defer u.run.rec.mu.Unlock()
	if ok {
		s.endedAt, s.endHow = now, how
		u.run.rec.counts["ended by "+how]++
	} else {
		s.ambiguous = how
		u.run.rec.counts["failed "+how]++
	}
}

func (u *chaosUser) providerLogout(endSession string) {
	if !strings.HasPrefix(endSession, u.run.e.issuer) {
		return
	}
	resp, err := u.c.Get(endSession)
	if err != nil {
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a, x := formActionRe.FindSubmatch(body), xsrfRe.FindSubmatch(body)
	if a == nil || x == nil {
		return
	}
	action, _ := resp.Request.URL.Parse(html.UnescapeString(string(a[1])))
	if post, err := u.c.PostForm(action.String(), url.Values{"xsrf": {string(x[1])}, "logout": {"yes"}}); err == nil {
		post.Body.Close()
		u.run.rec.count("provider end-session")
	}
}
