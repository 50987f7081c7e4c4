package gatehouse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	jsclient "github.com/gatehouse-bff/gatehouse/clients/js"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/upstream"
)

// newFrontend builds the handler for everything that is neither /bff/ nor a route: a
// static directory, a development server, or nothing.
func (g *Gateway) newFrontend() (http.Handler, error) {
	fe := g.config().Frontend
	switch {
	case fe.FS != nil:
		if _, err := fs.Stat(fe.FS, "index.html"); err != nil {
			g.log.Warn("frontend FS has no index.html: client-side routes will get 404")
		}
		return g.underBase(&staticFiles{fsys: fe.FS, fail: g.fail}), nil
	case fe.Dir != "":
		// os.Root keeps every file access inside the directory, symlinks included.
		root, err := os.OpenRoot(fe.Dir)
		if err != nil {
			return nil, fmt.Errorf("frontend.dir: %w", err)
		}
		if _, err := fs.Stat(root.FS(), "index.html"); err != nil {
			g.log.Warn("frontend.dir has no index.html: client-side routes will get 404", "dir", fe.Dir)
		}
		return g.underBase(&staticFiles{fsys: root.FS(), fail: g.fail}), nil
	case fe.Upstream != "":
		u, _ := url.Parse(fe.Upstream)
		t := &upstream.Target{Name: "frontend", Prefix: "/", URL: u, Timeout: 30 * time.Second}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isWebSocket(r) {
				// The dev server's hot-reload socket; same-origin only.
				if err := g.checkWebSocketOrigin(r); err != nil {
					g.fail(w, r, err)
					return
				}
			}
			p, _ := requestPath(r)
			g.forward(w, r, upstream.Forward{Target: t, Strip: g.current().strip}, p, nil)
		}), nil
	}
	return nil, nil
}

// serveFrontend adds the security headers to what Gatehouse serves and, when
// configured, sends navigations without a session to login first.
func (g *Gateway) serveFrontend(w http.ResponseWriter, r *http.Request) {
	fe := &g.config().Frontend
	if fe.RequireLogin && isNavigation(r) {
		if _, err := g.gate(w, r, sessionOrLogin); err != nil {
			g.fail(w, r, err)
			return
		}
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if fe.Dir != "" || fe.FS != nil || g.cspConfigured {
		h.Set("Content-Security-Policy", fe.CSP)
	} else {
		// A dev server injects inline scripts; keep at least framing closed.
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	}
	g.frontend.ServeHTTP(w, r)
}

// underBase serves h's files under the public URL's path (an app at
// https://example.com/admin has its index.html at /admin/).
func (g *Gateway) underBase(h http.Handler) http.Handler {
	if g.basePath == "" {
		return h
	}
	return http.StripPrefix(g.basePath, h)
}

// staticFiles serves a built SPA: files as they are, index.html for any other path
// that looks like a page (a client-side route), 404 for missing assets.
type staticFiles struct {
	fsys fs.FS
	fail func(http.ResponseWriter, *http.Request, error) // the gateway's renderer
}

// hashedAsset matches build outputs whose name carries a content hash (Vite's
// index-B1x2y3Z4.js, webpack's main.3f9a1c2e.css): safe to cache for a year.
var hashedAsset = regexp.MustCompile(`[.-][A-Za-z0-9_-]{8,}\.(?:m?js|css|woff2?|ttf|otf|png|jpe?g|gif|svg|webp|avif|ico|wasm|map)$`)

func (s *staticFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, r, errMethod)
		return
	}
	p, _ := requestPath(r)
	name := strings.TrimPrefix(p, "/")
	if name == "" || strings.HasSuffix(name, "/") {
		name += "index.html"
	}
	f, info, err := open(s.fsys, name)
	if err == nil && info.IsDir() {
		f.Close()
		f, info, err = open(s.fsys, path.Join(name, "index.html"))
	}
	if err != nil {
		// A path whose last segment has an extension is an asset: a missing one is a
		// 404, not the app's page (which would confuse module loaders).
		if path.Ext(name) != "" && path.Ext(name) != ".html" || r.Header.Get("Sec-Fetch-Dest") == "script" {
			s.fail(w, r, errNotFound)
			return
		}
		name = "index.html"
		if f, info, err = open(s.fsys, name); err != nil {
			s.fail(w, r, errNotFound)
			return
		}
	}
	defer f.Close()
	h := w.Header()
	switch {
	case strings.HasSuffix(info.Name(), ".html"):
		h.Set("Cache-Control", "no-cache")
	case hashedAsset.MatchString(info.Name()) && hasDigit(info.Name()) || strings.Contains("/"+name, "/assets/"):
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", `W/"`+strconv.FormatInt(info.Size(), 36)+"-"+strconv.FormatInt(info.ModTime().UnixNano(), 36)+`"`)
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		s.fail(w, r, errNotFound)
		return
	}
	http.ServeContent(w, r, info.Name(), info.ModTime(), rs)
}

func open(fsys fs.FS, name string) (fs.File, fs.FileInfo, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

func hasDigit(s string) bool {
	return strings.ContainsAny(s, "0123456789")
}

// clientJSETag identifies the embedded client helper's version.
var clientJSETag = func() string {
	sum := sha256.Sum256(jsclient.Source)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// handleClientJS serves the JavaScript client helper: GET /bff/client.js.
func (g *Gateway) handleClientJS(w http.ResponseWriter, r *http.Request, _ *session.Session) error {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", clientJSETag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "client.js", time.Time{}, bytes.NewReader(jsclient.Source))
	return nil
}
