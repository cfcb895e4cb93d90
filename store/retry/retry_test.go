package retry

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"kbbot/deploy/testkit"
)

func TestAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"none", nil, 0},
		{"seconds", map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{"fraction", map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{"zero means backoff", map[string]string{"Retry-After": "0"}, 0},
		{"negative", map[string]string{"Retry-After": "-4"}, 0},
		{"http date", map[string]string{"Retry-After": now.Add(7 * time.Second).Format(http.TimeFormat)}, 7 * time.Second},
		{"past date", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"milliseconds first", map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{"feishu reset", map[string]string{"X-Ogw-Ratelimit-Reset": "2"}, 2 * time.Second},
		{"retry-after beats the reset", map[string]string{"Retry-After": "1", "X-Ogw-Ratelimit-Reset": "5"}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			if got := After(h, now); got != tc.want {
				t.Errorf("After = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDo(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		attempts  int
		results   []error // fn's answers, in order; nil ends
		wantCalls int
		wantErr   error
		wantWaits []time.Duration // exact waits; nil: only count them
		waits     int
	}{
		{name: "success", attempts: 3, results: []error{nil}, wantCalls: 1},
		{name: "retried then success", attempts: 3, results: []error{boom, boom, nil}, wantCalls: 3, waits: 2},
		{name: "attempts run out", attempts: 3, results: []error{boom, boom, boom, nil}, wantCalls: 3, wantErr: boom, waits: 2},
		{name: "permanent stops", attempts: 5, results: []error{Permanent(boom)}, wantCalls: 1, wantErr: boom},
		{name: "service wait honoured and capped", attempts: 3,
			results:   []error{WithWait(boom, 2*time.Second), WithWait(boom, time.Hour), nil},
			wantCalls: 3, wantWaits: []time.Duration{2 * time.Second, 30 * time.Second}},
		{name: "zero attempts tries once", attempts: 0, results: []error{boom}, wantCalls: 1, wantErr: boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sleeps testkit.Sleeps
			calls := 0
			p := Policy{Attempts: tc.attempts, Base: 100 * time.Millisecond, Sleep: sleeps.Sleep}
			err := p.Do(t.Context(), func(ctx context.Context, attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				return tc.results[calls-1]
			})
			if calls != tc.wantCalls {
				t.Errorf("%d calls, want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if _, ok := errors.AsType[permanent](err); ok {
				t.Error("the returned error is still marked permanent")
			}
			waits := sleeps.Waits()
			if tc.wantWaits != nil && !slices.Equal(waits, tc.wantWaits) {
				t.Errorf("waits %v, want %v", waits, tc.wantWaits)
			}
			if tc.wantWaits == nil && len(waits) != tc.waits {
				t.Errorf("waits %v, want %d of them", waits, tc.waits)
			}
			for i, w := range waits {
				if tc.wantWaits == nil {
					base := 100 * time.Millisecond << i
					if w < base/2 || w >= base*3/2 {
						t.Errorf("wait %d = %v, want within ±50%% of %v", i, w, base)
					}
				}
			}
		})
	}
}

// A wait that would outlast the caller's deadline is not taken: the call
// fails at once with both errors.
func TestDoDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var sleeps testkit.Sleeps
	boom := errors.New("boom")
	err := Policy{Attempts: 3, Sleep: sleeps.Sleep}.Do(ctx, func(context.Context, int) error {
		return WithWait(boom, 10*time.Second)
	})
	if !errors.Is(err, boom) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want boom and the deadline", err)
	}
	if n := len(sleeps.Waits()); n != 0 {
		t.Fatalf("%d waits taken", n)
	}
}
