package main

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed wrk.lua
var wrkScript []byte

// wrkResult is one wrk run, as bench/wrk.lua reports it.
type wrkResult struct {
	Requests   int64
	Duration   time.Duration
	Non2xx     int64
	Errors     int64  // connect, read, write and timeout errors
	ErrorKinds string // the same, by kind, for messages
	P50, P90   time.Duration
	P99, Max   time.Duration
	MeanMicros float64
	CPUTicks   int64 // wrk's own CPU time (user+system), in clock ticks
}

func (r wrkResult) RPS() float64 { return float64(r.Requests) / r.Duration.Seconds() }

// wrkRun runs wrk once: one thread, conns connections, for d, on the CPUs cpus, with
// the given request headers.
func wrkRun(cpus, scriptPath, target string, conns int, d time.Duration, headers []string) (wrkResult, error) {
	args := []string{"-c", cpus, "wrk", "-t1", "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())),
		"--timeout", "5s", "-s", scriptPath}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, target)
	cmd := exec.Command("taskset", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var ticks int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		ticks = (ru.Utime.Nano() + ru.Stime.Nano()) / int64(10*time.Millisecond)
	}
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "GATEHOUSE_BENCH ")
		if !ok {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		num := func(k string) int64 { n, _ := strconv.ParseInt(kv[k], 10, 64); return n }
		us := func(k string) time.Duration { return time.Duration(num(k)) * time.Microsecond }
		mean, _ := strconv.ParseFloat(kv["mean_us"], 64)
		return wrkResult{
			Requests: num("requests"), Duration: us("duration_us"), Non2xx: num("non2xx"),
			Errors:     num("connect") + num("read") + num("write") + num("timeout"),
			ErrorKinds: fmt.Sprintf("connect %d, read %d, write %d, timeout %d", num("connect"), num("read"), num("write"), num("timeout")),
			P50:        us("p50_us"), P90: us("p90_us"), P99: us("p99_us"), Max: us("max_us"), MeanMicros: mean, CPUTicks: ticks,
		}, nil
	}
	return wrkResult{}, fmt.Errorf("wrk printed no result line:\n%s", out)
}

func writeWrkScript(dir string) (string, error) {
	p := dir + "/wrk.lua"
	return p, os.WriteFile(p, wrkScript, 0o644)
}
