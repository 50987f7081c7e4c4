package main

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	windows := []window{
		{Name: "redis-blackhole", Kind: []string{"redis"}, Start: at(10), End: at(20)},
		{Name: "provider-429", Kind: []string{"provider", "provider429"}, Start: at(40), End: at(50)},
		{Name: "replica-kill", Kind: []string{"replica"}, Start: at(60), End: at(65)},
	}
	const grace = 3 * time.Second
	unavailable := func(s int) outcome {
		return outcome{At: at(s), Op: "api", Status: 503, JSON: true, Code: "unavailable", Reason: "store_unavailable"}
	}
	cases := []struct {
		name string
		o    outcome
		want string
	}{
		{"success", outcome{At: at(1), Op: "api", Status: 200}, classOK},
		{"navigation redirect", outcome{At: at(1), Op: "login", Status: 302, Nav: true}, classOK},
		{"401 of an ended session", outcome{At: at(1), Op: "api", Status: 401, Ended: true}, classEnded},
		{"503 outside windows", unavailable(5), classUnexplained},
		{"503 inside", unavailable(12), classExplained},
		{"503 in the grace", unavailable(22), classExplained},
		{"503 after the grace", unavailable(24), classUnexplained},
		{"500 inside", outcome{At: at(12), Op: "api", Status: 500, JSON: true, Code: "internal"}, classBad},
		{"502 not JSON", outcome{At: at(12), Op: "api", Status: 502}, classBad},
		{"HTML 502 for a navigation", outcome{At: at(12), Op: "callback", Status: 502, Nav: true}, classExplained},
		{"odd code", outcome{At: at(12), Op: "api", Status: 503, JSON: true, Code: "teapot"}, classBad},
		{"no answer inside", outcome{At: at(12), Op: "api", Err: "timeout"}, classBad},
		{"live session refused inside", outcome{At: at(12), Op: "api", Status: 401, JSON: true, Code: "unauthenticated"}, classBad},
		{"provider 503 without Retry-After while it sends 429",
			outcome{At: at(45), Op: "api", Status: 503, JSON: true, Code: "unavailable", Reason: "provider_unavailable"}, classBad},
		{"provider 503 with Retry-After",
			outcome{At: at(45), Op: "api", Status: 503, JSON: true, Code: "unavailable", Reason: "provider_unavailable", RetryAfter: true}, classExplained},
		{"store 503 needs no Retry-After in a 429 window", unavailable(45), classExplained},
		{"balancer 502 while a replica is down", outcome{At: at(61), Op: "api", Status: 502, Balancer: true}, classExplained},
		{"WebSocket cut after its handshake by a replica's death", outcome{At: at(61), Op: "ws-echo", Err: "EOF"}, classExplained},
		{"WebSocket cut after its handshake in a Redis window", outcome{At: at(12), Op: "ws-echo", Err: "EOF"}, classBad},
		{"balancer 502 in a Redis window", outcome{At: at(12), Op: "api", Status: 502, Balancer: true}, classBad},
		// A request under way when a fault began is met by it (the +85 s callback 503 of the
		// full run: sent 50 ms before the blackhole, its save then timed out).
		{"callback sent just before the window, failing in it",
			outcome{At: at(10).Add(-50 * time.Millisecond), Dur: 1100 * time.Millisecond, Op: "callback", Status: 503, Nav: true}, classExplained},
		{"callback that failed before the window",
			outcome{At: at(9), Dur: 500 * time.Millisecond, Op: "callback", Status: 503, Nav: true}, classUnexplained},
		// A 503 tells the provider's failure from the store's, and the store's from a
		// wait for a refresh lease held by a replica that waits on the provider.
		{"provider 503 in a Redis window",
			outcome{At: at(12), Op: "api", Status: 503, JSON: true, Code: "unavailable", Reason: "provider_unavailable"}, classBad},
		{"lease wait while a replica is killed", unavailable(61), classExplained},
	}
	for _, c := range cases {
		if got, why := classify(c.o, windows, grace); got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, why, c.want)
		}
	}

	if _, why := classify(unavailable(45), windows, grace); !strings.HasSuffix(why, "(lease wait)") {
		t.Errorf("a store 503 in a provider window is not told apart as a lease wait: %q", why)
	}
	if _, why := classify(unavailable(12), windows, grace); strings.Contains(why, "lease") {
		t.Errorf("a store 503 in a Redis window is called a lease wait: %q", why)
	}

	tl := newTally()
	for _, c := range cases {
		tl.add(c.o, windows, grace)
	}
	if tl.byClass[classBad] != 9 || tl.byClass[classUnexplained] != 3 || len(tl.inWindow["redis-blackhole"]) == 0 {
		t.Fatalf("tally: %v, in windows %v", tl.byClass, tl.inWindow)
	}
}

