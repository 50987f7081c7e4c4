package e2e

// The browser side, proven in a real browser: headless Chromium (Debian's /usr/bin/chromium,
// driven by npm playwright-core through the Node scripts in e2e/browser/) against gatehouse
// serving the demo SPA (examples/demo/spa) and the demo API, once with npm oidc-provider and
// once with `gatehouse devidp`. See e2e/browser/README.md.
//
// Each provider gets one stack (browser_stack_test.go); each scenario is a subtest that runs
// `node e2e/browser/<scenario>.mjs '<config JSON>'` and asserts on the JSON it prints:
//
//	signin        login through the provider's page, no login loop, reload, APIs, live feed
//	refresh       the access token (8 s) expires: no glitch, new fingerprint
//	backchannel   logout at the provider → back-channel logout → the SPA shows it
//	otherdevices  "Sign out all other devices" across two browser profiles
//	csrf          attacker pages on a same-site and a cross-site origin
//	notokens      nothing a page script can read holds a token; then the leak check over
//	              the traffic of every scenario (browser_leak_test.go)
//	relogin       on a third stack, devidp addressed as localhost and gatehouse as
//	              127.0.0.1 (different sites): a second login ends the first session
//
// Screenshots land in e2e/artifacts/ (gitignored): <provider>-signed-in.png,
// <provider>-signed-out.png, <provider>-session-ended.png, and
// <provider>-<scenario>-failure-<n>.png when a scenario fails.
//
// The tests fail (never skip) when node, e2e/node_modules or Chromium is missing.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBrowser(t *testing.T) {
	root := checkBrowserSetup(t)
	demoapi := buildDemoAPI(t, root, t.TempDir())
	for _, provider := range []string{"oidc-provider", "devidp"} {
		t.Run(provider, func(t *testing.T) {
			start := time.Now()
			s := startBrowserStack(t, provider, root, demoapi, false)
			t.Logf("%s: stack started in %.1f s", provider, time.Since(start).Seconds())
			// Each scenario signs in as its own user; the leak check runs last, over the
			// traffic of every scenario.
			t.Run("signin", func(t *testing.T) { browserSignIn(t, s) })
			t.Run("refresh", func(t *testing.T) { browserRefresh(t, s) })
			t.Run("backchannel", func(t *testing.T) { browserBackchannel(t, s) })
			t.Run("otherdevices", func(t *testing.T) { browserOtherDevices(t, s) })
			t.Run("csrf", func(t *testing.T) { browserCSRF(t, s) })
			t.Run("notokens", func(t *testing.T) { browserNoTokens(t, s) })
		})
	}
	// The provider on another site than gatehouse: SameSite=Strict then matters.
	t.Run("devidp-cross-site", func(t *testing.T) {
		s := startBrowserStack(t, "devidp", root, demoapi, true)
		t.Run("relogin", func(t *testing.T) { browserRelogin(t, s) })
	})
}

type reloginResult struct {
	LoginCarriedCookie    bool           `json:"loginCarriedCookie"`
	CallbackCarriedCookie bool           `json:"callbackCarriedCookie"`
	CallbackSecFetchSite  string         `json:"callbackSecFetchSite"`
	OldCookieStatus       int            `json:"oldCookieStatus"`
	OldCookieBody         map[string]any `json:"oldCookieBody"`
	NewCookieStatus       int            `json:"newCookieStatus"`
	PageErrors            []string       `json:"pageErrors"`
}

// browserRelogin: scenario 7 (issue 12, item 9). The callback arrives without the Strict
// cookie, yet the session the browser had before the new login ends: a kept copy of the old
// cookie gets 401.
func browserRelogin(t *testing.T, s *browserStack) {
	var r reloginResult
	s.runScenario(t, "relogin", &r, "bob")
	if !r.LoginCarriedCookie || r.CallbackCarriedCookie || r.CallbackSecFetchSite != "cross-site" {
		t.Errorf("the scenario does not show what it is about: /bff/login carried the session cookie %v (want true), "+
			"/bff/callback carried it %v (want false), its Sec-Fetch-Site %q (want cross-site)",
			r.LoginCarriedCookie, r.CallbackCarriedCookie, r.CallbackSecFetchSite)
	}
	if r.OldCookieStatus != 401 || r.OldCookieBody["reason"] != "session_revoked" {
		t.Errorf("the session from before the second login: /bff/user %d %v, want 401 session_revoked", r.OldCookieStatus, r.OldCookieBody)
	}
	if r.NewCookieStatus != 200 {
		t.Errorf("the new session: /bff/user %d", r.NewCookieStatus)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors: %q", r.PageErrors)
	}
}

