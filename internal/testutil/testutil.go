// Package testutil holds helpers shared by Gatehouse's tests: a cookie jar that behaves
// like a browser on loopback, a synchronised log buffer, and a settable clock.
package testutil

import (
	"bytes"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"
)

// NewLoopbackJar returns a cookie jar that, like Chromium, treats http://127.0.0.1 and
// http://localhost as secure origins: Go's cookiejar never sends Secure cookies over
// http, and Gatehouse's cookies are all __Host- and Secure.
func NewLoopbackJar() http.CookieJar {
	inner, err := cookiejar.New(nil)
	if err != nil {
		panic(err) // cookiejar.New(nil) never fails
	}
	return &loopbackJar{inner: inner}
}

type loopbackJar struct{ inner http.CookieJar }

func (j *loopbackJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.inner.SetCookies(secureLoopback(u), cookies)
}

func (j *loopbackJar) Cookies(u *url.URL) []*http.Cookie {
	return j.inner.Cookies(secureLoopback(u))
}

func secureLoopback(u *url.URL) *url.URL {
	if u.Scheme != "http" {
		return u
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || (ip != nil && ip.IsLoopback()) {
		c := *u
		c.Scheme = "https"
		return &c
	}
	return u
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a log handler's output).
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Clock is a settable clock for Config.Now. The zero value starts at the real time of
// its first use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// ClockAt returns a Clock that starts at t.
func ClockAt(t time.Time) *Clock { return &Clock{now: t} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		c.now = time.Now()
	}
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.Now()
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
