package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The chaos run (`bench chaos`, see bench/chaos.sh and docs/reliability.md): three
// gatehouse replicas behind a round-robin balancer, Redis with a replica and three
// sentinels, oidc-provider, an upstream, a fault proxy in front of each dependency, a
// mixed workload from many users, and a schedule of faults. It checks that nothing is
// lost and that every error is one a fault explains, writes docs/reliability.md and
// exits non-zero when a check fails.

type chaosOptions struct {
	quick    bool
	duration time.Duration // the fault schedule is scaled to it
	users    int
	out      string
	keep     bool
	repo     string
	grace    time.Duration
	wsClose  time.Duration
	// upstreamTransport is the replicas' upstream_transport: standard or fast.
	upstreamTransport string
}

func parseChaosOptions(args []string) (*chaosOptions, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	o := &chaosOptions{}
	fs.BoolVar(&o.quick, "quick", false, "about 2.5 minutes: a compressed schedule, fewer users")
	fs.DurationVar(&o.duration, "duration", 0, "length of the workload (default 10m, quick 2m20s); the fault schedule is scaled to it")
	fs.IntVar(&o.users, "users", 0, "simulated users (default 60, quick 30)")
	fs.StringVar(&o.out, "out", "docs/reliability.md", "Markdown file whose results section is rewritten (empty: print only)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, configs)")
	fs.StringVar(&o.repo, "repo", ".", "repository root")
	fs.DurationVar(&o.grace, "grace", 3*time.Second, "after a fault window ends, errors are still put down to it for this long")
	fs.DurationVar(&o.wsClose, "ws-close", 5*time.Second, "a WebSocket must close within this long after its session ends")
	fs.StringVar(&o.upstreamTransport, "upstream-transport", "fast", "the replicas' upstream_transport: fast (the default) or standard")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.upstreamTransport != "standard" && o.upstreamTransport != "fast" {
		return nil, fmt.Errorf("chaos: -upstream-transport is %q; want standard or fast", o.upstreamTransport)
	}
	if o.duration == 0 {
		o.duration = 10 * time.Minute
		if o.quick {
			o.duration = 140 * time.Second
		}
	}
	if o.users == 0 {
		o.users = 60
		if o.quick {
			o.users = 30
		}
	}
	return o, nil
}

// redisNode is one Redis data node (primary or replica at start) behind its proxy.
type redisNode struct {
	name  string
	port  int
	dir   string
	proxy *faultProxy
	args  []string
	p     *proc
}

type replica struct {
	i      int
	port   int
	admin  string // http://127.0.0.1:port of the admin listener
	url    string
	config string
	p      *proc
	mu     sync.Mutex
}

func (r *replica) proc() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

type chaosEnv struct {
	o         *chaosOptions
	dir       string
	gatehouse string
	ps        procs

	nodes     []*redisNode
	sentinels []*proc
	sentPorts []int
	provider  *proc
	provPort  int
	provProxy *faultProxy
	issuer    string
	up        *chaosUpstream
	upProxy   *faultProxy
	lb        *balancer
	replicas  []*replica
	startedAt time.Time

	mu       sync.Mutex
	notes    []string // what happened, for the report
	pauses   []pause  // when each replica was stopped
	problems []string // what should have happened and did not: a failed check
}

const (
	chaosMaster     = "chaos"
	chaosAdminToken = "chaos-admin-token-not-for-production"
	chaosPassword   = "chaos-password"
	chaosTokenTTL   = 20 // seconds: refreshes happen all through the run
)

func chaosMain(args []string) error {
	o, err := parseChaosOptions(args)
	if err != nil {
		return err
	}
	if err := os.Chdir(o.repo); err != nil {
		return err
	}
	for _, tool := range []string{"redis-server", "redis-sentinel", "node", "go", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run bench/chaos.sh, which installs what is missing", tool)
		}
	}
	e := &chaosEnv{o: o}
	if e.dir, err = os.MkdirTemp("", "gatehouse-chaos-"); err != nil {
		return err
	}
	cleanup := func() {
		if e.lb != nil {
			e.lb.close()
		}
		e.ps.stopAll()
		for _, n := range e.nodes {
			if n.proxy != nil {
				n.proxy.close()
			}
		}
		if o.keep {
			fmt.Fprintf(os.Stderr, "work directory kept: %s\n", e.dir)
		} else {
			os.RemoveAll(e.dir)
		}
	}
	defer cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "\ninterrupted: stopping the chaos run's processes")
		// A paused replica must get SIGCONT to take the SIGTERM.
		for _, r := range e.replicas {
			if p := r.proc(); p != nil && p.alive() {
				p.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
		cleanup()
		os.Exit(130)
	}()

	step("building gatehouse")
	e.gatehouse = filepath.Join(e.dir, "gatehouse")
	if err := runCmd("go", "build", "-o", e.gatehouse, "./cmd/gatehouse"); err != nil {
		return err
	}
	if err := e.start(); err != nil {
		return err
	}
	rep, err := e.run()
	if err != nil {
		return err
	}
	md := rep.markdown()
	fmt.Println()
	fmt.Println(md)
	if o.out != "" {
		if err := writeChaosResults(o.out, md); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "results written to %s\n", o.out)
	}
	if fails := rep.failures(); len(fails) > 0 {
		return fmt.Errorf("chaos checks failed:\n  %s", strings.Join(fails, "\n  "))
	}
	return nil
}

