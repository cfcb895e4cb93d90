package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"kbbot/deploy/testkit"
	"kbbot/store/redistest"
	"kbbot/store/state"
)

// workQueue is the method set bot/ requires of a queue backend.
type workQueue interface {
	Enqueue(ctx context.Context, key string, payload []byte) error
	Start(ctx context.Context, h Handlers) error
	Stop(ctx context.Context) error
}

var (
	_ workQueue = (*Memory)(nil)
	_ workQueue = (*Redis)(nil)
)

// queueEnv opens queues of one backend. For Redis every queue opened in a
// test is another replica on the same streams; the memory backend has one
// replica only.
type queueEnv struct {
	replicas int
	open     func(t *testing.T, opt Options) workQueue
}

func memoryQueueEnv() queueEnv {
	return queueEnv{replicas: 1, open: func(t *testing.T, opt Options) workQueue {
		opt.Log = testkit.Logger(t)
		return NewMemory(state.NewMemory(), opt)
	}}
}

func redisQueueEnv(t *testing.T) queueEnv {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	return queueEnv{replicas: 2, open: func(t *testing.T, opt Options) workQueue {
		if opt.Shards == 0 {
			opt.Shards = 8
		}
		opt.Log = testkit.Logger(t)
		return openRedisQueue(t, url, prefix, opt)
	}}
}

// startQueue starts q and stops it when the test ends (before the Redis
// keys are cleaned up: cleanups run last-registered first).
func startQueue(t *testing.T, q workQueue, h Handlers) {
	t.Helper()
	if err := q.Start(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

func enqueue(t *testing.T, q workQueue, key, payload string) {
	t.Helper()
	if err := q.Enqueue(t.Context(), key, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

// journal records what handlers did, safely from many goroutines.
type journal struct {
	mu      sync.Mutex
	events  map[string][]string // key → events in order
	running map[string]bool
	overlap []string
}

func newJournal() *journal {
	return &journal{events: map[string][]string{}, running: map[string]bool{}}
}

func (j *journal) begin(key string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.running[key] {
		j.overlap = append(j.overlap, key)
	}
	j.running[key] = true
}

func (j *journal) end(key, event string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.running[key] = false
	j.events[key] = append(j.events[key], event)
}

func (j *journal) add(key, event string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events[key] = append(j.events[key], event)
}

func (j *journal) get(key string) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events[key])
}

func TestQueue(t *testing.T) {
	for name, env := range map[string]func(t *testing.T) queueEnv{
		"memory": func(*testing.T) queueEnv { return memoryQueueEnv() },
		"redis":  redisQueueEnv,
	} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				fn   func(t *testing.T, env queueEnv)
			}{
				{"OrderPerKeyAcrossReplicas", testQueueOrder},
				{"RetryThenGiveUp", testQueueGiveUp},
				{"PanicIsRetried", testQueuePanicRetried},
				{"StopFinishesRunningJob", testQueueStopFinishes},
			} {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, env(t)) })
			}
		})
	}
}

// Jobs of one key run one at a time and in enqueue order, whichever replica
// recorded them; each runs exactly once when nothing fails.
func testQueueOrder(t *testing.T, env queueEnv) {
	j := newJournal()
	h := Handlers{Handle: func(ctx context.Context, job Job) error {
		j.begin(job.Key)
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		j.end(job.Key, string(job.Payload))
		return nil
	}}
	var qs []workQueue
	for range env.replicas {
		q := env.open(t, Options{Workers: 3, Capacity: 1000})
		startQueue(t, q, h)
		qs = append(qs, q)
	}
	keys := []string{"oc_a", "oc_b", "oc_c", "oc_d", "oc_e"}
	const n = 15
	for i := range n {
		for k, key := range keys {
			enqueue(t, qs[(i+k)%len(qs)], key, strconv.Itoa(i))
		}
	}
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	for _, key := range keys {
		testkit.Eventually(t, "every job of "+key, func() bool { return len(j.get(key)) >= n })
	}
	for _, key := range keys {
		if got := j.get(key); !slices.Equal(got, want) {
			t.Errorf("%s ran %v, want %v", key, got, want)
		}
	}
	if len(j.overlap) > 0 {
		t.Errorf("jobs of one key ran at once: %v", j.overlap)
	}
}

