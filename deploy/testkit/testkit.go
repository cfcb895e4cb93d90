// Package testkit holds the small helpers kbbot's tests share: a settable
// clock, a log sink that is safe for many goroutines and shows in a failing
// test's output, a poller with a deadline, a recorder for the waits a retry
// loop would take, a free-port picker and golden files. Only tests import it; the
// shipped binaries never link it.
package testkit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clock is a settable clock, safe for concurrent use. Its zero value reads
// the zero time; set T first or use NewClock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass it where code takes a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Eventually polls cond every few milliseconds until it holds, and fails the
// test (naming what it waited for) when it still does not after a generous
// deadline. It is how tests wait for work done by other goroutines; none
// waits on a channel without a deadline.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after 20s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Receive returns the next value from ch, failing the test when none comes
// within d.
func Receive[T any](tb testing.TB, what string, ch <-chan T, d time.Duration) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		tb.Fatalf("timed out after %v waiting for %s", d, what)
		var zero T
		return zero
	}
}

// Logs collects log output from many goroutines, and copies each line to
// the test's log so a failure shows what happened. The zero Logs only
// collects (a child process's stderr, say).
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tb  testing.TB
}

// NewLogger returns a debug-level text logger writing to the test's log,
// and the Logs it also writes to.
func NewLogger(tb testing.TB) (*slog.Logger, *Logs) {
	l := &Logs{tb: tb}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// Logger is NewLogger's logger alone.
func Logger(tb testing.TB) *slog.Logger {
	l, _ := NewLogger(tb)
	return l
}

// Quiet is a logger that drops everything, for tests and benchmarks whose
// logs would only be noise.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	if l.tb != nil {
		l.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// String is everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Writer is an io.Writer for code that logs to a writer of its own.
func (l *Logs) Writer() io.Writer { return l }

// Sleeps stands in for a retry loop's sleep: it returns at once (or with
// ctx's error) and records each wait, so tests check the waits without
// taking them.
type Sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

// Sleep records d and returns at once.
func (s *Sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

// Waits is every wait recorded, in order.
func (s *Sleeps) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// Longest is the longest wait recorded, 0 for none.
func (s *Sleeps) Longest() time.Duration {
	var m time.Duration
	for _, w := range s.Waits() {
		m = max(m, w)
	}
	return m
}

// FreePort asks the kernel for a free port on 127.0.0.1. Another process
// could take it before the caller binds it; that shows up as a bind
// failure, not as a wrong result.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testkit: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Golden compares got with the golden file at path, or, with update (a
// test binary's -update flag), writes got there instead.
func Golden(tb testing.TB, path string, got []byte, update bool) {
	tb.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -run %s -update to create it)", err, tb.Name())
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs from the golden file; run with -update if the change is intended.\ngot:\n%s", path, got)
	}
}
