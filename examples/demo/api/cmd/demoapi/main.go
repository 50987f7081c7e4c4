// Command demoapi runs the demo API on its own, for the three-process variant of the
// demo (docs/demo.md):
//
//	go run ./examples/demo/api/cmd/demoapi --listen 127.0.0.1:9001 --issuer http://127.0.0.1:9000
//
// `go run ./examples/demo` starts the same API in-process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-bff/gatehouse/examples/demo/api"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "listen `address`")
	issuer := flag.String("issuer", "http://127.0.0.1:9000", "the provider whose access tokens are accepted (`URL`)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, *listen, *issuer); err != nil {
		log.Error("demoapi failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, issuer string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	// Event streams last minutes: end them when shutdown starts instead of waiting.
	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := &http.Server{
		Handler:           api.New(api.Config{Issuer: issuer, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return streams },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(endStreams)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stdout, "demoapi: listening on http://%s, accepting tokens of %s\n", ln.Addr(), issuer)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; closing the remaining connections", "error", err)
		srv.Close()
	}
	return nil
}
