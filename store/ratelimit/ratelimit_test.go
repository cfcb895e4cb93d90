package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"kbbot/deploy/testkit"
	"kbbot/store/redistest"
)

type rateLimiter interface {
	Allow(ctx context.Context, limits ...Limit) (Verdict, error)
}

var (
	_ rateLimiter = (*Memory)(nil)
	_ rateLimiter = (*Redis)(nil)
)

// TestRateLimiter runs one suite against both limiters, each on a clock the
// test sets (the window is picked from it).
func TestRateLimiter(t *testing.T) {
	for name, open := range map[string]func(t *testing.T, now func() time.Time) rateLimiter{
		"memory": func(t *testing.T, now func() time.Time) rateLimiter {
			l := NewMemory()
			l.Now = now
			return l
		},
		"redis": func(t *testing.T, now func() time.Time) rateLimiter {
			l := NewRedis(redistest.OpenShared(t))
			l.Now = now
			return l
		},
	} {
		t.Run(name, func(t *testing.T) {
			clock := testkit.NewClock(time.Date(2026, 11, 28, 10, 0, 10, 0, time.UTC))
			l := open(t, clock.Now)
			ctx := t.Context()
			user := func(u string) Limit { return Limit{Key: "user:" + u, Max: 3, Window: time.Minute} }
			chat := Limit{Key: "chat:oc_1", Max: 5, Window: time.Minute}
			allow := func(limits ...Limit) Verdict {
				t.Helper()
				v, err := l.Allow(ctx, limits...)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			for i := range 3 {
				if v := allow(user("alice"), chat); !v.Allowed {
					t.Fatalf("call %d refused: %+v", i+1, v)
				}
			}
			v := allow(user("alice"), chat)
			if v.Allowed || !v.First || v.Limit.Key != "user:alice" || v.Count != 4 || v.RetryAfter != 50*time.Second {
				t.Errorf("4th call: %+v, want refused by user:alice, first, retry after 50s", v)
			}
			if v := allow(user("alice"), chat); v.Allowed || v.First {
				t.Errorf("5th call: %+v, want refused, not first", v)
			}
			// bob is within his own limit, but the chat has had 5 already.
			v = allow(user("bob"), chat)
			if v.Allowed || !v.First || v.Limit.Key != "chat:oc_1" {
				t.Errorf("bob in a full chat: %+v, want refused by the chat, first", v)
			}
			// Disabled limits never refuse.
			for range 10 {
				if v := allow(Limit{Key: "user:carol", Window: time.Minute}, Limit{Key: "user:carol", Max: 3}); !v.Allowed {
					t.Fatalf("a disabled limit refused: %+v", v)
				}
			}
			// The next window starts afresh.
			clock.Advance(time.Minute)
			if v := allow(user("alice"), chat); !v.Allowed {
				t.Errorf("next window: %+v", v)
			}
		})
	}
}

// Two replicas on one Redis share the counts.
func TestRedisShared(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	now := func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }
	a, b := NewRedis(redistest.Open(t, url, prefix)), NewRedis(redistest.Open(t, url, prefix))
	a.Now, b.Now = now, now
	lim := Limit{Key: "user:alice", Max: 10, Window: time.Minute}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range 20 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			v, err := l.Allow(t.Context(), lim)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !v.Allowed {
				refused++
			}
		})
	}
	wg.Wait()
	if refused != 10 {
		t.Errorf("%d of 20 refused, want 10", refused)
	}
}
