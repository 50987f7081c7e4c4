// Command demo runs the whole Gatehouse demo in one process:
//
//	go run ./examples/demo
//
// It starts the development identity provider (internal/devidp) on 127.0.0.1:9000, the
// demo API (examples/demo/api) on 127.0.0.1:9001, and Gatehouse, used as a library, on
// 127.0.0.1:9080 serving the demo single-page app (examples/demo/spa, embedded) with
// its admin API on 127.0.0.1:9090. Open the printed URL and sign in as alice or bob.
// docs/demo.md describes what to try, and how to run the same setup as three processes
// with the gatehouse binary.
package main

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/examples/demo/api"
	"github.com/gatehouse-bff/gatehouse/internal/devidp"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/memstore"
)

//go:embed spa
var spaFiles embed.FS

// The gateway's client registration at the provider. It is a demo: the secret is public.
const (
	clientID     = "gatehouse-demo"
	clientSecret = "demo-secret"
)

// scopes asks for the groups claim, which the /api/admin route's rule reads, and for a
// refresh token.
var scopes = []string{"openid", "profile", "email", "groups", "offline_access"}

// shortTokenTTL is the access token lifetime with --short-tokens: short enough to watch
// Gatehouse refresh, long enough to read the page in between.
const shortTokenTTL = 15 * time.Second

// options configures run. Listen addresses may use port 0 (tests do).
type options struct {
	listen, providerListen, apiListen, adminListen string
	shortTokens                                    bool
	idleTimeout                                    time.Duration // Gatehouse's session idle timeout; 0: its default
	logger                                         *slog.Logger
	stdout                                         io.Writer // the banner with the URL to open
	// onReady, if set, is called once everything serves, with the real addresses.
	onReady func(addresses)
}

// addresses are the base URLs of the running demo.
type addresses struct {
	gateway, provider, api, admin string
	adminToken                    string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the process at once
	}()
	os.Exit(mainExit(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// mainExit parses the flags, runs the demo and returns the exit code: 0 after a clean
// shutdown, 1 when the demo cannot start, 2 for bad usage.
func mainExit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("demo", flag.ContinueOnError)
	fl.SetOutput(stderr)
	opts := options{stdout: stdout, logger: slog.New(slog.NewTextHandler(stderr, nil))}
	fl.StringVar(&opts.listen, "listen", "127.0.0.1:9080", "Gatehouse's `address` (the URL to open)")
	fl.StringVar(&opts.providerListen, "provider-listen", "127.0.0.1:9000", "the development identity provider's `address`")
	fl.StringVar(&opts.apiListen, "api-listen", "127.0.0.1:9001", "the demo API's `address`")
	fl.StringVar(&opts.adminListen, "admin-listen", "127.0.0.1:9090", "Gatehouse's admin API `address`")
	fl.BoolVar(&opts.shortTokens, "short-tokens", false, fmt.Sprintf("access tokens live %s, so that refresh can be watched", shortTokenTTL))
	fl.DurationVar(&opts.idleTimeout, "idle-timeout", 0, "end sessions after this long without activity, e.g. 2m to watch the SPA's expiry notice (default 30m)")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: go run ./examples/demo [flags]\n\nRuns a development identity provider, a demo API and Gatehouse serving a demo SPA.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments %q\n", fl.Args())
		return 2
	}
	if err := run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "demo: %s\n", strings.ReplaceAll(err.Error(), "\n", "\ndemo: "))
		return 1
	}
	return 0
}

// listenError is a listen address that cannot be used, with the flag that moves it.
type listenError struct {
	flag, addr string
	err        error
}

func (e *listenError) Error() string {
	host, port, _ := net.SplitHostPort(e.addr)
	if host == "" {
		host = "127.0.0.1"
	}
	if errors.Is(e.err, syscall.EADDRINUSE) {
		return fmt.Sprintf("port %s is in use; pass --%s %s:NNNN", port, e.flag, host)
	}
	return fmt.Sprintf("cannot listen on %s (--%s): %v", e.addr, e.flag, e.err)
}

func (e *listenError) Unwrap() error { return e.err }

// listen binds addr, which must be a loopback address: the provider signs anyone in
// without a password, and the admin token is printed on the terminal.
func listen(flagName, addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &listenError{flagName, addr, err}
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, &listenError{flagName, addr, errors.New("the demo listens on loopback addresses only (127.0.0.1, [::1], localhost)")}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &listenError{flagName, addr, err}
	}
	return ln, nil
}

