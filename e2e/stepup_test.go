package e2e

// Step-up authentication (RFC 9470) against oidc-provider with acr values: an API that
// needs a "gold" login (it introspects each token at the provider and answers the
// insufficient_user_authentication challenge otherwise), and a route whose require rule
// asks for gold itself. Alice can reach gold; Bob's provider account only ever gets
// silver, as a provider that returns a weaker acr than asked.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-bff/gatehouse/e2e/internal/harness"
)

// stepUpAPI is a resource server that does what RFC 9470 describes: it reads the token's
// acr (by introspection at the provider, as its own client) and asks for a gold login,
// no older than five minutes, when the token's is weaker.
type stepUpAPI struct {
	URL  string
	mu   sync.Mutex
	seen []string // the acr of each token it was sent, "" when inactive
}

const stepUpChallenge = `Bearer error="insufficient_user_authentication", error_description="A stronger sign-in is needed for payments", acr_values="gold", max_age=300`

func startStepUpAPI(t testing.TB, idp *harness.Provider) *stepUpAPI {
	api := &stepUpAPI{}
	api.URL = serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "POST", idp.BaseURL()+"/token/introspection",
			strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("stepup-api", "api-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, `{"error":"introspection_failed"}`, http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var in struct {
			Active bool   `json:"active"`
			ACR    string `json:"acr"`
			Sub    string `json:"sub"`
		}
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&in) != nil {
			http.Error(w, `{"error":"introspection_failed"}`, http.StatusBadGateway)
			return
		}
		api.mu.Lock()
		api.seen = append(api.seen, in.ACR)
		api.mu.Unlock()
		switch {
		case !in.Active:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		case in.ACR != "gold":
			w.Header().Set("WWW-Authenticate", stepUpChallenge)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"insufficient_user_authentication","acr":%q}`, in.ACR)
		default:
			json.NewEncoder(w).Encode(map[string]string{"sub": in.Sub, "acr": in.ACR, "path": r.URL.Path})
		}
	}))
	return api
}

func (api *stepUpAPI) acrs() []string {
	api.mu.Lock()
	defer api.mu.Unlock()
	return append([]string(nil), api.seen...)
}

type stepUpStack struct {
	public string
	idp    *harness.Provider
	api    *stepUpAPI
	gw     *gatehouseProc
}

// startStepUpStack: the provider offers silver and gold; Gatehouse has the step-up API at
// /api/ and, at /api/gold/, a route that requires gold itself. frontend, when not
// empty, is the frontend: block.
func startStepUpStack(t *testing.T, frontend string) *stepUpStack {
	t.Helper()
	port := freePort(t)
	s := &stepUpStack{public: fmt.Sprintf("http://127.0.0.1:%d", port)}
	api := harness.Client{ClientID: "stepup-api", ClientSecret: "api-secret", GrantTypes: []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic", RedirectURIs: []string{"http://127.0.0.1/unused"}, ResponseTypes: []string{}}
	alice, bob := browserUserNamed(t, "alice"), browserUserNamed(t, "bob")
	s.idp = harness.StartProvider(t, harness.ProviderConfig{
		ACRValues: []string{"silver", "gold"},
		Clients:   []harness.Client{harness.BFFClient(s.public), api},
		Users: []harness.User{
			{ID: alice.Name, Password: alice.Password, ACR: []string{"silver", "gold"}, Claims: map[string]any{"name": alice.Display, "email": alice.Email}},
			{ID: bob.Name, Password: bob.Password, Claims: map[string]any{"name": bob.Display, "email": bob.Email}}, // silver only
		},
	})
	s.api = startStepUpAPI(t, s.idp)
	cfg := fmt.Sprintf(`
listen: 127.0.0.1:%d
public_url: %s
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
session:
  store: memory
admin:
  listen: {{ADMIN}}
  token: e2e-admin-token
log:
  level: debug
routes:
  - path: /api/gold/
    upstream: %s
    require:
      - acr: [gold]
  - path: /api/
    upstream: %s