// A job that keeps failing is given up after MaxAttempts and handed to
// Dead; the key's next job waits for that and then runs.
func testQueueGiveUp(t *testing.T, env queueEnv) {
	j := newJournal()
	var mu sync.Mutex
	var dead []Job
	q := env.open(t, Options{Workers: 2, MaxAttempts: 3, RetryBase: time.Millisecond})
	startQueue(t, q, Handlers{
		Handle: func(ctx context.Context, job Job) error {
			p := string(job.Payload)
			if p == "poison" {
				j.add(job.Key, fmt.Sprintf("poison#%d", job.Attempt))
				return errors.New("cannot answer this")
			}
			j.add(job.Key, p)
			return nil
		},
		Dead: func(ctx context.Context, job Job) {
			mu.Lock()
			dead = append(dead, job)
			mu.Unlock()
			j.add(job.Key, "dead")
		},
	})
	enqueue(t, q, "oc_k", "a")
	enqueue(t, q, "oc_k", "poison")
	enqueue(t, q, "oc_k", "b")
	enqueue(t, q, "oc_other", "x")
	testkit.Eventually(t, "the job after the poison", func() bool { return len(j.get("oc_k")) >= 6 })
	if got, want := j.get("oc_k"), []string{"a", "poison#1", "poison#2", "poison#3", "dead", "b"}; !slices.Equal(got, want) {
		t.Errorf("oc_k: %v, want %v", got, want)
	}
	testkit.Eventually(t, "the other key's job", func() bool { return len(j.get("oc_other")) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(dead) != 1 || string(dead[0].Payload) != "poison" || dead[0].Attempt != 3 || dead[0].Key != "oc_k" {
		t.Errorf("dead = %+v, want the poison job once, at attempt 3", dead)
	}
}

func testQueuePanicRetried(t *testing.T, env queueEnv) {
	j := newJournal()
	q := env.open(t, Options{RetryBase: time.Millisecond})
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		if job.Attempt == 1 {
			panic("first time unlucky")
		}
		j.add(job.Key, fmt.Sprintf("%s#%d", job.Payload, job.Attempt))
		return nil
	}})
	enqueue(t, q, "oc_p", "x")
	testkit.Eventually(t, "the retry", func() bool { return len(j.get("oc_p")) == 1 })
	if got := j.get("oc_p"); got[0] != "x#2" {
		t.Errorf("got %v, want x#2", got)
	}
}

