package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePeers(t *testing.T) {
	for in, want := range map[string][]string{
		"":                      nil,
		"none":                  nil,
		"all":                   defaultPeers,
		"nginx":                 {"nginx"},
		" modauth-redis,nginx ": {"modauth-redis", "nginx"},
		"nginx,nginx":           {"nginx"},
		"nginx-authreq":         {"nginx-authreq"},
	} {
		got, err := parsePeers(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parsePeers(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parsePeers("nginx,oauth2-proxy"); err == nil || !strings.Contains(err.Error(), `"oauth2-proxy"`) {
		t.Errorf("an unknown peer: err = %v, want one naming it", err)
	}
}

// The CPU of a peer is that of its whole process tree: a master's workers count.
func TestTreeTicksCountsChildren(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range tree(cmd.Process.Pid)[1:] {
			if proc, err := os.FindProcess(p); err == nil {
				proc.Kill()
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	}()
	time.Sleep(500 * time.Millisecond)
	if n := len(tree(cmd.Process.Pid)); n != 2 {
		t.Fatalf("tree of sh and its busy child has %d processes, want 2", n)
	}
	own, _ := cpuTicks(cmd.Process.Pid)
	all, err := treeTicks(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if all-own < 10 { // the child spun for about 50 ticks, sh for none
		t.Errorf("tree ticks %d, the parent's own %d: the busy child is not counted", all, own)
	}
}

// A selected peer whose binary is missing stops the run with what to do; a peer left
// out is not looked for.
func TestMissingPeerFailsLoudly(t *testing.T) {
	old := nginxBin
	nginxBin = filepath.Join(t.TempDir(), "nginx")
	defer func() { nginxBin = old }()
	err := checkPeerTools([]string{"nginx"})
	if err == nil || !strings.Contains(err.Error(), "peer nginx needs "+nginxBin) || !strings.Contains(err.Error(), "--peers") {
		t.Fatalf("err = %v, want one naming the peer, the binary and --peers", err)
	}
	if err := checkPeerTools([]string{"modauth-shm"}); err != nil && strings.Contains(err.Error(), "nginx") {
		t.Errorf("nginx looked for although not selected: %v", err)
	}
}