%s`, port, s.public, s.idp.Issuer(), s.api.URL, s.api.URL, frontend)
	s.gw = startGatehouse(t, port, cfg)
	return s
}

// loginAt runs a login that starts at the gateway path start (a login_url) through the
// provider's login form, and returns the callback's response.
func loginAt(t *testing.T, b *browser, start, user, password string) *response {
	t.Helper()
	r := b.get(start, "Sec-Fetch-Mode", "navigate")
	if r.Status != 200 || !strings.Contains(r.Body, "password") {
		t.Fatalf("%s did not lead to the provider's login form: %d %s", start, r.Status, r.Body)
	}
	resp := harness.Login(t, b.c, r.URL.String(), user, password)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || !strings.Contains(loc, "/bff/callback") {
		t.Fatalf("after the login form: %d, Location %q", resp.StatusCode, loc)
	}
	return b.get(loc, "Sec-Fetch-Mode", "navigate")
}

// Without a browser: the upstream's challenge and the route's require acr rule both
// become 401 step_up_required; following login_url with a user who can reach gold gives a
// gold session that both then accept; a user who only gets silver is refused at the
// callback (403 step_up_failed) and keeps the session they had.
func TestE2EStepUpRoute(t *testing.T) {
	s := startStepUpStack(t, "")
	alice, bob := browserUserNamed(t, "alice"), browserUserNamed(t, "bob")

	b := newBrowser(t, s.gw.URL)
	expect(t, b.login(alice.Name, alice.Password, "/"), 200)
	status, u := b.user()
	if status != 200 || u["acr"] != "silver" || u["auth_time"] == nil {
		t.Fatalf("/bff/user after a plain login = %d %v, want acr silver and an auth_time", status, u)
	}
	sid := u["sid"]

	// The route's own rule: nothing reaches the API.
	before := len(s.api.acrs())
	r := b.api("GET", "/api/gold/balance")
	body := jsonBody(t, r)
	if r.Status != 401 || body["error"] != "step_up_required" || body["acr_values"] != "gold" || body["max_age"] != nil {
		t.Fatalf("/api/gold/ with a silver login = %d %v, want 401 step_up_required for gold", r.Status, body)
	}
	if got := body["login_url"]; got != "/bff/login?acr_values=gold" {
		t.Errorf("login_url = %v (no same-origin Referer: no returnUrl)", got)
	}
	if n := len(s.api.acrs()); n != before {
		t.Errorf("the API was called %d times for a route whose rule does not hold", n-before)
	}

	// The upstream's challenge, with the page that called as the way back.
	r = b.do("POST", "/api/pay", nil, "X-CSRF", "1", "Accept", "application/json", "Sec-Fetch-Site", "same-origin",
		"Sec-Fetch-Mode", "cors", "Referer", s.gw.URL+"/checkout?item=7")
	body = jsonBody(t, r)
	if r.Status != 401 || body["error"] != "step_up_required" || body["reason"] != "insufficient_user_authentication" ||
		body["acr_values"] != "gold" || body["max_age"] != float64(300) || body["request_id"] == nil {
		t.Fatalf("/api/pay with a silver token = %d %v, want the step_up_required body", r.Status, body)
	}
	loginURL, _ := body["login_url"].(string)
	if loginURL != "/bff/login?acr_values=gold&max_age=300&returnUrl=%2Fcheckout%3Fitem%3D7" {
		t.Fatalf("login_url = %q", loginURL)
	}
	if strings.Contains(r.Body, "A stronger sign-in is needed for payments") {
		t.Errorf("the upstream's own body reached the SPA: %s", r.Body)
	}

	// The step-up: the provider asks again, the session becomes gold, the same API answers.
	cb := loginAt(t, b, loginURL, alice.Name, alice.Password)
	expect(t, cb, 200)
	if !strings.Contains(cb.Body, "url=/checkout?item=7") {
		t.Errorf("the step-up callback does not lead back to the page: %s", cb.Body)
	}
	status, u = b.user()
	if status != 200 || u["acr"] != "gold" || u["sid"] == sid {
		t.Fatalf("/bff/user after the step-up = %d %v, want a new gold session", status, u)
	}
	expect(t, b.api("POST", "/api/pay"), 200)
	r = b.api("GET", "/api/gold/balance")
	expect(t, r, 200)
	if got := jsonBody(t, r)["acr"]; got != "gold" {
		t.Errorf("the API saw acr %v through the gold route", got)
	}
	if seen := s.api.acrs(); len(seen) < 3 || seen[0] != "silver" || seen[len(seen)-1] != "gold" {
		t.Errorf("the acr of the tokens the API was sent: %q, want silver then gold", seen)
	}

	// A user the provider only gives silver: refused, and their session stays.
	b2 := newBrowser(t, s.gw.URL)
	expect(t, b2.login(bob.Name, bob.Password, "/"), 200)
	_, u2 := b2.user()
	r = b2.api("GET", "/api/gold/balance")
	expect(t, r, 401)
	cb = loginAt(t, b2, jsonBody(t, r)["login_url"].(string), bob.Name, bob.Password)
	if cb.Status != 403 || !strings.Contains(cb.Body, "Sign-in not strong enough") {
		t.Fatalf("the callback of a silver login asked to be gold = %d %s, want the 403 step_up_failed page", cb.Status, cb.Body)
	}
	status, after := b2.user()
	if status != 200 || after["sid"] != u2["sid"] || after["acr"] != "silver" {
		t.Fatalf("after a refused step-up: /bff/user %d %v, want the old session %v", status, after, u2["sid"])
	}
	expect(t, b2.api("GET", "/api/gold/balance"), 401)
	if !strings.Contains(s.gw.Logs(), "step_up_failed") {
		t.Errorf("the gateway's log does not say it refused the step-up")
	}
}

// stepUpSPA is the test page: it signs in with the JS client, shows the user and their acr,
// and pays through gh.fetch; the client's default onStepUp does the rest. The
// stepuprequired event it got is kept in sessionStorage, for the test to read after the
// login.
const stepUpIndex = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Step-up</title></head>
<body>
<p>User: <span data-testid="who"></span>, acr <span data-testid="acr"></span></p>
<button data-testid="login">Sign in</button>
<button data-testid="pay">Pay</button>
<pre data-testid="result"></pre>
<script type="module" src="/app.js"></script>
</body></html>
`