// Stop waits for the running job; it returns once the job is done.
func testQueueStopFinishes(t *testing.T, env queueEnv) {
	started, release := make(chan struct{}), make(chan struct{})
	var done bool
	var mu sync.Mutex
	q := env.open(t, Options{})
	if err := q.Start(t.Context(), Handlers{Handle: func(ctx context.Context, job Job) error {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		mu.Lock()
		done = true
		mu.Unlock()
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_s", "slow")
	testkit.Receive(t, "the job to start", started, 20*time.Second)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- q.Stop(ctx)
	}()
	close(release)
	if err := testkit.Receive(t, "Stop to return", stopped, 30*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !done {
		t.Error("Stop returned before the running job finished")
	}
}

// A full memory queue refuses the job and, for a claimed one, keeps no
// claim: its redelivery is refused again, not skipped as a duplicate.
func TestMemoryFull(t *testing.T) {
	st := state.NewMemory()
	q := NewMemory(st, Options{Workers: 1, Capacity: 2, Log: testkit.Quiet()})
	started, release := make(chan struct{}, 1), make(chan struct{})
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		select {
		case started <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}})
	defer close(release)
	enqueue(t, q, "oc_1", "running")
	testkit.Receive(t, "the running job", started, 20*time.Second) // the running job does not count against Capacity
	enqueue(t, q, "oc_1", "w1")
	enqueue(t, q, "oc_2", "w2")
	if err := q.Enqueue(t.Context(), "oc_3", []byte("over")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiting job: %v, want ErrQueueFull", err)
	}
	for _, delivery := range []string{"first delivery", "redelivery"} {
		first, err := q.EnqueueClaimed(t.Context(), []Claim{{Key: "evt:3", TTL: time.Hour}}, "oc_3", []byte("over"))
		if !errors.Is(err, ErrQueueFull) || !first {
			t.Fatalf("%s of a claimed job: %v, %v; want first and ErrQueueFull", delivery, first, err)
		}
	}
}

// The in-process queue runs what waits before it stops (nothing else
// would), and at its deadline cancels the running job.
func TestMemoryStopDrainsThenCancels(t *testing.T) {
	j := newJournal()
	q := NewMemory(state.NewMemory(), Options{Workers: 1, Log: testkit.Quiet()})
	if err := q.Start(t.Context(), Handlers{Handle: func(ctx context.Context, job Job) error {
		if string(job.Payload) == "stuck" {
			<-ctx.Done()
			j.add(job.Key, "cancelled")
			return ctx.Err()
		}
		j.add(job.Key, string(job.Payload))
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_1", "a")
	enqueue(t, q, "oc_1", "b")
	enqueue(t, q, "oc_1", "stuck")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := q.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v, want the deadline", err)
	}
	if got := j.get("oc_1"); !slices.Equal(got, []string{"a", "b", "cancelled"}) {
		t.Errorf("got %v", got)
	}
	if err := q.Enqueue(t.Context(), "oc_1", nil); !errors.Is(err, ErrQueueStopped) {
		t.Errorf("enqueue after stop: %v", err)
	}
}

// openRedisQueue is a queue on its own connection to url, as another
// replica would be, with the claims of a state store on the same Redis.
func openRedisQueue(t *testing.T, url, prefix string, opt Options) *Redis {
	t.Helper()
	r := redistest.Open(t, url, prefix)
	return NewRedis(r, state.NewRedis(r), opt)
}

// redisQueue opens a Redis replica on url/prefix for white-box tests.
func redisQueue(t *testing.T, url, prefix string, opt Options) *Redis {
	t.Helper()
	if opt.Shards == 0 {
		opt.Shards = 4
	}
	if opt.Log == nil {
		opt.Log = testkit.Logger(t)
	}
	return openRedisQueue(t, url, prefix, opt)
}

// A replica that died holding a shard leaves its lease (until it expires)
// and a pending job. Another replica takes the job over only after the
// lease has expired, runs it first (before the shard's newer jobs), counts
// the crash as an attempt, and prunes the dead consumer.
func TestRedisTakesOverCrashedReplica(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{Visibility: time.Second})
	if err := q.ensureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_crash", "first")
	enqueue(t, q, "oc_crash", "second")
	shard := q.shardOf("oc_crash")
	// The crashed replica: lease taken, first job read, then nothing.
	if err := q.rdb.Set(ctx, q.leaseKey(shard), "dead-token", 700*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: queueGroup, Consumer: "dead-replica",
		Streams: []string{q.streamKey(shard), ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}

	j := newJournal()
	live := redisQueue(t, url, prefix, Options{Visibility: time.Second})
	startQueue(t, live, Handlers{Handle: func(ctx context.Context, job Job) error {
		if tok, _ := live.rdb.Get(ctx, live.leaseKey(shard)).Result(); tok == "dead-token" {
			t.Errorf("ran %s while the crashed replica's lease was still valid", job.Payload)
		}
		j.add(job.Key, fmt.Sprintf("%s#%d", job.Payload, job.Attempt))
		return nil
	}})
	testkit.Eventually(t, "both jobs", func() bool { return len(j.get("oc_crash")) == 2 })
	if got := j.get("oc_crash"); !slices.Equal(got, []string{"first#2", "second#1"}) {
		t.Errorf("got %v, want the taken-over job first, as its second attempt", got)
	}
	testkit.Eventually(t, "an empty stream", func() bool { return q.rdb.XLen(ctx, q.streamKey(shard)).Val() == 0 })
	cs, err := q.rdb.XInfoConsumers(ctx, q.streamKey(shard), queueGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == "dead-replica" {
			t.Errorf("the dead replica's consumer was not pruned: %+v", cs)
		}
	}
}

// A job that crashed its replica MaxAttempts times is buried without
// running again: copied to the dead-letter stream and handed to Dead.
func TestRedisBuriesCrashLoop(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{MaxAttempts: 3})
	if err := q.ensureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_loop", "kills its replica")
	shard := q.shardOf("oc_loop")
	stream := q.streamKey(shard)
	// Three replicas each read it and died.
	if err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: queueGroup, Consumer: "dead-1", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"dead-2", "dead-3"} {
		if err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: queueGroup, Consumer: c, Start: "0-0", Count: 1}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Jobs given up long ago, past the retention: burying this one trims
	// them (whole stream nodes of 100 at a time, as "~" does).
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	fill := q.rdb.Pipeline()
	for i := range 200 {
		fill.XAdd(ctx, &redis.XAddArgs{Stream: q.DeadKey(), ID: fmt.Sprintf("%d-%d", old, i), Values: []any{"payload", "old"}})
	}
	if _, err := fill.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ran, dead []Job
	live := redisQueue(t, url, prefix, Options{MaxAttempts: 3, Retention: time.Hour})
	startQueue(t, live, Handlers{
		Handle: func(ctx context.Context, job Job) error {
			mu.Lock()
			ran = append(ran, job)
			mu.Unlock()
			return nil
		},
		Dead: func(ctx context.Context, job Job) {
			mu.Lock()
			dead = append(dead, job)
			mu.Unlock()
		},
	})
	testkit.Eventually(t, "the burial", func() bool { mu.Lock(); defer mu.Unlock(); return len(dead) == 1 })
	mu.Lock()
	if len(ran) != 0 || dead[0].Attempt != 4 || string(dead[0].Payload) != "kills its replica" {
		t.Errorf("ran %+v, dead %+v; want no run and one burial at delivery 4", ran, dead)
	}
	mu.Unlock()
	msgs, err := q.rdb.XRange(ctx, q.DeadKey(), "-", "+").Result()
	if err != nil || len(msgs) == 0 || len(msgs) > 100 {
		t.Fatalf("dead-letter stream: %d entries, %v; want the old ones trimmed", len(msgs), err)
	}
	if v := msgs[len(msgs)-1].Values; v["payload"] != "kills its replica" || v["key"] != "oc_loop" || v["attempts"] != "4" {
		t.Errorf("dead-letter entry: %v", v)
	}
	testkit.Eventually(t, "the job acknowledged", func() bool { return q.rdb.XLen(ctx, stream).Val() == 0 })
}

// At the shutdown deadline the running job is cancelled and stays pending;
// the lease is released, so another replica takes it over at once.
func TestRedisStopLeavesJobPending(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	first := redisQueue(t, url, prefix, Options{Visibility: time.Minute})
	started := make(chan struct{})
	if err := first.Start(ctx, Handlers{Handle: func(ctx context.Context, job Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, first, "oc_stop", "long answer")
	testkit.Receive(t, "the job to start", started, 20*time.Second)
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := first.Stop(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v, want the deadline", err)
	}
	shard := first.shardOf("oc_stop")
	if n := first.rdb.XLen(ctx, first.streamKey(shard)).Val(); n != 1 {
		t.Fatalf("stream holds %d jobs after the interrupted stop, want 1", n)
	}
	if n := first.rdb.Exists(ctx, first.leaseKey(shard)).Val(); n != 0 {
		t.Error("the stopped replica kept its lease")
	}

	j := newJournal()
	// The visibility timeout is a minute: only the released lease lets
	// this replica in before the test times out.
	second := redisQueue(t, url, prefix, Options{Visibility: time.Minute})
	startQueue(t, second, Handlers{Handle: func(ctx context.Context, job Job) error {
		j.add(job.Key, fmt.Sprintf("%s#%d", job.Payload, job.Attempt))
		return nil
	}})
	testkit.Eventually(t, "the job taken over", func() bool { return len(j.get("oc_stop")) == 1 })
	if got := j.get("oc_stop"); got[0] != "long answer#2" {
		t.Errorf("got %v", got)
	}
}

// A holder that finds its lease taken cancels its job, which stays pending
// and runs again once the shard is free.
func TestRedisLostLeaseCancelsJob(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{Visibility: 300 * time.Millisecond})
	j := newJournal()
	started := make(chan struct{}, 1)
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		if job.Attempt > 1 {
			j.add(job.Key, fmt.Sprintf("done#%d", job.Attempt))
			return nil
		}
		started <- struct{}{}
		select {
		case <-ctx.Done():
			j.add(job.Key, "cancelled")
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return errors.New("not cancelled")
		}
	}})
	enqueue(t, q, "oc_lost", "x")
	testkit.Receive(t, "the job to start", started, 20*time.Second)
	shard := q.shardOf("oc_lost")
	if err := q.rdb.Set(ctx, q.leaseKey(shard), "thief", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the job cancelled", func() bool { return len(j.get("oc_lost")) == 1 })
	if n := q.rdb.XLen(ctx, q.streamKey(shard)).Val(); n != 1 {
		t.Fatalf("stream holds %d jobs, want the cancelled one", n)
	}
	if err := q.rdb.Del(ctx, q.leaseKey(shard)).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the job run again", func() bool { return len(j.get("oc_lost")) == 2 })
	if got := j.get("oc_lost"); got[1] != "done#2" {
		t.Errorf("got %v", got)
	}
}