func TestRefreshCheck(t *testing.T) {
	uses := []refreshUse{
		{RT: "aaaaaaaaaaaaaaaa", Grant: "g1", Sub: "u01", Status: 200, At: 1000},
		{RT: "bbbbbbbbbbbbbbbb", Grant: "g1", Sub: "u01", Status: 200, At: 16000},
		{RT: "cccccccccccccccc", Grant: "g2", Sub: "u02", Status: 200, At: 1000},
		{RT: "dddddddddddddddd", Grant: "g2", Sub: "u02", Status: 200, At: 2000}, // 1 s later: a double
		{RT: "eeeeeeeeeeeeeeee", Grant: "g3", Sub: "u03", Status: 200, At: 1000},
		{RT: "eeeeeeeeeeeeeeee", Grant: "", Sub: "", Status: 400, At: 1500}, // the same token again
		{RT: "ffffffffffffffff", Grant: "g4", Sub: "u04", Status: 400, At: 1000},
		{RT: "gggggggggggggggg", Grant: "g4", Sub: "u04", Status: 200, At: 1200}, // after a failure: fine
	}
	reused, doubles, detail := refreshCheck(uses, 5*time.Second)
	if reused != 1 || doubles != 1 || len(detail) != 2 {
		t.Fatalf("reused %d, doubles %d, %q", reused, doubles, detail)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 50); p != 50*time.Millisecond {
		t.Fatalf("p50 = %v", p)
	}
	if p := percentile(d, 99); p != 99*time.Millisecond {
		t.Fatalf("p99 = %v", p)
	}
	if percentile(nil, 50) != 0 {
		t.Fatal("empty")
	}
}

// The schedule fits the run's length: about 10 minutes by default, scaled by --duration,
// about 2.5 minutes with --quick.
func TestChaosSchedule(t *testing.T) {
	total := func(o *chaosOptions) time.Duration {
		baseline, gap, settle, groups := (&chaosEnv{o: o}).schedule()
		d := baseline + settle
		for _, g := range groups {
			longest := time.Duration(0)
			for _, st := range g {
				longest = max(longest, st.dur)
			}
			d += longest + gap
		}
		return d
	}
	for _, c := range []struct {
		args     []string
		min, max time.Duration
	}{
		{nil, 9 * time.Minute, 10 * time.Minute},
		{[]string{"--duration", "20m"}, 18 * time.Minute, 20 * time.Minute},
		{[]string{"--quick"}, 2 * time.Minute, 150 * time.Second},
	} {
		o, err := parseChaosOptions(c.args)
		if err != nil {
			t.Fatal(err)
		}
		if d := total(o); d < c.min || d > c.max {
			t.Errorf("%v: the schedule lasts %v, want %v to %v", c.args, d, c.min, c.max)
		}
	}
}

func TestCountLeaks(t *testing.T) {
	secrets := map[string]bool{"eyJhbGciOi.eyJzdWIiOiJ1MDEifQ.c2lnbmF0dXJl": true, "opaque-access-token-0123456789": true, "never-seen-anywhere-0123456789": true}
	haystacks := [][]byte{
		[]byte(`{"msg":"x","token":"opaque-access-token-0123456789"}`),
		[]byte("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiJ1MDEifQ.c2lnbmF0dXJl.\n"),
		[]byte("opaque-access-token-0123456789X is another value"),
	}
	if n := countLeaks(haystacks, secrets); n != 2 {
		t.Fatalf("countLeaks = %d, want 2", n)
	}
}

func TestSteadiness(t *testing.T) {
	samples := []leakSample{
		{when: "start", goroutines: []int{100, 90}, fds: []int{60, 50}, rssKB: []int64{30 << 10, 30 << 10}, pids: []int{1, 2}},
		{when: "after a", goroutines: []int{150, 40}, fds: []int{90, 30}, rssKB: []int64{40 << 10, 20 << 10}, pids: []int{1, 3}},
		{when: "end", goroutines: []int{110, 60}, fds: []int{62, 35}, rssKB: []int64{41 << 10, 25 << 10}, pids: []int{1, 3}},
	}
	got := steadiness(samples)
	want := []string{
		"replica 0 (from start) goroutines 100 → 110 (peak 150), open files 60 → 62 (90), RSS 30 → 41 MiB (41)",
		"replica 1 (from after a) goroutines 40 → 60 (peak 60), open files 30 → 35 (35), RSS 20 → 25 MiB (25)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("steadiness:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWSCloseDelay(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pauses := []pause{{replica: 1, from: at(0), to: at(10000)}}
	// Ended 0.9 s into replica 1's 10 s pause, closed 0.1 s after its SIGCONT.
	if d, resumed := wsCloseDelay(at(900), at(10100), 1, pauses); d != 100*time.Millisecond || !resumed {
		t.Errorf("socket on the paused replica: %v, %v", d, resumed)
	}
	if d, resumed := wsCloseDelay(at(900), at(10100), 0, pauses); d != 9200*time.Millisecond || resumed {
		t.Errorf("socket on a running replica: %v, %v", d, resumed)
	}
	if d, resumed := wsCloseDelay(at(12000), at(12050), 1, pauses); d != 50*time.Millisecond || resumed {
		t.Errorf("ended after the pause: %v, %v", d, resumed)
	}
}

// -upstream-transport reaches the replicas' config as a top-level upstream_transport;
// anything but standard or fast is refused.
func TestChaosUpstreamTransport(t *testing.T) {
	up, err := startFaultProxy("upstream", "127.0.0.1:0", "127.0.0.1:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "fast"}, // Gatehouse's default
		{[]string{"--upstream-transport", "fast"}, "fast"},
		{[]string{"--upstream-transport", "standard"}, "standard"},
	} {
		o, err := parseChaosOptions(c.args)
		if err != nil {
			t.Fatal(err)
		}
		e := &chaosEnv{o: o, lb: &balancer{url: "http://127.0.0.1:1"}, upProxy: up}
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(e.gatehouseYAML(1, 2)), &doc); err != nil {
			t.Fatal(err)
		}
		if doc["upstream_transport"] != c.want {
			t.Errorf("%v: upstream_transport %v, want %s", c.args, doc["upstream_transport"], c.want)
		}
	}
	if _, err := parseChaosOptions([]string{"--upstream-transport", "quick"}); err == nil {
		t.Error("-upstream-transport quick accepted")
	}
}
