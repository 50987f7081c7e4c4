package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the runner started, pinned to some CPUs. It is stopped by
// its own PID only.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	addr   string // from its READY line, when it prints one
}

// startProc starts argv pinned to cpus with GOMAXPROCS=gomaxprocs (0: unset), logging
// to dir/<name>.log. When ready is true it waits for a "READY <addr>" line on stdout.
func startProc(dir, name, cpus string, gomaxprocs int, ready bool, argv ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", cpus}, argv...)...)
	cmd.Env = os.Environ()
	if gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(gomaxprocs))
	}
	cmd.Stderr = logf
	p := &proc{name: name, cmd: cmd, log: logf, exited: make(chan struct{})}
	var stdout io.ReadCloser
	if ready {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = logf
	}
	// A child must not outlive the runner when it dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	if !ready {
		return p, nil
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				select {
				case lines <- rest:
				default:
				}
			} else {
				fmt.Fprintln(logf, sc.Text())
			}
		}
	}()
	select {
	case p.addr = <-lines:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited at start:\n%s", name, p.logTail())
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s not ready after 30 s:\n%s", name, p.logTail())
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process (SIGKILL after 10 s) and waits for it.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.log.Close()
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// procs tracks every child so that they are all stopped at the end, whatever happens.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

func (ps *procs) add(p *proc) *proc {
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p
}

func (ps *procs) stopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].stop()
	}
	ps.list = nil
}

// cpuTicks is utime+stime of a process, in clock ticks (USER_HZ, 100 on Linux).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

const tickMicros = 10000 // USER_HZ is 100 on Linux

// procStat is the part of /proc/<pid>/stat the runner reads.
type procStat struct {
	ppid  int
	ticks int64 // utime+stime+cutime+cstime: its own CPU and that of the children it reaped
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state), f[1] ppid
	if len(f) < 15 {
		return procStat{}, errors.New("short /proc stat")
	}
	var st procStat
	st.ppid, _ = strconv.Atoi(f[1])
	for _, k := range f[11:15] { // utime, stime, cutime, cstime
		n, _ := strconv.ParseInt(k, 10, 64)
		st.ticks += n
	}
	return st, nil
}

// tree is pid and its living descendants (nginx's or Apache's master and workers; a Go
// proxy alone).
func tree(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	parent := map[int]int{}
	for _, d := range ents {
		if n, err := strconv.Atoi(d.Name()); err == nil {
			if st, err := readStat(n); err == nil {
				parent[n] = st.ppid
			}
		}
	}
	in := map[int]bool{pid: true}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for c, pp := range parent {
			if in[pp] && !in[c] {
				in[c] = true
				out = append(out, c)
				changed = true
			}
		}
	}
	return out
}

// treeTicks is the CPU time of pid and its descendants, living or reaped, in ticks.
func treeTicks(pid int) (int64, error) {
	var t int64
	for i, p := range tree(pid) {
		st, err := readStat(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a worker that has just exited
		}
		t += st.ticks
	}
	return t, nil
}

// treeRSSKB is the RSS of pid and its descendants, in KiB (pages they share count once
// per process).
func treeRSSKB(pid int) int64 {
	var kb int64
	for _, p := range tree(pid) {
		kb += rssKB(p)
	}
	return kb
}

// rssKB is VmRSS of a process, in KiB.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// freePort returns a free TCP port on 127.0.0.1, below the kernel's ephemeral range
// when it can: a port picked now is bound later, and meanwhile the benchmark's own
// outgoing connections take ephemeral ports, which could be this one.
func freePort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscanf(string(b), "%d", &low)
	}
	for i := 0; i < 100 && low > 11000; i++ {
		port := 10000 + mathrand.IntN(low-10000)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, the process exits, or 30 s pass.
func waitHTTP(p *proc, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.alive() {
			return fmt.Errorf("%s exited at start:\n%s", p.name, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30 s (%s):\n%s", p.name, url, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// busyTicks is the CPU time all CPUs spent busy (not idle or waiting for I/O) since
// boot, from /proc/stat, in clock ticks.
func busyTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return busy
}

// ourTicks is the CPU time of the runner and of every child it started, in ticks.
func (ps *procs) ourTicks() int64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	t, _ := cpuTicks(os.Getpid())
	for _, p := range ps.list {
		if p.alive() {
			n, _ := treeTicks(p.pid())
			t += n
		}
	}
	return t
}