const stepUpApp = `import { createClient } from '/bff/client.js';

const gh = createClient();
const el = (id) => document.querySelector('[data-testid="' + id + '"]');
gh.addEventListener('stepuprequired', (e) => sessionStorage.setItem('stepup', JSON.stringify(e.detail)));
el('login').addEventListener('click', () => gh.login());
el('pay').addEventListener('click', async () => {
  el('result').textContent = '…';
  const res = await gh.fetch('/api/pay', { method: 'POST' });
  el('result').textContent = res.status + ' ' + (await res.text());
});
const user = await gh.getUser();
el('who').textContent = user ? user.claims.sub : 'signed out';
el('acr').textContent = user?.acr ?? '';
document.body.dataset.sid = user?.sid ?? '';
document.body.dataset.ready = '1';
`

type stepUpShown struct {
	Who    string          `json:"who"`
	ACR    string          `json:"acr"`
	SID    string          `json:"sid"`
	URL    string          `json:"url"`
	Result string          `json:"result"`
	StepUp json.RawMessage `json:"stepup"`
}

type stepUpResult struct {
	Alice struct {
		Before     stepUpShown `json:"before"`
		LoginURL   string      `json:"loginUrl"`
		AskedAgain bool        `json:"askedAgain"`
		Callback   int         `json:"callback"`
		After      stepUpShown `json:"after"`
		Paid       stepUpShown `json:"paid"`
	} `json:"alice"`
	Bob struct {
		Before      stepUpShown    `json:"before"`
		Callback    int            `json:"callback"`
		CallbackURL string         `json:"callbackUrl"`
		Page        string         `json:"page"`
		After       stepUpShown    `json:"after"`
		Pay         map[string]any `json:"pay"`
	} `json:"bob"`
	PageErrors []string `json:"pageErrors"`
}

// The step-up round trip in Chromium, with the JS client (e2e/browser/stepup.mjs).
func TestE2EStepUpBrowser(t *testing.T) {
	root := checkBrowserSetup(t)
	spa := t.TempDir()
	for name, content := range map[string]string{"index.html": stepUpIndex, "app.js": stepUpApp} {
		if err := os.WriteFile(filepath.Join(spa, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startStepUpStack(t, "frontend:\n  dir: "+spa+"\n")
	bs := &browserStack{provider: "oidc-provider", root: root, issuer: s.idp.Issuer(), idp: s.idp, gw: s.gw,
		api: startBrowserAPICounter(t, s.api.URL), outDir: t.TempDir()}
	var r stepUpResult
	bs.runScenario(t, "stepup", &r, "alice", "bob")

	a := r.Alice
	if a.Before.Who != "alice" || a.Before.ACR != "silver" {
		t.Errorf("after the first sign-in the page shows %+v, want alice at silver", a.Before)
	}
	if a.LoginURL != "/bff/login?acr_values=gold&max_age=300&returnUrl=%2F%3Fitem%3D7%23confirm" {
		t.Errorf("the client sent the browser to %q", a.LoginURL)
	}
	if !a.AskedAgain || a.Callback != 200 {
		t.Errorf("the step-up: provider login page shown again %v, callback %d", a.AskedAgain, a.Callback)
	}
	var detail map[string]any
	json.Unmarshal(a.After.StepUp, &detail)
	if a.After.URL != "/?item=7#confirm" || a.After.Who != "alice" || a.After.ACR != "gold" || a.After.SID == a.Before.SID ||
		detail["acrValues"] != "gold" || detail["maxAge"] != float64(300) {
		t.Errorf("back on the page after the step-up: %+v (stepuprequired detail %v)", a.After, detail)
	}
	if !strings.HasPrefix(a.Paid.Result, "200 ") || !strings.Contains(a.Paid.Result, `"acr":"gold"`) {
		t.Errorf("paying after the step-up: %q", a.Paid.Result)
	}

	bob := r.Bob
	if bob.Callback != 403 || !strings.Contains(bob.Page, "Sign-in not strong enough") {
		t.Errorf("bob's step-up (the provider gives silver): callback %d at %s, page %q; want the 403 step_up_failed page",
			bob.Callback, bob.CallbackURL, bob.Page)
	}
	if bob.After.Who != "bob" || bob.After.SID == "" || bob.After.SID != bob.Before.SID || bob.After.ACR != "silver" {
		t.Errorf("bob after the refused step-up: %+v, want the session from before (%s)", bob.After, bob.Before.SID)
	}
	if bob.Pay["status"] != float64(401) || bob.Pay["error"] != "step_up_required" {
		t.Errorf("bob paying after the refused step-up: %v", bob.Pay)
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors: %q", r.PageErrors)
	}

	// Nothing the browser received holds a token.
	records := readTraffic(t, bs.outDir)
	if len(records) < 20 {
		t.Fatalf("only %d traffic records: the leak check would prove little", len(records))
	}
	problems, _ := leakProblems(records, bs.issuedTokens(t), s.idp.Issuer())
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("leak check: %d traffic records, %d tokens issued", len(records), len(bs.issuedTokens(t)))
}