type signInResult struct {
	FirstLoad struct {
		CallbackStatus       int    `json:"callbackStatus"`
		URL                  string `json:"url"`
		SameOrigin           bool   `json:"sameOrigin"`
		CarriedSessionCookie bool   `json:"carriedSessionCookie"`
		SecFetchSite         string `json:"secFetchSite"`
		FirstUserStatus      int    `json:"firstUserStatus"`
	} `json:"firstLoad"`
	LoginRequests            int `json:"loginRequests"`
	LoginRequestsAfterReload int `json:"loginRequestsAfterReload"`
	Shown                    struct {
		Name, Email, Sub, Whoami string
		Groups                   []string
	} `json:"shown"`
	Reload struct {
		SignedIn   bool   `json:"signedIn"`
		UserStatus int    `json:"userStatus"`
		Name       string `json:"name"`
	} `json:"reload"`
	API struct {
		Status, Sub, Fingerprint, Kind string
	} `json:"api"`
	Client struct {
		Status, ClientID, Scope, Kind string
	} `json:"client"`
	Admin struct {
		Status, Message string
	} `json:"admin"`
	Feed struct {
		Status       string   `json:"status"`
		Ticks        int      `json:"ticks"`
		LastTick     int      `json:"lastTick"`
		Fingerprint  string   `json:"fingerprint"`
		StreamStarts []string `json:"streamStarts"`
	} `json:"feed"`
	MaxConcurrentStreams int        `json:"maxConcurrentStreams"`
	FeedLog              []feedLine `json:"feedLog"`
	Screenshot           string     `json:"screenshot"`
}

// browserSignIn: scenario 1.
func browserSignIn(t *testing.T, s *browserStack) {
	var r signInResult
	s.runScenario(t, "signin", &r, "alice")
	fl := r.FirstLoad
	if fl.CallbackStatus != 200 || !fl.SameOrigin || !fl.CarriedSessionCookie || fl.FirstUserStatus != 200 {
		t.Errorf("the first page load after /bff/callback was not authenticated (login loop): %+v", fl)
	}
	if fl.SecFetchSite != "same-origin" {
		t.Errorf("the callback page's navigation was %q, want same-origin (only then is a SameSite=Strict cookie sent)", fl.SecFetchSite)
	}
	if r.LoginRequests != 1 || r.LoginRequestsAfterReload != 1 {
		t.Errorf("/bff/login was requested %d times to sign in and %d times after a reload; want 1 and 1", r.LoginRequests, r.LoginRequestsAfterReload)
	}
	want := browserUserNamed(t, "alice")
	if r.Shown.Name != want.Display || r.Shown.Email != want.Email || r.Shown.Sub != "alice" ||
		strings.Join(r.Shown.Groups, ",") != strings.Join(want.Groups, ",") || r.Shown.Whoami != want.Display {
		t.Errorf("the SPA shows %+v, want alice's name, email and groups", r.Shown)
	}
	if !r.Reload.SignedIn || r.Reload.UserStatus != 200 || r.Reload.Name != want.Display {
		t.Errorf("after a reload: %+v", r.Reload)
	}
	if r.API.Status != "200" || r.API.Sub != "alice" || len(r.API.Fingerprint) != 8 {
		t.Errorf("Call the API: %+v", r.API)
	}
	if r.Client.Status != "200" || r.Client.ClientID == "" || !strings.Contains(r.Client.Scope, "demo.status") {
		t.Errorf("Call the client-credentials API: %+v", r.Client)
	}
	if r.Admin.Status != "200" || !strings.Contains(r.Admin.Message, "Welcome") {
		t.Errorf("Admin API: %+v", r.Admin)
	}
	if r.Feed.Status != "live" || r.Feed.Ticks < 3 || len(r.Feed.Fingerprint) != 8 {
		t.Errorf("live feed: %+v", r.Feed)
	}
	if r.MaxConcurrentStreams > 1 {
		t.Errorf("the SPA had %d /api/events streams open at once (stream openings shown: %q)", r.MaxConcurrentStreams, r.Feed.StreamStarts)
	}
	checkFeedOpenings(t, r.FeedLog)
	t.Logf("screenshot: %s", r.Screenshot)
}

