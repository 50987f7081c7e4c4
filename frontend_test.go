package gatehouse_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

func TestFrontendDir(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	files := map[string]string{
		"index.html":               `<!doctype html><title>app</title>`,
		"assets/index-B1x2y3Z4.js": `console.log(1)`,
		"main.3f9a1c2e.css":        `body{}`,
		"robots.txt":               `User-agent: *`,
		"docs/index.html":          `docs`,
		"app-settings.js":          `settings`,
	}
	for name, body := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("outside the root"), 0o644)
	os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "link.txt"))

	e := newEnv(t, func(c *gatehouse.Config) { c.Frontend.Dir = dir })
	b := e.browser()
	for _, tc := range []struct {
		path, body, cache string
		status            int
	}{
		{"/", "<title>app</title>", "no-cache", 200},
		{"/orders/42", "<title>app</title>", "no-cache", 200}, // client-side route
		{"/assets/index-B1x2y3Z4.js", "console.log(1)", "public, max-age=31536000, immutable", 200},
		{"/main.3f9a1c2e.css", "body{}", "public, max-age=31536000, immutable", 200},
		{"/app-settings.js", "settings", "no-cache", 200}, // a name, not a hash
		{"/robots.txt", "User-agent", "no-cache", 200},
		{"/docs/", "docs", "no-cache", 200},
		{"/assets/missing.js", "", "", 404},
		{"/link.txt", "", "", 404}, // a symlink out of the directory
		{"/../../etc/passwd", "<title>app</title>", "no-cache", 200},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := b.get(tc.path, "Sec-Fetch-Mode", "navigate")
			if r.StatusCode != tc.status || !strings.Contains(r.body, tc.body) {
				t.Fatalf("%s = %d %q", tc.path, r.StatusCode, r.body)
			}
			if strings.Contains(r.body, "outside the root") || strings.Contains(r.body, "root:") {
				t.Fatal("served a file outside the directory")
			}
			if tc.status != 200 {
				return
			}
			if got := r.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tc.cache)
			}
			for h, want := range map[string]string{
				"Content-Security-Policy": "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff",
				"Referrer-Policy": "strict-origin-when-cross-origin", "X-Frame-Options": "DENY",
			} {
				if !strings.Contains(r.Header.Get(h), want) {
					t.Errorf("%s = %q, want it to contain %q", h, r.Header.Get(h), want)
				}
			}
		})
	}
	if r := b.do("POST", "/", nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to a static file = %d", r.StatusCode)
	}
	// The JS client helper is served by Gatehouse itself.
	r := b.get("/bff/client.js")
	if r.StatusCode != 200 || !strings.Contains(r.body, "export function createClient") ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") || r.Header.Get("ETag") == "" {
		t.Fatalf("/bff/client.js = %d %v", r.StatusCode, r.Header)
	}
	if r2 := b.get("/bff/client.js", "If-None-Match", r.Header.Get("ETag")); r2.StatusCode != 304 {
		t.Fatalf("conditional /bff/client.js = %d", r2.StatusCode)
	}
}

func TestFrontendFSAndRequireLogin(t *testing.T) {
	fsys := fstest.MapFS{"index.html": {Data: []byte("embedded app")}}
	e := newEnv(t, func(c *gatehouse.Config) {
		c.Frontend.FS = fsys
		c.Frontend.RequireLogin = true
		c.Frontend.CSP = "default-src 'self'; frame-ancestors 'none'"
	})
	b := e.browser()
	r := b.get("/reports?x=1", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != 302 || r.Header.Get("Location") != "/bff/login?returnUrl=%2Freports%3Fx%3D1" {
		t.Fatalf("anonymous navigation = %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	b.login()
	r = b.get("/reports", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != 200 || r.body != "embedded app" || r.Header.Get("Content-Security-Policy") != "default-src 'self'; frame-ancestors 'none'" {
		t.Fatalf("logged-in navigation = %d %q %v", r.StatusCode, r.body, r.Header)
	}
}

func TestFrontendDevServer(t *testing.T) {
	up := newUpstream(t)
	e := newEnv(t, func(c *gatehouse.Config) { c.Frontend.Upstream = up.srv.URL })
	b := e.browser()
	r := b.get("/src/main.ts")
	if r.StatusCode != 200 || up.last(t).Path != "/src/main.ts" {
		t.Fatalf("dev server proxy = %d", r.StatusCode)
	}
	if up.last(t).Auth != "" || up.last(t).Cookie != "" {
		t.Fatal("the dev server received credentials")
	}
	if r.Header.Get("Content-Security-Policy") != "frame-ancestors 'none'" {
		t.Fatalf("CSP in dev mode = %q", r.Header.Get("Content-Security-Policy"))
	}
	// The dev server's hot-reload WebSocket passes for our own origin only.
	if got := wsEcho(t, e, "/hmr/ws", e.url, "x"); got != "echo:hello\n" {
		t.Fatalf("dev server WebSocket: %q", got)
	}
	if got := wsEcho(t, e, "/hmr/ws", "http://evil.example", "x"); !strings.HasPrefix(got, "403") {
		t.Fatalf("foreign-origin dev server WebSocket: %q", got)
	}
}
