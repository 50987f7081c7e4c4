package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// goBench is one benchmark of `go test -bench`, the median of its runs.
type goBench struct {
	name    string
	nsOp    float64
	bytesOp string
	allocs  string
	ratio   float64 // to the group's baseline=… benchmark; 0 when there is none
}

// runGoBench runs the in-process hot-path benchmarks of bench_test.go.
func runGoBench(o *options) ([]goBench, error) {
	step("go test -bench BenchmarkProxy -benchmem (count %d, benchtime %s)", o.gobenchN, o.gobenchTime)
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkProxy", "-benchmem",
		"-count", strconv.Itoa(o.gobenchN), "-benchtime", o.gobenchTime, ".")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	os.Stderr.Write(out)
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %w", err)
	}
	return parseGoBench(string(out)), nil
}

func parseGoBench(out string) []goBench {
	ns := map[string][]float64{}
	byOp, allocs := map[string]string{}, map[string]string{}
	var order []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if _, ok := ns[name]; !ok {
			order = append(order, name)
		}
		for i := 1; i+1 < len(f); i++ {
			switch f[i+1] {
			case "ns/op":
				v, _ := strconv.ParseFloat(f[i], 64)
				ns[name] = append(ns[name], v)
			case "B/op":
				byOp[name] = f[i]
			case "allocs/op":
				allocs[name] = f[i]
			}
		}
	}
	base := map[string]float64{}
	for _, name := range order {
		if strings.Contains(name, "/baseline=") {
			base[filepath.Dir(name)] = median(ns[name])
		}
	}
	var res []goBench
	for _, name := range order {
		b := goBench{name: name, nsOp: median(ns[name]), bytesOp: byOp[name], allocs: allocs[name]}
		if bv, ok := base[filepath.Dir(name)]; ok && bv > 0 {
			b.ratio = b.nsOp / bv
		}
		res = append(res, b)
	}
	return res
}

// runLogins runs e2e's TestBenchLogins: logins per second against oidc-provider.
func runLogins(o *options) (*loginResult, error) {
	if _, err := os.Stat("e2e/node_modules/oidc-provider/package.json"); err != nil {
		return nil, fmt.Errorf("e2e/node_modules is missing: run `npm ci --prefix e2e` (bench/run.sh does)")
	}
	step("logins per second: %d logins against oidc-provider (e2e/bench_logins_test.go)", o.logins)
	f, err := os.CreateTemp("", "gatehouse-bench-logins-*.json")
	if err != nil {
		return nil, err
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command("go", "test", "-run", "^TestBenchLogins$", "-count", "1", "-v", "-timeout", "15m", "./e2e/")
	cmd.Env = append(os.Environ(), "GATEHOUSE_BENCH_LOGINS="+f.Name(), "GATEHOUSE_BENCH_LOGINS_N="+strconv.Itoa(o.logins))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("logins benchmark: %w", err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return nil, err
	}
	var r loginResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("logins benchmark result: %w", err)
	}
	return &r, nil
}

// loginResult mirrors e2e/bench_logins_test.go's loginBench.
type loginResult struct {
	Logins           int                `json:"logins"`
	Concurrency      int                `json:"concurrency"`
	Seconds          float64            `json:"seconds"`
	PerSecond        float64            `json:"per_second"`
	StartMS          float64            `json:"start_ms"`
	ProviderMS       float64            `json:"provider_ms"`
	CallbackMS       float64            `json:"callback_ms"`
	TotalMS          float64            `json:"total_ms"`
	CPUPerLoginMS    map[string]float64 `json:"cpu_per_login_ms"`
	ProviderRequests map[string]float64 `json:"provider_requests_per_login"`
}