// EnqueueClaimed records a job once per claim, and its claims are the
// state store's: state.Redis's Claim sees them taken.
func TestRedisEnqueueClaimed(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{})
	claims := []Claim{{Key: "evt:e1", TTL: time.Hour}, {Key: "msg:m1", TTL: time.Hour}}
	if first, err := q.EnqueueClaimed(ctx, claims, "oc_c", []byte("one")); err != nil || !first {
		t.Fatalf("first: %v, %v", first, err)
	}
	// A redelivery: another event id, the same message.
	again := []Claim{{Key: "evt:e2", TTL: time.Hour}, {Key: "msg:m1", TTL: time.Hour}}
	if first, err := q.EnqueueClaimed(ctx, again, "oc_c", []byte("one")); err != nil || first {
		t.Fatalf("redelivery: %v, %v; want a duplicate", first, err)
	}
	if n := q.rdb.XLen(ctx, q.streamKey(q.shardOf("oc_c"))).Val(); n != 1 {
		t.Errorf("%d jobs recorded, want 1", n)
	}
	// All or nothing: evt:e2 was not claimed by the refused call.
	if ok, err := q.claims.Claim(ctx, "evt:e2", time.Hour); err != nil || !ok {
		t.Errorf("evt:e2 claimed by a refused enqueue: %v, %v", ok, err)
	}
	if ok, err := q.claims.Claim(ctx, "msg:m1", time.Hour); err != nil || ok {
		t.Errorf("msg:m1 not visible to the state store: %v, %v", ok, err)
	}
	if ttl := q.rdb.PTTL(ctx, q.claims.ClaimKey("evt:e1")).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("claim TTL %v, want about an hour", ttl)
	}
}