// run starts the provider, the API and Gatehouse, and serves until ctx is done.
func run(ctx context.Context, opts options) (err error) {
	log := opts.logger

	// Bind every address first: taken ports are reported (all of them) before anything
	// starts, and port 0 resolves to the real port that the configurations below name.
	var lns []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}()
	var errs []error
	for _, l := range []struct{ flag, addr string }{
		{"provider-listen", opts.providerListen}, {"api-listen", opts.apiListen},
		{"listen", opts.listen}, {"admin-listen", opts.adminListen},
	} {
		ln, err := listen(l.flag, l.addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lns = append(lns, ln)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	urlOf := func(ln net.Listener) string { return "http://" + ln.Addr().String() }
	addrs := addresses{provider: urlOf(lns[0]), api: urlOf(lns[1]), gateway: urlOf(lns[2]), admin: urlOf(lns[3]),
		adminToken: rand.Text()}

	idp, err := devidp.New(providerConfig(addrs.provider, addrs.gateway, opts.shortTokens, log))
	if err != nil {
		return err
	}
	store := memstore.New(memstore.Options{})
	defer store.Close()
	spa, err := fs.Sub(spaFiles, "spa")
	if err != nil {
		return err
	}
	gw, err := gatehouse.New(gatehouse.Config{
		PublicURL: addrs.gateway,
		Provider: gatehouse.ProviderConfig{
			Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: clientSecret,
			Scopes: scopes,
		},
		// A fresh server key per run: the sessions live in this process's memory anyway.
		Session: gatehouse.SessionConfig{Store: store, IdleTimeout: opts.idleTimeout,
			Keys: [][]byte{session.NewRandomKey()}},
		Routes:   routes(addrs.api),
		Frontend: gatehouse.FrontendConfig{FS: spa},
		Admin:    gatehouse.AdminConfig{Token: addrs.adminToken},
		Logger:   log.With("component", "gatehouse"),
	})
	if err != nil {
		return err
	}
	defer gw.Close()

	// Event streams last minutes: the API ends them when shutdown starts, so that every
	// server can finish its requests instead of waiting for them.
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	apiServer := newServer(api.New(api.Config{Issuer: idp.Issuer(), Logger: log.With("component", "demoapi")}), log)
	apiServer.BaseContext = func(net.Listener) context.Context { return streams }
	apiServer.RegisterOnShutdown(endStreams)
	servers := []*http.Server{
		newServer(idp.Handler(), log), apiServer, newServer(gw, log), newServer(gw.AdminHandler(), log),
	}
	served := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { served <- srv.Serve(lns[i]) }()
	}

	if err := waitReady(ctx, gw); err != nil && ctx.Err() == nil {
		log.Warn("gatehouse is not ready yet; logins work once it is", "error", err)
	}
	if ctx.Err() == nil {
		printBanner(opts.stdout, addrs, opts.shortTokens)
		if opts.onReady != nil {
			opts.onReady(addrs)
		}
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
		log.Error("a server failed; shutting down", "error", serveErr)
	}
	shutdown(servers, log)
	return serveErr
}

// providerConfig is the development provider: one client, the gateway, and two users.
// examples/demo/devidp.yaml is the same for `gatehouse devidp`.
func providerConfig(issuer, gateway string, shortTokens bool, log *slog.Logger) devidp.Config {
	cfg := devidp.Config{
		Issuer: issuer,
		Listen: strings.TrimPrefix(issuer, "http://"),
		Clients: []devidp.Client{{
			ID: clientID, Secret: clientSecret,
			RedirectURIs:           []string{gateway + "/bff/callback"},
			PostLogoutRedirectURIs: []string{gateway + "/bff/logout/callback"},
			BackchannelLogoutURI:   gateway + "/bff/backchannel",
		}},
		Users: map[string]devidp.User{
			"alice": {Claims: map[string]any{"name": "Alice Liddell", "email": "alice@example.com", "groups": []any{"admin", "staff"}}},
			"bob":   {Claims: map[string]any{"name": "Bob", "email": "bob@example.com", "groups": []any{"staff"}}},
		},
		Logger: log,
	}
	if shortTokens {
		cfg.AccessTokenTTL = shortTokenTTL
	}
	return cfg
}

// routes sends the SPA's API calls to the demo API. examples/demo/gatehouse.yaml has the
// same routes for `gatehouse serve`.
func routes(apiURL string) []gatehouse.Route {
	return []gatehouse.Route{
		// Only admins reach /api/admin; the API checks again.
		{Path: "/api/admin", Upstream: apiURL, Token: gatehouse.TokenUser,
			Require: []gatehouse.Rule{{Claim: "groups", Contains: []string{"admin"}}}},
		// The signed-in user's access token.
		{Path: "/api/", Upstream: apiURL, Token: gatehouse.TokenUser},
		// The gateway's own client-credentials token: works without a user.
		{Path: "/client/", Upstream: apiURL, Token: gatehouse.TokenClient, Scopes: []string{"demo.status"}},
	}
}

func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// waitReady waits until the gateway has loaded the provider's metadata (it is in this
// process, so that takes moments), so that the first click on "Sign in" works.
func waitReady(ctx context.Context, gw *gatehouse.Gateway) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		err := gw.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shutdown stops all servers at once, giving requests a few seconds to finish.
func shutdown(servers []*http.Server, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn("shutdown timed out; closing the remaining connections", "error", err)
				srv.Close()
			}
		})
	}
	wg.Wait()
}

func printBanner(w io.Writer, a addresses, shortTokens bool) {
	fmt.Fprintf(w, `
Gatehouse demo is running.

  Open %s/ and sign in as alice (groups admin, staff) or bob (staff).

  gatehouse  %s   the SPA, /bff/* and the API routes
  provider   %s   development identity provider (not for production); sessions: %s/sessions
  demo API   %s   needs a bearer token: call it through Gatehouse
  admin      %s   admin token: %s
             curl -H 'Authorization: Bearer %s' '%s/admin/sessions?sub=alice'
`, a.gateway, a.gateway, a.provider, a.provider, a.api, a.admin, a.adminToken, a.adminToken, a.admin)
	if shortTokens {
		fmt.Fprintf(w, "\n  Access tokens live %s: watch the token fingerprint change in the live feed.\n", shortTokenTTL)
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n\n")
}
