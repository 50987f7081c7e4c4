package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// report collects everything one run measured.
type report struct {
	opts              *options
	machine           machine
	started, finished time.Time
	proxy             *proxyResults
	storms            []stormResult
	syscalls          []syscallResult
	memory            []memResult
	logins            *loginResult
	gobench           []goBench
}

const (
	markerStart = "<!-- bench:results:start -->"
	markerEnd   = "<!-- bench:results:end -->"
)

// writeResults replaces the results section of the Markdown file (between the markers),
// or appends one.
func writeResults(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := markerStart + "\n" + md + markerEnd
	s := string(old)
	i, j := strings.Index(s, markerStart), strings.Index(s, markerEnd)
	if i >= 0 && j > i {
		s = s[:i] + section + s[j+len(markerEnd):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// ratio is the median over rounds of a variant's value divided by the baseline's in the
// same round.
func (p *proxyResults) ratio(name string, f func(sample) float64) float64 {
	return p.ratioTo(name, "bare", f)
}

// ratioTo is the median over rounds of a variant's value divided by base's in the same
// round.
func (p *proxyResults) ratioTo(name, base string, f func(sample) float64) float64 {
	var rs []float64
	for _, round := range p.rounds {
		if b := f(round[base]); b > 0 {
			rs = append(rs, f(round[name])/b)
		}
	}
	return median(rs)
}

// has reports whether the variant was measured (--only may leave some out).
func (p *proxyResults) has(name string) bool {
	for _, v := range p.variants {
		if v.name == name {
			return true
		}
	}
	return false
}

func (p *proxyResults) med(name string, f func(sample) float64) float64 {
	var xs []float64
	for _, round := range p.rounds {
		xs = append(xs, f(round[name]))
	}
	return median(xs)
}

var (
	fRPS = func(s sample) float64 { return s.wrk.RPS() }
	fP50 = func(s sample) float64 { return ms(s.wrk.P50) }
	fP99 = func(s sample) float64 { return ms(s.wrk.P99) }
	fCPU = func(s sample) float64 { return s.proxyCPU }
	fRSS = func(s sample) float64 { return float64(s.rssKB) / 1024 }
)

// goal is one target of issue 18, as measured in this run.
type goal struct {
	what, measured, target string
	met                    bool
}

// fastGoals are issue 18's targets for the variants this run measured: the fast path
// against mod_auth_openidc, Redis against memory on both paths, p99 against the bare
// proxy, the standard path against a compared older build; and the distance to nginx
// (a figure, not a target).
func (p *proxyResults) fastGoals() []goal {
	var out []goal
	if p.has("memory-fast") && p.has("modauth-shm") {
		rps, cpu := p.ratioTo("memory-fast", "modauth-shm", fRPS), p.ratioTo("memory-fast", "modauth-shm", fCPU)
		out = append(out,
			goal{"`memory-fast` req/s vs `modauth-shm`", fmt.Sprintf("%.2f×", rps), "≥ 1.5×", rps >= 1.5},
			goal{"`memory-fast` CPU per request vs `modauth-shm`", fmt.Sprintf("%.2f×", cpu), "≤ 0.5×", cpu <= 0.5})
	}
	for _, pair := range [][2]string{{"redis", "memory"}, {"redis-fast", "memory-fast"}} {
		if p.has(pair[0]) && p.has(pair[1]) {
			rps := p.ratioTo(pair[0], pair[1], fRPS)
			out = append(out, goal{fmt.Sprintf("`%s` req/s vs `%s`", pair[0], pair[1]), fmt.Sprintf("%.2f×", rps), "≥ 0.95×", rps >= 0.95})
		}
	}
	for _, s := range []string{"memory", "memory-fast", "redis", "redis-fast"} {
		if p.has(s) {
			p99 := p.ratio(s, fP99)
			out = append(out, goal{fmt.Sprintf("`%s` p99 vs bare", s), fmt.Sprintf("%.2f×", p99), "≤ 1.0×", p99 <= 1.0})
		}
	}
	if p.has("memory") && p.has("compare") {
		rps, cpu := p.ratioTo("memory", "compare", fRPS), p.ratioTo("memory", "compare", fCPU)
		out = append(out, goal{"`memory` (standard path) req/s vs `compare`", fmt.Sprintf("%.2f×", rps), "≥ 0.97× (no regression)", rps >= 0.97},
			goal{"`memory` (standard path) CPU per request vs `compare`", fmt.Sprintf("%.2f×", cpu), "≤ 1.03× (no regression)", cpu <= 1.03})
	}
	return out
}

// failures lists the targets of issues 7 and 18 that this run missed.
func (r *report) failures() []string {
	var out []string
	if r.proxy != nil {
		for _, g := range slices.Concat(r.proxy.fastGoals(), r.syscallGoals()) {
			if !g.met {
				out = append(out, fmt.Sprintf("%s: %s (target %s)", strings.ReplaceAll(g.what, "`", ""), g.measured, g.target))
			}
		}
	}
	if p := r.proxy; p != nil {
		for _, s := range stores {
			if !p.has(s) {
				continue
			}
			tp, p99 := p.ratio(s, fRPS), p.ratio(s, fP99)
			min := 0.9
			if s == "memory" {
				min = 1.0
				if p99 > 1.2 {
					out = append(out, fmt.Sprintf("memory store: p99 %.2f× the bare proxy's (target ≤ 1.2×)", p99))
				}
			}
			if tp < min {
				out = append(out, fmt.Sprintf("%s store: throughput %.2f× the bare proxy's (target ≥ %.1f×)", s, tp, min))
			}
		}
	}
	for _, m := range r.memory {
		if m.Store == "memory" && m.Heap-float64(m.TokenBytes) >= 1024 {
			out = append(out, fmt.Sprintf("memory store: %.0f bytes per session beyond the token bytes (target < 1 KB)", m.Heap-float64(m.TokenBytes)))
		}
	}
	return out
}

func (r *report) markdown() string {
	var b strings.Builder
	o, m := r.opts, r.machine
	mode := "bench/run.sh"
	if o.quick {
		mode = "bench/run.sh --quick"
	}
	fmt.Fprintf(&b, "## Results\n\n")
	fmt.Fprintf(&b, "Measured %s with `%s` (%.0f min) on %s, %d cores, %.0f GiB, Linux %s; %s, %s, Redis %s, Node.js %s.\n\n",
		r.started.UTC().Format("2006-01-02"), mode, r.finished.Sub(r.started).Minutes(), m.cpu, m.cores, m.memGiB, m.kernel,
		m.goVersion, m.wrk, m.redis, m.node)

	if p := r.proxy; p != nil {
		fmt.Fprintf(&b, "### Proxy: `GET /api/orders` with a logged-in session\n\n")
		fmt.Fprintf(&b, "Median of %d rounds; each round runs every variant once (the order rotates), `wrk -t1 -c%d` for %s after a %s warm-up. "+
			"The proxy under test is pinned to CPU %s with `GOMAXPROCS=1`; wrk, the upstream (`GOMAXPROCS=1`) and Redis share CPU %s. "+
			"Ratios are to the bare proxy in the same round (median of the per-round ratios); for CPU and p99 lower is better.\n\n",
			len(p.rounds), p.conns, p.duration, p.warmup, o.proxyCPUs, o.loadCPUs)
		if len(o.peers) > 0 {
			fmt.Fprintf(&b, "The peers (`--peers %s`) are pinned to the same CPU: nginx with one worker, Apache with the event MPM and one child "+
				"process of 128 threads; their CPU and RSS are the sums over the master and its workers. nginx adds a fixed bearer and "+
				"authenticates nothing; mod_auth_openidc was logged in through the same provider and passes the session's access token.\n\n",
				strings.Join(o.peers, ","))
		}
		b.WriteString("| variant | req/s | p50 | p99 | proxy CPU per request | proxy RSS | req/s vs bare | p99 vs bare | CPU vs bare |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, v := range p.variants {
			cpu, rss, rps, p99, cr := "—", "—", "—", "—", "—"
			if v.proxy != nil {
				cpu = fmt.Sprintf("%.1f µs", p.med(v.name, fCPU))
				rss = fmt.Sprintf("%.0f MiB", p.med(v.name, fRSS))
				rps = fmt.Sprintf("%.2f×", p.ratio(v.name, fRPS))
				p99 = fmt.Sprintf("%.2f×", p.ratio(v.name, fP99))
				cr = fmt.Sprintf("%.2f×", p.ratio(v.name, fCPU))
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f ms | %.2f ms | %s | %s | %s | %s | %s |\n", v.label,
				thousands(p.med(v.name, fRPS)), p.med(v.name, fP50), p.med(v.name, fP99), cpu, rss, rps, p99, cr)
		}
		fmt.Fprintf(&b, "\nEvery one of the %s requests wrk counted was answered 2xx (counted by bench/wrk.lua, since wrk counts 3xx as success) "+
			"and reached the upstream with the session's bearer token (the upstream counts requests with and without the expected "+
			"`Authorization` header; each run is checked, and any miss stops the benchmark).\n\n", thousands(float64(p.checked)))
		if p.has("memory") {
			var peers []*variant
			for _, v := range p.variants {
				if v.peer {
					peers = append(peers, v)
				}
			}
			if len(peers) > 0 {
				b.WriteString("Gatehouse beside each peer (median of the per-round ratios of the gatehouse to the peer; for CPU lower is better):\n\n")
				b.WriteString("| peer | peer req/s vs bare | peer CPU/req vs bare | gatehouse | req/s vs peer | CPU/req vs peer | p99 vs peer |\n|---|--:|--:|---|--:|--:|--:|\n")
				for _, v := range peers {
					for _, g := range slices.Concat(stores, fastStores) {
						if !p.has(g) || g == "bolt" {
							continue
						}
						fmt.Fprintf(&b, "| %s | %.2f× | %.2f× | `%s` | %.2f× | %.2f× | %.2f× |\n", v.name, p.ratio(v.name, fRPS), p.ratio(v.name, fCPU),
							g, p.ratioTo(g, v.name, fRPS), p.ratioTo(g, v.name, fCPU), p.ratioTo(g, v.name, fP99))
					}
				}
				b.WriteString("\n")
			}
		}
		var others []float64
		for _, round := range p.rounds {
			for _, s := range round {
				others = append(others, s.otherLoad)
			}
		}
		fmt.Fprintf(&b, "Other processes on the machine used %.2f CPUs during the median run (at most %.2f; a run above %.2f is done again up to 3 times, the quietest kept): "+
			"the column \"other load\" of every round shows which figures a busy machine disturbed.\n\n", median(others), slices.Max(others), o.maxOther)
		b.WriteString("<details><summary>Every round</summary>\n\n| round | variant | req/s | p50 | p99 | proxy µs/req | upstream µs/req | other load |\n|--:|---|--:|--:|--:|--:|--:|--:|\n")
		for i, round := range p.rounds {
			for _, v := range p.variants {
				s := round[v.name]
				fmt.Fprintf(&b, "| %d | %s | %s | %.2f ms | %.2f ms | %.1f | %.1f | %.2f CPU |\n", i+1, v.name, thousands(s.wrk.RPS()),
					ms(s.wrk.P50), ms(s.wrk.P99), s.proxyCPU, s.upCPU, s.otherLoad)
			}
		}
		b.WriteString("\n</details>\n\n")
		b.WriteString("Targets (issue 7), ratios to the bare proxy in the same run:\n\n")
		b.WriteString("| store | req/s | p99 | target | met | aim ≥ 1.3× |\n|---|--:|--:|---|---|---|\n")
		for _, s := range stores {
			if !p.has(s) {
				continue
			}
			tp, p99 := p.ratio(s, fRPS), p.ratio(s, fP99)
			target, met := "req/s ≥ 0.9×", tp >= 0.9
			if s == "memory" {
				target, met = "req/s ≥ 1.0×, p99 ≤ 1.2×", tp >= 1.0 && p99 <= 1.2
			}
			fmt.Fprintf(&b, "| %s | %.2f× | %.2f× | %s | %s | %s |\n", s, tp, p99, target, yesNo(met), yesNo(tp >= 1.3))
		}
		b.WriteString("\n")
		writeGoals(&b, "Targets (issue 18), ratios within the same rounds:", p.fastGoals())
		if p.has("nginx") {
			b.WriteString("Distance to nginx (a fixed header, no authentication), req/s and CPU per request of each gatehouse relative to nginx's:\n\n")
			b.WriteString("| gatehouse | req/s vs nginx | CPU/req vs nginx |\n|---|--:|--:|\n")
			for _, g := range []string{"memory", "memory-fast"} {
				if p.has(g) {
					fmt.Fprintf(&b, "| `%s` | %.2f× | %.2f× |\n", g, p.ratioTo(g, "nginx", fRPS), p.ratioTo(g, "nginx", fCPU))
				}
			}
			b.WriteString("\n")
		}
	}

	if len(r.syscalls) > 0 {
		b.WriteString(r.syscallMarkdown())
	}
	if len(r.storms) > 0 {
		fmt.Fprintf(&b, "### Refresh storm\n\n%d concurrent API calls on one session whose access token has just expired "+
			"(10-second tokens from the development provider; the connections are opened beforehand). The calls wait for one refresh.\n\n", r.storms[0].calls)
		b.WriteString("| store | calls | provider refresh calls | answered 2xx | upstream saw the new token | all complete in | p50 | p99 |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range r.storms {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.0f ms | %.0f ms | %.0f ms |\n", s.store, s.calls, s.refreshCalls, s.ok, s.sawNewToken,
				ms(s.elapsed), ms(s.p50), ms(s.p99))
		}
		b.WriteString("\n")
	}

	if len(r.memory) > 0 {
		n := r.memory[0].Sessions
		fmt.Fprintf(&b, "### Memory per session\n\n%s sessions shaped like a real login at the development provider "+
			"(access, refresh and ID token of %d bytes together; claims; distinct subjects), created through `session.Manager`.\n\n",
			thousands(float64(n)), r.memory[0].TokenBytes)
		b.WriteString("| store | measure | per session | beyond the token bytes | per 100,000 sessions | sealed record |\n|---|---|--:|--:|--:|--:|\n")
		for _, x := range r.memory {
			tok := float64(x.TokenBytes)
			switch x.Store {
			case "memory":
				fmt.Fprintf(&b, "| memory | Go heap growth | %.0f B | %.0f B | %.1f MiB | %d B |\n", x.Heap, x.Heap-tok, x.Heap*1e5/(1<<20), x.RecordSize)
				fmt.Fprintf(&b, "| memory | process RSS growth | %.0f B | %.0f B | %.1f MiB | |\n", x.RSS, x.RSS-tok, x.RSS*1e5/(1<<20))
			case "redis":
				fmt.Fprintf(&b, "| redis | `INFO` used_memory growth | %.0f B | %.0f B | %.1f MiB | %d B (`MEMORY USAGE` %d B) |\n",
					x.StoreBytes, x.StoreBytes-tok, x.StoreBytes*1e5/(1<<20), x.RecordSize, x.KeyUsage)
			case "bolt":
				fmt.Fprintf(&b, "| bolt | file growth | %.0f B | %.0f B | %.1f MiB | %d B |\n", x.StoreBytes, x.StoreBytes-tok, x.StoreBytes*1e5/(1<<20), x.RecordSize)
				fmt.Fprintf(&b, "| bolt | pages in use | %.0f B | %.0f B | %.1f MiB | |\n", x.Live, x.Live-tok, x.Live*1e5/(1<<20))
			}
		}
		for _, x := range r.memory {
			if x.Store == "memory" && x.Decoded > 0 {
				fmt.Fprintf(&b, "\nOn top of the store, the hot path's decoded-record cache holds %.0f B per recently used session, for at most %s sessions (%.1f MiB at most), whatever the store.\n",
					x.Decoded, thousands(float64(x.DecodedMax)), x.Decoded*float64(x.DecodedMax)/(1<<20))
			}
		}
		b.WriteString("\n")
	}

	if l := r.logins; l != nil {
		fmt.Fprintf(&b, "### Logins per second\n\n%d logins end to end (`/bff/login` → oidc-provider's login form → `/bff/callback`), %d at a time, "+
			"against npm oidc-provider (e2e/provider), memory store: **%.0f logins/s**.\n\n", l.Logins, l.Concurrency, l.PerSecond)
		b.WriteString("| where the time goes | per login |\n|---|--:|\n")
		fmt.Fprintf(&b, "| `/bff/login` → provider's login form (median) | %.1f ms |\n", l.StartMS)
		fmt.Fprintf(&b, "| form posted → redirect to the callback (provider only, median) | %.1f ms |\n", l.ProviderMS)
		fmt.Fprintf(&b, "| `/bff/callback`: code exchange, ID token check, userinfo, session (median) | %.1f ms |\n", l.CallbackMS)
		fmt.Fprintf(&b, "| CPU of oidc-provider (Node.js) | %.2f ms |\n", l.CPUPerLoginMS["provider"])
		fmt.Fprintf(&b, "| CPU of gatehouse | %.2f ms |\n", l.CPUPerLoginMS["gatehouse"])
		fmt.Fprintf(&b, "| CPU of the client (Go, HTML forms, cookie jars) | %.2f ms |\n", l.CPUPerLoginMS["client"])
		fmt.Fprintf(&b, "| provider requests: pushed authorization (PAR), authorization, token, userinfo | %.1f, %.1f, %.1f, %.1f |\n\n",
			l.ProviderRequests["pushed"], l.ProviderRequests["authorization"], l.ProviderRequests["token"], l.ProviderRequests["userinfo"])
	}

	if len(r.gobench) > 0 {
		fmt.Fprintf(&b, "### In process: `go test -bench BenchmarkProxy -benchmem`\n\nMedian of %d runs of `-benchtime %s` (bench_test.go), both CPUs.\n\n", o.gobenchN, o.gobenchTime)
		b.WriteString("| benchmark | ns/op | B/op | allocs/op | vs baseline |\n|---|--:|--:|--:|--:|\n")
		for _, g := range r.gobench {
			ratio := "—"
			if g.ratio > 0 {
				ratio = fmt.Sprintf("%.2f×", g.ratio)
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", g.name, thousands(g.nsOp), g.bytesOp, g.allocs, ratio)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// thousands formats a number without decimals, with comma separators.
func thousands(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// syscallMarkdown is the table of system calls per request, by proxy.
func (r *report) syscallMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### System calls per request\n\n`strace -c -f` attached to each proxy while it carried %s requests over 64 kept-alive connections "+
		"(opened beforehand; every answer 2xx and authorised at the upstream). strace slows the proxy down: the counts, not the times, are the result.\n\n",
		thousands(float64(r.syscalls[0].requests)))
	cols := []string{"read", "write", "epoll_pwait", "futex", "nanosleep"}
	b.WriteString("A read that would block (`EAGAIN`, after which the goroutine waits for the poller) is counted in `read` and again in " +
		"\"read, EAGAIN\"; how many there are depends on timing, strace's own included. \"read with data\" is the reads that returned bytes.\n\n")
	b.WriteString("| proxy | all | read with data | read, EAGAIN | " + strings.Join(cols, " | ") + " | other |\n|---|--:|--:|--:|" + strings.Repeat("--:|", len(cols)+1) + "\n")
	for _, s := range r.syscalls {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f |", s.name, s.per("total"), s.perOK("read"), s.per("read")-s.perOK("read"))
		other := s.per("total")
		for _, c := range cols {
			fmt.Fprintf(&b, " %.2f |", s.per(c))
			other -= s.per(c)
		}
		fmt.Fprintf(&b, " %.2f |\n", other)
	}
	b.WriteString("\n")
	writeGoals(&b, "Targets (issue 18): no more reads with data per request than the bare proxy.", r.syscallGoals())
	return b.String()
}

// writeGoals writes heading and a table of goals, or nothing when there are none.
func writeGoals(b *strings.Builder, heading string, goals []goal) {
	if len(goals) == 0 {
		return
	}
	b.WriteString(heading + "\n\n| what | measured | target | met |\n|---|--:|---|---|\n")
	for _, g := range goals {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", g.what, g.measured, g.target, yesNo(g.met))
	}
	b.WriteString("\n")
}

// syscallGoals: each gatehouse reads data no more often per request than the bare proxy
// (within 0.05 reads: the runtime's own calls over the run).
func (r *report) syscallGoals() []goal {
	var bare *syscallResult
	for i := range r.syscalls {
		if r.syscalls[i].name == "bare" {
			bare = &r.syscalls[i]
		}
	}
	if bare == nil {
		return nil
	}
	var out []goal
	for _, s := range r.syscalls {
		if s.name == "bare" {
			continue
		}
		out = append(out, goal{fmt.Sprintf("`%s` reads with data per request vs bare", s.name), fmt.Sprintf("%.2f vs %.2f", s.perOK("read"), bare.perOK("read")),
			"≤ bare's", s.perOK("read") <= bare.perOK("read")+0.05})
	}
	return out
}
