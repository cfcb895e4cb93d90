package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/store/redistest"
)

// A bot that answers one request at a time, 20 ms each, is offered 100
// events a second through 2 in-flight slots: the sender falls behind. From
// due time the latency shows the growing queue; from send time it does not.
func TestSendCountsFromDueTime(t *testing.T) {
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		time.Sleep(20 * time.Millisecond)
		mu.Unlock()
	}))
	defer srv.Close()
	res := send(context.Background(), sendOptions{url: srv.URL, rate: 100, duration: time.Second, chats: 5, maxInFlight: 2})
	if res.sent != 100 || res.err() != nil {
		t.Fatalf("sent %d: %v", res.sent, res.err())
	}
	_, _, dueMax := quantiles(res.fromDue)
	_, sendP99, _ := quantiles(res.fromSend)
	// 100 events at 50 a second: the last one leaves about a second late.
	if dueMax < 500*time.Millisecond {
		t.Errorf("max latency from due time %v, want the queue's ~1s", dueMax)
	}
	if sendP99 > 300*time.Millisecond {
		t.Errorf("p99 latency from send time %v, want about two requests' 40ms", sendP99)
	}
	if res.capWaits == 0 || res.peakInFlight != 2 {
		t.Errorf("%d waits for an in-flight slot, peak %d in flight; want the cap of 2 hit", res.capWaits, res.peakInFlight)
	}
	if r := res.achievedRate(); r > 80 {
		t.Errorf("achieved %.1f events/s, want about 50", r)
	}
}

// A fast bot gets the asked rate, with no waits for a slot, and every
// redelivery repeats a message already sent.
func TestSendKeepsTheSchedule(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	signer := feishufake.Signer{EncryptKey: "k", Token: "t"}
	res := send(context.Background(), sendOptions{url: srv.URL, signer: signer, rate: 200, duration: time.Second, dups: 0.2, chats: 5, maxInFlight: 100})
	if res.sent != 200 || res.capWaits != 0 || res.err() != nil {
		t.Fatalf("sent %d, %d waits for a slot: %v", res.sent, res.capWaits, res.err())
	}
	if r := res.achievedRate(); r < 180 || r > 220 {
		t.Errorf("achieved %.1f events/s, asked 200", r)
	}
	if res.dups == 0 || len(res.unique) != res.sent-res.dups || len(res.dueAt) != len(res.unique) {
		t.Errorf("%d redeliveries, %d unique messages of %d sent, %d due times", res.dups, len(res.unique), res.sent, len(res.dueAt))
	}
}

func TestRefusesRemoteTargets(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{
		{"-url", "http://192.0.2.1:8080/feishu/events"},
		{"-spawn", "-redis", "redis://10.0.0.1:6379/0"},
		{"-url", "http://127.0.0.1:8080/feishu/events", "-metrics", "http://192.0.2.1:9090/metrics"},
	} {
		if _, err := parseFlags(args, getenv, io.Discard); !errors.Is(err, errNotLoopback) {
			t.Errorf("%q: %v, want a refusal", args, err)
		}
	}
	for _, args := range [][]string{
		{"-spawn", "-answer-later"}, // without -split
		{"-spawn", "-rate", "5000", "-duration", "31s"},
	} {
		if _, err := parseFlags(args, getenv, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseFlags([]string{"-self"}, getenv, io.Discard); err == nil {
		t.Error("-self (the in-process bot of `kbbot loadtest`) accepted")
	}
}

// A short run against a spawned `kbbot serve`: every message answered once,
// the bot's own histogram read from its /metrics, and with a fake LLM the
// time to the first card measured. The first run builds kbbot itself.
func TestSpawn(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; cannot build kbbot")
	}
	getenv := func(string) string { return "" }
	spawn := func(t *testing.T, args ...string) summary {
		t.Helper()
		o, err := parseFlags(append([]string{"-spawn", "-duration", "1s", "-settle", "20s"}, args...), getenv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut testkit.Logs
		sum, err := load(context.Background(), o, getenv, &out, &errOut)
		if err != nil || t.Failed() {
			t.Fatalf("load: %v\nreport:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
		}
		t.Logf("report:\n%s", out.String())
		if sum.serverAck == nil || sum.serverAck.total < sum.sent.sent {
			t.Errorf("server-side histogram %+v, want every one of %d events", sum.serverAck, sum.sent.sent)
		}
		if sum.replies == nil || sum.replies.once != len(sum.sent.unique) || sum.replies.once == 0 {
			t.Errorf("replies %+v for %d unique messages", sum.replies, len(sum.sent.unique))
		}
		return sum
	}
	t.Run("extractive", func(t *testing.T) {
		spawn(t, "-rate", "50", "-dups", "0.2")
	})
	t.Run("split, answering later", func(t *testing.T) {
		// The answering child starts when sending ends, and still answers
		// every message once.
		spawn(t, "-rate", "50", "-redis", redistest.URL(t), "-split", "-answer-later")
	})
	t.Run("llm", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "kbbot")
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		build := exec.Command("go", "build", "-o", bin, "./cmd/kbbot")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		sum := spawn(t, "-bin", bin, "-rate", "10", "-llm-ttft", "100ms")
		if sum.cards == nil || len(sum.cards.card) != len(sum.sent.unique) || len(sum.cards.over) == 0 {
			t.Errorf("card latency %+v for %d messages", sum.cards, len(sum.sent.unique))
		}
	})
}
