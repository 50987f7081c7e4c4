package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// syscallResult is what `strace -c` counted in one proxy while it carried a fixed
// number of requests.
type syscallResult struct {
	name     string
	requests int64
	calls    map[string]int64 // by system call, "total" included
	errors   map[string]int64 // the calls that failed (a read that would block: EAGAIN)
}

func (r syscallResult) per(name string) float64 { return float64(r.calls[name]) / float64(r.requests) }

// perOK is per for the calls that succeeded.
func (r syscallResult) perOK(name string) float64 {
	return float64(r.calls[name]-r.errors[name]) / float64(r.requests)
}

// syscallVariants are the proxies whose system calls are counted: the baseline and the
// Go gatehouses on both upstream paths (the peers are several processes each).
var syscallVariants = []string{"bare", "memory", "memory-fast", "redis", "redis-fast"}

// countSyscalls attaches `strace -c -f` to each proxy in turn, sends it o.syscallRequests
// requests over 64 kept-alive connections, checks each answer and the upstream's count,
// and reads strace's summary. strace slows the proxy down; the counts, not the times,
// are the result.
func (e *env) countSyscalls() ([]syscallResult, error) {
	if _, err := exec.LookPath("strace"); err != nil {
		return nil, fmt.Errorf("strace is not installed: run bench/run.sh, which installs what is missing")
	}
	n := e.o.syscallRequests
	step("system calls: strace -c over %d requests through each of %s", n, strings.Join(syscallVariants, ", "))
	var out []syscallResult
	for _, v := range e.variants() {
		if !slices.Contains(syscallVariants, v.name) {
			continue
		}
		r, err := e.straceRun(v, n)
		if err != nil {
			return nil, fmt.Errorf("system calls of %s: %w", v.name, err)
		}
		fmt.Fprintf(os.Stderr, "  %-12s %6.2f system calls per request (read %.2f of which %.2f returned data, write %.2f)\n",
			v.name, r.per("total"), r.per("read"), r.perOK("read"), r.per("write"))
		out = append(out, r)
	}
	return out, nil
}

func (e *env) straceRun(v *variant, n int) (syscallResult, error) {
	res := syscallResult{name: v.name, requests: int64(n)}
	if err := e.expect(v.token); err != nil {
		return res, err
	}
	// 64 connections, opened before strace attaches: the count is of the steady state.
	const conns = 64
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: conns}}
	defer client.CloseIdleConnections()
	do := func() error {
		resp, err := client.Do(v.request())
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	load := func(total int) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(total) {
					if err := do(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	if err := load(conns * 4); err != nil {
		return res, err
	}
	outFile := filepath.Join(e.dir, "strace-"+v.name+".txt")
	st := exec.Command("strace", "-c", "-f", "-q", "-o", outFile, "-p", strconv.Itoa(v.proxy.cmd.Process.Pid))
	st.Stderr = os.Stderr
	if err := st.Start(); err != nil {
		return res, err
	}
	// strace has attached when every thread of the proxy shows a tracer.
	if err := waitTraced(v.proxy.cmd.Process.Pid, 10*time.Second); err != nil {
		st.Process.Kill()
		st.Wait()
		return res, err
	}
	if err := e.expect(v.token); err != nil {
		return res, err
	}
	loadErr := load(n)
	st.Process.Signal(syscall.SIGINT)
	st.Wait()
	if loadErr != nil {
		return res, loadErr
	}
	stats, err := e.upstreamStats()
	if err != nil {
		return res, err
	}
	if stats.Refused > 0 || stats.Authorised != int64(n) {
		return res, fmt.Errorf("FAILED: the upstream saw %d authorised and %d refused requests, want %d authorised", stats.Authorised, stats.Refused, n)
	}
	if res.calls, res.errors, err = parseStraceSummary(outFile); err != nil {
		return res, err
	}
	return res, nil
}

// waitTraced waits until every thread of pid has a tracer.
func waitTraced(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		traced := len(tasks) > 0
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil || strings.Contains(string(b), "TracerPid:\t0\n") {
				traced = false
				break
			}
		}
		if traced {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("strace did not attach to every thread of %d within %s (is ptrace allowed?)", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseStraceSummary reads the table `strace -c` writes: the calls column of each row,
// by system call name, and their sum as "total" (the total row's columns vary between
// strace versions).
func parseStraceSummary(path string) (calls, errors map[string]int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return parseStraceTable(f)
}

func parseStraceTable(r io.Reader) (calls, errors map[string]int64, err error) {
	calls, errors = map[string]int64{}, map[string]int64{}
	var total, failed int64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || strings.HasPrefix(f[0], "%") || strings.HasPrefix(f[0], "-") || f[len(f)-1] == "total" {
			continue
		}
		// % time, seconds, usecs/call, calls, [errors,] syscall.
		name := f[len(f)-1]
		c, err1 := strconv.ParseInt(f[3], 10, 64)
		var e int64
		var err2 error
		if len(f) == 6 {
			e, err2 = strconv.ParseInt(f[4], 10, 64)
		}
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("strace summary: cannot read %q", sc.Text())
		}
		calls[name], errors[name] = c, e
		total += c
		failed += e
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if total == 0 {
		return nil, nil, fmt.Errorf("strace counted no system calls")
	}
	calls["total"], errors["total"] = total, failed
	return calls, errors, nil
}