// Jobs acknowledged to their producer survive a Redis restart (appendonly,
// fsync always), and a restart while jobs run loses none and keeps order.
func TestRedisSurvivesRedisRestart(t *testing.T) {
	url, restart := redistest.StartServer(t, "--appendfsync", "always")
	prefix := redistest.Prefix(t)
	q := redisQueue(t, url, prefix, Options{Workers: 2, Visibility: 10 * time.Second})
	const n = 40
	for i := range n {
		enqueue(t, q, "oc_r"+strconv.Itoa(i%2), strconv.Itoa(i))
	}
	restart()
	j := newJournal()
	var count sync.WaitGroup
	count.Add(1)
	var once sync.Once
	var mu sync.Mutex
	ran := 0
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		time.Sleep(5 * time.Millisecond)
		j.add(job.Key, string(job.Payload))
		mu.Lock()
		ran++
		if ran == n/3 {
			once.Do(count.Done)
		}
		mu.Unlock()
		return nil
	}})
	count.Wait()
	restart() // mid-run
	for k := range 2 {
		key := "oc_r" + strconv.Itoa(k)
		testkit.Eventually(t, "every job of "+key, func() bool {
			seen := map[string]bool{}
			for _, e := range j.get(key) {
				seen[e] = true
			}
			return len(seen) == n/2
		})
		// At least once, in order: a job may run again only if its ack
		// was lost, and then right after its first run.
		var firsts []string
		seen := map[string]bool{}
		for _, e := range j.get(key) {
			if !seen[e] {
				seen[e] = true
				firsts = append(firsts, e)
			}
		}
		for i := 1; i < len(firsts); i++ {
			a, _ := strconv.Atoi(firsts[i-1])
			b, _ := strconv.Atoi(firsts[i])
			if b <= a {
				t.Errorf("%s out of order: %v", key, firsts)
				break
			}
		}
	}
}

