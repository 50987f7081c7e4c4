package redistest

import (
	"fmt"
	"maps"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster: masters, without replicas unless started with
// ClusterReplicas.
type Cluster struct {
	// Nodes are the servers, masters first (then their replicas, if any), each a Server
	// that can be stopped and restarted (its nodes.conf keeps its place in the cluster).
	Nodes []*Server
	// URL is a redis-cluster:// URL listing every node.
	URL string
}

// ClusterReplicas gives each master of a cluster started by StartCluster n replicas.
func ClusterReplicas(n int) Option { return func(c *config) { c.replicas = n } }

// StartCluster starts masters (at least 3) cluster-enabled servers, and with
// ClusterReplicas their replicas, joins them with redis-cli --cluster create, and waits
// until every node reports cluster_state:ok and every replica is in sync with its master.
// The nodes are stopped when t ends.
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
	if cfg.replicas < 0 {
		t.Fatalf("redistest: %d replicas per master", cfg.replicas)
	}
	c := &Cluster{}
	addrs := make([]string, masters*(1+cfg.replicas))
	for i := range addrs {
		s := start(t, cfg)
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.replicas), "--cluster-yes")
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
	c.waitReplicas(t, masters, cfg.replicas)
	return c
}

// waitReplicas waits up to 30 s until replicas nodes per master are replicas whose link
// to their master is up and whose initial sync is done, and every node lists them in
// CLUSTER SLOTS (which is where clients learn about them).
func (c *Cluster) waitReplicas(t testing.TB, masters, replicas int) {
	t.Helper()
	if replicas == 0 {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		synced, listed := 0, 0
		for _, s := range c.Nodes {
			if s.replicaSynced() {
				synced++
			}
			if s.slotsListReplicas(replicas) {
				listed++
			}
		}
		if synced == masters*replicas && listed == len(c.Nodes) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: after 30 s, %d of %d cluster replicas in sync, %d of %d nodes list them",
				synced, masters*replicas, listed, len(c.Nodes))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slotsListReplicas reports whether s's CLUSTER SLOTS gives every slot range a master
// and n replicas.
func (s *Server) slotsListReplicas(n int) bool {
	conn, err := s.dial()
	if err != nil {
		return false
	}
	defer conn.close()
	r, err := conn.do("CLUSTER", "SLOTS")
	ranges, _ := r.([]any)
	if err != nil || len(ranges) == 0 {
		return false
	}
	for _, rg := range ranges {
		if entry, _ := rg.([]any); len(entry) != 3+n {
			return false
		}
	}
	return true
}

// replicaSynced reports whether s is a replica connected to its master (ROLE says
// "connected" once the initial sync is done).
func (s *Server) replicaSynced() bool {
	conn, err := s.dial()
	if err != nil {
		return false
	}
	defer conn.close()
	r, err := conn.do("ROLE")
	role, _ := r.([]any)
	return err == nil && len(role) >= 4 && role[0] == "slave" && role[3] == "connected"
}

// Masters returns the nodes that are masters now, asking each running node its ROLE.
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	var out []*Server
	for _, s := range c.Nodes {
		if s.PID() == 0 {
			continue
		}
		if role, _ := s.Do(t, "ROLE").([]any); len(role) > 0 && role[0] == "master" {
			out = append(out, s)
		}
	}
	return out
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
