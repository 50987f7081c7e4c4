package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// silentIndex is the silent login test page: gh.trySilentLogin() on a button, the outcome
// and the user /bff/user then reports in data attributes.
const silentIndex = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Silent login</title></head>
<body>
<button data-testid="login">Sign in</button>
<button data-testid="silent">Silent</button>
<script type="module" src="/app.js"></script>
</body></html>
`

const silentApp = `import { createClient } from '/bff/client.js';

const gh = createClient({ onUnauthenticated: null });
const show = async () => {
  const user = await gh.getUser();
  document.body.dataset.who = user ? user.claims.sub : '';
  document.body.dataset.sid = user?.sid ?? '';
};
document.querySelector('[data-testid="login"]').addEventListener('click', () => gh.login('/'));
document.querySelector('[data-testid="silent"]').addEventListener('click', async () => {
  const loggedIn = await gh.trySilentLogin();
  await show();
  document.body.dataset.silent = String(loggedIn);
});
await show();
document.body.dataset.ready = '1';
`

type silentShown struct {
	Result string `json:"result"`
	Who    string `json:"who"`
	SID    string `json:"sid"`
	Frames int    `json:"frames"`
}

type silentMessage struct {
	Origin string `json:"origin"`
	Data   string `json:"data"`
}

type silentResult struct {
	Before    silentShown `json:"before"`
	PageLogin string      `json:"pageLogin"`
	SignedIn  struct {
		Who string `json:"who"`
		SID string `json:"sid"`
	} `json:"signedIn"`
	After      silentShown `json:"after"`
	Cookieless string      `json:"cookieless"`
	Again      silentShown `json:"again"`
	Attackers  map[string]struct {
		Origin           string          `json:"origin"`
		Messages         []silentMessage `json:"messages"`
		MessagesSignedIn []silentMessage `json:"messagesSignedIn"`
	} `json:"attackers"`
	PageErrors []string `json:"pageErrors"`
}

// TestE2ESilentLoginBrowser: silent login in Chromium against oidc-provider, with the JS
// client's trySilentLogin() (e2e/browser/silent.mjs).
func TestE2ESilentLoginBrowser(t *testing.T) {
	root := checkBrowserSetup(t)
	spa := t.TempDir()
	for name, content := range map[string]string{"index.html": silentIndex, "app.js": silentApp} {
		if err := os.WriteFile(filepath.Join(spa, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startStepUpStack(t, "frontend:\n  dir: "+spa+"\n")
	bs := &browserStack{provider: "oidc-provider", root: root, issuer: s.idp.Issuer(), idp: s.idp, gw: s.gw,
		api: startBrowserAPICounter(t, s.api.URL), outDir: t.TempDir()}
	var r silentResult
	bs.runScenario(t, "silent", &r, "alice")

	if r.Before.Result != "false" || r.Before.Who != "" || r.Before.Frames != 0 {
		t.Errorf("before any login: %+v, want false, nobody signed in, the frame removed", r.Before)
	}
	if r.PageLogin != "/?tab=2&error=login_required#top" {
		t.Errorf("a prompt=none page login ended at %q, want the app with error=login_required", r.PageLogin)
	}
	if r.SignedIn.Who != "alice" || r.After.Result != "true" || r.After.Who != "alice" || r.After.SID == "" || r.After.SID == r.SignedIn.SID {
		t.Errorf("after a login: signed in %+v, then silent %+v; want true and a new session for alice", r.SignedIn, r.After)
	}
	if r.Cookieless != "" || r.Again.Result != "true" || r.Again.Who != "alice" {
		t.Errorf("without the gateway's cookie: page shows %q, silent %+v; want signed out, then true and alice", r.Cookieless, r.Again)
	}
	for _, label := range []string{"same-site", "cross-site"} {
		a, ok := r.Attackers[label]
		if !ok {
			t.Errorf("%s attacker: no result", label)
			continue
		}
		if len(a.Messages) > 0 || len(a.MessagesSignedIn) > 0 {
			t.Errorf("%s page %s received messages: %+v / %+v", label, a.Origin, a.Messages, a.MessagesSignedIn)
		}
	}
	if len(r.PageErrors) > 0 {
		t.Errorf("script errors: %q", r.PageErrors)
	}
}