type refreshResult struct {
	Kind  string `json:"kind"`
	First struct {
		Status, Fingerprint string
	} `json:"first"`
	Second struct {
		Status, Fingerprint string
		AfterSeconds        float64
	} `json:"second"`
	FeedBefore struct {
		Fingerprint string
		LastTick    int
	} `json:"feedBefore"`
	FeedAfter struct {
		Status       string
		Fingerprint  string
		LastTick     int
		Tokens       []string
		StreamStarts []string
	} `json:"feedAfter"`
	TicksAfterExpiry     int              `json:"ticksAfterExpiry"`
	FeedLog              []feedLine       `json:"feedLog"`
	FailedResponses      []string         `json:"failedResponses"`
	AbortedRequests      []string         `json:"abortedRequests"`
	VisibleErrors        []string         `json:"visibleErrors"`
	PageErrors           []string         `json:"pageErrors"`
	MaxConcurrentStreams int              `json:"maxConcurrentStreams"`
	StatusLog            []map[string]any `json:"statusLog"`
}

// browserRefresh: scenario 3.
func browserRefresh(t *testing.T, s *browserStack) {
	var r refreshResult
	s.runScenario(t, "refresh", &r, "carol")
	if r.First.Status != "200" || r.Second.Status != "200" {
		t.Errorf("API calls before and %.1f s after (past the %v token lifetime): %s, %s", r.Second.AfterSeconds, browserAccessTTL, r.First.Status, r.Second.Status)
	}
	if r.First.Fingerprint == "" || r.First.Fingerprint == r.Second.Fingerprint {
		t.Errorf("the access token was not refreshed: fingerprint %q before, %q after the expiry", r.First.Fingerprint, r.Second.Fingerprint)
	}
	switch r.Kind {
	case "jwt": // devidp: the stream ends with its token; the page reconnects with a new one
		if r.FeedAfter.Fingerprint == r.FeedBefore.Fingerprint || len(r.FeedAfter.Tokens) < 2 {
			t.Errorf("the live feed shows no new token after the expiry: %q → %q, tokens seen %q", r.FeedBefore.Fingerprint, r.FeedAfter.Fingerprint, r.FeedAfter.Tokens)
		}
	case "opaque": // oidc-provider: the API cannot know the expiry, the stream carries on
		if r.FeedAfter.Fingerprint != r.FeedBefore.Fingerprint {
			t.Logf("the live feed reconnected with another token: %s → %s", r.FeedBefore.Fingerprint, r.FeedAfter.Fingerprint)
		}
	default:
		t.Errorf("the API reported a token of kind %q", r.Kind)
	}
	if r.FeedAfter.Status != "live" || r.TicksAfterExpiry < 3 {
		t.Errorf("the live feed is %q with %d events after the expiry", r.FeedAfter.Status, r.TicksAfterExpiry)
	}
	checkFeedOpenings(t, r.FeedLog)
	if len(r.FailedResponses) > 0 || len(r.VisibleErrors) > 0 || len(r.PageErrors) > 0 {
		t.Errorf("glitches across the token expiry:\n  failed responses: %q\n  shown to the user: %q\n  script errors: %q\n  everything the page showed: %v",
			r.FailedResponses, r.VisibleErrors, r.PageErrors, r.StatusLog)
	}
	for _, a := range r.AbortedRequests {
		if !strings.HasPrefix(a, "GET /api/events:") { // the page cancels a stream it has finished reading
			t.Errorf("a request of the page failed: %s", a)
		}
	}
	if r.MaxConcurrentStreams > 1 {
		t.Errorf("the SPA had %d /api/events streams open at once (stream openings shown: %q)", r.MaxConcurrentStreams, r.FeedAfter.StreamStarts)
	}
	t.Logf("token %s → %s (%s); feed %s → %s, streams %q, tokens seen %q", r.First.Fingerprint, r.Second.Fingerprint, r.Kind,
		r.FeedBefore.Fingerprint, r.FeedAfter.Fingerprint, r.FeedAfter.StreamStarts, r.FeedAfter.Tokens)
}

// feedLine is a line the demo's live feed showed (e2e/browser/lib.mjs records them all).
type feedLine struct {
	T    float64 `json:"t"` // seconds
	Open bool    `json:"open"`
	Text string  `json:"text"`
}

// checkFeedOpenings fails when the feed opened two streams less than a second apart: the
// page waits a second before it reconnects, so that would be two reconnect loops.
func checkFeedOpenings(t *testing.T, lines []feedLine) {
	t.Helper()
	last := -10.0
	for _, l := range lines {
		if !l.Open {
			continue
		}
		if l.T-last < 1 {
			t.Errorf("the live feed opened two streams %.2f s apart (%q): %+v", l.T-last, l.Text, lines)
		}
		last = l.T
	}
}

