package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// The http.Server bounds of the listeners (docs/security.md, "Connection and body
// limits"). Request bodies on the public listener have read deadlines set by the gateway
// itself (server.body_timeout, routes[].body_timeout), and its connections are capped
// per client network (server.max_connections_per_client, Gateway.LimitListener).
const (
	publicMaxHeaderBytes = 64 << 10
	// The admin listener serves probes, metrics and a small JSON API: its requests are
	// small, none streams.
	adminMaxHeaderBytes = 16 << 10
	adminReadTimeout    = 30 * time.Second
)

// publicServer is the http.Server of the public listener; base is the requests' parent
// context (cancelled at the end of a drain to close WebSockets).
func publicServer(l *loaded, h http.Handler, base context.Context, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: durationOr(l.file.Server.ReadHeaderTimeout, 10*time.Second),
		IdleTimeout:       durationOr(l.file.Server.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    publicMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// adminServer is the http.Server of the admin listener: the same header and idle
// timeouts as the public one, smaller headers, and a bound on the whole request (it has
// no streams, so a deadline on reading cannot cut a response).
func adminServer(l *loaded, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: durationOr(l.file.Server.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       adminReadTimeout,
		IdleTimeout:       durationOr(l.file.Server.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// healthServer is the http.Server of the health listener (/healthz and /readyz only):
// the admin listener's bounds.
func healthServer(l *loaded, h http.Handler, log *slog.Logger) *http.Server {
	return adminServer(l, h, log)
}