func allCPUs() string { return fmt.Sprintf("0-%d", runtime.NumCPU()-1) }

// start brings up Redis, the sentinels, the provider, the upstream, the balancer and
// the three replicas, with a fault proxy in front of Redis, the provider and the upstream.
func (e *chaosEnv) start() error {
	step("starting Redis (primary, replica, 3 sentinels), oidc-provider, the upstream, 3 gatehouse replicas")
	// Redis: each data node behind a proxy, and each announces the proxy's address, so
	// that the sentinels hand the gateways proxied addresses before and after a failover.
	for i, name := range []string{"redis-a", "redis-b"} {
		port, err := freePort()
		if err != nil {
			return err
		}
		px, err := startFaultProxy(name, "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", port), exemptSource)
		if err != nil {
			return err
		}
		_, pport, _ := net.SplitHostPort(px.addr())
		n := &redisNode{name: name, port: port, dir: filepath.Join(e.dir, name), proxy: px}
		os.MkdirAll(n.dir, 0o700)
		n.args = []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--bind-source-addr", exemptIP, "--replica-announce-ip", "127.0.0.1", "--replica-announce-port", pport,
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--dir", n.dir,
			"--protected-mode", "no"}
		if i == 1 {
			n.args = append(n.args, "--replicaof", "127.0.0.1", e.nodesProxyPort(0))
		}
		e.nodes = append(e.nodes, n)
		if err := e.startNode(n); err != nil {
			return err
		}
	}
	for i := range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		conf := filepath.Join(e.dir, fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\nbind-source-addr %s\nprotected-mode no\ndir %s\n"+
			"sentinel announce-ip 127.0.0.1\nsentinel monitor %s 127.0.0.1 %s 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
			port, exemptIP, e.dir, chaosMaster, e.nodesProxyPort(0), chaosMaster, chaosMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return err
		}
		p, err := startProc(e.dir, fmt.Sprintf("sentinel-%d", i), allCPUs(), 0, false, "redis-sentinel", conf)
		if err != nil {
			return err
		}
		e.ps.add(p)
		e.sentinels = append(e.sentinels, p)
		e.sentPorts = append(e.sentPorts, port)
	}
	if err := e.waitSentinels(); err != nil {
		return err
	}

	// The upstream, in this process, behind its proxy.
	var err error
	if e.up, err = startChaosUpstream(); err != nil {
		return err
	}
	if e.upProxy, err = startFaultProxy("upstream", "127.0.0.1:0", e.up.addr, nil); err != nil {
		return err
	}

	// The balancer's address is the public URL; the replicas are added once started.
	if e.lb, err = newBalancer(); err != nil {
		return err
	}

	// oidc-provider behind its proxy: the issuer is the proxy's address, so the gateways
	// (and the users' browsers) reach the provider through it.
	if e.provPort, err = freePort(); err != nil {
		return err
	}
	if e.provProxy, err = startFaultProxy("provider", "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", e.provPort), nil); err != nil {
		return err
	}
	e.issuer = "http://" + e.provProxy.addr()
	if err := e.startProvider(); err != nil {
		return err
	}

	for i := range 3 {
		port, err1 := freePort()
		admin, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		r := &replica{i: i, port: port, admin: fmt.Sprintf("http://127.0.0.1:%d", admin), url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		r.config = filepath.Join(e.dir, fmt.Sprintf("gatehouse-%d.yaml", i))
		if err := os.WriteFile(r.config, []byte(e.gatehouseYAML(port, admin)), 0o600); err != nil {
			return err
		}
		e.replicas = append(e.replicas, r)
		if err := e.startReplica(r); err != nil {
			return err
		}
	}
	e.lb.setBackends(e.replicas)
	return nil
}

func (e *chaosEnv) nodesProxyPort(i int) string {
	_, p, _ := net.SplitHostPort(e.nodes[i].proxy.addr())
	return p
}