// The scripts a holder runs are safe to run again when a reply is lost:
// acquiring twice with one token holds the lease once, and fetching again
// before acknowledging returns the same (oldest) job, not the next one, so
// order holds. Acknowledging is folded into the next fetch.
func TestRedisScriptsSurviveLostReplies(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{Visibility: 10 * time.Second})
	if err := q.ensureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_retry", "first")
	enqueue(t, q, "oc_retry", "second")
	shard := q.shardOf("oc_retry")
	for i := range 2 {
		if ok, _, err := q.acquire(shard, "tok"); err != nil || !ok {
			t.Fatalf("acquire #%d: %v, %v", i+1, ok, err)
		}
	}
	if ok, _, err := q.acquire(shard, "other"); err != nil || ok {
		t.Fatalf("a second holder: %v, %v; want refused", ok, err)
	}
	l := &lease{q: q, shard: shard, token: "tok"}
	var ids []string
	for range 2 {
		j, state, err := q.next(l, "")
		if err != nil || state != nextJobReady || string(j.Payload) != "first" || j.Attempt != 1 || j.Key != "oc_retry" {
			t.Fatalf("fetch: %+v, %d, %v; want the first job, attempt 1", j, state, err)
		}
		ids = append(ids, j.ID)
	}
	if ids[0] != ids[1] {
		t.Fatalf("a repeated fetch returned %v", ids)
	}
	j, state, err := q.next(l, ids[0])
	if err != nil || state != nextJobReady || string(j.Payload) != "second" {
		t.Fatalf("after acknowledging the first: %+v, %d, %v", j, state, err)
	}
	if _, state, err := q.next(l, j.ID); err != nil || state != nextEmpty {
		t.Fatalf("after the last: %d, %v; want empty", state, err)
	}
	if n := q.rdb.XLen(ctx, q.streamKey(shard)).Val(); n != 0 {
		t.Errorf("%d jobs left in the stream, want 0", n)
	}
	if err := q.rdb.Set(ctx, q.leaseKey(shard), "thief", 0).Err(); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_retry", "third")
	if _, state, err := q.next(l, ""); err != nil || state != nextLost {
		t.Errorf("with the lease taken: %d, %v; want lost", state, err)
	}
	n, err := releaseLease.Run(ctx, q.rdb, []string{q.leaseKey(shard), q.streamKey(shard)}, "tok").Int64()
	if err != nil || n != 1 {
		t.Errorf("release: %d, %v; want the one job waiting", n, err)
	}
	if tok := q.rdb.Get(ctx, q.leaseKey(shard)).Val(); tok != "thief" {
		t.Errorf("release by a former holder deleted the new holder's lease (now %q)", tok)
	}
}

