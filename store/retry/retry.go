// Package retry tries calls to outside services again: the Feishu Open
// API, the LLM, Qdrant. One Policy says how often and how long to wait
// (exponential backoff with jitter, or the service's own Retry-After), and
// After reads the service's wait from its HTTP headers. It sits under store
// because store is the layer every other kbbot package may import; it
// imports nothing of kbbot.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is how a call is tried again. The zero Policy tries once.
type Policy struct {
	// Attempts is how many tries in all; below 1 means 1.
	Attempts int
	// Base is the first backoff; it doubles per attempt, each wait drawn
	// at random from [d/2, 3d/2) so that replicas do not retry in
	// lockstep.
	Base time.Duration
	// Max caps every wait, a backoff or a service's Retry-After; 0 means
	// 30 s.
	Max time.Duration
	// Sleep waits d or until ctx ends; nil is a timer. Tests record the
	// waits instead of taking them.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnRetry, when set, is told about each failure that will be tried
	// again, before the wait: for the caller's log line.
	OnRetry func(attempt int, wait time.Duration, err error)
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one no retry can fix (a bad request, a refusal):
// Do returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// afterError carries the wait a service asked for.
type afterError struct {
	err  error
	wait time.Duration
}

func (a afterError) Error() string { return a.err.Error() }
func (a afterError) Unwrap() error { return a.err }

// WithWait marks err as worth retrying after d (the service's Retry-After);
// d of 0 or less means the policy's backoff.
func WithWait(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return afterError{err: err, wait: d}
}

// Do calls fn until it returns nil, returns an error marked Permanent, the
// attempts run out, or ctx ends. Any other error is tried again. fn gets
// the attempt number, from 1. Do returns fn's last error, unwrapped from
// Permanent and WithWait; when ctx ends during a wait, or its deadline
// comes before the next try could start, the error says so and wraps
// ctx's error as well.
func (p Policy) Do(ctx context.Context, fn func(ctx context.Context, attempt int) error) error {
	attempts := max(p.Attempts, 1)
	for attempt := 1; ; attempt++ {
		err := fn(ctx, attempt)
		if err == nil {
			return nil
		}
		if pe, ok := errors.AsType[permanent](err); ok {
			return pe.err
		}
		wait := time.Duration(0)
		if ae, ok := errors.AsType[afterError](err); ok {
			err, wait = ae.err, ae.wait
		}
		if attempt >= attempts || ctx.Err() != nil {
			return err
		}
		if wait <= 0 {
			wait = p.Backoff(attempt)
		}
		wait = min(wait, p.max())
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%w (not retried: the deadline comes before the wait of %v ends: %w)", err, wait, context.DeadlineExceeded)
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, wait, err)
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (gave up: %w)", err, serr)
		}
	}
}

// Backoff is the wait after the attempt-th failure: Base·2^(attempt-1),
// ±50 %, at most Max.
func (p Policy) Backoff(attempt int) time.Duration {
	d := p.Base << min(attempt-1, 30)
	if d <= 0 {
		return 0
	}
	return min(d/2+rand.N(d), p.max())
}

func (p Policy) max() time.Duration {
	if p.Max > 0 {
		return p.Max
	}
	return 30 * time.Second
}

func (p Policy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// After is how long a throttled HTTP answer asks the caller to wait, 0 when
// it does not say: Retry-After-Ms (milliseconds, sent by some LLM
// providers), Retry-After (seconds, fractions allowed, or an HTTP date;
// RFC 9110 §10.2.3), or Feishu's x-ogw-ratelimit-reset (seconds until the
// limit's window resets; https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control).
// A zero or past value is 0: retry after the policy's own backoff.
func After(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			return seconds(s)
		}
		if t, err := http.ParseTime(v); err == nil && t.After(now) {
			return t.Sub(now)
		}
		return 0
	}
	if v := strings.TrimSpace(h.Get("X-Ogw-Ratelimit-Reset")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil {
			return seconds(s)
		}
	}
	return 0
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
