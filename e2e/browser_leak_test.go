package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// trafficRecord is one line of a scenario's traffic file (e2e/browser/lib.mjs): a response
// the browser received (kind "response"), an event stream's body (kind "sse"), a snapshot of
// a page's DOM (kind "dom"), or a count of responses that could not be read ("missing").
type trafficRecord struct {
	Scenario       string  `json:"scenario"`
	Kind           string  `json:"kind"`
	Profile        string  `json:"profile"`
	URL            string  `json:"url"`
	Method         string  `json:"method"`
	Status         int     `json:"status"`
	FromGateway    bool    `json:"fromGateway"`
	RequestHeaders string  `json:"requestHeaders"`
	Headers        string  `json:"headers"`
	Body           *string `json:"body"`
	BodyError      string  `json:"bodyError"`
	HeadersError   string  `json:"headersError"`
	Stream         bool    `json:"stream"`
	Ended          string  `json:"ended"`
	TapError       string  `json:"tapError"`
	Count          int     `json:"count"`
	Label          string  `json:"label"`
}

func (r trafficRecord) String() string {
	if r.Kind == "dom" {
		return fmt.Sprintf("[%s] DOM of %s (%s)", r.Scenario, r.URL, r.Label)
	}
	return fmt.Sprintf("[%s] %s %s %s → %d", r.Scenario, r.Kind, r.Method, r.URL, r.Status)
}

func readTraffic(t *testing.T, dir string) []trafficRecord {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.traffic.jsonl"))
	sort.Strings(files)
	var out []trafficRecord
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var r trafficRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, r)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return out
}

// jwtShape matches anything that looks like a JWT (or a JWS): a base64url JSON header, a
// payload and a signature. The browser must never see one, except an ID token as
// id_token_hint on its way back to the provider.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

var idTokenHint = regexp.MustCompile(`id_token_hint=([A-Za-z0-9_.%-]+)`)

// hintAllowed says whether a record may carry an ID token as id_token_hint: gatehouse's
// answer to a logout (its redirect or JSON redirect_url), and the browser's visit to the
// provider's end-session endpoint that follows (OpenID Connect RP-Initiated Logout; see
// docs/security.md).
func hintAllowed(r trafficRecord, issuer string) bool {
	if r.Kind != "response" && r.Kind != "intercepted" {
		return false
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return false
	}
	if r.FromGateway {
		return u.Path == "/bff/logout"
	}
	iss, _ := url.Parse(issuer)
	if u.Host != iss.Host {
		return false
	}
	p := strings.TrimPrefix(u.Path, strings.TrimSuffix(iss.Path, "/"))
	// oidc-provider: /session/end, its confirmation POST (/session/end/confirm, whose Referer
	// is the end-session URL); devidp: /end_session.
	return p == "/session/end" || strings.HasPrefix(p, "/session/end/") || p == "/end_session"
}

// leakProblems compares every token the provider issued (and anything shaped like a JWT)
// with everything the browser received and every DOM snapshot. It also returns how often the
// sanctioned id_token_hint exception was used.
func leakProblems(records []trafficRecord, tokens []harness.IssuedSecret, issuer string) (problems []string, hints int) {
	byValue := map[string]string{}
	for _, tok := range tokens {
		byValue[tok.Value] = tok.Kind
	}
	for _, r := range records {
		hay := r.URL + "\n" + r.RequestHeaders + "\n" + r.Headers + "\n"
		if r.Body != nil {
			hay += *r.Body
		}
		// Take out the sanctioned id_token_hint occurrences (only ID tokens, only where allowed).
		for _, m := range idTokenHint.FindAllStringSubmatch(hay, -1) {
			v, _ := url.QueryUnescape(m[1])
			if !hintAllowed(r, issuer) {
				problems = append(problems, fmt.Sprintf("%s: an id_token_hint outside the logout redirect", r))
				continue
			}
			if byValue[v] != "id_token" {
				problems = append(problems, fmt.Sprintf("%s: id_token_hint carries something that is not one of the provider's ID tokens (%q)", r, byValue[v]))
				continue
			}
			hints++
			hay = strings.ReplaceAll(hay, m[0], "id_token_hint=…")
		}
		for _, tok := range tokens {
			if strings.Contains(hay, tok.Value) {
				problems = append(problems, fmt.Sprintf("%s contains a %s the provider issued", r, tok.Kind))
			}
		}
		if m := jwtShape.FindString(hay); m != "" {
			problems = append(problems, fmt.Sprintf("%s contains a JWT (%s, %.20s…)", r, byValue[m], m))
		}
	}
	return problems, hints
}

