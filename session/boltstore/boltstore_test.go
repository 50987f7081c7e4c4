package boltstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-bff/gatehouse/session"
	"github.com/gatehouse-bff/gatehouse/session/boltstore"
	"github.com/gatehouse-bff/gatehouse/session/sessiontest"
)

func TestConformance(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return open(t, boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db")})
	})
}

// open opens a store that the test closes at its end.
func open(t testing.TB, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable Options.Now, safe to read from the sweeper goroutine.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func members(t testing.TB, s *boltstore.Store, ix string) []string {
	t.Helper()
	m, err := s.Members(t.Context(), ix)
	must(t, err)
	slices.Sort(m)
	return m
}

func wantValue(t testing.TB, s *boltstore.Store, key, want string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func wantNotFound(t testing.TB, s *boltstore.Store, key string) {
	t.Helper()
	if got, err := s.Get(t.Context(), key); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	c := newClock()
	opts := boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db"), Now: c.Now}
	ctx := t.Context()
	s, err := boltstore.Open(opts)
	must(t, err)
	must(t, s.Set(ctx, "s:{a}", []byte("sealed a"), time.Hour))
	must(t, s.SetIndexed(ctx, "s:{b}", []byte("sealed b"), time.Hour, "sub:x", "psid:y"))
	must(t, s.SetIndexed(ctx, "s:{short}", []byte("sealed short"), time.Minute, "sub:x"))
	if added, err := s.Add(ctx, "jti:1", []byte("1"), time.Hour); err != nil || !added {
		t.Fatalf("Add = %v, %v", added, err)
	}
	must(t, s.Set(ctx, "s:{gone}", []byte("deleted"), time.Hour))
	if existed, err := s.Delete(ctx, "s:{gone}"); err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	must(t, s.Close())

	c.Advance(2 * time.Minute) // s:{short} and its membership expire while the file is closed
	s = open(t, opts)
	wantValue(t, s, "s:{a}", "sealed a")
	wantValue(t, s, "s:{b}", "sealed b")
	wantValue(t, s, "jti:1", "1")
	wantNotFound(t, s, "s:{short}")
	wantNotFound(t, s, "s:{gone}")
	if m := members(t, s, "sub:x"); !slices.Equal(m, []string{"s:{b}"}) {
		t.Fatalf("Members(sub:x) after reopen = %q", m)
	}
	if m := members(t, s, "psid:y"); !slices.Equal(m, []string{"s:{b}"}) {
		t.Fatalf("Members(psid:y) after reopen = %q", m)
	}
	if added, _ := s.Add(ctx, "jti:1", []byte("2"), time.Hour); added {
		t.Fatal("Add after reopen replaced a live value: a replayed token would pass")
	}
}

// The crash tests run this test binary again as a child process that writes to the store
// and is then killed with SIGKILL: no deferred call, Close or flush of ours runs.
const helperEnv = "BOLTSTORE_TEST_HELPER" // "block" or "loop"; the file path is in helperEnv_PATH

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("child process of the crash tests")
	}
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	s, err := boltstore.Open(boltstore.Options{Path: os.Getenv(helperEnv + "_PATH")})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	switch mode {
	case "block":
		if err := s.SetIndexed(ctx, "s:{crash}", sealed(0), time.Hour, "sub:crash"); err != nil {
			fail(err)
		}
		fmt.Println("written")
		io.Copy(io.Discard, os.Stdin) // until killed, or until the parent goes away
	case "loop":
		for i := 0; ; i++ {
			if err := s.Set(ctx, fmt.Sprintf("s:{%d}", i), sealed(i), time.Hour); err != nil {
				fail(err)
			}
			if _, err := fmt.Println(i); err != nil {
				os.Exit(1) // the parent is gone
			}
		}
	}
	os.Exit(3)
}

// sealed stands for a 2 KB record sealed by the Manager.
func sealed(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%08d", i)), 256)
}

// startHelper starts the child in mode on path and returns its stdout, line by line.
func startHelper(t *testing.T, mode, path string) (*exec.Cmd, <-chan string) {
	t.Helper()
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("SIGKILL is a Unix signal")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_PATH="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// kill sends SIGKILL to the child's PID and reaps it.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	must(t, cmd.Process.Kill()) // SIGKILL on Unix
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != -1 {
		t.Fatalf("child exited with %d before it was killed", code)
	}
}

func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("child closed its output")
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("child wrote nothing for 30s")
	}
	return ""
}

func TestSurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	cmd, lines := startHelper(t, "block", path)
	if l := next(t, lines); l != "written" {
		t.Fatalf("child said %q", l)
	}
	kill(t, cmd)

	s := open(t, boltstore.Options{Path: path, Timeout: 2 * time.Second}) // the kernel dropped the dead child's lock
	got, err := s.Get(t.Context(), "s:{crash}")
	if err != nil || !bytes.Equal(got, sealed(0)) {
		t.Fatalf("after kill -9: Get = %d bytes, %v; want the value the child wrote", len(got), err)
	}
	if m := members(t, s, "sub:crash"); !slices.Equal(m, []string{"s:{crash}"}) {
		t.Fatalf("after kill -9: Members = %q", m)
	}
}

func TestSurvivesKillMidWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	cmd, lines := startHelper(t, "loop", path)
	acked := -1
	for acked < 200 {
		l := next(t, lines)
		n, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("child said %q", l)
		}
		acked = n
	}
	kill(t, cmd) // most likely inside a commit

	s, err := boltstore.Open(boltstore.Options{Path: path, Timeout: 2 * time.Second})
	must(t, err)
	for i := 0; i <= acked; i++ {
		got, err := s.Get(t.Context(), fmt.Sprintf("s:{%d}", i))
		if err != nil || !bytes.Equal(got, sealed(i)) {
			t.Fatalf("write %d of %d acknowledged before kill -9: Get = %d bytes, %v", i, acked, len(got), err)
		}
	}
	must(t, s.Set(t.Context(), "after", []byte("v"), time.Hour))
	must(t, s.Close())
	checkFile(t, path)
}

// checkFile runs bolt's consistency check over the closed file.
func checkFile(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	must(t, err)
	defer db.Close()
	must(t, db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}))
}

func TestSweep(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "sessions.db")
	// No fsync: this test is about what is deleted, and it writes thousands of records.
	s := open(t, boltstore.Options{Path: path, Now: c.Now, SweepInterval: time.Hour, InsecureNoSync: true})
	ctx := t.Context()
	// More than one batch of each kind, over several index sets.
	const n = 2500
	for i := range n {
		must(t, s.SetIndexed(ctx, fmt.Sprintf("s:{%d}", i), sealed(i), time.Second, fmt.Sprintf("sub:%d", i%3)))
	}
	must(t, s.Set(ctx, "s:{long}", []byte("v"), time.Hour))
	must(t, s.SetIndexed(ctx, "s:{long-ix}", []byte("v"), time.Hour, "sub:0", "sub:keep"))
	must(t, s.Set(ctx, "s:{renewed}", []byte("v1"), time.Second))
	c.Advance(2 * time.Second)
	must(t, s.Set(ctx, "s:{renewed}", []byte("v2"), time.Hour)) // expired, then written again

	deleted, err := s.Sweep()
	must(t, err)
	if deleted != 2*n {
		t.Fatalf("Sweep deleted %d records, want %d values and %d members", deleted, n, n)
	}
	if deleted, err := s.Sweep(); err != nil || deleted != 0 {
		t.Fatalf("second Sweep = %d, %v; want 0, nil", deleted, err)
	}
	wantValue(t, s, "s:{long}", "v")
	wantValue(t, s, "s:{renewed}", "v2")
	if m := members(t, s, "sub:0"); !slices.Equal(m, []string{"s:{long-ix}"}) {
		t.Fatalf("Members(sub:0) = %q", m)
	}

	c.Advance(2 * time.Hour)
	if deleted, err := s.Sweep(); err != nil || deleted != 5 {
		t.Fatalf("Sweep after everything expired = %d, %v; want 3 values and 2 members", deleted, err)
	}
	must(t, s.Close())

	// Nothing expired is left in the file, nor the index sets it emptied.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	must(t, err)
	defer db.Close()
	must(t, db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket([]byte("values")).Stats().KeyN; n != 0 {
			t.Errorf("%d values left in the file", n)
		}
		return tx.Bucket([]byte("indexes")).ForEach(func(k, _ []byte) error {
			t.Errorf("index set %q left in the file", k)
			return nil
		})
	}))
}

func TestBackgroundSweep(t *testing.T) {
	c := newClock()
	start := c.Now()
	s := open(t, boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db"), Now: c.Now, SweepInterval: 10 * time.Millisecond})
	must(t, s.Set(t.Context(), "s:{a}", []byte("v"), time.Second))
	// Let the value expire; it is swept once turning the clock back no longer revives it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c.Set(start.Add(2 * time.Second))
		time.Sleep(20 * time.Millisecond)
		c.Set(start)
		if _, err := s.Get(t.Context(), "s:{a}"); errors.Is(err, session.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the background sweeper did not delete an expired value in 10s")
		}
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	first := open(t, boltstore.Options{Path: path})
	// Bolt's flock is per open file, so a second Open in this process waits like another
	// process would. The bubble's fake clock makes the default 5s wait instant.
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s, err := boltstore.Open(boltstore.Options{Path: path})
		waited := time.Since(start)
		if err == nil {
			s.Close()
			t.Fatal("opened a file another store holds")
		}
		if !errors.Is(err, boltstore.ErrLocked) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v; want ErrLocked naming %s", err, path)
		}
		if waited < 4*time.Second || waited > 6*time.Second {
			t.Fatalf("waited %v for the lock, want the default 5s", waited)
		}
	})
	start := time.Now()
	_, err := boltstore.Open(boltstore.Options{Path: path, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("err = %v; want ErrLocked", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Timeout 300ms waited %v", d)
	}
	must(t, first.Close())
	open(t, boltstore.Options{Path: path, Timeout: time.Second})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "gatehouse")
	path := filepath.Join(dir, "sessions.db")
	open(t, boltstore.Options{Path: path})
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Dir(dir): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		must(t, err)
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", p, got, want)
		}
	}
}

func TestOpenRejectsOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-elses"))
		return err
	}))
	must(t, db.Close())
	if s, err := boltstore.Open(boltstore.Options{Path: path}); err == nil {
		s.Close()
		t.Fatal("opened another program's bolt file")
	}
	if _, err := boltstore.Open(boltstore.Options{}); err == nil {
		t.Fatal("opened an empty path")
	}
}

func TestClosed(t *testing.T) {
	s := open(t, boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db")})
	ctx := t.Context()
	must(t, s.Set(ctx, "k", []byte("v"), time.Hour))
	release, err := s.Lock(ctx, "l:{x}", time.Hour)
	must(t, err)
	defer release()
	waiter := make(chan error, 1)
	go func() {
		_, err := s.Lock(ctx, "l:{x}", time.Hour)
		waiter <- err
	}()

	must(t, s.Close())
	select {
	case err := <-waiter:
		if !errors.Is(err, boltstore.ErrClosed) {
			t.Fatalf("Lock waiting at Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a wait for a lease")
	}
	must(t, s.Close()) // twice is fine

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, boltstore.ErrClosed) || !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s after Close = %v; want ErrClosed, which is ErrUnavailable", op, err)
		}
	}
	_, err = s.Get(ctx, "k")
	check("Get", err)
	check("Set", s.Set(ctx, "k", []byte("v"), time.Hour))
	_, err = s.Delete(ctx, "k")
	check("Delete", err)
	_, err = s.Add(ctx, "k2", []byte("v"), time.Hour)
	check("Add", err)
	check("SetIndexed", s.SetIndexed(ctx, "k", []byte("v"), time.Hour, "ix"))
	_, err = s.DeleteIndexed(ctx, "k", "ix")
	check("DeleteIndexed", err)
	_, err = s.Members(ctx, "ix")
	check("Members", err)
	check("Ping", s.Ping(ctx))
	_, err = s.Lock(ctx, "l:{y}", time.Hour)
	check("Lock", err)
	_, err = s.Sweep()
	check("Sweep", err)
}

// A release kept from a lease that expired must not free a later lease on the same
// name, even once the lease table has dropped and re-created the name's entry.
func TestStaleReleaseOfEarlierLease(t *testing.T) {
	s := open(t, boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db")})
	ctx := t.Context()
	stale, err := s.Lock(ctx, "l:{x}", 50*time.Millisecond)
	must(t, err)
	time.Sleep(100 * time.Millisecond)
	taker, err := s.Lock(ctx, "l:{x}", time.Hour)
	must(t, err)
	taker()
	holder, err := s.Lock(ctx, "l:{x}", time.Hour)
	must(t, err)
	defer holder()
	stale()
	c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if r, err := s.Lock(c, "l:{x}", time.Hour); err == nil {
		r()
		t.Fatal("a stale release freed the current holder's lease")
	}
}

func TestRejectsUnstorableKeys(t *testing.T) {
	s := open(t, boltstore.Options{Path: filepath.Join(t.TempDir(), "sessions.db")})
	ctx := t.Context()
	if err := s.Set(ctx, "", []byte("v"), time.Hour); err == nil || errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Set with an empty key = %v; want a caller error", err)
	}
	if err := s.SetIndexed(ctx, "k", []byte("v"), time.Hour, ""); err == nil {
		t.Fatal("SetIndexed with an empty index name succeeded")
	}
	if err := s.SetIndexed(ctx, strings.Repeat("k", bolt.MaxKeySize+1), []byte("v"), time.Hour); err == nil {
		t.Fatal("SetIndexed with a key over bolt's limit succeeded")
	}
	wantNotFound(t, s, "")
}

// BenchmarkGet reads a 2 KB value, the size of a sealed session record.
func BenchmarkGet(b *testing.B) {
	s := open(b, boltstore.Options{Path: filepath.Join(b.TempDir(), "sessions.db")})
	ctx := b.Context()
	must(b, s.Set(ctx, "s:{bench}", sealed(1), time.Hour))
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(2048)
		for b.Loop() {
			if _, err := s.Get(ctx, "s:{bench}"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(2048)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Get(ctx, "s:{bench}"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkSet writes a 2 KB value: one transaction, and by default one fsync.
func BenchmarkSet(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		name := "fsync"
		if noSync {
			name = "InsecureNoSync"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, boltstore.Options{Path: filepath.Join(b.TempDir(), "sessions.db"), InsecureNoSync: noSync})
			ctx, v := b.Context(), sealed(1)
			b.SetBytes(int64(len(v)))
			i := 0
			for b.Loop() {
				if err := s.Set(ctx, fmt.Sprintf("s:{%d}", i%1000), v, time.Hour); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
