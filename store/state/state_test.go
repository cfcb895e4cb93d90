package state

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"kbbot/deploy/testkit"
	"kbbot/store"
	"kbbot/store/redistest"
)

// conversationState is the method set bot/ requires of a state backend; both
// backends must keep satisfying it.
type conversationState interface {
	AppendTurn(ctx context.Context, conv string, turn []byte, maxTurns int, ttl time.Duration) error
	Turns(ctx context.Context, conv string) ([][]byte, error)
	ResetTurns(ctx context.Context, conv string) error
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, key string) error
	AddFeedback(ctx context.Context, vote string, record []byte) (up, down int64, err error)
	SeenChat(ctx context.Context, chat string) (first bool, err error)
	Ping(ctx context.Context) error
	Remember(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Recall(ctx context.Context, key string) ([]byte, error)
}

var (
	_ conversationState = (*Memory)(nil)
	_ conversationState = (*Redis)(nil)
)

// stateEnv is one fresh, empty backend plus the way time passes for it.
type stateEnv struct {
	st conversationState
	// short is a TTL the test can afford to wait out.
	short time.Duration
	// elapse lets d go by: the memory clock jumps, Redis really sleeps.
	elapse func(d time.Duration)
	// eventually reports whether cond holds: at once for memory, whose time
	// the test owns; within 2s for Redis, whose expiry runs on its own clock.
	eventually func(cond func() bool) bool
}

func newMemoryEnv(t *testing.T) stateEnv {
	clock := testkit.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	m := NewMemory()
	m.Now = clock.Now
	return stateEnv{
		st:         m,
		short:      time.Minute,
		elapse:     clock.Advance,
		eventually: func(cond func() bool) bool { return cond() },
	}
}

func newRedisEnv(t *testing.T) stateEnv {
	r := openRedis(t, redistest.URL(t), redistest.Prefix(t))
	return stateEnv{
		st:     r,
		short:  50 * time.Millisecond,
		elapse: time.Sleep,
		eventually: func(cond func() bool) bool {
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if cond() {
					return true
				}
			}
			return cond()
		},
	}
}

// openRedis connects a Redis state under prefix; redistest.Open deletes the
// keys when the test ends.
func openRedis(t *testing.T, url, prefix string) *Redis {
	t.Helper()
	return NewRedis(redistest.Open(t, url, prefix))
}

func TestState(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) stateEnv
	}{
		{"memory", newMemoryEnv},
		{"redis", newRedisEnv},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range stateTests() {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, b.open(t))
				})
			}
		})
	}
}

type stateTest struct {
	name string
	run  func(t *testing.T, e stateEnv)
}

