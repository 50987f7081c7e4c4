package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"

	gatehouse "github.com/gatehouse-bff/gatehouse"
)

// buildOffline builds the gateway serve would build from l and closes it, so that
// `check` fails wherever `serve` would (a missing frontend.dir, a key the provider
// settings cannot use) instead of keeping its own list of checks. It listens on
// nothing, opens no session store (serve's store and limiter are the only parts left
// out; `check --online` opens the store) and contacts no provider: discovery, which
// New starts in the background, gets a transport that refuses.
func buildOffline(l *loaded) error {
	quiet := slog.New(slog.DiscardHandler)
	offline := func(cfg gatehouse.Config) gatehouse.Config {
		cfg.Logger, cfg.AuditLogger = quiet, quiet
		cfg.ProviderHTTPClient = &http.Client{Transport: offlineTransport{}}
		cfg.Metrics = nil // a private registry
		return cfg
	}
	if l.apps != nil {
		mc := l.multiConfig()
		for i := range mc.Frontends {
			mc.Frontends[i] = offline(mc.Frontends[i])
		}
		m, err := gatehouse.NewMulti(mc)
		if err != nil {
			return configError{err.Error()}
		}
		return m.Close()
	}
	gw, err := gatehouse.New(offline(l.gw))
	if err != nil {
		return configError{err.Error()}
	}
	return gw.Close()
}

type offlineTransport struct{}

func (offlineTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("gatehouse check: offline")
}

// footguns are settings that are valid, and not weaker options, but wrong for
// production: `check` prints them as warnings (and fails on them with --strict).
func footguns(l *loaded) []string {
	var out []string
	if l.storeURL == "memory" && !loopbackListen(l.file.Listen, "127.0.0.1:9080") {
		out = append(out, "session.store: memory behind a non-loopback listener ("+l.file.Listen+"): sessions die with the process and are not shared by replicas; use bolt:// or redis://")
	}
	if len(l.gw.Session.Keys) == 0 {
		out = append(out, "session.keys: not set: the server key is derived from the client credentials, so rotating the client secret logs everyone out; set it (gatehouse keygen)")
	}
	if a := l.file.Admin; a.Listen != "" && !loopbackListen(a.Listen, "") && l.gw.Admin.Token == "" {
		out = append(out, "admin.token: not set while admin.listen ("+a.Listen+") is not loopback: the admin API is off, and /metrics, /healthz and /readyz (which take no token, with or without one) are open to that network: keep it private, and set admin.token or admin.token_file to use the admin API")
	}
	out = append(out, tlsFootguns(l)...)
	return out
}

// loopbackListen reports whether a host:port listen address (def when empty) is
// loopback only; ":9080" and "0.0.0.0:9080" listen on every interface.
func loopbackListen(addr, def string) bool {
	if addr == "" {
		addr = def
	}
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopback(host)
}
