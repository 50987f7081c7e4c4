// Command gatehouse runs the Gatehouse BFF authentication gateway.
//
//	gatehouse serve  --config gatehouse.yaml   run the gateway (reloads on SIGHUP and when the file changes)
//	gatehouse check  --config gatehouse.yaml   validate a configuration, listing every problem
//	gatehouse devidp [flags]                   a local OpenID Connect provider for development
//	gatehouse probe [URL]                      exit 0 if URL (the admin /readyz) answers 2xx
//	gatehouse keygen                           print a new random session key (session.keys)
//	gatehouse keygen --derived --config FILE   print the key used when session.keys is unset
//	gatehouse schema                           print the JSON Schema of the configuration file
//	gatehouse version                          print the version
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/certfile"
	"github.com/gatehouse-bff/gatehouse/internal/devidp"
	"github.com/gatehouse-bff/gatehouse/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage:
  gatehouse serve  --config FILE   run the gateway (reloads on SIGHUP and when FILE changes; --watch=false)
  gatehouse check  --config FILE   validate a configuration file: every problem, then warnings (--strict: fail on them)
  gatehouse devidp [flags]         run a local OpenID Connect provider for development (see gatehouse devidp -h)
  gatehouse probe  [URL]           GET URL (default http://127.0.0.1:9090/readyz); exit 0 on 2xx (container health checks)
  gatehouse keygen                 print a new random 32-byte key for session.keys
  gatehouse keygen --derived --config FILE
                                   print the key used while session.keys is unset (to move to explicit keys)
  gatehouse schema                 print the JSON Schema of the configuration file (for editors)
  gatehouse version                print the version

--config defaults to $GATEHOUSE_CONFIG, else gatehouse.yaml. Every command takes --help.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "check":
		return check(ctx, args[1:], stdout, stderr)
	case "devidp":
		return devidp.Main(ctx, args[1:], stdout, stderr)
	case "probe":
		return probe(ctx, args[1:], stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "schema":
		return printSchema(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		if len(args) > 1 && isHelp(args[1]) {
			fmt.Fprint(stdout, "Usage: gatehouse version\n\nPrint the version, the Go version it was built with and, when built from git, the commit.\n")
			return 0
		}
		fmt.Fprintf(stdout, "gatehouse %s (%s%s)\n", version(), runtime.Version(), buildCommit())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// keygen prints a new random key, or with --derived the key a configuration without
// session.keys seals with, so that it can be listed while moving to explicit keys.
func keygen(args []string, stdout, stderr io.Writer) int {
	var derived bool
	path, code, ok := configFlag("keygen", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&derived, "derived", false, "print the key derived from the provider settings of --config")
	})
	if !ok {
		return code
	}
	if !derived {
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(session.NewRandomKey()))
		return 0
	}
	l, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(l.gw.DerivedServerKey()))
	return 0
}

func version() string {
	if gatehouse.Version != "dev" {
		return gatehouse.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// buildCommit is ", commit <hash> <time>" from the build's VCS stamp (go build records it
// from git; -buildvcs), with "+modified" for a work tree with uncommitted changes, or "".
func buildCommit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return ", commit " + rev + modified + " " + at
}

// configFlag parses a subcommand's flags: --config (default $GATEHOUSE_CONFIG, else
// gatehouse.yaml) and those extra adds. When ok is false the command ends with code:
// 0 after --help (the usage on stdout), 2 after bad usage (on stderr).
func configFlag(name string, args []string, stdout, stderr io.Writer, extra ...func(*flag.FlagSet)) (path string, code int, ok bool) {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	def := "gatehouse.yaml"
	if env := os.Getenv("GATEHOUSE_CONFIG"); env != "" {
		def = env
	}
	p := fs.String("config", def, "configuration `file` (default from $GATEHOUSE_CONFIG when set)")
	for _, f := range extra {
		f(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: gatehouse %s [flags]\n\n", name)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return "", code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatehouse %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", 2, false
	}
	return *p, 0, true
}

// parseFlags parses args with fs; -h or --help prints the usage on stdout and ends the
// command with 0, a bad flag prints it on stderr and ends it with 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		stdout.Write(out.Bytes())
		return 0, false
	case err != nil:
		stderr.Write(out.Bytes())
		return 2, false
	}
	return 0, true
}