// stateTests is the conformance suite every backend must pass.
func stateTests() []stateTest {
	return []stateTest{
		{"RememberRecall", func(t *testing.T, e stateEnv) {
			ctx := t.Context()
			if v, err := e.st.Recall(ctx, "sent:om_1"); err != nil || v != nil {
				t.Fatalf("Recall of nothing = %q, %v; want nil, nil", v, err)
			}
			if err := e.st.Remember(ctx, "sent:om_1", []byte("one"), e.short); err != nil {
				t.Fatal(err)
			}
			if err := e.st.Remember(ctx, "sent:om_1", []byte("two"), e.short); err != nil {
				t.Fatal(err)
			}
			if v, err := e.st.Recall(ctx, "sent:om_1"); err != nil || string(v) != "two" {
				t.Fatalf("Recall = %q, %v; want the last value", v, err)
			}
			if err := e.st.Remember(ctx, "k", []byte("x"), 0); err == nil {
				t.Error("Remember with no TTL: want an error")
			}
			e.elapse(e.short + 10*time.Millisecond)
			if !e.eventually(func() bool { v, err := e.st.Recall(ctx, "sent:om_1"); return err == nil && v == nil }) {
				t.Error("a remembered value outlived its TTL")
			}
		}},
		{"TurnsEmpty", func(t *testing.T, e stateEnv) {
			got, err := e.st.Turns(t.Context(), "nobody")
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || len(got) != 0 {
				t.Fatalf("Turns of unknown conversation = %#v, want empty non-nil slice", got)
			}
		}},
		{"AppendOrder", func(t *testing.T, e stateEnv) {
			ctx := t.Context()
			appendTurns(t, e.st, "c1", 10, time.Hour, "a", "b", "c")
			appendTurns(t, e.st, "c2", 10, time.Hour, "x")
			wantTurns(t, e.st, "c1", "a", "b", "c")
			wantTurns(t, e.st, "c2", "x")
			if err := e.st.Ping(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		}},
		{"AppendCopiesAndTurnsAreBinarySafe", func(t *testing.T, e stateEnv) {
			buf := []byte("{\"q\":\"你好\"}\x00\n")
			want := string(buf)
			if err := e.st.AppendTurn(t.Context(), "c", buf, 5, time.Hour); err != nil {
				t.Fatal(err)
			}
			buf[0] = 'X' // the store must not keep the caller's buffer
			got := wantTurns(t, e.st, "c", want)
			got[0][0] = 'Y' // nor hand out its own
			wantTurns(t, e.st, "c", want)
		}},
		{"CapAtMaxTurns", func(t *testing.T, e stateEnv) {
			appendTurns(t, e.st, "c", 3, time.Hour, "1", "2", "3", "4", "5")
			wantTurns(t, e.st, "c", "3", "4", "5")
			// A smaller cap on a later call trims what is already there.
			appendTurns(t, e.st, "c", 2, time.Hour, "6")
			wantTurns(t, e.st, "c", "5", "6")
		}},
		{"BadMaxTurns", func(t *testing.T, e stateEnv) {
			if err := e.st.AppendTurn(t.Context(), "c", []byte("x"), 0, time.Hour); err == nil {
				t.Fatal("AppendTurn with maxTurns 0: want error")
			}
		}},
		{"TurnsExpire", func(t *testing.T, e stateEnv) {
			appendTurns(t, e.st, "c", 10, e.short, "a")
			appendTurns(t, e.st, "keep", 10, time.Hour, "k")
			e.elapse(e.short)
			if !e.eventually(func() bool { return len(mustTurns(t, e.st, "c")) == 0 }) {
				t.Fatalf("turns still there after their TTL: %q", mustTurns(t, e.st, "c"))
			}
			wantTurns(t, e.st, "keep", "k")
			// An expired conversation starts afresh.
			appendTurns(t, e.st, "c", 10, time.Hour, "b")
			wantTurns(t, e.st, "c", "b")
		}},
		{"AppendRefreshesTTL", func(t *testing.T, e stateEnv) {
			appendTurns(t, e.st, "c", 10, e.short, "a")
			appendTurns(t, e.st, "c", 10, time.Hour, "b")
			e.elapse(4 * e.short)
			wantTurns(t, e.st, "c", "a", "b")
		}},
		{"Reset", func(t *testing.T, e stateEnv) {
			ctx := t.Context()
			appendTurns(t, e.st, "c", 10, time.Hour, "a", "b")
			appendTurns(t, e.st, "other", 10, time.Hour, "o")
			if err := e.st.ResetTurns(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			wantTurns(t, e.st, "c")
			wantTurns(t, e.st, "other", "o")
			if err := e.st.ResetTurns(ctx, "never-seen"); err != nil {
				t.Fatalf("ResetTurns of unknown conversation: %v", err)
			}
		}},
		{"AnswerByMessage", func(t *testing.T, e stateEnv) {
			ctx := t.Context()
			if got, err := e.st.Recall(ctx, "answer:"+"om_never"); err != nil || got != nil {
				t.Fatalf("Answer of an unknown message = %q, %v; want nil", got, err)
			}
			buf := []byte("{\"q\":\"你好\"}\x00")
			want := string(buf)
			if err := e.st.Remember(ctx, "answer:"+"om_1", buf, time.Hour); err != nil {
				t.Fatal(err)
			}
			buf[0] = 'X' // the store must not keep the caller's buffer
			if err := e.st.Remember(ctx, "answer:"+"om_2", []byte("other"), time.Hour); err != nil {
				t.Fatal(err)
			}
			got, err := e.st.Recall(ctx, "answer:"+"om_1")
			if err != nil || string(got) != want {
				t.Fatalf("Answer(om_1) = %q, %v; want %q", got, err, want)
			}
			got[0] = 'Y' // nor hand out its own
			if got, _ := e.st.Recall(ctx, "answer:"+"om_1"); string(got) != want {
				t.Fatalf("Answer(om_1) after changing a copy = %q", got)
			}
		}},
		{"AnswersExpire", func(t *testing.T, e stateEnv) {
			ctx := t.Context()
			for id, ttl := range map[string]time.Duration{"om_short": e.short, "om_long": time.Hour} {
				if err := e.st.Remember(ctx, "answer:"+id, []byte(id), ttl); err != nil {
					t.Fatal(err)
				}
			}
			e.elapse(e.short)
			if !e.eventually(func() bool { got, err := e.st.Recall(ctx, "answer:"+"om_short"); return err == nil && got == nil }) {
				t.Fatal("answer still there after its TTL")
			}
			for _, id := range []string{"om_long"} {
				if got, err := e.st.Recall(ctx, "answer:"+id); err != nil || string(got) != id {
					t.Errorf("Answer(%s) = %q, %v", id, got, err)
				}
			}
		}},
		{"ClaimOnce", func(t *testing.T, e stateEnv) {
			wantClaim(t, e.st, "evt1", time.Hour, true)
			wantClaim(t, e.st, "evt1", time.Hour, false)
			wantClaim(t, e.st, "evt2", time.Hour, true)
		}},
		{"ClaimConcurrent", func(t *testing.T, e stateEnv) {
			const n = 20
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins int
				errs []error
			)
			for range n {
				wg.Go(func() {
					ok, err := e.st.Claim(t.Context(), "race", time.Hour)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
					}
					if ok {
						wins++
					}
				})
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("Claim errors: %v", errs)
			}
			if wins != 1 {
				t.Fatalf("%d of %d concurrent Claims won, want exactly 1", wins, n)
			}
		}},
		{"ReleaseThenClaim", func(t *testing.T, e stateEnv) {
			wantClaim(t, e.st, "msg", time.Hour, true)
			if err := e.st.Release(t.Context(), "msg"); err != nil {
				t.Fatal(err)
			}
			wantClaim(t, e.st, "msg", time.Hour, true)
			wantClaim(t, e.st, "msg", time.Hour, false)
			if err := e.st.Release(t.Context(), "never-claimed"); err != nil {
				t.Fatalf("Release of unclaimed key: %v", err)
			}
		}},
		{"ClaimExpires", func(t *testing.T, e stateEnv) {
			wantClaim(t, e.st, "k", e.short, true)
			e.elapse(e.short)
			if !e.eventually(func() bool {
				ok, err := e.st.Claim(t.Context(), "k", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}) {
				t.Fatal("claim not released after its TTL")
			}
		}},
		{"BadClaimTTL", func(t *testing.T, e stateEnv) {
			for _, ttl := range []time.Duration{0, -1} {
				if _, err := e.st.Claim(t.Context(), "k", ttl); err == nil {
					t.Errorf("Claim with ttl %v: want error", ttl)
				}
			}
		}},
		{"FeedbackTotals", func(t *testing.T, e stateEnv) {
			for i, step := range []struct {
				vote     string
				up, down int64
			}{
				{"up", 1, 0},
				{"up", 2, 0},
				{"down", 2, 1},
				{"up", 3, 1},
			} {
				up, down, err := e.st.AddFeedback(t.Context(), step.vote, fmt.Appendf(nil, `{"n":%d}`, i))
				if err != nil {
					t.Fatal(err)
				}
				if up != step.up || down != step.down {
					t.Fatalf("vote %d (%s): totals = %d up %d down, want %d up %d down", i, step.vote, up, down, step.up, step.down)
				}
			}
			if _, _, err := e.st.AddFeedback(t.Context(), "sideways", nil); err == nil {
				t.Fatal(`AddFeedback("sideways"): want error`)
			}
		}},
		{"SeenChat", func(t *testing.T, e stateEnv) {
			for _, step := range []struct {
				chat  string
				first bool
			}{
				{"oc_1", true},
				{"oc_1", false},
				{"oc_2", true},
				{"oc_1", false},
			} {
				first, err := e.st.SeenChat(t.Context(), step.chat)
				if err != nil {
					t.Fatal(err)
				}
				if first != step.first {
					t.Fatalf("SeenChat(%q) = %v, want %v", step.chat, first, step.first)
				}
			}
		}},
	}
}

func appendTurns(t *testing.T, st conversationState, conv string, maxTurns int, ttl time.Duration, turns ...string) {
	t.Helper()
	for _, turn := range turns {
		if err := st.AppendTurn(t.Context(), conv, []byte(turn), maxTurns, ttl); err != nil {
			t.Fatal(err)
		}
	}
}

func mustTurns(t *testing.T, st conversationState, conv string) [][]byte {
	t.Helper()
	got, err := st.Turns(t.Context(), conv)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantTurns(t *testing.T, st conversationState, conv string, want ...string) [][]byte {
	t.Helper()
	got := mustTurns(t, st, conv)
	if len(got) != len(want) {
		t.Fatalf("Turns(%q) = %q, want %q", conv, got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i], []byte(want[i])) {
			t.Fatalf("Turns(%q) = %q, want %q", conv, got, want)
		}
	}
	return got
}

func wantClaim(t *testing.T, st conversationState, key string, ttl time.Duration, want bool) {
	t.Helper()
	got, err := st.Claim(t.Context(), key, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Claim(%q) = %v, want %v", key, got, want)
	}
}

// A flood of unique event ids must not grow memory without bound.
func TestMemorySweepsExpiredClaims(t *testing.T) {
	clock := testkit.NewClock(time.Unix(0, 0))
	m := NewMemory()
	m.Now = clock.Now
	for i := range 10 * memorySweepEvery {
		wantClaim(t, m, fmt.Sprint("evt", i), time.Second, true)
		clock.Advance(time.Second)
	}
	if n := len(m.claims); n > memorySweepEvery {
		t.Fatalf("%d claims held after all expired, want at most %d", n, memorySweepEvery)
	}
}

func TestMemoryFeedbackCap(t *testing.T) {
	m := NewMemory()
	for i := range FeedbackCap + 5 {
		if _, _, err := m.AddFeedback(t.Context(), VoteUp, fmt.Append(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.feedback) != FeedbackCap {
		t.Fatalf("kept %d feedback records, want %d", len(m.feedback), FeedbackCap)
	}
	if got, want := string(m.feedback[len(m.feedback)-1].data), fmt.Sprint(FeedbackCap+4); got != want {
		t.Fatalf("newest record = %q, want %q", got, want)
	}
}

// Records older than the retention go at the next write.
func TestMemoryFeedbackRetention(t *testing.T) {
	clock := testkit.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	m := NewMemory()
	m.Now, m.Retention = clock.Now, 48*time.Hour
	for _, rec := range []string{"old", "older than a day"} {
		if _, _, err := m.AddFeedback(t.Context(), VoteUp, []byte(rec)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(25 * time.Hour)
	}
	if _, _, err := m.AddFeedback(t.Context(), VoteDown, []byte("new")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.feedback {
		got = append(got, string(r.data))
	}
	if want := []string{"older than a day", "new"}; !slices.Equal(got, want) {
		t.Fatalf("records kept = %q, want %q", got, want)
	}
	if up, down, _ := m.AddFeedback(t.Context(), VoteUp, []byte("x")); up != 3 || down != 1 {
		t.Errorf("totals %d up %d down; retention must not touch them", up, down)
	}
}

func TestRedisFeedbackRetentionCapAndKeys(t *testing.T) {
	prefix := redistest.Prefix(t)
	r := openRedis(t, redistest.URL(t), prefix)
	r.Retention = time.Hour
	ctx := t.Context()
	records := prefix + "{feedback}:log"
	// Records older than the retention, written directly with ids in the
	// past (a stream id is its time in ms), and a recent one.
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := range 3 {
		if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: records, ID: fmt.Sprintf("%d-%d", old, i), Values: []any{"record", "old"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: records, Values: []any{"record", "recent"}}).Err(); err != nil {
		t.Fatal(err)
	}
	// A list from an earlier version, kept forever until now.
	legacy := prefix + "{feedback}:records"
	if err := r.rdb.LPush(ctx, legacy, "legacy").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.AddFeedback(ctx, VoteDown, []byte("newest")); err != nil {
		t.Fatal(err)
	}
	var kept []any
	for _, m := range r.rdb.XRange(ctx, records, "-", "+").Val() {
		kept = append(kept, m.Values["record"])
	}
	if want := []any{"recent", "newest"}; !slices.Equal(kept, want) {
		t.Fatalf("records kept = %v, want %v", kept, want)
	}
	if ttl := r.rdb.PTTL(ctx, legacy).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("legacy feedback list TTL = %v, want the retention", ttl)
	}

	// Fill to the cap directly; 10000 round trips would only slow the test.
	pipe := r.rdb.Pipeline()
	for range FeedbackCap {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: records, Values: []any{"record", "filler"}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.AddFeedback(ctx, VoteUp, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if n := r.rdb.XLen(ctx, records).Val(); n != FeedbackCap {
		t.Fatalf("feedback stream length = %d, want %d", n, FeedbackCap)
	}
	if last := r.rdb.XRevRangeN(ctx, records, "+", "-", 1).Val(); len(last) != 1 || last[0].Values["record"] != "last" {
		t.Fatalf("newest record %v, want the last one added", last)
	}

	// The layout other tools (and Cluster slotting) rely on.
	appendTurns(t, r, "oc_9", 5, time.Hour, "t")
	if _, err := r.SeenChat(ctx, "oc_9"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remember(ctx, "answer:"+"om_9", []byte("t"), time.Hour); err != nil {
		t.Fatal(err)
	}
	wantClaim(t, r, "evt", time.Hour, true)
	for _, key := range []string{
		prefix + "{oc_9}:turns",
		prefix + "kv:answer:om_9",
		prefix + "claim:evt",
		prefix + "chats",
		prefix + "{feedback}:down",
		prefix + "{feedback}:up",
	} {
		if r.rdb.Exists(ctx, key).Val() != 1 {
			t.Errorf("key %q missing", key)
		}
	}
	if ttl := r.rdb.PTTL(ctx, prefix+"kv:answer:om_9").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("answer TTL = %v, want the one given", ttl)
	}
}

// What a replica wrote must be there for the next process.
func TestRedisSurvivesReopen(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	conn, err := store.OpenRedis(ctx, url, prefix)
	if err != nil {
		t.Fatal(err)
	}
	first := NewRedis(conn)
	appendTurns(t, first, "c", 5, time.Hour, "a", "b")
	wantClaim(t, first, "evt", time.Hour, true)
	if _, err := first.SeenChat(ctx, "oc_1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := first.AddFeedback(ctx, VoteUp, []byte("r")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	second := openRedis(t, url, prefix) // also cleans up the keys
	wantTurns(t, second, "c", "a", "b")
	wantClaim(t, second, "evt", time.Hour, false)
	if first, err := second.SeenChat(ctx, "oc_1"); err != nil || first {
		t.Fatalf("SeenChat after reopen = %v, %v; want false, nil", first, err)
	}
	if up, down, err := second.AddFeedback(ctx, VoteDown, []byte("r")); err != nil || up != 1 || down != 1 {
		t.Fatalf("AddFeedback after reopen = %d, %d, %v; want 1, 1, nil", up, down, err)
	}
}

// A Redis restart mid-traffic must not leave the client broken: pooled
// connections die, and the next calls must get through on fresh ones.
func TestRedisRecoversAfterRestart(t *testing.T) {
	url, restart := redistest.StartServer(t)
	r := openRedis(t, url, redistest.Prefix(t))
	ctx := t.Context()
	appendTurns(t, r, "c", 5, time.Hour, "before")
	wantClaim(t, r, "before", time.Hour, true)

	restart()

	// Bounded retries: the first call may meet a dead pooled connection.
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = r.AppendTurn(ctx, "c", []byte("after"), 5, time.Hour); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("AppendTurn still failing 10s after restart: %v", err)
	}
	// Once one call got through, the rest must too. The server restarted
	// cleanly with appendonly on, so earlier writes are still there.
	wantTurns(t, r, "c", "before", "after")
	wantClaim(t, r, "before", time.Hour, false)
	wantClaim(t, r, "after", time.Hour, true)
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// One holder at a time, per name; released, it is free again.
func TestLease(t *testing.T) {
	for name, st := range map[string]interface {
		TryLease(ctx context.Context, name string, ttl time.Duration) (*Lease, error)
	}{"memory": NewMemory(), "redis": openRedis(t, redistest.URL(t), redistest.Prefix(t))} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			l, err := st.TryLease(ctx, "sync", 3*time.Second)
			if err != nil || l == nil {
				t.Fatalf("first TryLease: %v, %v", l, err)
			}
			if again, err := st.TryLease(ctx, "sync", 3*time.Second); err != nil || again != nil {
				t.Fatalf("second TryLease while held: %v, %v; want nil, nil", again, err)
			}
			if other, err := st.TryLease(ctx, "other", 3*time.Second); err != nil || other == nil {
				t.Fatalf("another name: %v, %v", other, err)
			}
			l.Release()
			l.Release()
			testkit.Receive(t, "Done after Release", l.Done(), time.Second)
			next, err := st.TryLease(ctx, "sync", 3*time.Second)
			if err != nil || next == nil {
				t.Fatalf("TryLease after Release: %v, %v", next, err)
			}
			next.Release()
		})
	}
}

// A Redis lease taken over (it expired, say, while its holder hung) is
// lost at the next renewal, and its holder is told.
func TestRedisLeaseLost(t *testing.T) {
	prefix := redistest.Prefix(t)
	r := openRedis(t, redistest.URL(t), prefix)
	l, err := r.TryLease(t.Context(), "sync", 3*time.Second)
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	if err := r.rdb.Set(t.Context(), prefix+"lease:sync", "thief", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Receive(t, "the lease lost", l.Done(), 5*time.Second)
	l.Release()
	if got := r.rdb.Get(t.Context(), prefix+"lease:sync").Val(); got != "thief" {
		t.Errorf("the lost holder touched the new holder's lease: %q", got)
	}
}
