package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session"
)

// checkOnline is `gatehouse check --online`: it does what serve does at start (open the
// store, discover the provider) and waits until both answer, then dials each route's
// upstream, and reads the ACME directory of tls.acme. It prints one line per check and
// returns 1 if the provider, the store or the ACME directory failed; an unreachable
// upstream is a warning (it may start later).
func checkOnline(ctx context.Context, l *loaded, path string, timeout time.Duration, stdout, stderr io.Writer) int {
	failed := false
	report := func(ok bool, what, detail string) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed = true
		}
		fmt.Fprintf(stdout, "%s %s: %s\n", mark, what, detail)
	}
	store, err := openStore(ctx, l, filepath.Dir(path))
	if err != nil {
		report(false, "session store", err.Error())
		return 1
	}
	defer func() {
		if c, ok := store.(session.Closer); ok {
			c.Close()
		}
	}()
	cfg := l.gw
	cfg.Session.Store = store
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.AuditLogger = cfg.Logger
	gw, err := gatehouse.New(cfg)
	if err != nil {
		report(false, "configuration", err.Error())
		return 1
	}
	defer gw.Close()

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last gatehouse.Readiness
	for {
		last = gw.Readiness(wctx)
		if (last.Provider == nil && last.Store == nil) || wctx.Err() != nil {
			break
		}
		select {
		case <-wctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if last.Provider != nil {
		report(false, "provider", fmt.Sprintf("%s: %v", l.gw.Provider.Issuer, last.Provider))
	} else {
		report(true, "provider", "discovery of "+l.gw.Provider.Issuer+" succeeded")
	}
	if last.Store != nil {
		report(false, "session store", fmt.Sprintf("%s: %v", storeKind(l.storeURL), last.Store))
	} else {
		report(true, "session store", storeKind(l.storeURL)+" answers")
	}
	for i, r := range l.gw.Routes {
		what := fmt.Sprintf("routes[%d].upstream", i)
		if r.Upstream == "" {
			fmt.Fprintf(stdout, "ok   %s: none, forward-auth only (the ingress forwards)\n", what)
			continue
		}
		u, _ := url.Parse(r.Upstream)
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
		d := net.Dialer{Timeout: min(timeout, 5*time.Second)}
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			fmt.Fprintf(stdout, "warn %s: %s is not reachable now: %v\n", what, u.Redacted(), err)
			continue
		}
		conn.Close()
		fmt.Fprintf(stdout, "ok   %s: %s accepts connections\n", what, u.Redacted())
	}
	if l.tls != nil && l.tls.acme != nil {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		dir, err := l.tls.acme.Client.Discover(dctx)
		cancel()
		switch {
		case err != nil:
			report(false, "tls.acme.directory_url", fmt.Sprintf("%s: %v", l.tls.acme.Client.DirectoryURL, err))
		case dir.OrderURL == "":
			report(false, "tls.acme.directory_url", l.tls.acme.Client.DirectoryURL+" is not an RFC 8555 ACME directory")
		default:
			report(true, "tls.acme.directory_url", "the ACME directory "+l.tls.acme.Client.DirectoryURL+" answers")
		}
	}
	if failed {
		fmt.Fprintf(stderr, "%s: online checks failed\n", path)
		return 1
	}
	return 0
}
