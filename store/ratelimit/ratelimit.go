// Package ratelimit counts questions against limits such as "10 a minute
// per person": in process (Memory, one replica) or in Redis (Redis, shared
// by every replica).
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"kbbot/store"
)

// Rate limits: fixed windows aligned to the Unix epoch, counted per key.
// A fixed window lets a burst of up to twice the limit through across a
// window boundary; for "10 questions a minute" that is an acceptable price
// for one INCR per limit and no script. Both limiters count every call
// against every limit, allowed or not, so hammering does not reopen the
// window.

// Limit is one rate limit: at most Max calls per Window for Key. A Max or
// Window of zero disables it.
type Limit struct {
	Key    string // e.g. "user:ou_…"
	Max    int
	Window time.Duration
}

func (l Limit) active() bool { return l.Max > 0 && l.Window > 0 }

// Verdict is the outcome of counting one call.
type Verdict struct {
	Allowed bool
	// When not allowed: the limit exceeded (the one exceeded just now, if
	// any), its count in this window, and how long until every exceeded
	// window ends.
	Limit      Limit
	Count      int64
	RetryAfter time.Duration
	// First is true for the call that exceeded a limit, once per window,
	// so the caller can say so once rather than on every call.
	First bool
}

// window numbers the window now falls in, and how much of it is left.
func window(now time.Time, w time.Duration) (n int64, left time.Duration) {
	ms := w.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	t := now.UnixMilli()
	n = t / ms
	return n, time.Duration((n+1)*ms-t) * time.Millisecond
}

func decide(limits []Limit, counts []int64, lefts []time.Duration) Verdict {
	v := Verdict{Allowed: true}
	for i, l := range limits {
		if !l.active() || counts[i] <= int64(l.Max) {
			continue
		}
		first := counts[i] == int64(l.Max)+1
		if v.Allowed || (first && !v.First) {
			v.Limit, v.Count = l, counts[i]
		}
		v.Allowed = false
		v.First = v.First || first
		v.RetryAfter = max(v.RetryAfter, lefts[i])
	}
	return v
}

// Redis counts in Redis, so every replica shares the limits.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	// Now is the clock that picks the window; replicas' clocks should
	// agree to within a small part of a window.
	Now func() time.Time
}

// NewRedis counts in r's Redis, under r's key prefix.
func NewRedis(r *store.Redis) *Redis {
	return &Redis{rdb: r.Client, prefix: r.Prefix, Now: time.Now}
}

// Allow counts one call against every limit (INCR plus PEXPIRE per limit,
// in one pipeline; the window's number is part of the key, so a key is
// never reused and expiring it late is harmless).
func (l *Redis) Allow(ctx context.Context, limits ...Limit) (Verdict, error) {
	now := l.Now()
	counts := make([]int64, len(limits))
	lefts := make([]time.Duration, len(limits))
	incrs := make([]*redis.IntCmd, len(limits))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, lim := range limits {
			if !lim.active() {
				continue
			}
			n, left := window(now, lim.Window)
			lefts[i] = left
			key := l.prefix + "rate:" + lim.Key + ":" + strconv.FormatInt(lim.Window.Milliseconds(), 10) + ":" + strconv.FormatInt(n, 10)
			incrs[i] = p.Incr(ctx, key)
			p.PExpire(ctx, key, lim.Window)
		}
		return nil
	})
	if err != nil {
		return Verdict{Allowed: true}, fmt.Errorf("store: rate limit: %w", err)
	}
	for i, c := range incrs {
		if c != nil {
			counts[i] = c.Val()
		}
	}
	return decide(limits, counts, lefts), nil
}

// Memory counts in process: limits hold per replica only.
type Memory struct {
	Now func() time.Time

	mu         sync.Mutex
	buckets    map[string]memBucket
	sinceSweep int
}

type memBucket struct {
	window int64
	count  int64
	ends   time.Time
}

// NewMemory returns an in-process limiter.
func NewMemory() *Memory {
	return &Memory{Now: time.Now, buckets: map[string]memBucket{}}
}

// sweepEvery is how many Allow calls pass between sweeps of ended windows:
// keys are per user and chat, so a map never swept would grow with every
// asker ever seen.
const sweepEvery = 1024

// Allow counts one call against every limit.
func (l *Memory) Allow(ctx context.Context, limits ...Limit) (Verdict, error) {
	now := l.Now()
	counts := make([]int64, len(limits))
	lefts := make([]time.Duration, len(limits))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sinceSweep++
	if l.sinceSweep >= sweepEvery {
		l.sinceSweep = 0
		for k, b := range l.buckets {
			if !now.Before(b.ends) {
				delete(l.buckets, k)
			}
		}
	}
	for i, lim := range limits {
		if !lim.active() {
			continue
		}
		n, left := window(now, lim.Window)
		key := lim.Key + ":" + lim.Window.String()
		b := l.buckets[key]
		if b.window != n {
			b = memBucket{window: n, ends: now.Add(left)}
		}
		b.count++
		l.buckets[key] = b
		counts[i], lefts[i] = b.count, left
	}
	return decide(limits, counts, lefts), nil
}
