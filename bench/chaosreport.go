package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type chaosReport struct {
	o       *chaosOptions
	started time.Time
	elapsed time.Duration
	counts  map[string]int
	windows []window
	samples []leakSample
	tally   *tally
	total   int

	live, lost, ended, usable, ambiguous int
	lostDetail, usableDetail             []string
	wsLate, wsDrops, wsDropsOutside      int
	wsPaused                             int // closes measured from a paused replica's SIGCONT
	wsClose                              []time.Duration
	wsDetail, wsDropDetail               []string
	loginErr                             map[string]int

	phases   []string
	latency  map[string][]time.Duration
	recovery []time.Duration

	refreshes, reused, doubles int
	refreshDetail              []string
	tokenRequests              map[string]int

	secrets, leaks                 int
	bearerRequests, unknownBearers int
	redisMemory                    int64
	redisKeys                      int
	problems                       []string
	notes                          []string
	errorDetail                    []string // the first errors no fault explains, with when and where
}

// failures lists every check that did not hold; the run exits non-zero when any did not.
func (r *chaosReport) failures() []string {
	var f []string
	add := func(n int, what string) {
		if n != 0 {
			f = append(f, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.lost, "sessions lost (not ended on purpose, refused at the end)")
	add(r.usable, "ended sessions still usable on a replica")
	add(r.reused, "refresh tokens presented twice")
	add(r.doubles, "double refreshes (one session refreshed twice for one expiry)")
	add(r.tally.byClass[classUnexplained], "errors outside fault windows")
	add(r.tally.byClass[classBad], "errors inside fault windows that no fault explains")
	add(r.wsLate, fmt.Sprintf("WebSockets not closed within %v of their session's end", r.o.wsClose))
	add(r.wsDropsOutside, "WebSockets of live sessions closed outside fault windows")
	add(r.leaks, "issued tokens found in logs or answers")
	add(r.unknownBearers, "bearer tokens at the upstream that the provider never issued")
	if r.counts["logins"] == 0 {
		f = append(f, "no login succeeded")
	}
	f = append(f, r.problems...)
	return f
}

func msOrDash(d time.Duration) string {
	if d < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func (r *chaosReport) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	mode := "full run"
	if r.o.quick {
		mode = "**--quick** run (compressed schedule)"
	}
	mode += " with `upstream_transport: " + r.o.upstreamTransport + "`"
	verdict := "all checks held"
	if f := r.failures(); len(f) > 0 {
		verdict = fmt.Sprintf("**%d checks failed**", len(f))
	}
	p("Latest: %s, %s UTC, %v of workload, %d users, 3 replicas; %s.", mode, r.started.UTC().Format("2006-01-02 15:04"),
		r.elapsed.Round(time.Second), r.o.users, verdict)
	p("")
	p("### Checks")
	p("")
	p("| check | result | |")
	p("|---|---|---|")
	row := func(name string, n int, detail string) {
		res := "0 ✅"
		if n != 0 {
			res = fmt.Sprintf("**%d** ❌", n)
		}
		p("| %s | %s | %s |", name, res, detail)
	}
	row("sessions lost", r.lost, fmt.Sprintf("%d sessions not ended on purpose, each checked on every replica; %d whose end was attempted during a fault and failed (left out)", r.live, r.ambiguous)+first(r.lostDetail))
	row("ended sessions still usable", r.usable, fmt.Sprintf("%d sessions ended on purpose (%s), each checked on every replica", r.ended, endKinds(r.counts))+first(r.usableDetail))
	row("refresh tokens used twice", r.reused, fmt.Sprintf("%d refresh grants reached the provider", r.refreshes)+first(r.refreshDetail))
	row("double refreshes", r.doubles, fmt.Sprintf("two successful refreshes of one grant less than %ds apart", chaosTokenTTL/4))
	row("errors outside fault windows", r.tally.byClass[classUnexplained], top(r.tally.errors[classUnexplained], 6))
	row("errors inside windows no fault explains", r.tally.byClass[classBad], top(r.tally.errors[classBad], 6))
	row(fmt.Sprintf("WebSockets open > %v after their session ended", r.o.wsClose), r.wsLate, wsSummary(r.wsClose)+fmt.Sprintf("; %d on a replica paused meanwhile, counted from its SIGCONT", r.wsPaused)+first(r.wsDetail))
	row("WebSockets of live sessions closed outside faults", r.wsDropsOutside, fmt.Sprintf("%d closed while their session was live in all (a replica killed or paused, the upstream resetting); the user opens another", r.wsDrops)+first(r.wsDropDetail))
	row("issued tokens in logs or answers", r.leaks, fmt.Sprintf("%d secrets from the provider's token log, searched in the 3 replicas' logs and every answer (but the logout answer's id_token_hint, by design)", r.secrets))
	row("unknown bearer tokens at the upstream", r.unknownBearers, fmt.Sprintf("%d requests with a bearer reached the upstream", r.bearerRequests))
	p("")
	p("Answers: %d in all; %d successes, %d 401 for sessions ended on purpose, %d explained by a fault, %d not explained.",
		r.total, r.tally.byClass[classOK], r.tally.byClass[classEnded], r.tally.byClass[classExplained],
		r.tally.byClass[classBad]+r.tally.byClass[classUnexplained])
	var acts []string
	for k, v := range r.counts {
		acts = append(acts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(acts)
	p("Actions: %s.", strings.Join(acts, ", "))
	if len(r.loginErr) > 0 {
		p("Logins that failed at the provider's pages (not a gateway answer): %s.", top(r.loginErr, 4))
	}
	p("Provider token requests: %v.", r.tokenRequests)
	for _, n := range r.notes {
		p("- %s", n)
	}
	if len(r.errorDetail) > 0 {
		p("")
		p("Errors not explained (the first %d, time from the start of the workload):", len(r.errorDetail))
		p("")
		for _, d := range r.errorDetail {
			p("- %s", d)
		}
	}
	p("")
	p("### Fault windows")
	p("")
	p("| fault | length | answers explained | answers not explained | recovery (first success on every replica) |")
	p("|---|---|---|---|---|")
	for i, w := range r.windows {
		var ok, bad []string
		for why, n := range r.tally.inWindow[w.Name] {
			s := fmt.Sprintf("%d× %s", n, why)
			if r.isBad(why) {
				bad = append(bad, s)
			} else {
				ok = append(ok, s)
			}
		}
		sort.Strings(ok)
		sort.Strings(bad)
		p("| %s | %v | %s | %s | %s |", w.Name, w.End.Sub(w.Start).Round(100*time.Millisecond),
			orNone(ok), orNone(bad), msOrDash(r.recovery[i]))
	}
	p("")
	p("### Latency of successful API calls and /bff/user polls")
	p("")
	p("| phase | answers | per second | p50 | p99 |")
	p("|---|---|---|---|---|")
	length := map[string]time.Duration{"outside faults": r.elapsed}
	for _, w := range r.windows {
		length[w.Name] += w.End.Sub(w.Start) // the windows follow one another
		length["outside faults"] -= w.End.Sub(w.Start)
	}
	for i, ph := range r.phases {
		l := r.latency[ph]
		if len(l) == 0 || i > 0 && r.phases[i-1] == ph {
			continue
		}
		p("| %s | %d | %.0f | %s | %s |", ph, len(l), float64(len(l))/length[ph].Seconds(), msOrDash(percentile(l, 50)), msOrDash(percentile(l, 99)))
	}
	p("")
	p("### Replicas: goroutines / open files / RSS")
	p("")
	p("| when | replica 0 | replica 1 | replica 2 |")
	p("|---|---|---|---|")
	for i, s := range r.samples {
		var cells []string
		for k := range s.fds {
			c := fmt.Sprintf("%d / %d / %d MiB", s.goroutines[k], s.fds[k], s.rssKB[k]/1024)
			if i > 0 && r.samples[i-1].pids[k] != s.pids[k] {
				c += " (restarted)"
			}
			cells = append(cells, c)
		}
		p("| %s | %s |", s.when, strings.Join(cells, " | "))
	}
	p("")
	p("Steadiness, from the first sample of each replica's last process (the start, or after its restart) to the end, with the peak between: %s.",
		strings.Join(steadiness(r.samples), "; "))
	p("")
	p("Redis at the end: %d keys, %.1f MiB used, for %d live sessions.", r.redisKeys, float64(r.redisMemory)/(1<<20), r.live)
	return b.String()
}

// steadiness says, for each replica, how its goroutines, open files and RSS went from
// the first sample of its last process to the end, and their peak between: a leak grows
// from fault to fault and does not come back down.
func steadiness(samples []leakSample) []string {
	if len(samples) == 0 {
		return nil
	}
	var out []string
	for k := range samples[0].pids {
		from := 0
		for i := 1; i < len(samples); i++ {
			if samples[i].pids[k] != samples[i-1].pids[k] {
				from = i
			}
		}
		last := samples[len(samples)-1]
		first := samples[from]
		var pg, pf int
		var pr int64
		for _, s := range samples[from:] {
			pg, pf, pr = max(pg, s.goroutines[k]), max(pf, s.fds[k]), max(pr, s.rssKB[k])
		}
		where := "start"
		if from > 0 {
			where = first.when
		}
		out = append(out, fmt.Sprintf("replica %d (from %s) goroutines %d → %d (peak %d), open files %d → %d (%d), RSS %d → %d MiB (%d)",
			k, where, first.goroutines[k], last.goroutines[k], pg, first.fds[k], last.fds[k], pf, first.rssKB[k]/1024, last.rssKB[k]/1024, pr/1024))
	}
	return out
}

func (r *chaosReport) isBad(why string) bool {
	return r.tally.errors[classBad][why] > 0 && r.tally.errors[classExplained][why] == 0
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, "; ")
}

func first(detail []string) string {
	if len(detail) == 0 {
		return ""
	}
	s := ": " + strings.Join(detail[:min(3, len(detail))], "; ")
	if len(detail) > 3 {
		s += fmt.Sprintf("; … %d more", len(detail)-3)
	}
	return s
}

func endKinds(c map[string]int) string {
	return fmt.Sprintf("%d logouts, %d back-channel logouts, %d admin revocations", c["ended by logout"], c["ended by backchannel"], c["ended by admin"])
}

func wsSummary(d []time.Duration) string {
	if len(d) == 0 {
		return "no WebSocket of an ended session was measured"
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("%d measured: p50 %s, p99 %s, max %s", len(s), msOrDash(percentile(s, 50)), msOrDash(percentile(s, 99)), msOrDash(s[len(s)-1]))
}

const (
	chaosMarkerStart = "<!-- chaos:results:start -->"
	chaosMarkerEnd   = "<!-- chaos:results:end -->"
)

// writeChaosResults replaces the results section of docs/reliability.md.
func writeChaosResults(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := chaosMarkerStart + "\n" + md + chaosMarkerEnd
	s := string(old)
	i, j := strings.Index(s, chaosMarkerStart), strings.Index(s, chaosMarkerEnd)
	if i >= 0 && j > i {
		s = s[:i] + section + s[j+len(chaosMarkerEnd):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
