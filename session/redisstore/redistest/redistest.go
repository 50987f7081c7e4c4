// Package redistest starts throwaway redis-server processes for tests: a standalone
// server (optionally persistent, password-protected or TLS-only) with Start, or a Redis
// Cluster (optionally with replicas) with StartCluster. Each server listens on a free 127.0.0.1 port, keeps its
// files in a t.TempDir(), and is stopped by PID when the test ends.
//
// It needs the redis-server binary (and redis-cli for a cluster) on PATH. A test that
// uses it fails, never skips, when they are missing: on Debian, apt-get install -y
// redis-server.
//
//	srv := redistest.Start(t)
//	st, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL})
//	…
//	for k, v := range srv.Dump(t) { /* assert no plaintext token is stored */ }
package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "install redis-server (apt-get install -y redis-server)"

// Option configures a server started by Start.
type Option func(*config)

type config struct {
	persistent bool
	tls        bool
	password   string
	args       []string
	cluster    bool
	replicas   int         // replicas per master of a cluster
	sentinel   *sentinelOf // this server is a sentinel monitoring that master
}

// Persistent turns on the append-only file, fsynced on every write, so that the data
// survives Stop and Restart.
func Persistent() Option { return func(c *config) { c.persistent = true } }

// TLS makes the server listen for TLS only, with a certificate for 127.0.0.1 signed by
// a fresh CA that Server.TLSConfig trusts. URL is then rediss://.
func TLS() Option { return func(c *config) { c.tls = true } }

// Password makes the server require it (requirepass); URL carries it.
func Password(pw string) Option { return func(c *config) { c.password = pw } }

// Args appends redis-server command-line arguments, such as "--maxmemory", "10mb".
func Args(args ...string) Option { return func(c *config) { c.args = append(c.args, args...) } }

// Server is one redis-server process.
type Server struct {
	// Addr is host:port, URL the redis:// (or rediss://) URL of database 0.
	Addr, URL string
	// Dir is the server's working directory (log, append-only file, TLS files).
	Dir string
	// TLSConfig trusts the server's certificate; nil unless started with TLS.
	TLSConfig *tls.Config

	cfg  config
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server and waits until it answers. It is stopped when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	return start(t, cfg)
}

func start(t testing.TB, cfg config) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server")
	s := &Server{Dir: t.TempDir(), cfg: cfg}
	if cfg.tls {
		s.TLSConfig = writeCerts(t, s.Dir)
	}
	t.Cleanup(s.Stop)
	var lastErr error
	for range 5 { // a free port can be taken between our probe and the server's bind
		s.port = freePort(t, cfg.cluster)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		s.args = s.buildArgs()
		if lastErr = s.launch(bin); lastErr == nil {
			scheme, auth := "redis", ""
			if cfg.tls {
				scheme = "rediss"
			}
			if cfg.password != "" {
				auth = ":" + cfg.password + "@"
			}
			s.URL = scheme + "://" + auth + s.Addr + "/0"
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("redistest: %s not found on PATH: %s", name, installHint)
	}
	return p
}