func (e *chaosEnv) startNode(n *redisNode) error {
	p, err := startProc(e.dir, n.name, allCPUs(), 0, false, n.args...)
	if err != nil {
		return err
	}
	n.p = e.ps.add(p)
	deadline := time.Now().Add(15 * time.Second)
	for redisCmd(fmt.Sprintf("127.0.0.1:%d", n.port), "PING") != "+PONG" {
		if !p.alive() || time.Now().After(deadline) {
			return fmt.Errorf("%s did not start:\n%s", n.name, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// waitSentinels waits until every sentinel knows the master, the replica and the
// other two sentinels.
func (e *chaosEnv) waitSentinels() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, port := range e.sentPorts {
			info := redisCmdAll(fmt.Sprintf("127.0.0.1:%d", port), "INFO", "sentinel")
			if !strings.Contains(info, "slaves=1,sentinels=3") {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sentinels did not see the replica and each other within 30 s:\n%s", e.sentinels[0].logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// masterNode is the data node the sentinels name as master now (nil if unknown).
func (e *chaosEnv) masterNode() *redisNode {
	for _, port := range e.sentPorts {
		reply := redisCmdAll(fmt.Sprintf("127.0.0.1:%d", port), "SENTINEL", "get-master-addr-by-name", chaosMaster)
		for _, n := range e.nodes {
			if strings.Contains(reply, "\n"+e.nodesProxyPortOf(n)+"\n") || strings.HasSuffix(reply, "\n"+e.nodesProxyPortOf(n)) {
				return n
			}
		}
	}
	return nil
}

func (e *chaosEnv) nodesProxyPortOf(n *redisNode) string {
	_, p, _ := net.SplitHostPort(n.proxy.addr())
	return p
}

func (e *chaosEnv) startProvider() error {
	var users []map[string]any
	for i := range e.o.users {
		id := userID(i)
		users = append(users, map[string]any{"id": id, "password": chaosPassword,
			"claims": map[string]any{"email": id + "@example.com", "email_verified": true, "name": "User " + id}})
	}
	pub := e.lb.url
	cfg := map[string]any{
		"port": e.provPort, "issuer": e.issuer, "accessTokenTTL": chaosTokenTTL,
		"rotateRefreshToken": true, "recordRefreshes": true, "control": true,
		"tokenLog": filepath.Join(e.dir, "tokens.jsonl"),
		"clients": []map[string]any{{
			"client_id": "bff", "client_secret": "s3cret",
			"redirect_uris":                       []string{pub + "/bff/callback"},
			"post_logout_redirect_uris":           []string{pub + "/bff/logout/callback"},
			"backchannel_logout_uri":              pub + "/bff/backchannel",
			"backchannel_logout_session_required": true,
			"grant_types":                         []string{"authorization_code", "refresh_token"},
			"token_endpoint_auth_method":          "client_secret_basic",
			"scope":                               "openid profile email offline_access",
		}},
		"users": users,
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(e.dir, "provider.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	p, err := startProc(e.dir, "provider", allCPUs(), 0, true, "node", "e2e/provider/server.mjs", path)
	if err != nil {
		return err
	}
	e.provider = e.ps.add(p)
	return nil
}

func userID(i int) string { return fmt.Sprintf("u%03d", i+1) }

func (e *chaosEnv) gatehouseYAML(port, admin int) string {
	var sentinels []string
	for _, p := range e.sentPorts {
		sentinels = append(sentinels, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return fmt.Sprintf(`# a replica of the chaos run (bench/chaos.go)
listen: 127.0.0.1:%d
public_url: %s
trusted_proxies: [127.0.0.1]
provider:
  issuer: %s
  client_id: bff
  client_secret: s3cret
  scopes: [openid, profile, email, offline_access]
  auth_params: {prompt: consent}
  refresh_lead: 5s
session:
  store: redis-sentinel://%s/%s
  redis: {timeout: 1s, key_prefix: "chaos:"}
admin:
  listen: 127.0.0.1:%d
  token: %s
rate_limits:
  # Every simulated user comes from 127.0.0.1.
  login: {per_minute: 6000, burst: 1000}
  callback: {per_minute: 6000, burst: 1000}
  admin: {per_minute: 6000, burst: 1000}
server:
  max_connections_per_client: 4096
  shutdown_timeout: 2s
log:
  level: info
upstream_transport: %s
routes:
  - path: /api/
    upstream: http://%s
    token: user
  - path: /ws/
    upstream: http://%s
    token: user
`, port, e.lb.url, e.issuer, strings.Join(sentinels, ","), chaosMaster, admin, chaosAdminToken, e.o.upstreamTransport, e.upProxy.addr(), e.upProxy.addr())
}

func (e *chaosEnv) startReplica(r *replica) error {
	p, err := startProc(e.dir, fmt.Sprintf("gatehouse-%d", r.i), allCPUs(), 0, false, e.gatehouse, "serve", "--config", r.config)
	if err != nil {
		return err
	}
	e.ps.add(p)
	r.mu.Lock()
	r.p = p
	r.mu.Unlock()
	return waitHTTP(p, r.admin+"/readyz")
}

// redisCmdAll sends one command and returns the whole reply, flattened to lines.
func redisCmdAll(addr string, args ...string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, respCommand(args)); err != nil {
		return ""
	}
	// Replies here are small: read what arrives within a short while.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	data, _ := io.ReadAll(c)
	var lines []string
	for _, l := range strings.Split(string(data), "\r\n") {
		if l == "" || l[0] == '*' || l[0] == '$' {
			continue
		}
		lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(l, "+"), ":"))
	}
	return strings.Join(lines, "\n")
}

// getJSON GETs url into out.
func getJSON(url string, out any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
