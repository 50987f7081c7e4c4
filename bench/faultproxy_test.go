package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, line string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s), err
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFaultProxy(t *testing.T) {
	target := echoServer(t)
	p, err := startFaultProxy("test", "127.0.0.1:0", target, exemptSource)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	c := dialFrom(t, "", p.addr())
	if got, err := roundTrip(c, "hello", time.Second); err != nil || got != "hello" {
		t.Fatalf("no fault: %q, %v", got, err)
	}

	p.set(faults{Latency: 150 * time.Millisecond})
	start := time.Now()
	if got, err := roundTrip(c, "slow", 2*time.Second); err != nil || got != "slow" {
		t.Fatalf("latency: %q, %v", got, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Fatalf("latency 150ms: the round trip took %v", d)
	}

	// Blackhole: nothing comes back, on the open connection and on a new one, while an
	// exempt source still gets through; lifted, the held bytes arrive.
	p.set(faults{Blackhole: true})
	if _, err := roundTrip(c, "held", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("blackhole: want a timeout, got %v", err)
	}
	fresh := dialFrom(t, "", p.addr())
	if _, err := roundTrip(fresh, "new", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("blackhole, new connection: want a timeout, got %v", err)
	}
	ex := dialFrom(t, exemptIP, p.addr())
	if got, err := roundTrip(ex, "exempt", time.Second); err != nil || got != "exempt" {
		t.Fatalf("blackhole, exempt source: %q, %v", got, err)
	}
	p.set(faults{})
	fresh.SetDeadline(time.Now().Add(2 * time.Second))
	if got, err := bufio.NewReader(fresh).ReadString('\n'); err != nil || got != "new\n" {
		t.Fatalf("after the blackhole the held line should arrive: %q, %v", got, err)
	}

	// Reset rate 1: every request resets its connection.
	r := dialFrom(t, "", p.addr())
	if got, err := roundTrip(r, "ok", time.Second); err != nil || got != "ok" {
		t.Fatalf("before resets: %q, %v", got, err)
	}
	p.set(faults{ResetRate: 1})
	if _, err := roundTrip(r, "reset", time.Second); err == nil || isTimeout(err) {
		t.Fatalf("reset rate 1: want a connection error, got %v", err)
	}

	// Cut: open connections reset, new ones refused at once.
	p.set(faults{})
	k := dialFrom(t, "", p.addr())
	if got, err := roundTrip(k, "ok", time.Second); err != nil || got != "ok" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}
	p.set(faults{Cut: true})
	if _, err := roundTrip(k, "cut", time.Second); err == nil || isTimeout(err) {
		t.Fatalf("cut, open connection: want a connection error, got %v", err)
	}
	// Refused at once: the dial itself may already see the reset.
	if n, err := net.DialTimeout("tcp", p.addr(), time.Second); err == nil {
		defer n.Close()
		if _, err := roundTrip(n, "cut", time.Second); err == nil || isTimeout(err) {
			t.Fatalf("cut, new connection: want a connection error, got %v", err)
		}
	} else if isTimeout(err) {
		t.Fatalf("cut, new connection: want a connection error, got %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
