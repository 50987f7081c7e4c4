package redistest

import (
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	// Nodes are the masters, each a Server that can be stopped and restarted (its
	// nodes.conf keeps its place in the cluster).
	Nodes []*Server
	// URL is a redis-cluster:// URL listing every node.
	URL string
}

// StartCluster starts masters (at least 3) cluster-enabled servers, joins them with
// redis-cli --cluster create, and waits until every node reports cluster_state:ok. The
// nodes are stopped when t ends.
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, not %d", masters)
	}
	cli := lookPath(t, "redis-cli")
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tls {
		t.Fatal("redistest: StartCluster does not support TLS")
	}
	cfg.cluster = true
	c := &Cluster{}
	addrs := make([]string, masters)
	for i := range masters {
		s := start(t, cfg)
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if cfg.password != "" {
		args = append(args, "-a", cfg.password, "--no-auth-warning")
	}
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	auth := ""
	if cfg.password != "" {
		auth = ":" + cfg.password + "@"
	}
	c.URL = "redis-cluster://" + auth + strings.Join(addrs, ",")
	c.WaitOK(t)
	return c
}

// WaitOK waits up to 30 s until every running node reports cluster_state:ok.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		for _, s := range c.Nodes {
			if s.PID() == 0 {
				continue
			}
			if state := s.clusterState(); state != "ok" {
				bad = fmt.Sprintf("%s: cluster_state %q", s.Addr, state)
				break
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not ok after 30 s: %s", bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) clusterState() string {
	conn, err := s.dial()
	if err != nil {
		return err.Error()
	}
	defer conn.close()
	r, err := conn.do("CLUSTER", "INFO")
	if err != nil {
		return err.Error()
	}
	info, _ := r.(string)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_state:"); ok {
			return v
		}
	}
	return "unknown"
}

// Dump merges the Dumps of every node; see Server.Dump.
func (c *Cluster) Dump(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, s := range c.Nodes {
		maps.Copy(out, s.Dump(t))
	}
	return out
}
