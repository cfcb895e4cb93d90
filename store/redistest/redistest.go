// Package redistest gives tests in any package a real Redis: the shared one
// named by KBBOT_TEST_REDIS (URL, with Prefix to keep tests apart), or a
// throwaway redis-server of their own (StartServer) for tests that restart or
// break it. Without a server the tests skip, except under CI, where a missing
// server is a failure so the Redis tests can never silently stop running.
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kbbot/deploy/testkit"
	"kbbot/store"
)

// EnvURL names the environment variable holding the shared test Redis URL.
const EnvURL = "KBBOT_TEST_REDIS"

// skip skips tb, or fails it when running under CI.
func skip(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	tb.Skip(msg)
}

// URL returns the shared test Redis URL from KBBOT_TEST_REDIS, e.g.
// redis://127.0.0.1:6399/0. Tests sharing it must namespace their keys with
// Prefix.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		skip(tb, EnvURL+" not set; run deploy/test.sh")
	}
	return u
}

// Prefix returns a key prefix unique to this test run, such as
// "kbbot-test:TestState_redis_claim:3f9a1c2b:", so tests sharing one Redis
// (and reruns against a dirty one) never see each other's keys. It contains
// no braces, so it never becomes a Cluster hash tag.
func Prefix(tb testing.TB) string {
	tb.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("redistest: random prefix: %v", err)
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, tb.Name())
	return "kbbot-test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

// Open connects to the Redis at url with key prefix, as main does, and when
// the test ends deletes every key under prefix (so the shared test Redis
// does not fill up with leftovers) and closes the connection.
func Open(tb testing.TB, url, prefix string) *store.Redis {
	tb.Helper()
	r, err := store.OpenRedis(context.Background(), url, prefix)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := r.Client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("redistest: scan test keys: %v", err)
		}
		if len(keys) > 0 {
			if err := r.Client.Del(ctx, keys...).Err(); err != nil {
				tb.Errorf("redistest: delete test keys: %v", err)
			}
		}
		if err := r.Close(); err != nil {
			tb.Errorf("redistest: close: %v", err)
		}
	})
	return r
}

// OpenShared is Open on the shared test Redis (URL) under a Prefix of its
// own.
func OpenShared(tb testing.TB) *store.Redis {
	tb.Helper()
	return Open(tb, URL(tb), Prefix(tb))
}

// server is one throwaway redis-server that can be restarted on its port.
type server struct {
	bin, dir string
	port     int
	args     []string // extra redis-server options

	mu   sync.Mutex
	proc *os.Process
	done chan struct{} // closed once proc has exited and been reaped
}

// StartServer starts a private redis-server on a free 127.0.0.1 port with
// its data in tb.TempDir() and append-only persistence on, and stops it when
// the test ends. restart stops it (with SIGTERM, so the AOF is complete) and
// starts it again on the same port and data, for tests of how clients live
// through a Redis restart. args are extra redis-server options, such as
// "--appendfsync", "always" for tests that must not lose an acknowledged
// write. Without redis-server on PATH the test skips, or fails under CI.
func StartServer(tb testing.TB, args ...string) (url string, restart func()) {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		skip(tb, "redis-server not on PATH; install it (apt-get install redis-server)")
	}
	s := &server{bin: bin, dir: tb.TempDir(), port: testkit.FreePort(tb), args: args}
	s.start(tb)
	tb.Cleanup(s.stop)
	restart = func() {
		tb.Helper()
		s.stop()
		s.start(tb)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port), restart
}

func (s *server) start(tb testing.TB) {
	tb.Helper()
	logPath := filepath.Join(s.dir, "redis.log")
	args := append([]string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "yes",
		"--logfile", logPath,
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("redistest: start redis-server: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.proc, s.done = cmd.Process, done
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for !ping(s.port) {
		select {
		case <-done:
			s.stop()
			tb.Fatalf("redistest: redis-server exited at start-up (%v); log:\n%s", waitErr, readLog(logPath))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			tb.Fatalf("redistest: redis-server on port %d did not answer PING within 10s; log:\n%s", s.port, readLog(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the server with SIGTERM (Redis then flushes its AOF), falling
// back to SIGKILL if it hangs. Stopping a stopped server does nothing.
func (s *server) stop() {
	s.mu.Lock()
	proc, done := s.proc, s.done
	s.proc, s.done = nil, nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = proc.Kill()
		<-done
	}
}

// ping reports whether a Redis on port answers PING. It speaks RESP directly
// so this package needs no client library.
func ping(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(b)
}