func check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var online, strict bool
	var timeout time.Duration
	path, code, ok := configFlag("check", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&online, "online", false, "also contact the provider (discovery), the session store and the upstreams")
		fs.DurationVar(&timeout, "timeout", 15*time.Second, "how long --online waits for each")
		fs.BoolVar(&strict, "strict", false, "exit 1 when there are warnings (weaker options, production footguns)")
	})
	if !ok {
		return code
	}
	l, err := loadConfig(path)
	if err == nil {
		err = buildOffline(l)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	weaker := append(l.warnings, l.gw.WeakerOptions()...)
	if l.apps == nil {
		fmt.Fprintf(stdout, "%s: configuration OK (%d route(s), session store %s, provider %s)\n",
			path, len(l.gw.Routes), storeKind(l.storeURL), l.gw.Provider.Issuer)
	} else {
		fmt.Fprintf(stdout, "%s: configuration OK (%d frontends, session store %s)\n", path, len(l.apps), storeKind(l.storeURL))
		for _, a := range l.apps {
			issuers := []string{}
			for _, p := range append([]gatehouse.ProviderConfig{a.Provider}, a.Providers...) {
				if p.Issuer != "" && !slices.Contains(issuers, p.Issuer) {
					issuers = append(issuers, p.Issuer)
				}
			}
			fmt.Fprintf(stdout, "  frontend %s: %s, %d route(s), provider(s) %s\n", a.Name, a.PublicURL, len(a.Routes), strings.Join(issuers, ", "))
		}
		fmt.Fprintln(stdout, "note: a frontend removed from this file (on reload, or at a restart) ends none of its sessions: they stay in the store until they expire and open again if it comes back; to end them, do it before removing it, with the admin API (DELETE /admin/sessions?sub=…&frontend=<name>)")
		for _, a := range l.apps[1:] {
			for _, w := range a.WeakerOptions() {
				if !slices.Contains(weaker, w) {
					weaker = append(weaker, "frontends["+a.Name+"]."+w)
				}
			}
		}
	}
	for _, w := range weaker {
		fmt.Fprintf(stdout, "warning: %s weakens the defaults\n", w)
	}
	footguns := footguns(l)
	for _, f := range footguns {
		fmt.Fprintf(stdout, "warning: %s\n", f)
	}
	code = 0
	if online {
		code = checkOnline(ctx, l, path, timeout, stdout, stderr)
	}
	if strict && code == 0 && len(weaker)+len(footguns) > 0 {
		fmt.Fprintf(stderr, "%s: %d warning(s) and --strict\n", path, len(weaker)+len(footguns))
		return 1
	}
	return code
}

// served is what serve runs: a Gateway (one app) or a Multi (frontends:).
type served interface {
	http.Handler
	AdminHandler() http.Handler
	HealthHandler() http.Handler
	LimitListener(net.Listener) net.Listener
	Drain(context.Context) error
	Close() error
	ReloadFailed(error)
}

