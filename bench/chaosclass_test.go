package main

import (
	"testing"
	"time"
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
	}
	for _, c := range cases {
		if got, why := classify(c.o, windows, grace); got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, why, c.want)
		}
	}

	tl := newTally()
	for _, c := range cases {
		tl.add(c.o, windows, grace)
	}
	if tl.byClass[classBad] != 8 || tl.byClass[classUnexplained] != 2 || len(tl.inWindow["redis-blackhole"]) == 0 {
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
