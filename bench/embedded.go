package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-bff/gatehouse"
	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/boltstore"
	"github.com/gatehouse-bff/gatehouse/session/redisstore"
)

// embeddedMain runs the Gateway as a library, configured as the benchmark's YAML
// configures the binary, with net/http/pprof on a second loopback listener: the
// binary has no profiling endpoint, so `bench run -profile DIR` profiles this twin.
// It prints "READY <public addr> <debug addr>".
func embeddedMain(args []string) error {
	fs := flag.NewFlagSet("gatehouse", flag.ContinueOnError)
	listen := fs.String("listen", "", "public listen address (loopback)")
	debug := fs.String("debug", "127.0.0.1:0", "pprof and admin listen address (loopback)")
	issuer := fs.String("issuer", "", "provider issuer")
	store := fs.String("store", "memory", "memory, bolt://path or redis://addr/db")
	up := fs.String("upstream", "", "upstream URL of the /api/ route")
	fast := fs.Bool("fast", false, "carry the route on the fast upstream path (upstream_transport: fast)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := errorsJoin(requireLoopback(*listen), requireLoopback(*debug)); err != nil {
		return err
	}
	var st session.Store
	switch {
	case *store == "memory":
	case strings.HasPrefix(*store, "bolt://"):
		b, err := boltstore.Open(boltstore.Options{Path: filepath.Clean(strings.TrimPrefix(*store, "bolt://"))})
		if err != nil {
			return err
		}
		defer b.Close()
		st = b
	case strings.HasPrefix(*store, "redis://"):
		r, err := redisstore.Open(context.Background(), redisstore.Options{URL: *store})
		if err != nil {
			return err
		}
		defer r.Close()
		st = r
	default:
		return fmt.Errorf("unknown store %q", *store)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mode := gatehouse.TransportStandard
	if *fast {
		mode = gatehouse.TransportFast
	}
	gw, err := gatehouse.New(gatehouse.Config{
		UpstreamTransportMode: mode,
		PublicURL:             "http://" + *listen,
		Provider:              gatehouse.ProviderConfig{Issuer: *issuer, ClientID: benchClientID, ClientSecret: benchClientSecret},
		Session:               gatehouse.SessionConfig{Store: st},
		Routes:                []gatehouse.Route{{Path: "/api/", Upstream: *up, Token: gatehouse.TokenUser}},
		Logger:                logger,
		// Audit records go to stderr as with the binary's default.
		AuditLogger: slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer gw.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	dln, err := net.Listen("tcp", *debug)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/", gw.AdminHandler())
	go http.Serve(dln, mux)
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	fmt.Fprintf(os.Stdout, "READY %s %s\n", ln.Addr(), dln.Addr())
	return srv.Serve(ln)
}

func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// profileStores runs wrk against an embedded twin of each gatehouse and saves a CPU
// profile of it taken meanwhile, as DIR/cpu-<store>.pprof (and cpu-memory-fast.pprof,
// the memory store on the fast upstream path).
func (e *env) profileStores(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, s := range append(slices.Clone(stores), "memory-fast") {
		g := e.gateways[s]
		step("profiling an embedded gatehouse with the %s store", s)
		// The twin takes over the gateway's public address (a registered redirect
		// URI): stop the binary first.
		g.p.stop()
		storeURL := map[string]string{"memory": "memory", "bolt": "bolt://" + filepath.Join(e.dir, "profile.db"),
			"redis": "redis://" + e.redisAddr + "/1", "memory-fast": "memory"}[s]
		p, err := startProc(e.dir, "embedded-"+s, e.o.proxyCPUs, 1, true, e.self, "gatehouse",
			"-listen", strings.TrimPrefix(g.url, "http://"), "-issuer", e.idp.issuer, "-store", storeURL, "-upstream", e.upURL,
			fmt.Sprintf("-fast=%t", s == "memory-fast"))
		if err != nil {
			return err
		}
		e.ps.add(p)
		debugAddr := strings.Fields(p.addr)[1]
		if err := waitHTTP(p, "http://"+debugAddr+"/readyz"); err != nil {
			return err
		}
		cookie, tok, err := login(e.idp, g.url, false)
		if err != nil {
			return err
		}
		v := &variant{name: s, target: g.url + "/api/orders", token: tok.AccessToken, proxy: p,
			headers: []string{"X-CSRF: 1", "Sec-Fetch-Site: same-origin", "Accept: application/json", "Cookie: __Host-gatehouse=" + cookie + "; theme=dark"}}
		secs := int(e.o.duration.Seconds())
		profErr := make(chan error, 1)
		go func() {
			time.Sleep(time.Second)
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, max(secs-2, 1)))
			if err != nil {
				profErr <- err
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, "cpu-"+s+".pprof"))
			if err != nil {
				profErr <- err
				return
			}
			_, err = io.Copy(f, resp.Body)
			f.Close()
			if err == nil {
				// Where the goroutines wait, at the end of the profile.
				err = saveURL(fmt.Sprintf("http://%s/debug/pprof/goroutine?debug=1", debugAddr), filepath.Join(dir, "goroutines-"+s+".txt"))
			}
			profErr <- err
		}()
		saved := e.o.warmup
		e.o.warmup = 0
		smp, err := e.measure(v)
		e.o.warmup = saved
		if err != nil {
			return err
		}
		if err := <-profErr; err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  %s: %.0f req/s, %.1f µs/req; go tool pprof -top %s\n", s, smp.wrk.RPS(), smp.proxyCPU,
			filepath.Join(dir, "cpu-"+s+".pprof"))
		p.stop()
	}
	return nil
}
