package session

import (
	"strconv"
	"testing"
)

// TestDecodedCacheIsBounded: the cache is keyed by session handle, which a client chooses
// through its cookie; only records that opened are cached, but their number is still
// capped at maxDecoded.
func TestDecodedCacheIsBounded(t *testing.T) {
	var c decodedCache
	key := make([]byte, KeySize)
	record := make([]byte, 32)
	for i := 0; i < 3*maxDecoded; i++ {
		c.put("h"+strconv.Itoa(i), key, record, &Session{})
		if n := len(c.entries); n > maxDecoded {
			t.Fatalf("after %d puts the cache holds %d entries; maxDecoded is %d", i+1, n, maxDecoded)
		}
	}
	last := "h" + strconv.Itoa(3*maxDecoded-1)
	if _, ok := c.get(last, key, record); !ok {
		t.Fatal("the newest entry was evicted")
	}
}
