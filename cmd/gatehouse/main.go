// Command gatehouse runs the Gatehouse BFF authentication gateway.
//
//	gatehouse serve  --config gatehouse.yaml   run the gateway
//	gatehouse check  --config gatehouse.yaml   validate a configuration, listing every problem
//	gatehouse devidp [flags]                   a local OpenID Connect provider for development
//	gatehouse keygen                           print a new random session key (session.keys)
//	gatehouse version                          print the version
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
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
  gatehouse serve  --config FILE   run the gateway
  gatehouse check  --config FILE   validate a configuration file and list every problem
  gatehouse devidp [flags]         run a local OpenID Connect provider for development (see gatehouse devidp -h)
  gatehouse keygen                 print a new random 32-byte key for session.keys
  gatehouse version                print the version
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
		return check(args[1:], stdout, stderr)
	case "devidp":
		return devidp.Main(ctx, args[1:], stdout, stderr)
	case "keygen":
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(session.NewRandomKey()))
		return 0
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "gatehouse %s (%s)\n", version(), runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", args[0], usage)
	return 2
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

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "gatehouse.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatehouse %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func check(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	l, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration OK (%d route(s), session store %s, provider %s)\n",
		path, len(l.gw.Routes), storeKind(l.storeURL), l.gw.Provider.Issuer)
	for _, w := range append(l.warnings, l.gw.WeakerOptions()...) {
		fmt.Fprintf(stdout, "warning: %s weakens the defaults\n", w)
	}
	return 0
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
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
	store, err := openStore(ctx, l, filepath.Dir(path))
	if err != nil {
		log.Error("cannot open the session store", "error", err)
		return 1
	}
	l.gw.Session.Store = store
	gw, err := gatehouse.New(l.gw)
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
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: durationOr(l.file.Server.ReadHeaderTimeout, 10*time.Second),
		IdleTimeout:       durationOr(l.file.Server.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	servers := []*http.Server{srv}
	listeners := map[*http.Server]net.Listener{}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Error("cannot listen", "address", listen, "error", err)
		return 1
	}
	listeners[srv] = ln
	if l.file.Admin.Listen != "" {
		admin := &http.Server{Handler: gw.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		aln, err := net.Listen("tcp", l.file.Admin.Listen)
		if err != nil {
			log.Error("cannot listen", "address", l.file.Admin.Listen, "error", err)
			return 1
		}
		servers = append(servers, admin)
		listeners[admin] = aln
		log.Info("admin listener", "address", aln.Addr().String())
	}
	log.Info("gatehouse listening", "address", ln.Addr().String(), "public_url", l.gw.PublicURL,
		"version", version(), "store", storeKind(l.storeURL))

	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.Serve(listeners[s]) }()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("server failed", "error", err)
			return 1
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), durationOr(l.file.Server.ShutdownTimeout, 10*time.Second))
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	return 0
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
