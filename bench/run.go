package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options of `bench run`.
type options struct {
	quick           bool
	rounds          int
	duration        time.Duration
	warmup          time.Duration
	conns           int
	out             string
	skip            map[string]bool
	sessions        int
	storm           int
	logins          int
	syscallRequests int
	loadCPUs        string // wrk, the upstream, redis and the runner
	proxyCPUs       string // the proxy under test
	repo            string
	keep            bool
	profile         string
	compare         string
	gomaxprocs      int
	maxOther        float64
	gobenchTime     string
	gobenchN        int
	peers           []string // bench/peers.go
	only            map[string]bool
}

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	o := &options{}
	fs.BoolVar(&o.quick, "quick", false, "about 2 minutes: fewer and shorter rounds, fewer sessions and logins")
	rounds := fs.Int("rounds", 0, "rounds of wrk runs (default 8, quick 3)")
	duration := fs.Duration("duration", 0, "measured time of each wrk run (default 6s, quick 3s)")
	warmup := fs.Duration("warmup", 0, "unmeasured wrk run before each measured one (default 1s)")
	fs.IntVar(&o.conns, "connections", 64, "wrk connections")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown file whose results section is rewritten (empty: print only)")
	skip := fs.String("skip", "", "comma-separated parts to skip: proxy, syscalls, storm, memory, logins, gobench")
	syscallN := fs.Int("syscall-requests", 0, "requests sent through each proxy while strace counts its system calls (default 20000, quick 10000)")
	sessions := fs.Int("sessions", 0, "sessions created for the memory measure (default 100000, quick 20000)")
	fs.IntVar(&o.storm, "storm", 1000, "concurrent calls in the refresh storm")
	logins := fs.Int("logins", 0, "logins against oidc-provider (default 400, quick 100)")
	fs.StringVar(&o.loadCPUs, "load-cpus", "0", "CPUs (taskset list) for wrk, the upstream and redis")
	fs.StringVar(&o.proxyCPUs, "proxy-cpus", "1", "CPUs (taskset list) for the proxy under test")
	fs.Float64Var(&o.maxOther, "max-other-load", 0.1, "CPUs other processes may use during a run before it is done again")
	fs.IntVar(&o.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS of the proxies and the upstream")
	fs.StringVar(&o.repo, "repo", ".", "repository root")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, configs)")
	fs.StringVar(&o.compare, "compare", "", "another gatehouse binary to measure too (memory store), e.g. a build of an older commit")
	peers := fs.String("peers", strings.Join(defaultPeers, ","), "comma-separated peers measured in the same rounds: "+
		strings.Join(knownPeers, ", ")+" (nginx-authreq: nginx auth_request to gatehouse's /bff/auth; not a default), or none")
	only := fs.String("only", "", "comma-separated variants to measure (direct, memory, bolt, redis, a peer…); the bare proxy always runs, as ratios need it")
	fs.StringVar(&o.profile, "profile", "", "directory for CPU profiles of each store's gatehouse under wrk (cpu-<store>.pprof)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	pick := func(set int, full, quick int) int {
		if set > 0 {
			return set
		}
		if o.quick {
			return quick
		}
		return full
	}
	pickD := func(set, full, quick time.Duration) time.Duration {
		if set > 0 {
			return set
		}
		if o.quick {
			return quick
		}
		return full
	}
	if runtime.NumCPU() < 2 && o.proxyCPUs == "1" {
		o.proxyCPUs = "0" // one CPU: everything shares it
	}
	// Many short rounds rather than a few long ones: on a shared machine, a disturbed
	// stretch then spoils fewer of them, and the medians stay steady.
	o.rounds = pick(*rounds, 8, 3)
	o.duration = pickD(*duration, 6*time.Second, 3*time.Second)
	o.warmup = pickD(*warmup, time.Second, time.Second)
	o.sessions = pick(*sessions, 100000, 20000)
	o.syscallRequests = pick(*syscallN, 20000, 10000)
	o.logins = pick(*logins, 400, 100)
	o.gobenchTime, o.gobenchN = "1s", 5
	if o.quick {
		o.gobenchTime, o.gobenchN = "300ms", 2
	}
	var err error
	if o.peers, err = parsePeers(*peers); err != nil {
		return nil, err
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.only[s] = true
		}
	}
	o.skip = map[string]bool{}
	for _, s := range strings.Split(*skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.skip[s] = true
		}
	}
	return o, nil
}