// newServed starts what l describes. The apps of a file with frontends get what serve
// set up on l.gw: the loggers, the store, the rate limiter and the tracer.
func newServed(l *loaded) (served, error) {
	if l.apps == nil {
		return gatehouse.New(l.gw)
	}
	mc := l.multiConfig()
	for i := range mc.Frontends {
		c := &mc.Frontends[i]
		c.AuditLogger, c.AccessLogger, c.Session.Store = l.gw.AuditLogger, l.gw.AccessLogger, l.gw.Session.Store
		c.RateLimiter, c.TracerProvider, c.Logger = l.gw.RateLimiter, l.gw.TracerProvider, l.gw.Logger
	}
	return gatehouse.NewMulti(mc)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	watch := true
	path, code, ok := configFlag("serve", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&watch, "watch", true, "reload when the configuration file or a *_file it names changes (SIGHUP reloads either way)")
	})
	if !ok {
		return code
	}
	l, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	log := l.logger
	for _, w := range l.warnings {
		log.Warn("weaker security option in use", "option", w)
	}
	var audit *auditFile
	if l.auditPath != "" {
		if audit, err = openAuditFile(l.auditPath); err != nil {
			log.Error("cannot open the audit log", "field", "audit_log.output", "error", err)
			return 1
		}
		defer audit.Close()
		l.gw.AuditLogger = auditLogger(audit)
	}
	var access *auditFile // the same kind of file: appended to, reopened on SIGHUP
	if l.accessPath != "" {
		if access, err = openAuditFile(l.accessPath); err != nil {
			log.Error("cannot open the access log", "field", "log.access_file", "error", err)
			return 1
		}
		defer access.Close()
		l.gw.AccessLogger = accessLogger(access)
	}
	store, err := openStore(ctx, l, filepath.Dir(path))
	if err != nil {
		log.Error("cannot open the session store", "error", err)
		return 1
	}
	l.gw.Session.Store = store
	l.gw.RateLimiter = limiterFor(store, l)
	if l.tracing.enabled {
		tp, err := startTracing(ctx, l.tracing, log)
		if err != nil {
			log.Error("cannot start tracing", "error", err)
			return 1
		}
		defer stopTracing(tp, log) // after the gateway's Close: its last spans are flushed
		l.gw.TracerProvider = tp
	}
	gw, err := newServed(l)
	if err != nil {
		log.Error("invalid configuration", "error", err)
		return 1
	}
	defer func() {
		gw.Close()
		if c, ok := store.(session.Closer); ok {
			c.Close()
		}
	}()

	listen := l.file.Listen
	if listen == "" {
		listen = "127.0.0.1:9080"
	}
	// Requests' contexts derive from base: cancelling it at the end of the drain closes
	// the WebSockets that are still open.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	var public http.Handler = gw
	if l.tls != nil && l.tls.hsts != "" {
		public = withHSTS(gw, l.tls.hsts)
	}
	srv := publicServer(l, public, base, log)
	var certs *certfile.Reloader // the certificate files, reloaded with the configuration
	if l.tls != nil {
		if srv.TLSConfig, certs, err = publicTLS(l.tls, log); err != nil {
			log.Error("cannot load the TLS certificate", "field", "tls.cert_file", "error", err)
			return 1
		}
	}
	servers := []*http.Server{srv}
	listeners := map[*http.Server]net.Listener{}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Error("cannot listen", "address", listen, "error", err)
		return 1
	}
	listeners[srv] = gw.LimitListener(ln)
	if l.tls != nil && l.tls.httpListen != "" {
		challenges := adminServer(l, acmeHTTPHandler(l.tls.acme, l.gw.PublicURL), log)
		cln, err := net.Listen("tcp", l.tls.httpListen)
		if err != nil {
			log.Error("cannot listen", "field", "tls.acme.http_listen", "address", l.tls.httpListen, "error", err)
			return 1
		}
		servers = append(servers, challenges)
		listeners[challenges] = cln
		log.Info("ACME HTTP-01 listener (challenges; redirects the rest to https)", "address", cln.Addr().String())
	}
	if l.file.Admin.Listen != "" {
		admin := adminServer(l, gw.AdminHandler(), log)
		aln, err := net.Listen("tcp", l.file.Admin.Listen)
		if err != nil {
			log.Error("cannot listen", "address", l.file.Admin.Listen, "error", err)
			return 1
		}
		servers = append(servers, admin)
		listeners[admin] = aln
		log.Info("admin listener", "address", aln.Addr().String())
	}
	if l.file.Health.Listen != "" {
		health := healthServer(l, gw.HealthHandler(), log)
		hln, err := net.Listen("tcp", l.file.Health.Listen)
		if err != nil {
			log.Error("cannot listen", "field", "health.listen", "address", l.file.Health.Listen, "error", err)
			return 1
		}
		servers = append(servers, health)
		listeners[health] = hln
		log.Info("health listener (/healthz, /readyz)", "address", hln.Addr().String())
	}
	log.Info("gatehouse listening", "address", ln.Addr().String(), "public_url", l.gw.PublicURL, "tls", tlsMode(l.tls),
		"version", version(), "store", storeKind(l.storeURL))
	for _, a := range l.apps {
		log.Info("frontend", "frontend", a.Name, "public_url", a.PublicURL, "routes", len(a.Routes), "providers", max(len(a.Providers), 1))
	}

	errc := make(chan error, len(servers))
	for _, s := range servers {
		if s.TLSConfig != nil {
			// ServeTLS, not Serve on a TLS listener: it sets up HTTP/2 and adds h2 and
			// http/1.1 to the protocols offered.
			go func() { errc <- s.ServeTLS(listeners[s], "", "") }()
			continue
		}
		go func() { errc <- s.Serve(listeners[s]) }()
	}
	if l.tls != nil && l.tls.acme != nil {
		go warmACME(base, srv.TLSConfig, l.tls.domains)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var watcher *configWatcher
	if watch {
		if watcher, err = newConfigWatcher(watchedFiles(path, l.file), reloadDebounce, log); err != nil {
			log.Warn("cannot watch the configuration file: reload with SIGHUP", "error", err)
		}
		defer watcher.Close()
	}
	doReload := func(why string) {
		log.Info("reloading the configuration", "trigger", why)
		next := reload(path, l, gw, audit, log)
		if next != nil && certs != nil {
			reloadCert(certs, gw, log)
		}
		if next != nil && watcher != nil {
			if err := watcher.SetFiles(watchedFiles(path, next.file)); err != nil {
				log.Warn("cannot watch the configuration files", "error", err)
			}
		}
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			reopenAccessLog(access, log) // after logrotate
			doReload("SIGHUP")
		case <-watcher.Changed():
			doReload("file changed")
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("server failed", "error", err)
				return 1
			}
		}
	}

	// Graceful shutdown: /readyz turns 503, the listeners close, requests in flight
	// finish and WebSockets get until the drain timeout to close by themselves.
	timeout := durationOr(l.file.Server.ShutdownTimeout, 30*time.Second)
	log.Info("shutting down: draining requests and WebSockets", "timeout", timeout.String())
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		gw.Drain(sctx)
	}()
	if d := time.Duration(l.file.Server.ShutdownDelay); d > 0 {
		// Keep serving while /readyz says "draining", so that load balancers stop sending
		// new requests here before the listener closes.
		log.Info("shutting down: waiting before closing the listener", "shutdown_delay", d.String())
		time.Sleep(d)
	}
	forced := servers[0].Shutdown(sctx) != nil
	<-drained
	// The admin and health listeners go last, so /readyz says "draining" while the
	// public one drains.
	for _, s := range servers[1:] {
		if s.Shutdown(sctx) != nil {
			forced = true
		}
	}
	if sctx.Err() != nil {
		forced = true
	}
	if forced {
		cancelBase()
		for _, s := range servers {
			s.Close()
		}
		log.Warn("shutdown: the drain timeout passed; remaining connections were closed", "timeout", timeout.String())
	}
	log.Info("stopped", "drain", time.Since(start).Round(time.Millisecond).String())
	return 0
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func durationOr(d duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

func storeKind(u string) string {
	kind, _, _ := strings.Cut(u, "://")
	return kind
}

// probe is `gatehouse probe [URL]`: a health check for images without a shell or curl.
func probe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	target := "http://127.0.0.1:9090/readyz"
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprint(stdout, "Usage: gatehouse probe [URL]\n\nGET URL (default "+target+"); exit 0 on 2xx, 1 otherwise.\n")
		return 0
	}
	switch len(args) {
	case 0:
	case 1:
		target = args[0]
	default:
		fmt.Fprint(stderr, "usage: gatehouse probe [URL]\n")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintf(stderr, "gatehouse probe: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "gatehouse probe: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s\n", resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
