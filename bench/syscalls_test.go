package main

import (
	"strings"
	"testing"
)

// TestParseStraceTable reads the summary `strace -c` writes (strace 6.1, Debian 12): the
// calls and errors of each row, and their sums whatever the total row holds.
func TestParseStraceTable(t *testing.T) {
	const out = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 55.10    0.081234           3     23104     13098 read
 40.02    0.059012           5     10000           write
  2.50    0.003690          14       250           epoll_pwait
  0.01    0.000012           6         2         1 futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.147400           4     33356     13099 total
`
	calls, errs, err := parseStraceTable(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	r := syscallResult{requests: 5000, calls: calls, errors: errs}
	if calls["read"] != 23104 || errs["read"] != 13098 || calls["write"] != 10000 || errs["write"] != 0 || calls["futex"] != 2 {
		t.Fatalf("calls %v errors %v", calls, errs)
	}
	if calls["total"] != 33356 || errs["total"] != 13099 {
		t.Fatalf("total %d errors %d, want 33356 and 13099", calls["total"], errs["total"])
	}
	if got := r.perOK("read"); got != 2.0012 {
		t.Fatalf("reads with data per request %v, want 2.0012", got)
	}
	if _, _, err := parseStraceTable(strings.NewReader("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")); err == nil {
		t.Fatal("an empty summary was accepted")
	}
}