// env is everything the runner started.
type env struct {
	o         *options
	dir       string
	self      string
	gatehouse string
	ps        procs
	idp       *benchIDP
	up        *proc
	upURL     string
	ctlURL    string // the upstream's control listener
	redisAddr string
	gateways  map[string]*gateway
	bare      *proc
	bareToken string
	script    string
	peers     []*peer
}

type gateway struct {
	store  string
	url    string
	admin  string
	p      *proc
	cookie string
	token  string
}

var stores = []string{"memory", "bolt", "redis"}

// fastStores are gatehouses with `upstream_transport: fast`, measured in the proxy rounds
// beside the stores on the standard path.
var fastStores = []string{"memory-fast", "redis-fast"}

func runMain(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	if err := os.Chdir(o.repo); err != nil {
		return err
	}
	for _, tool := range []string{"wrk", "taskset", "redis-server", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run bench/run.sh, which installs what is missing", tool)
		}
	}
	if !o.skip["proxy"] {
		if err := checkPeerTools(o.peers); err != nil {
			return err
		}
	} else {
		o.peers = nil
	}
	e := &env{o: o, gateways: map[string]*gateway{}}
	if e.dir, err = os.MkdirTemp("", "gatehouse-bench-"); err != nil {
		return err
	}
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	defer func() {
		e.ps.stopAll()
		if e.idp != nil {
			e.idp.close()
		}
		if o.keep {
			fmt.Fprintf(os.Stderr, "work directory kept: %s\n", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}()
	// Ctrl-C: stop the children (by PID) before leaving.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "\ninterrupted: stopping the benchmark's processes")
		e.ps.stopAll()
		os.RemoveAll(e.dir)
		os.Exit(130)
	}()

	rep := &report{opts: o, machine: describeMachine(), started: time.Now()}
	step("building gatehouse")
	e.gatehouse = filepath.Join(e.dir, "gatehouse")
	if err := runCmd("go", "build", "-o", e.gatehouse, "./cmd/gatehouse"); err != nil {
		return err
	}
	if e.script, err = writeWrkScript(e.dir); err != nil {
		return err
	}
	// The parts that compile from the working tree run first, next to the build of the
	// binary: all figures then come from the same sources, whatever changes meanwhile.
	if !o.skip["gobench"] {
		if rep.gobench, err = runGoBench(o); err != nil {
			return err
		}
	}
	if !o.skip["logins"] {
		if rep.logins, err = runLogins(o); err != nil {
			return err
		}
	}
	if err := e.startAll(); err != nil {
		return err
	}

	if !o.skip["proxy"] {
		if rep.proxy, err = e.proxyRounds(); err != nil {
			return err
		}
	}
	if !o.skip["storm"] {
		if rep.storms, err = e.refreshStorms(); err != nil {
			return err
		}
	}
	if !o.skip["syscalls"] && !o.skip["proxy"] {
		if rep.syscalls, err = e.countSyscalls(); err != nil {
			return err
		}
	}
	if !o.skip["memory"] {
		if rep.memory, err = e.memoryPerSession(); err != nil {
			return err
		}
	}
	if o.profile != "" {
		if err := e.profileStores(o.profile); err != nil {
			return err
		}
	}
	e.ps.stopAll()
	rep.finished = time.Now()
	md := rep.markdown()
	fmt.Println()
	fmt.Println(md)
	if o.out != "" {
		if err := writeResults(o.out, md); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "results written to %s\n", o.out)
	}
	if fails := rep.failures(); len(fails) > 0 {
		// Targets missed are reported, not fatal: the benchmark is a measure, not a test.
		fmt.Fprintf(os.Stderr, "targets missed:\n  %s\n", strings.Join(fails, "\n  "))
	}
	return nil
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "\033[1m== "+format+"\033[0m\n", args...)
}

