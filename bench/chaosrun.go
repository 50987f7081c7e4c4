package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// chaosRun is one run of the workload and the fault schedule.
type chaosRun struct {
	e         *chaosEnv
	rec       *recorder
	transport *http.Transport
	stopCh    chan struct{}
	stopOnce  sync.Once

	mu      sync.Mutex
	windows []window
	samples []leakSample
	reloads []reload
}

type reload struct {
	at      time.Time
	replica int
}

func (r *chaosRun) stopping() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// backchannelOK counts the back-channel logouts for sub that a gateway accepted.
func (r *chaosRun) backchannelOK(sub string) int {
	var s struct {
		Backchannel []struct {
			Sub    string `json:"sub"`
			Status int    `json:"status"`
		} `json:"backchannel"`
	}
	if getJSON(fmt.Sprintf("http://127.0.0.1:%d/__test/stats", r.e.provPort), &s) != nil {
		return 0
	}
	n := 0
	for _, b := range s.Backchannel {
		if b.Sub == sub && b.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// step of the fault schedule: faults applied at start, reverted at the end.
type faultStep struct {
	name  string
	kind  []string
	dur   time.Duration
	apply func(d time.Duration) // may return before d; the schedule reverts after d
	undo  func()
}

func (e *chaosEnv) schedule() (baseline, gap, settle time.Duration, groups [][]faultStep) {
	s := func(full, quick float64) time.Duration {
		if e.o.quick {
			return time.Duration(quick * float64(time.Second))
		}
		return time.Duration(full * float64(time.Second) * float64(e.o.duration) / float64(10*time.Minute))
	}
	failover := func(d time.Duration) faultStep {
		return faultStep{name: "redis-failover", kind: []string{"redis"}, dur: d, apply: e.redisFailover, undo: func() {}}
	}
	blackhole := faultStep{name: "redis-blackhole", kind: []string{"redis"}, dur: s(20, 6),
		apply: func(time.Duration) { e.setRedisFaults(faults{Blackhole: true}) }, undo: func() { e.setRedisFaults(faults{}) }}
	latency := func(d time.Duration) faultStep {
		return faultStep{name: "redis-latency-200ms", kind: []string{"redis"}, dur: d,
			apply: func(time.Duration) { e.setRedisFaults(faults{Latency: 200 * time.Millisecond}) }, undo: func() { e.setRedisFaults(faults{}) }}
	}
	provider := func(name, mode string, ms int, d time.Duration, kinds ...string) faultStep {
		return faultStep{name: name, kind: append([]string{"provider"}, kinds...), dur: d,
			apply: func(time.Duration) { e.tokenEndpoint(mode, ms) }, undo: func() { e.tokenEndpoint("normal", 0) }}
	}
	kill := func(i int, d time.Duration) faultStep {
		return faultStep{name: fmt.Sprintf("replica-%d-kill-9", i), kind: []string{"replica"}, dur: d,
			apply: func(time.Duration) { e.killReplica(i) }, undo: func() {}}
	}
	pause := func(i int, d time.Duration) faultStep {
		return faultStep{name: fmt.Sprintf("replica-%d-sigstop", i), kind: []string{"replica"}, dur: d,
			apply: func(time.Duration) { e.signalReplica(i, syscall.SIGSTOP); e.paused(i, true) },
			undo:  func() { e.signalReplica(i, syscall.SIGCONT); e.paused(i, false) }}
	}
	resets := func(d time.Duration) faultStep {
		return faultStep{name: "upstream-reset-5%", kind: []string{"upstream"}, dur: d,
			apply: func(time.Duration) { e.upProxy.set(faults{ResetRate: 0.05}) }, undo: func() { e.upProxy.set(faults{}) }}
	}
	groups = [][]faultStep{
		{failover(s(40, 16))},
		{blackhole},
		{provider("provider-3s-latency", "delay", 3000, s(60, 10))},
		{provider("provider-down", "reset", 0, s(30, 6))},
		{provider("provider-429", "429", 2000, s(20, 5), "provider429")},
		{kill(2, s(15, 6))},
		{pause(1, s(10, 5))},
		{resets(s(30, 6))},
		{latency(s(30, 6))},
		{latency(s(40, 10)), provider("provider-3s-latency", "delay", 3000, s(40, 10)), kill(0, s(40, 10))},
		{failover(s(40, 16)), resets(s(40, 16)), pause(2, s(10, 5))},
	}
	return s(30, 6), s(15, 4), s(30, 6), groups
}

func (e *chaosEnv) setRedisFaults(f faults) {
	for _, n := range e.nodes {
		n.proxy.set(f)
	}
}

func (e *chaosEnv) tokenEndpoint(mode string, ms int) {
	u := fmt.Sprintf("http://127.0.0.1:%d/__test/token-endpoint?mode=%s&ms=%d", e.provPort, mode, ms)
	if resp, err := http.Post(u, "text/plain", nil); err == nil {
		resp.Body.Close()
	}
}

// redisFailover kills the master with SIGKILL, waits for the sentinels to promote the
// other node, then starts the old master again (it comes back as a replica).
func (e *chaosEnv) redisFailover(d time.Duration) {
	m := e.masterNode()
	if m == nil {
		fmt.Fprintln(os.Stderr, "chaos: no master known to the sentinels; failover skipped")
		return
	}
	m.p.cmd.Process.Kill()
	<-m.p.exited
	killed := time.Now()
	deadline := killed.Add(d / 2)
	promoted := false
	for !promoted && time.Now().Before(deadline) {
		if n := e.masterNode(); n != nil && n != m {
			promoted = true
			e.note(fmt.Sprintf("failover: %s promoted %.1f s after %s was killed", n.name, time.Since(killed).Seconds(), m.name))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !promoted {
		e.problem(fmt.Sprintf("failover: the sentinels promoted no replica within %v of killing %s", d/2, m.name))
	}
	time.Sleep(time.Until(deadline))
	if err := e.startNode(m); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: restarting", m.name, err)
	}
}

func (e *chaosEnv) killReplica(i int) {
	r := e.replicas[i]
	p := r.proc()
	p.cmd.Process.Kill()
	<-p.exited
	time.Sleep(time.Second)
	if err := e.startReplica(r); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: restarting replica", i, err)
	}
}

func (e *chaosEnv) signalReplica(i int, s syscall.Signal) {
	if p := e.replicas[i].proc(); p != nil && p.alive() {
		p.cmd.Process.Signal(s)
	}
}

// pause is a stretch during which a replica was stopped (SIGSTOP to SIGCONT).
type pause struct {
	replica  int
	from, to time.Time
}

func (e *chaosEnv) paused(i int, stopped bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if stopped {
		e.pauses = append(e.pauses, pause{replica: i, from: time.Now()})
		return
	}
	for k := len(e.pauses) - 1; k >= 0; k-- {
		if p := &e.pauses[k]; p.replica == i && p.to.IsZero() {
			p.to = time.Now()
			return
		}
	}
}

// wsCloseDelay is how long a WebSocket through replica stayed open after its session
// ended at ended, when its reader saw it close at closed. A replica stopped meanwhile
// (SIGSTOP) can close nothing until it runs again: the delay then counts from its
// SIGCONT, and resumed says so.
func wsCloseDelay(ended, closed time.Time, replica int, pauses []pause) (d time.Duration, resumed bool) {
	from := ended
	for _, p := range pauses {
		if p.replica == replica && p.from.Before(closed) && (p.to.IsZero() || p.to.After(from)) {
			if p.to.IsZero() {
				return 0, true
			}
			from, resumed = p.to, true
		}
	}
	return max(0, closed.Sub(from)), resumed
}

func (e *chaosEnv) note(s string) {
	e.mu.Lock()
	e.notes = append(e.notes, s)
	e.mu.Unlock()
	fmt.Fprintln(os.Stderr, "chaos:", s)
}

func (e *chaosEnv) problem(s string) {
	e.mu.Lock()
	e.problems = append(e.problems, s)
	e.mu.Unlock()
	fmt.Fprintln(os.Stderr, "chaos:", s)
}

// leakSample is what each replica holds at one moment.
type leakSample struct {
	when       string
	goroutines []int
	fds        []int
	rssKB      []int64
	pids       []int
}

func (r *chaosRun) sample(when string) {
	s := leakSample{when: when}
	for _, rep := range r.e.replicas {
		p := rep.proc()
		pid := p.pid()
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		s.fds = append(s.fds, len(ents))
		s.rssKB = append(s.rssKB, rssKB(pid))
		s.goroutines = append(s.goroutines, metricValue(rep.admin+"/metrics", "go_goroutines"))
		s.pids = append(s.pids, pid)
	}
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func metricValue(url, name string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int(f)
		}
	}
	return -1
}

// run drives the workload while the schedule injects faults, then checks.
func (e *chaosEnv) run() (*chaosReport, error) {
	dump, err := os.Create(filepath.Join(e.dir, "responses.txt"))
	if err != nil {
		return nil, err
	}
	r := &chaosRun{e: e, stopCh: make(chan struct{}),
		rec:       &recorder{dump: bufio.NewWriter(dump), dumpFile: dump, counts: map[string]int{}, loginErr: map[string]int{}},
		transport: &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}}
	baseline, gap, settle, groups := e.schedule()
	step("workload: %d users; schedule: %d fault steps (baseline %v, gap %v)", e.o.users, len(groups), baseline, gap)

	var wg sync.WaitGroup
	users := make([]*chaosUser, e.o.users)
	for i := range users {
		users[i] = newChaosUser(r, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Logins spread over the first seconds.
			time.Sleep(time.Duration(i) * 4 * baseline / time.Duration(5*len(users)))
			users[i].loop(r.stopCh)
		}()
	}
	// Ends on purpose, one every few seconds: logout, back-channel logout, admin revocation.
	wg.Add(1)
	go func() {
		defer wg.Done()
		kinds := []string{"logout", "backchannel", "admin"}
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-r.stopCh:
				return
			case <-t.C:
			}
			u := users[mathrand.IntN(len(users))]
			select {
			case u.ends <- kinds[k%len(kinds)]:
			default:
			}
		}
	}()
	// SIGHUP reloads, one replica at a time.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-r.stopCh:
				return
			case <-t.C:
			}
			e.signalReplica(k%len(e.replicas), syscall.SIGHUP)
			r.rec.count("SIGHUP reloads")
			r.mu.Lock()
			r.reloads = append(r.reloads, reload{at: time.Now(), replica: k % len(e.replicas)})
			r.mu.Unlock()
		}
	}()

	start := time.Now()
	e.startedAt = start
	time.Sleep(baseline)
	r.sample("start")
	for _, g := range groups {
		var names []string
		var kinds []string
		longest := time.Duration(0)
		for _, st := range g {
			names = append(names, st.name)
			kinds = append(kinds, st.kind...)
			longest = max(longest, st.dur)
		}
		name := strings.Join(names, " + ")
		step("fault: %s (%v)", name, longest)
		w := window{Name: name, Kind: kinds, Start: time.Now()}
		var sw sync.WaitGroup
		for _, st := range g {
			sw.Add(1)
			go func() {
				defer sw.Done()
				t0 := time.Now()
				st.apply(st.dur)
				time.Sleep(time.Until(t0.Add(st.dur)))
				st.undo()
			}()
		}
		sw.Wait()
		w.End = time.Now()
		r.mu.Lock()
		r.windows = append(r.windows, w)
		r.mu.Unlock()
		time.Sleep(gap)
		r.sample("after " + name)
	}
	time.Sleep(settle)
	r.stopOnce.Do(func() { close(r.stopCh) })
	wg.Wait()
	elapsed := time.Since(start)
	r.sample("end")
	r.rec.mu.Lock()
	r.rec.dump.Flush()
	r.rec.mu.Unlock()
	step("checking every session on every replica")
	rep := r.check(elapsed)
	return rep, nil
}