// A shard whose stream (and so its group) vanished, say by a FLUSHALL,
// gets its group back from the next holder and keeps running jobs.
func TestRedisRecreatesLostGroup(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{})
	j := newJournal()
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		j.add(job.Key, string(job.Payload))
		return nil
	}})
	enqueue(t, q, "oc_gone", "one")
	testkit.Eventually(t, "the first job", func() bool { return len(j.get("oc_gone")) == 1 })
	if err := q.rdb.Del(ctx, q.streamKey(q.shardOf("oc_gone"))).Err(); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "oc_gone", "two") // XADD makes a stream with no group
	testkit.Eventually(t, "the job after the loss", func() bool { return len(j.get("oc_gone")) == 2 })
}

// commandCounter counts the commands a client sends one at a time (not
// pipelines: the scanner's are one round trip each).
type commandCounter struct {
	mu   sync.Mutex
	seen []string
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.seen = append(c.seen, cmd.Name())
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.seen
	c.seen = nil
	return s
}

// Round trips to Redis were most of the queue's cost under load: a job
// alone in its shard costs the enqueue plus four scripts (acquire, fetch,
// acknowledge with the next fetch, release). This keeps it that way.
// Only the job's own commands count: a new pooled connection's HELLO, the
// pruning XINFO (at most every ten minutes a shard) and a script's first
// EVAL after NOSCRIPT (one warm-up job loads them all) are not per job.
func TestRedisRoundTripsPerJob(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	q := redisQueue(t, url, prefix, Options{Shards: 8, Visibility: time.Minute})
	counter := &commandCounter{}
	q.rdb.AddHook(counter)
	ran := make(chan struct{}, 1)
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		ran <- struct{}{}
		return nil
	}})
	idle := func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !slices.Contains(q.held, true) && !slices.Contains(q.hinted, true)
	}
	own := map[string]bool{"xadd": true, "evalsha": true, "eval": true}
	const jobs = 10
	for i := range jobs + 1 {
		testkit.Eventually(t, "an idle queue", idle)
		counter.take()
		enqueue(t, q, "oc_rt"+strconv.Itoa(i), "x")
		testkit.Receive(t, "the job run", ran, 10*time.Second)
		testkit.Eventually(t, "an idle queue", idle)
		got := slices.DeleteFunc(counter.take(), func(name string) bool { return !own[name] })
		if i == 0 {
			continue // the warm-up
		}
		// The scanner (pipelined, once a second) may hint a shard it saw
		// busy, and such a look costs one more acquire.
		if len(got) != 5 && len(got) != 6 {
			t.Errorf("job %d: commands %v, want the enqueue and 4 scripts", i, got)
		}
	}
}

