package gatehouse

import (
	"strconv"
	"testing"
	"time"
)

// TestLimitLogIsBounded: the rate-limit audit de-duplication is keyed by client network;
// a flood from a million networks keeps it at 10 000 keys or fewer, and a key it forgot
// is audited again (which is what it exists to limit, not to prevent).
func TestLimitLogIsBounded(t *testing.T) {
	var l limitLog
	now := time.Unix(1_800_000_000, 0)
	for i := 0; i < 1_000_000; i++ {
		l.first("login|ip:"+strconv.Itoa(i), now)
		if n := len(l.seen); n > 10_001 {
			t.Fatalf("after %d keys the log holds %d", i+1, n)
		}
	}
	if !l.first("login|ip:x", now) || l.first("login|ip:x", now.Add(time.Second)) || !l.first("login|ip:x", now.Add(11*time.Second)) {
		t.Fatal("one event per key every 10 s")
	}
}