type backchannelResult struct {
	Before struct {
		Status string
	} `json:"before"`
	ProviderSays   string         `json:"providerSays"`
	APIStatus      int            `json:"apiStatus"`
	APIBody        map[string]any `json:"apiBody"`
	Message        string         `json:"message"`
	SignedInHidden bool           `json:"signedInHidden"`
	Screenshot     string         `json:"screenshot"`
	PageErrors     []string       `json:"pageErrors"`
}

// browserBackchannel: scenario 4.
func browserBackchannel(t *testing.T, s *browserStack) {
	var r backchannelResult
	s.runScenario(t, "backchannel", &r, "dave")
	if r.Before.Status != "200" {
		t.Errorf("the API answered %s before the provider logout", r.Before.Status)
	}
	if r.APIStatus != 401 || r.APIBody["error"] != "unauthenticated" || r.APIBody["reason"] != "session_revoked" {
		t.Errorf("the API call after the provider logout: %d %v, want 401 unauthenticated (session_revoked)\nthe provider said: %s", r.APIStatus, r.APIBody, r.ProviderSays)
	}
	if !strings.HasPrefix(r.Message, "Your session ended: session_revoked") || !r.SignedInHidden {
		t.Errorf("the SPA shows %q (signed-in part hidden: %v), want \"Your session ended: session_revoked …\"", r.Message, r.SignedInHidden)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors: %q", r.PageErrors)
	}
	t.Logf("screenshot: %s", r.Screenshot)
}

type otherDevicesResult struct {
	Listed        int `json:"listed"`
	CurrentMarked int `json:"currentMarked"`
	RowsAfter     int `json:"rowsAfter"`
	DeviceB       struct {
		APIStatus int    `json:"apiStatus"`
		Message   string `json:"message"`
	} `json:"deviceB"`
	DeviceA struct {
		APIStatus     string `json:"apiStatus"`
		StillSignedIn bool   `json:"stillSignedIn"`
	} `json:"deviceA"`
	PageErrors []string `json:"pageErrors"`
}

// browserOtherDevices: scenario 5.
func browserOtherDevices(t *testing.T, s *browserStack) {
	var r otherDevicesResult
	s.runScenario(t, "otherdevices", &r, "erin")
	if r.Listed != 2 || r.CurrentMarked != 1 || r.RowsAfter != 1 {
		t.Errorf("device A's session list: %d sessions (%d marked \"this device\"), %d after signing out the others; want 2, 1, 1", r.Listed, r.CurrentMarked, r.RowsAfter)
	}
	if r.DeviceB.APIStatus != 401 || !strings.HasPrefix(r.DeviceB.Message, "Your session ended: session_revoked") {
		t.Errorf("device B after \"Sign out all other devices\": API %d, page shows %q", r.DeviceB.APIStatus, r.DeviceB.Message)
	}
	if r.DeviceA.APIStatus != "200" || !r.DeviceA.StillSignedIn {
		t.Errorf("device A after signing out the others: %+v", r.DeviceA)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors: %q", r.PageErrors)
	}
}

type csrfAttempt struct {
	Name     string `json:"name"`
	Readable bool   `json:"readable"`
	Outcome  string `json:"outcome"`
	Body     string `json:"body"`
}

type csrfSeen struct {
	Request              string `json:"request"`
	Status               int    `json:"status"` // 0: no response (blocked or failed)
	Failure              string `json:"failure"`
	HeadersKnown         bool   `json:"headersKnown"`
	CarriedSessionCookie bool   `json:"carriedSessionCookie"`
	SecFetchSite         string `json:"secFetchSite"`
	AllowOrigin          string `json:"allowOrigin"`
	SetCookie            string `json:"setCookie"`
	Location             string `json:"location"`
}

type csrfResult struct {
	Origins map[string]struct {
		Origin           string        `json:"origin"`
		Results          []csrfAttempt `json:"results"`
		SeenByTheBrowser []csrfSeen    `json:"seenByTheBrowser"`
	} `json:"origins"`
	APIRequestsDuringAttacks    []browserAPIRequest `json:"apiRequestsDuringAttacks"`
	SessionBefore, SessionAfter struct {
		Status   int
		SID, Sub string
	}
	SessionsAfter          int      `json:"sessionsAfter"`
	SessionCookieUnchanged bool     `json:"sessionCookieUnchanged"`
	GatehouseCookiesBefore []string `json:"gatehouseCookiesBefore"`
	GatehouseCookiesAfter  []string `json:"gatehouseCookiesAfter"`
	APIAfter               struct {
		Status   string
		SignedIn bool
	} `json:"apiAfter"`
	PageErrors []string `json:"pageErrors"`
}