func (s *Server) buildArgs() []string {
	port := strconv.Itoa(s.port)
	if m := s.cfg.sentinel; m != nil {
		return s.sentinelArgs(m)
	}
	a := []string{"--bind", "127.0.0.1"}
	if s.cfg.tls {
		a = append(a, "--port", "0", "--tls-port", port,
			"--tls-cert-file", filepath.Join(s.Dir, "server.pem"),
			"--tls-key-file", filepath.Join(s.Dir, "server-key.pem"),
			"--tls-ca-cert-file", filepath.Join(s.Dir, "ca.pem"),
			"--tls-auth-clients", "no",
		)
	} else {
		a = append(a, "--port", port)
	}
	a = append(a,
		"--dir", s.Dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", "",
		"--databases", "16",
	)
	if s.cfg.persistent {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.cfg.password != "" {
		a = append(a, "--requirepass", s.cfg.password)
	}
	if s.cfg.cluster {
		a = append(a,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
		)
		if s.cfg.replicas > 0 {
			// Replicas sync at once, not after the default 5 s wait for more replicas;
			// and a master pings them every second, not 10: until a replica's offset
			// moves past 0, CLUSTER SLOTS does not list it, so clients do not see it.
			a = append(a, "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
		}
	}
	return append(a, s.cfg.args...)
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch(bin string) error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start:\n%s", s.logTail())
		default:
		}
		if c, err := s.dial(); err == nil {
			r, err := c.do("PING")
			c.close()
			if err == nil && r == "PONG" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server did not answer PING within 15 s:\n%s", s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// PID is the process id of the running server, 0 when it is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits until it has
// exited. A persistent server has written its append-only file by then. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server if it runs and starts it again on the same port, with the
// same directory and options: a Persistent server comes back with its data, any other
// empty. It waits until the server answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	bin := lookPath(t, "redis-server")
	var err error
	for range 50 { // the old socket may linger for a moment
		if err = s.launch(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr, err)
}

// Do sends one command and returns its reply: a string for a status or bulk string, an
// int64, a []any for an array, or nil. An error reply fails t.
func (s *Server) Do(t testing.TB, args ...string) any {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("redistest: connecting to %s: %v", s.Addr, err)
	}
	defer c.close()
	r, err := c.do(args...)
	if err != nil {
		t.Fatalf("redistest: %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// Dump returns every key of database 0 with its raw value, so that a test can assert
// what is stored (for instance, that no token is stored in clear). A string's value is
// its bytes; a sorted set's, list's or set's is its members joined by "\n" (sorted sets
// in score order); a hash's is field\nvalue pairs joined by "\n".
func (s *Server) Dump(t testing.TB) map[string][]byte {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("redistest: connecting to %s: %v", s.Addr, err)
	}
	defer c.close()
	out, err := c.dump()
	if err != nil {
		t.Fatalf("redistest: dump of %s: %v", s.Addr, err)
	}
	return out
}

func (c *conn) dump() (map[string][]byte, error) {
	out := map[string][]byte{}
	cursor := "0"
	for {
		r, err := c.do("SCAN", cursor, "COUNT", "1000")
		if err != nil {
			return nil, err
		}
		page, ok := r.([]any)
		if !ok || len(page) != 2 {
			return nil, fmt.Errorf("unexpected SCAN reply %v", r)
		}
		cursor, _ = page[0].(string)
		keys, _ := page[1].([]any)
		for _, k := range keys {
			key, _ := k.(string)
			v, err := c.value(key)
			if err != nil {
				return nil, err
			}
			if v != nil {
				out[key] = v
			}
		}
		if cursor == "0" {
			return out, nil
		}
	}
}

func (c *conn) value(key string) ([]byte, error) {
	typ, err := c.do("TYPE", key)
	if err != nil {
		return nil, err
	}
	var cmd []string
	switch typ {
	case "none": // expired meanwhile
		return nil, nil
	case "string":
		r, err := c.do("GET", key)
		if r == nil || err != nil {
			return nil, err
		}
		return []byte(r.(string)), nil
	case "zset":
		cmd = []string{"ZRANGE", key, "0", "-1"}
	case "list":
		cmd = []string{"LRANGE", key, "0", "-1"}
	case "set":
		cmd = []string{"SMEMBERS", key}
	case "hash":
		cmd = []string{"HGETALL", key}
	default:
		return nil, fmt.Errorf("key %q has type %v, which Dump cannot read", key, typ)
	}
	r, err := c.do(cmd...)
	if err != nil {
		return nil, err
	}
	items, _ := r.([]any)
	parts := make([][]byte, len(items))
	for i, it := range items {
		parts[i] = []byte(fmt.Sprint(it))
	}
	return bytes.Join(parts, []byte("\n")), nil
}

// freePort returns a port on 127.0.0.1 that was free a moment ago; for a cluster node,
// port+10000 (its cluster bus) too.
func freePort(t testing.TB, cluster bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !cluster {
			l.Close()
			return port
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err == nil {
			bus.Close()
			return port
		}
	}
	t.Fatal("redistest: no free port")
	return 0
}

// conn is a minimal RESP2 client, enough for the helpers here.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (s *Server) dial() (*conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	var nc net.Conn
	var err error
	if s.TLSConfig != nil {
		nc, err = tls.DialWithDialer(d, "tcp", s.Addr, s.TLSConfig)
	} else {
		nc, err = d.Dial("tcp", s.Addr)
	}
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &conn{c: nc, r: bufio.NewReader(nc)}
	if s.cfg.password != "" {
		if _, err := c.do("AUTH", s.cfg.password); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *conn) close() { c.c.Close() }

func (c *conn) do(args ...string) (any, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.c.Write(b.Bytes()); err != nil {
		return nil, err
	}
	return c.read()
}

// ReplyError is an error reply from Redis.
type ReplyError string

func (e ReplyError) Error() string { return "redis: " + string(e) }

func (c *conn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, ReplyError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = c.read(); err != nil {
				var re ReplyError
				if !errors.As(err, &re) {
					return nil, err
				}
				arr[i] = re
			}
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}