// sessionStatus is /bff/user?slide=false on one replica, directly, with the cookie.
func sessionStatus(rep *replica, cookie string) int {
	req, _ := http.NewRequest("GET", rep.url+"/bff/user?slide=false", nil)
	req.Header.Set("Cookie", "__Host-gatehouse="+cookie)
	req.Header.Set("Accept", "application/json")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (r *chaosRun) check(elapsed time.Duration) *chaosReport {
	e := r.e
	rep := &chaosReport{o: e.o, elapsed: elapsed, started: e.startedAt, counts: r.rec.counts, loginErr: r.rec.loginErr,
		windows: r.windows, samples: r.samples, tally: newTally(), notes: e.notes, problems: e.problems}
	// Every session, one by one, on every replica.
	for _, s := range r.rec.sessions {
		switch {
		case s.ambiguous != "" && s.endedAt.IsZero():
			rep.ambiguous++
			continue
		case s.endedAt.IsZero():
			rep.live++
			for _, rp := range e.replicas {
				if st := sessionStatus(rp, s.cookie); st != http.StatusOK {
					rep.lost++
					rep.lostDetail = append(rep.lostDetail, fmt.Sprintf("%s on replica %d: %d", s.user, rp.i, st))
					break
				}
			}
		default:
			rep.ended++
			for _, rp := range e.replicas {
				if st := sessionStatus(rp, s.cookie); st != http.StatusUnauthorized {
					rep.usable++
					rep.usableDetail = append(rep.usableDetail, fmt.Sprintf("%s (%s) on replica %d: %d", s.user, s.endHow, rp.i, st))
				}
			}
			// Its WebSocket must have closed within wsClose of the end.
			s.mu.Lock()
			closed, open, asked, wsReplica := s.wsClosedAt, s.ws != nil, s.endingAt, s.wsReplica
			s.mu.Unlock()
			switch {
			case open:
				rep.wsLate++
				rep.wsDetail = append(rep.wsDetail, fmt.Sprintf("%s (%s): still open", s.user, s.endHow))
			case !closed.Before(asked):
				// Closed while the end's request was under way counts as 0.
				d, resumed := wsCloseDelay(s.endedAt, closed, wsReplica, e.pauses)
				rep.wsClose = append(rep.wsClose, d)
				if resumed {
					rep.wsPaused++
				}
				if raw := closed.Sub(s.endedAt); raw > time.Second {
					fmt.Fprintf(os.Stderr, "chaos: slow WebSocket close: %s (%v from the end itself)\n", r.wsLateDetail(s, d, wsReplica), raw.Round(10*time.Millisecond))
				}
				if d > e.o.wsClose {
					rep.wsLate++
					rep.wsDetail = append(rep.wsDetail, r.wsLateDetail(s, d, wsReplica))
				}
			}
		}
	}
	// Classification of every answer, and latency per phase.
	lat := map[string][]time.Duration{}
	for _, o := range r.rec.outcomes {
		class := rep.tally.add(o, r.windows, e.o.grace)
		if (class == classBad || class == classUnexplained) && len(rep.errorDetail) < 10 {
			d := fmt.Sprintf("+%.1f s %s, replica %d", o.At.Sub(e.startedAt).Seconds(), describe(o), o.Replica)
			for _, rl := range r.reloads {
				if since := o.At.Sub(rl.at); since >= 0 && since < 3*time.Second {
					d += fmt.Sprintf(", %.1f s after a SIGHUP to replica %d", since.Seconds(), rl.replica)
				}
			}
			rep.errorDetail = append(rep.errorDetail, d)
		}
		if class != classOK || o.Op != "api" && o.Op != "burst" && o.Op != "user" {
			continue
		}
		phase := "outside faults"
		for _, w := range r.windows {
			if !o.At.Before(w.Start) && !o.At.After(w.End) {
				phase = w.Name
			}
		}
		lat[phase] = append(lat[phase], o.Dur)
	}
	rep.total = len(r.rec.outcomes)
	for _, w := range r.windows {
		rep.phases = append(rep.phases, w.Name)
	}
	rep.phases = append([]string{"outside faults"}, rep.phases...)
	rep.latency = map[string][]time.Duration{}
	for k, v := range lat {
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		rep.latency[k] = v
	}
	// Recovery: after each window, the first success on every replica.
	for _, w := range r.windows {
		first := map[int]time.Time{}
		for _, o := range r.rec.outcomes {
			if o.Op == "api" && o.Status == 200 && o.Replica >= 0 && !o.At.Before(w.End) {
				if t, ok := first[o.Replica]; !ok || o.At.Before(t) {
					first[o.Replica] = o.At
				}
			}
		}
		rec := time.Duration(-1)
		if len(first) == len(e.replicas) {
			rec = 0
			for _, t := range first {
				rec = max(rec, t.Sub(w.End))
			}
		}
		rep.recovery = append(rep.recovery, rec)
	}
	// Refreshes at the provider.
	var stats struct {
		TokenRequests map[string]int `json:"token_requests"`
		RefreshUses   []refreshUse   `json:"refresh_uses"`
	}
	if err := getJSON(fmt.Sprintf("http://127.0.0.1:%d/__test/stats", e.provPort), &stats); err != nil {
		rep.problems = append(rep.problems, "provider stats: "+err.Error())
	}
	rep.refreshes = len(stats.RefreshUses)
	rep.tokenRequests = stats.TokenRequests
	rep.reused, rep.doubles, rep.refreshDetail = refreshCheck(stats.RefreshUses, chaosTokenTTL*time.Second/4)
	// Token leaks: every secret the provider issued, in the replicas' logs and every
	// answer the users got.
	secrets := issuedSecrets(filepath.Join(e.dir, "tokens.jsonl"))
	rep.secrets = len(secrets)
	var haystacks [][]byte
	for i := range e.replicas {
		b, _ := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("gatehouse-%d.log", i)))
		haystacks = append(haystacks, b)
	}
	// The logout answer's redirect_url carries the ID token as id_token_hint, by design
	// (RP-initiated logout, docs/http-api.md): that one place is left out.
	b, _ := os.ReadFile(filepath.Join(e.dir, "responses.txt"))
	haystacks = append(haystacks, idTokenHintRe.ReplaceAll(b, []byte("id_token_hint=…")))
	issued := map[string]bool{}
	for _, s := range secrets {
		issued[s] = true
	}
	rep.leaks = countLeaks(haystacks, issued)
	for tok, n := range e.up.bearers() {
		rep.bearerRequests += n
		if !issued[tok] {
			rep.unknownBearers++
		}
	}
	// Redis memory against the live sessions.
	if m := e.masterNode(); m != nil {
		addr := fmt.Sprintf("127.0.0.1:%d", m.port)
		for _, l := range strings.Split(redisCmdAll(addr, "INFO", "memory"), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
				rep.redisMemory, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		rep.redisKeys, _ = strconv.Atoi(strings.TrimSpace(redisCmdAll(addr, "DBSIZE")))
	}
	rep.wsDrops = len(r.rec.wsDrops)
	for _, d := range r.rec.wsDrops {
		inside := false
		var last *window
		for i, w := range r.windows {
			if !d.at.Before(w.Start) && !d.at.After(w.End.Add(e.o.grace)) {
				inside = true
			}
			if w.End.Before(d.at) {
				last = &r.windows[i]
			}
		}
		if !inside {
			rep.wsDropsOutside++
			where := fmt.Sprintf("replica %d, at +%.1f s, open %.1f s", d.replica, d.at.Sub(e.startedAt).Seconds(), d.at.Sub(d.opened).Seconds())
			if last != nil {
				where += fmt.Sprintf(", %.1f s after %s ended", d.at.Sub(last.End).Seconds(), last.Name)
			}
			rep.wsDropDetail = append(rep.wsDropDetail, where)
		}
	}
	return rep
}