func runCmd(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// startAll starts the upstream, Redis, the provider, one gatehouse per store (each with
// a logged-in session) and the bare proxy.
func (e *env) startAll() error {
	o := e.o
	step("starting the upstream, redis-server, the provider, 3 gatehouses and the bare proxy")
	var err error
	e.up, err = startProc(e.dir, "upstream", o.loadCPUs, o.gomaxprocs, true, e.self, "upstream")
	if err != nil {
		return err
	}
	e.ps.add(e.up)
	addrs := strings.Fields(e.up.addr)
	e.upURL, e.ctlURL = "http://"+addrs[0], "http://"+addrs[1]

	redisPort, err := freePort()
	if err != nil {
		return err
	}
	e.redisAddr = fmt.Sprintf("127.0.0.1:%d", redisPort)
	rp, err := startRedis(e.dir, "redis", o.loadCPUs, redisPort)
	if err != nil {
		return err
	}
	e.ps.add(rp)

	names := slices.Concat(stores, fastStores)
	if o.compare != "" {
		names = append(names, "compare")
	}
	if contains(o.peers, "nginx-authreq") {
		names = append(slices.Clone(names), "authreq")
	}
	var origins []string
	for _, s := range names {
		pub, err1 := freePort()
		adm, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		g := &gateway{store: s, url: fmt.Sprintf("http://127.0.0.1:%d", pub), admin: fmt.Sprintf("http://127.0.0.1:%d", adm)}
		e.gateways[s] = g
		origins = append(origins, g.url)
	}
	var modAuth []*peer
	var extraRedirects []string
	for _, name := range o.peers {
		if strings.HasPrefix(name, "modauth-") {
			pr, err := reserveModAuth(name)
			if err != nil {
				return err
			}
			modAuth = append(modAuth, pr)
			extraRedirects = append(extraRedirects, pr.url+"/redirect_uri")
		}
	}
	if e.idp, err = startIDP(origins, extraRedirects...); err != nil {
		return err
	}
	for _, s := range names {
		g := e.gateways[s]
		bin := e.gatehouse
		if s == "compare" {
			bin = o.compare
		}
		storeURL := map[string]string{
			"authreq": "memory",
			"compare": "memory",
			"memory":  "memory",
			"bolt":    "bolt://" + filepath.Join(e.dir, "sessions.db"),
			"redis":   "redis://" + e.redisAddr + "/0",
			// The same Redis, another database: the two gatehouses share nothing.
			"memory-fast": "memory",
			"redis-fast":  "redis://" + e.redisAddr + "/2",
		}[s]
		cfg := gatehouseConfig(g.url, g.admin, e.idp.issuer, storeURL, e.upURL)
		switch {
		case slices.Contains(fastStores, s):
			cfg += "upstream_transport: fast\n"
		case s != "compare": // an older build has its own default, and may not know the field
			cfg += "upstream_transport: standard\n"
		}
		if s == "authreq" {
			cfg += authReqGatehouseYAML
		}
		if s == "compare" {
			// An older build may not know server.max_connections_per_client; the refresh
			// storm, which needs it, does not run against the compared binary.
			cfg, _, _ = strings.Cut(cfg, "# Every load generator")
		}
		path := filepath.Join(e.dir, "gatehouse-"+s+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return err
		}
		if g.p, err = startProc(e.dir, "gatehouse-"+s, o.proxyCPUs, o.gomaxprocs, false, bin, "serve", "--config", path); err != nil {
			return err
		}
		e.ps.add(g.p)
		if err := waitHTTP(g.p, g.admin+"/readyz"); err != nil {
			return err
		}
		cookie, tok, err := login(e.idp, g.url, false)
		if err != nil {
			return fmt.Errorf("logging in at the %s gatehouse: %w", s, err)
		}
		g.cookie, g.token = cookie, tok.AccessToken
	}

	// The baseline adds a fixed token as long as a real one.
	bareToken := randomToken(len(e.gateways["memory"].token))
	if e.bare, err = startProc(e.dir, "bareproxy", o.proxyCPUs, o.gomaxprocs, true, e.self, "bareproxy",
		"-upstream", e.upURL, "-token", bareToken); err != nil {
		return err
	}
	e.ps.add(e.bare)
	e.bareToken = bareToken

	for _, name := range o.peers {
		switch name {
		case "nginx", "nginx-authreq":
			authReq := ""
			if name == "nginx-authreq" {
				authReq = e.gateways["authreq"].url
			}
			step("starting peer %s", name)
			pr, err := e.startNginx(name, authReq)
			if err != nil {
				return err
			}
			if name == "nginx-authreq" {
				pr.token = e.gateways["authreq"].token
			}
			e.peers = append(e.peers, pr)
		}
	}
	for _, pr := range modAuth {
		step("starting peer %s and logging in through it", pr.name)
		if err := e.startModAuth(pr); err != nil {
			return err
		}
		e.peers = append(e.peers, pr)
	}
	return nil
}

// gatehouseConfig is the YAML of one benchmarked gatehouse: one `token: user` route.
func gatehouseConfig(public, admin, issuer, store, upstream string) string {
	return fmt.Sprintf(`# gatehouse for the benchmark (bench/): one token: user route to the upstream
listen: %s
public_url: %s
provider:
  issuer: %s
  client_id: %s
  client_secret: %s
session:
  store: %s
routes:
  - path: /api/
    upstream: %s
    token: user
admin:
  listen: %s
log:
  level: warn
# Every load generator here is one client address; the refresh storm alone holds 1,000
# connections, beyond the default cap of 256 per client network.
server:
  max_connections_per_client: 4096
`, strings.TrimPrefix(public, "http://"), public, issuer, benchClientID, benchClientSecret, store, upstream,
		strings.TrimPrefix(admin, "http://"))
}

func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// startRedis runs a throwaway redis-server on 127.0.0.1:port, without persistence.
func startRedis(dir, name, cpus string, port int) (*proc, error) {
	p, err := startProc(dir, name, cpus, 0, false, "redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--dir", dir)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if redisCmd(fmt.Sprintf("127.0.0.1:%d", port), "PING") == "+PONG" {
			return p, nil
		}
		if !p.alive() || time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server did not start:\n%s", p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// respCommand is args as a RESP array of bulk strings, the form Redis reads commands in.
func respCommand(args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// redisCmd sends one inline command and returns the first line of the reply ("" on
// error); bulk replies return their content.
func redisCmd(addr string, args ...string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, respCommand(args)); err != nil {
		return ""
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return ""
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "$") {
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		if n < 0 {
			return ""
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return ""
		}
		return string(buf[:n])
	}
	return line
}

// upstream control

func (e *env) expect(token string) error { return e.expectRun(token, "") }

// expectRun resets the upstream's counters; from now on it expects token and counts
// only the requests whose X-Bench-Run header is run (all when run is "").
func (e *env) expectRun(token, run string) error {
	resp, err := http.Post(e.ctlURL+"/__bench/expect?run="+url.QueryEscape(run), "text/plain", strings.NewReader(token))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (e *env) upstreamStats() (upstreamStats, error) {
	var s upstreamStats
	resp, err := http.Get(e.ctlURL + "/__bench/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// describeMachine is the machine line of the report.
func describeMachine() machine {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.memGiB = float64(kb) / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("wrk", "--version").CombinedOutput(); len(out) > 0 || err == nil {
		m.wrk = strings.TrimSpace(strings.SplitN(string(out), " Copyright", 2)[0])
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				m.redis = v
			}
		}
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		m.node = strings.TrimSpace(string(out))
	}
	return m
}

type machine struct {
	cpu               string
	cores             int
	memGiB            float64
	kernel, goVersion string
	wrk, redis, node  string
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