// Taking a shard over: a job another holder left pending gets one more
// delivery, also when the client runs the script twice (a lost reply); a
// pending job deleted from the stream is reported; an error gives the
// lease back; a retry is counted only while the lease is ours.
func TestRedisAcquireScript(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{Shards: 4})
	if err := q.ensureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	shard := q.shardOf("oc_take")
	stream := q.streamKey(shard)
	enqueue(t, q, "oc_take", "kept")
	enqueue(t, q, "oc_take", "trimmed")
	read := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: queueGroup, Consumer: "dead-replica",
		Streams: []string{stream, ">"}, Count: 2, Block: -1}).Val()
	if len(read) != 1 || len(read[0].Messages) != 2 {
		t.Fatalf("read %+v", read)
	}
	kept, trimmed := read[0].Messages[0].ID, read[0].Messages[1].ID
	q.rdb.XDel(ctx, stream, trimmed)

	for i := range 2 {
		ok, vanished, err := q.acquire(shard, "tok")
		if err != nil || !ok {
			t.Fatalf("acquire #%d: %v, %v", i+1, ok, err)
		}
		if i == 0 && vanished != 1 {
			t.Errorf("vanished = %d, want the deleted job reported", vanished)
		}
	}
	p := q.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: queueGroup, Start: "-", End: "+", Count: 10}).Val()
	if len(p) != 1 || p[0].ID != kept || p[0].Consumer != q.opt.Consumer || p[0].RetryCount != 2 {
		t.Errorf("pending after take-over: %+v; want %s ours, delivered twice", p, kept)
	}

	l := &lease{q: q, shard: shard, token: "tok"}
	n, err := retryJob.Run(ctx, q.rdb, []string{q.leaseKey(shard), stream}, "tok", queueGroup, q.opt.Consumer, kept).Int()
	if err != nil || n != 1 {
		t.Errorf("retry with the lease: %d, %v", n, err)
	}
	q.rdb.Set(ctx, q.leaseKey(shard), "thief", 0)
	n, err = retryJob.Run(ctx, q.rdb, []string{q.leaseKey(shard), stream}, l.token, queueGroup, q.opt.Consumer, kept).Int()
	if err != nil || n != -1 {
		t.Errorf("retry without the lease: %d, %v; want -1", n, err)
	}

	// A shard key of the wrong type: an error, and no lease left behind.
	other := (shard + 1) % 4
	q.rdb.Set(ctx, q.streamKey(other), "not a stream", 0)
	if _, _, err := q.acquire(other, "tok"); err == nil {
		t.Error("acquire on a broken stream: no error")
	}
	if n := q.rdb.Exists(ctx, q.leaseKey(other)).Val(); n != 0 {
		t.Error("a failed acquire kept the lease")
	}
}

// Over MaxPending nothing more is recorded and no claim is taken, so a
// redelivery is refused the same way rather than taken for a duplicate (a
// kept claim outlived its busy card under load and lost the question);
// a duplicate of a recorded job is still a duplicate. Jobs carry the time
// Redis recorded them.
func TestRedisMaxPending(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	ctx := t.Context()
	q := redisQueue(t, url, prefix, Options{MaxPending: 2})
	for i := range 2 {
		if first, err := q.EnqueueClaimed(ctx, []Claim{{Key: fmt.Sprint("evt:", i), TTL: time.Hour}}, fmt.Sprint("oc_", i), []byte("x")); err != nil || !first {
			t.Fatalf("job %d: %v, %v", i, first, err)
		}
	}
	for _, delivery := range []string{"first delivery", "redelivery"} {
		first, err := q.EnqueueClaimed(ctx, []Claim{{Key: "evt:2", TTL: time.Hour}}, "oc_2", []byte("x"))
		if !errors.Is(err, ErrQueueFull) || !first {
			t.Fatalf("%s over the cap: %v, %v; want first and ErrQueueFull", delivery, first, err)
		}
		if n := q.rdb.Exists(ctx, q.claims.ClaimKey("evt:2")).Val(); n != 0 {
			t.Fatalf("%s over the cap left its claim", delivery)
		}
	}
	if first, err := q.EnqueueClaimed(ctx, []Claim{{Key: "evt:0", TTL: time.Hour}}, "oc_0", []byte("x")); err != nil || first {
		t.Errorf("duplicate of a recorded job over the cap: %v, %v; want a duplicate", first, err)
	}
	total := int64(0)
	for i := range q.opt.Shards {
		total += q.rdb.XLen(ctx, q.streamKey(i)).Val()
	}
	if total != 2 {
		t.Errorf("%d jobs recorded, want 2", total)
	}
	j := newJournal()
	var enqueued []time.Time
	var mu sync.Mutex
	startQueue(t, q, Handlers{Handle: func(ctx context.Context, job Job) error {
		mu.Lock()
		enqueued = append(enqueued, job.Enqueued)
		mu.Unlock()
		j.add(job.Key, "done")
		return nil
	}})
	testkit.Eventually(t, "both jobs run", func() bool { return len(j.get("oc_0"))+len(j.get("oc_1")) == 2 })
	mu.Lock()
	defer mu.Unlock()
	for _, e := range enqueued {
		if d := time.Since(e); d < 0 || d > time.Minute {
			t.Errorf("job enqueued %v ago, want just now", d)
		}
	}
}
