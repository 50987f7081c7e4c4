package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"
)

// bareProxyMain runs the baseline: a bare httputil.ReverseProxy that forwards everything
// to the upstream with a fixed Authorization header, over a tuned transport and with
// pooled copy buffers, behind an http.Server configured as `gatehouse serve` configures
// its own. It prints "READY <addr>" when listening.
func bareProxyMain(args []string) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback)")
	target := fs.String("upstream", "", "upstream base URL")
	token := fs.String("token", "", "bearer token added to every request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *token == "" {
		return errors.New("bareproxy: -upstream and -token are required")
	}
	if err := requireLoopback(*listen); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil {
		return err
	}
	auth := []string{"Bearer " + *token}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Header["Authorization"] = auth
		},
		Transport:  tunedTransport(),
		BufferPool: bufferPool{},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	fmt.Fprintf(os.Stdout, "READY %s\n", ln.Addr())
	return srv.Serve(ln)
}

// tunedTransport is tuned as upstream.NewTransport is: many idle connections per host
// (Go's default of 2 throttles a busy proxy) and bounded dials.
func tunedTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// bufferPool reuses ReverseProxy's 32 KiB copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
