// Command bench is Gatehouse's published, reproducible benchmark. Run it with
//
//	bench/run.sh            # about 10 minutes
//	bench/run.sh --quick    # about 2 minutes
//
// which installs wrk and redis-server when missing, builds this program and the
// gatehouse binary, and runs `bench run`. On loopback it starts a small upstream, a bare
// httputil.ReverseProxy (the baseline), one gatehouse per session store and the peers
// (nginx, Apache mod_auth_openidc: peers.go), logs in through the development provider,
// and measures every variant with wrk, alternating in
// rounds so that machine noise hits all alike. It then measures the refresh storm,
// memory per session, logins per second against oidc-provider (e2e/), and the in-process
// `go test -bench` figures, prints the tables and writes them into docs/benchmarks.md.
//
// `bench chaos` (bench/chaos.sh) is the chaos run of docs/reliability.md: three replicas
// behind a balancer, Redis with Sentinel, oidc-provider, faults injected under load.
//
// The other subcommands are the benchmark's own processes: upstream, bareproxy,
// memsession and gatehouse (the library with pprof, for -profile). Everything listens on 127.0.0.1 only.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench run [flags] | chaos [flags] | upstream | bareproxy | memsession  (see bench/run.sh)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "chaos":
		err = chaosMain(os.Args[2:])
	case "upstream":
		err = upstreamMain(os.Args[2:])
	case "bareproxy":
		err = bareProxyMain(os.Args[2:])
	case "gatehouse":
		err = embeddedMain(os.Args[2:])
	case "memsession":
		err = memSessionMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