// TestBrowserLeakCheck proves that the check of the browser tests finds what it looks for
// (it needs no browser).
func TestBrowserLeakCheck(t *testing.T) {
	const (
		issuer  = "http://127.0.0.1:9000"
		idToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
		access  = "opaque-access-token-0123456789"
		refresh = "opaque-refresh-token-0123456789"
	)
	tokens := []harness.IssuedSecret{{Kind: "id_token", Value: idToken}, {Kind: "access_token", Value: access}, {Kind: "refresh_token", Value: refresh}}
	body := func(s string) *string { return &s }
	logout := trafficRecord{Kind: "response", FromGateway: true, Method: "POST", URL: "http://127.0.0.1:9080/bff/logout",
		Body: body(`{"redirect_url":"` + issuer + `/session/end?client_id=bff\u0026id_token_hint=` + idToken + `\u0026state=x"}`)}
	endSession := trafficRecord{Kind: "response", URL: issuer + "/session/end?id_token_hint=" + idToken, Body: body("<form>")}
	if problems, hints := leakProblems([]trafficRecord{logout, endSession}, tokens, issuer); len(problems) > 0 || hints != 2 {
		t.Fatalf("the sanctioned id_token_hint: %q, %d hints", problems, hints)
	}
	for name, rec := range map[string]trafficRecord{
		"access token in a body":     {Kind: "response", FromGateway: true, URL: "http://127.0.0.1:9080/bff/user", Body: body(`{"t":"` + access + `"}`)},
		"refresh token in a header":  {Kind: "response", FromGateway: true, URL: "http://127.0.0.1:9080/api/me", Headers: "x-debug: " + refresh, Body: body("")},
		"ID token in a stream":       {Kind: "sse", FromGateway: true, URL: "http://127.0.0.1:9080/api/events", Body: body("data: " + idToken + "\n\n")},
		"ID token in the DOM":        {Kind: "dom", FromGateway: true, URL: "http://127.0.0.1:9080/", Body: body("<p>" + idToken)},
		"hint elsewhere":             {Kind: "response", FromGateway: true, URL: "http://127.0.0.1:9080/bff/user", Body: body("id_token_hint=" + idToken)},
		"unknown JWT":                {Kind: "response", FromGateway: true, URL: "http://127.0.0.1:9080/api/me", Body: body("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXh4eHh4")},
		"access token in a redirect": {Kind: "response", FromGateway: true, URL: "http://127.0.0.1:9080/bff/callback", Status: 302, Headers: "location: /?t=" + access, Body: body("")},
	} {
		if problems, _ := leakProblems([]trafficRecord{rec}, tokens, issuer); len(problems) == 0 {
			t.Errorf("%s: not found", name)
		}
	}
}

type noTokensResult struct {
	API    struct{ Status string } `json:"api"`
	Client struct{ Status string } `json:"client"`
	Admin  struct {
		Status, Explain string
	} `json:"admin"`
	SignedIn         pageReadable `json:"signedIn"`
	SignedOut        pageReadable `json:"signedOut"`
	SignedOutMessage string       `json:"signedOutMessage"`
	FinalURL         string       `json:"finalURL"`
	Screenshot       string       `json:"screenshot"`
}

type pageReadable struct {
	Page struct {
		DocumentCookie string            `json:"documentCookie"`
		LocalStorage   map[string]string `json:"localStorage"`
		SessionStorage map[string]string `json:"sessionStorage"`
		IndexedDB      []any             `json:"indexedDB"`
		Caches         []any             `json:"caches"`
	} `json:"page"`
	Cookies []struct {
		Name, Value, Domain, Path string
		HTTPOnly                  bool   `json:"httpOnly"`
		Secure                    bool   `json:"secure"`
		SameSite                  string `json:"sameSite"`
	} `json:"cookies"`
}

