package gatehouse

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzLocalPath: whatever a login or logout request asks, the redirect stays on this
// origin.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c#d", "//evil", "/\\evil", "https://evil", "/%2F%2Fevil", "/%252F%252F",
		"/%5Cevil", "\t/x", "/x\r\nSet-Cookie:a", "/.%2e/%2e%2e/x", "/\u2028", "%2F%2F", "/a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := localPath(in)
		if out != "/" && out != in {
			t.Fatalf("localPath(%q) = %q: neither the input nor /", in, out)
		}
		u, err := url.Parse(out)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(out, "/") {
			t.Fatalf("localPath(%q) = %q leaves the origin", in, out)
		}
		// Browsers normalise backslashes to slashes and drop tabs and newlines: check
		// what a browser would make of it too.
		norm := strings.NewReplacer("\\", "/", "\t", "", "\n", "", "\r", "").Replace(out)
		if strings.HasPrefix(norm, "//") {
			t.Fatalf("localPath(%q) = %q is protocol-relative to a browser", in, out)
		}
		if dec, err := url.PathUnescape(strings.SplitN(out, "?", 2)[0]); err == nil && strings.HasPrefix(strings.ReplaceAll(dec, "\\", "/"), "//") {
			t.Fatalf("localPath(%q) = %q decodes to a protocol-relative path", in, out)
		}
	})
}

// FuzzRequestPath: route matching works on cleaned paths; cleaning is idempotent and
// never yields a path with dot segments, not even for an upstream that cuts path
// parameters (";…") off each segment first, as Tomcat does.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"/", "/api/../admin", "/api//x", "/./a/", "/a/b/..", "/..", "/a/./b/../c/",
		"/api/..;/admin", "/api/.;x=1/a", "/a/..;/../b", "/a/x;jsessionid=1", "/a/;/b", "/a/...;/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if p == "" || p[0] != '/' {
			return
		}
		c := cleanPath(p)
		if cleanPath(c) != c {
			t.Fatalf("cleanPath not idempotent: %q → %q → %q", p, c, cleanPath(c))
		}
		for _, seg := range strings.Split(c, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("cleanPath(%q) = %q keeps a dot segment", p, c)
			}
		}
		if strings.Contains(c, "//") {
			t.Fatalf("cleanPath(%q) = %q has an empty segment", p, c)
		}
		rp, ok := requestPath(&http.Request{URL: &url.URL{Path: p}})
		if !ok {
			return
		}
		for _, seg := range strings.Split(rp, "/") {
			if name, _, _ := strings.Cut(seg, ";"); name == "." || name == ".." {
				t.Fatalf("requestPath(%q) = %q has a dot segment once path parameters are cut", p, rp)
			}
		}
	})
}
