package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

type sentinelOf struct {
	master *Server
	name   string
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that monitors master
// under the name masterSet, with a quorum of 1. The returned Server's URL is
// redis-sentinel://addr/masterSet; master must not use TLS.
func StartSentinel(t testing.TB, master *Server, masterSet string) *Server {
	t.Helper()
	if master.cfg.tls {
		t.Fatal("redistest: StartSentinel does not support a TLS master")
	}
	s := start(t, config{sentinel: &sentinelOf{master: master, name: masterSet}})
	auth := ""
	if master.cfg.password != "" {
		auth = ":" + master.cfg.password + "@"
	}
	s.URL = "redis-sentinel://" + auth + s.Addr + "/" + masterSet
	return s
}

// sentinelArgs writes the sentinel's configuration file (a sentinel rewrites it, so it
// must be its own) on first start and returns the arguments that run it.
func (s *Server) sentinelArgs(m *sentinelOf) []string {
	conf := filepath.Join(s.Dir, "sentinel.conf")
	if _, err := os.Stat(conf); err != nil {
		host, port := "127.0.0.1", strconv.Itoa(m.master.port)
		text := fmt.Sprintf("sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\n", m.name, host, port, m.name)
		if pw := m.master.cfg.password; pw != "" {
			text += fmt.Sprintf("sentinel auth-pass %s %s\n", m.name, pw)
		}
		os.WriteFile(conf, []byte(text), 0o600)
	}
	return []string{conf, "--sentinel",
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--dir", s.Dir,
		"--daemonize", "no",
		"--logfile", "",
	}
}