// wsLateDetail says where and when a WebSocket closed late: the time of the end since
// the start of the workload, the replica the socket went through, the one an admin
// revocation went to, and the fault windows between the end and the close.
func (r *chaosRun) wsLateDetail(s *chaosSession, d time.Duration, wsReplica int) string {
	e := r.e
	out := fmt.Sprintf("%s (%s at +%.1f s): closed after %v, its WebSocket on replica %d", s.user, s.endHow,
		s.endedAt.Sub(e.startedAt).Seconds(), d.Round(10*time.Millisecond), wsReplica)
	if s.endVia >= 0 {
		out += fmt.Sprintf(", ended through replica %d", s.endVia)
	}
	var in []string
	for _, w := range r.windows {
		if w.Start.Before(s.endedAt.Add(d)) && w.End.Add(e.o.grace).After(s.endedAt) {
			in = append(in, w.Name)
		}
	}
	if len(in) > 0 {
		out += ", during " + strings.Join(in, ", ")
	}
	return out
}

// countLeaks counts the secrets found in the haystacks: each run of token characters
// (base64url and the dots of a JWT) is looked up, so that thousands of secrets are
// searched in one pass.
func countLeaks(haystacks [][]byte, secrets map[string]bool) int {
	found := map[string]bool{}
	isTok := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
	}
	for _, h := range haystacks {
		for i := 0; i < len(h); {
			if !isTok(h[i]) {
				i++
				continue
			}
			j := i
			for j < len(h) && isTok(h[j]) {
				j++
			}
			if j-i >= 16 {
				run := strings.Trim(string(h[i:j]), ".")
				if secrets[run] {
					found[run] = true
				}
			}
			i = j
		}
	}
	return len(found)
}

var idTokenHintRe = regexp.MustCompile(`id_token_hint=[A-Za-z0-9_.-]+`)

func issuedSecrets(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range bytes.Split(b, []byte("\n")) {
		var s struct{ Value string }
		if json.Unmarshal(line, &s) == nil && len(s.Value) >= 16 {
			out = append(out, s.Value)
		}
	}
	return out
}