// browserCSRF: scenario 6.
func browserCSRF(t *testing.T, s *browserStack) {
	var r csrfResult
	s.runScenario(t, "csrf", &r, "frank")
	for _, label := range []string{"same-site", "cross-site"} {
		o, ok := r.Origins[label]
		if !ok || len(o.Results) < 17 {
			t.Errorf("%s attacker: no results", label)
			continue
		}
		for _, a := range o.Results {
			if a.Readable {
				t.Errorf("%s attacker %s could read the answer to %q: %s %q", label, o.Origin, a.Name, a.Outcome, a.Body)
			}
			t.Logf("%s %s: %s", label, a.Name, a.Outcome)
		}
		if len(o.SeenByTheBrowser) < 10 {
			t.Errorf("%s attacker: the browser sent only %d requests to the gateway (the attacks prove little)", label, len(o.SeenByTheBrowser))
		}
		for _, seen := range o.SeenByTheBrowser {
			cookie := "unknown"
			if seen.HeadersKnown {
				cookie = fmt.Sprint(seen.CarriedSessionCookie)
			}
			answer := fmt.Sprint(seen.Status)
			if seen.Status == 0 {
				answer = "no response: " + seen.Failure
			}
			t.Logf("%s → gateway: %s → %s (session cookie sent: %s, Sec-Fetch-Site: %s)", label, seen.Request, answer, cookie, seen.SecFetchSite)
			method, path, _ := strings.Cut(seen.Request, " ")
			toLogin := (seen.Status == 302 || seen.Status == 303) && strings.HasPrefix(seen.Location, "/bff/login")
			switch {
			case seen.AllowOrigin != "":
				t.Errorf("%s: %s answered Access-Control-Allow-Origin: %s", label, seen.Request, seen.AllowOrigin)
			case strings.Contains(seen.SetCookie, "__Host-gatehouse="):
				t.Errorf("%s: the answer to %s sets or clears the session cookie: %s", label, seen.Request, seen.SetCookie)
			case label == "cross-site" && seen.HeadersKnown && seen.CarriedSessionCookie:
				t.Errorf("cross-site: %s carried the SameSite=Strict session cookie", seen.Request)
			case strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/client/"), method != "GET" && method != "OPTIONS":
				// Proxied routes and state-changing /bff/ calls are refused; a navigation without
				// the session cookie may be sent to login (docs/http-api.md).
				if seen.Status != 0 && seen.Status < 400 && !(toLogin && !seen.CarriedSessionCookie) {
					t.Errorf("%s: %s answered %d to an attacker's page", label, seen.Request, seen.Status)
				}
			case strings.HasPrefix(path, "/bff/logout") && seen.CarriedSessionCookie:
				if seen.Status != 400 {
					t.Errorf("%s: %s with the session cookie but without the session's sid answered %d, want 400", label, seen.Request, seen.Status)
				}
			}
			if seen.SetCookie != "" {
				t.Logf("%s: the answer to %s sets cookies: %s", label, seen.Request, seen.SetCookie)
			}
		}
	}
	if !r.SessionCookieUnchanged {
		t.Errorf("the victim's session cookie changed during the attacks (gatehouse cookies before: %q, after: %q)", r.GatehouseCookiesBefore, r.GatehouseCookiesAfter)
	}
	t.Logf("gatehouse cookies in the victim's browser before the attacks: %q, after: %q", r.GatehouseCookiesBefore, r.GatehouseCookiesAfter)
	if len(r.APIRequestsDuringAttacks) > 0 {
		t.Errorf("the demo API received requests during the attacks: %+v", r.APIRequestsDuringAttacks)
	}
	if r.SessionBefore.Status != 200 || r.SessionAfter.Status != 200 || r.SessionBefore.SID != r.SessionAfter.SID || r.SessionAfter.Sub != "frank" {
		t.Errorf("the victim's session changed: before %+v, after %+v", r.SessionBefore, r.SessionAfter)
	}
	if r.SessionsAfter != 1 || r.APIAfter.Status != "200" || !r.APIAfter.SignedIn {
		t.Errorf("after the attacks: %d sessions, API %+v", r.SessionsAfter, r.APIAfter)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors in the victim's SPA: %q", r.PageErrors)
	}
}