// browserNoTokens: scenario 2, and the leak check over the traffic of every scenario so far.
func browserNoTokens(t *testing.T, s *browserStack) {
	var r noTokensResult
	s.runScenario(t, "notokens", &r, "bob")
	if r.API.Status != "200" || r.Client.Status != "200" {
		t.Errorf("API %s, client-credentials API %s", r.API.Status, r.Client.Status)
	}
	if !strings.HasPrefix(r.Admin.Status, "403 forbidden") {
		t.Errorf("bob (not an admin) got %q from the admin API, want 403 forbidden (claims)", r.Admin.Status)
	}
	if !strings.HasPrefix(r.FinalURL, s.gw.URL+"/") {
		t.Errorf("after signing out the browser is at %s", r.FinalURL)
	}

	// What page scripts can read.
	tokens := s.issuedTokens(t)
	for name, st := range map[string]pageReadable{"signed in": r.SignedIn, "signed out": r.SignedOut} {
		if strings.Contains(st.Page.DocumentCookie, "gatehouse") {
			t.Errorf("%s: document.cookie shows gatehouse's cookie: %q", name, st.Page.DocumentCookie)
		}
		dump, _ := json.Marshal(st.Page)
		for _, tok := range tokens {
			if strings.Contains(string(dump), tok.Value) {
				t.Errorf("%s: a %s is readable by page scripts: %s", name, tok.Kind, dump)
			}
		}
		if m := jwtShape.FindString(string(dump)); m != "" {
			t.Errorf("%s: something shaped like a JWT is readable by page scripts", name)
		}
		t.Logf("%s: page scripts see document.cookie %q, localStorage %v, sessionStorage %v, %d IndexedDB databases, %d caches",
			name, st.Page.DocumentCookie, st.Page.LocalStorage, st.Page.SessionStorage, len(st.Page.IndexedDB), len(st.Page.Caches))
	}
	var session bool
	for _, c := range r.SignedIn.Cookies {
		t.Logf("signed in: cookie %s (%s, HttpOnly %v, Secure %v, SameSite %s)", c.Name, c.Domain, c.HTTPOnly, c.Secure, c.SameSite)
		if strings.HasPrefix(c.Name, "__Host-gatehouse") {
			if !c.HTTPOnly || !c.Secure || c.Path != "/" {
				t.Errorf("cookie %s: HttpOnly %v, Secure %v, Path %s", c.Name, c.HTTPOnly, c.Secure, c.Path)
			}
			if c.Name == "__Host-gatehouse" {
				session = true
				if c.SameSite != "Strict" {
					t.Errorf("the session cookie is SameSite=%s", c.SameSite)
				}
			}
		}
		for _, tok := range tokens {
			if strings.Contains(c.Value, tok.Value) {
				t.Errorf("cookie %s holds a %s", c.Name, tok.Kind)
			}
		}
	}
	if !session {
		t.Error("no __Host-gatehouse cookie while signed in")
	}
	for _, c := range r.SignedOut.Cookies {
		if c.Name == "__Host-gatehouse" {
			t.Error("the session cookie is still there after signing out")
		}
	}

	// Everything the browser received in every scenario of this run.
	kinds := map[string]int{}
	for _, tok := range tokens {
		kinds[tok.Kind]++
	}
	if kinds["access_token"] == 0 || kinds["refresh_token"] == 0 || kinds["id_token"] == 0 {
		t.Fatalf("the provider's token record is incomplete (%v): the leak check would prove nothing", kinds)
	}
	records := readTraffic(t, s.outDir)
	counts := map[string]int{}
	intercepted := map[string]bool{}
	for _, rec := range records {
		if rec.Kind == "intercepted" && rec.Body != nil {
			intercepted[rec.Scenario+" "+rec.Method+" "+rec.URL] = true
		}
	}
	var gatewayBodies, streams, streamResponses, ticks int
	var blocked []string
	for _, rec := range records {
		counts[rec.Kind]++
		switch {
		case rec.Kind == "missing":
			t.Errorf("[%s] %d responses could not be recorded", rec.Scenario, rec.Count)
		case rec.Kind == "sse":
			streams++
			if rec.TapError != "" {
				t.Errorf("%s: stream not recorded: %s", rec, rec.TapError)
			}
			if rec.Body != nil && strings.Contains(*rec.Body, "event: tick") {
				ticks++
			}
		case rec.Kind == "response" && rec.Stream:
			streamResponses++
		case rec.Kind == "intercepted" && rec.Body == nil:
			t.Errorf("%s: body not recorded (%s)", rec, rec.BodyError)
		case rec.Kind != "response" || rec.Stream:
		case rec.Body != nil:
			if rec.FromGateway {
				gatewayBodies++
			}
		case intercepted[rec.Scenario+" "+rec.Method+" "+rec.URL]:
			// read at the response stage instead
		case rec.Scenario == "csrf" && (rec.Status >= 400 || !rec.FromGateway):
			// An attacker page's request: Chromium keeps the body from the page (CORS, ORB,
			// a cross-origin frame that may not be framed) and from DevTools too.
			blocked = append(blocked, fmt.Sprintf("%s %s %d", rec.Method, rec.URL, rec.Status))
		default:
			t.Errorf("%s: body not recorded (%s)", rec, rec.BodyError)
		}
		if rec.HeadersError != "" {
			t.Errorf("%s: headers not recorded: %s", rec, rec.HeadersError)
		}
	}
	if len(blocked) > 0 {
		t.Logf("bodies Chromium withheld from the attacker pages (and DevTools): %q", blocked)
	}
	if streams < streamResponses || ticks == 0 {
		t.Errorf("%d event streams were answered but %d recorded, %d with events", streamResponses, streams, ticks)
	}
	if gatewayBodies < 10 || streams == 0 || counts["dom"] == 0 || counts["intercepted"] == 0 {
		t.Errorf("too little traffic recorded to prove anything: %d gateway bodies, %d event streams, %v", gatewayBodies, streams, counts)
	}
	problems, hints := leakProblems(records, tokens, s.issuer)
	for _, p := range problems {
		t.Error(p)
	}
	if hints == 0 {
		t.Error("the logout's id_token_hint was never seen: the exception in the check was not exercised")
	}
	t.Logf("checked %d tokens (%v) against %d records (%v; %d gateway bodies, %d event streams); id_token_hint seen %d times, only in the logout redirect",
		len(tokens), kinds, len(records), counts, gatewayBodies, streams, hints)

	// And the logs: gatehouse's and the demo API's.
	for name, logs := range map[string]string{"gatehouse": s.gw.Logs(), "the demo API": s.apiProc.out.String()} {
		for _, tok := range tokens {
			if strings.Contains(logs, tok.Value) {
				t.Errorf("%s's log contains a %s", name, tok.Kind)
			}
		}
	}
	t.Logf("screenshot: %s", r.Screenshot)
}
