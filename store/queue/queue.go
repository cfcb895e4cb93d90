// Package queue holds work between the webhook, which records it, and the
// workers that run it. Two backends behave alike (queue_test.go runs one
// suite against both):
//
//   - Memory keeps jobs in process (memory.go): a crash loses what is
//     waiting, and it serves one replica only.
//   - Redis keeps them in Redis Streams with a consumer group (redis.go,
//     shard.go, lease.go; the Lua scripts are in lua/): a job is
//     acknowledged only once its handler has returned, and a crashed
//     replica's jobs are taken over by another after the visibility
//     timeout.
//
// In both, jobs with the same key (a chat) run one at a time, in the order
// they were enqueued; a job that keeps failing is given up after
// MaxAttempts and handed to Handlers.Dead. A job may be recorded together
// with de-duplication claims (EnqueueClaimed), so a redelivered event finds
// its claim and records nothing.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"kbbot/store"
)

// Job is one queued piece of work as a handler sees it.
type Job struct {
	ID      string // assigned by the queue (the stream entry id in Redis)
	Key     string // ordering key: jobs with one key run one at a time, in order
	Payload []byte
	// Attempt is 1 on the first delivery. Failures and crashes of the
	// replica running the job both count.
	Attempt int
	// Enqueued is when the job was recorded (in Redis, the time in its
	// stream entry id, by the Redis server's clock), so a handler can
	// refuse work that waited too long.
	Enqueued time.Time
}

// Handlers are what a queue calls.
type Handlers struct {
	// Handle runs a job. Returning nil acknowledges it. An error or a panic
	// makes the job run again after a backoff, up to MaxAttempts; an error
	// after the handler's context was cancelled (shutdown, or the Redis lease
	// lost) leaves it for another replica without counting as a failure.
	Handle func(ctx context.Context, j Job) error
	// Dead, when set, is told about a job given up after MaxAttempts (in
	// Redis, after it has been copied to the dead-letter stream).
	Dead func(ctx context.Context, j Job)
	// Depth, when set, is told how many jobs wait (Memory) or are not
	// yet done (Redis, every replica, measured by each scan), and how long
	// the oldest of them has waited: the two figures to alert on.
	Depth func(n int, oldest time.Duration)
}

// Queue errors.
var (
	// ErrQueueFull: a Memory holds Capacity waiting jobs, or a Redis queue
	// MaxPending across the deployment.
	ErrQueueFull = errors.New("queue: work queue full")
	// ErrQueueStopped: Stop was called; the job was not recorded.
	ErrQueueStopped = errors.New("queue: work queue stopped")
)

// Options tune a queue. Zero values get the defaults named.
type Options struct {
	// Workers is how many jobs this process runs at once; default 1.
	// NoWorkers records jobs but runs none here (a Redis queue's intake
	// replica: other replicas answer); its scan still counts the
	// deployment's pending jobs for MaxPending.
	Workers     int
	NoWorkers   bool
	MaxAttempts int           // deliveries before a job is given up; default 5
	RetryBase   time.Duration // wait after a job's first failure, doubling (at most 30 s); default 1 s
	Log         *slog.Logger  // default slog.Default()

	// Memory: jobs waiting for a worker (running ones not counted);
	// default 64.
	Capacity int

	// Redis: streams the keys are hashed into (default 512). One
	// worker in the whole deployment runs a shard at a time, so this caps
	// how many jobs run at once across all replicas. Every replica must use
	// the same number. Raising it leaves queued jobs where it still looks;
	// lowering it strands the jobs of the dropped shards: drain first.
	Shards int
	// Redis: how long a shard's lease lasts without renewal (default
	// 30 s). The holder renews it every third of that while it works, so
	// the timeout need not exceed the longest answer; it is how long the
	// jobs of a crashed replica wait before another takes them over. Keep
	// it well above Redis hiccups: a holder that cannot renew for two
	// thirds of it gives up its jobs.
	Visibility time.Duration
	// Redis: this process's consumer name; default host-pid-random.
	Consumer string
	// Redis: jobs not yet done across the whole deployment beyond which
	// EnqueueClaimed refuses new ones (ErrQueueFull), default 10000. The
	// count is every shard's length as this replica's scan last saw it
	// (once a second), plus what it recorded since: other replicas'
	// jobs of the last second are not in it, so a flood can overshoot by
	// about a second's worth. Nothing is ever trimmed from a shard: a job
	// recorded is a job answered or given up.
	MaxPending int
	// Redis: how long a job given up stays in the dead-letter stream
	// (KBBOT_RETENTION; default 30 days). Older entries are trimmed as
	// new ones arrive.
	Retention time.Duration
}

const (
	maxAckTries   = 10 // about 10 s of retries
	maxRetryWait  = 30 * time.Second
	deadStreamLen = 10000
	queueGroup    = "workers"
)

func (o Options) withDefaults() Options {
	switch {
	case o.NoWorkers:
		o.Workers = 0
	case o.Workers < 1:
		o.Workers = 1
	}
	if o.MaxAttempts < 1 {
		o.MaxAttempts = 5
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Capacity < 1 {
		o.Capacity = 64
	}
	if o.Shards < 1 {
		o.Shards = 512
	}
	if o.Visibility <= 0 {
		o.Visibility = 30 * time.Second
	}
	if o.Consumer == "" {
		host, _ := os.Hostname()
		o.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(4))
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.Retention <= 0 {
		o.Retention = store.DefaultRetention
	}
	return o
}

func (o Options) retryWait(attempt int) time.Duration {
	d := o.RetryBase
	for i := 1; i < attempt && d < maxRetryWait; i++ {
		d *= 2
	}
	return min(d, maxRetryWait)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runHandler runs h, turning a panic into an error: one bad job must not
// take the process down.
func runHandler(ctx context.Context, h func(context.Context, Job) error, j Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	return h(ctx, j)
}

func runDead(ctx context.Context, log *slog.Logger, h Handlers, j Job) {
	if h.Dead == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic in the dead-letter handler", "job", j.ID, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	h.Dead(ctx, j)
}

// sleepCtx waits d; false means ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Claim is a de-duplication key a job is recorded under: the first
// EnqueueClaimed with it records the job, later ones within TTL are
// duplicates and record nothing.
type Claim struct {
	Key string
	TTL time.Duration
}

// Claimer keeps claims (state.Memory, state.Redis): true for the first
// caller per key within ttl.
type Claimer interface {
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, key string) error
}

// claimThenEnqueue takes the claims, then records the job with enqueue;
// on any enqueue error the claims are released, so nothing is left that
// would make a redelivery look like a duplicate. first is as for
// EnqueueClaimed: true on ErrQueueFull.
func claimThenEnqueue(ctx context.Context, c Claimer, log *slog.Logger, claims []Claim, enqueue func() error) (first bool, err error) {
	taken, first, err := claimAll(ctx, c, log, claims)
	if err != nil || !first {
		return false, err
	}
	if err := enqueue(); err != nil {
		release(c, log, taken)
		return errors.Is(err, ErrQueueFull), err
	}
	return true, nil
}

// claimAll takes every claim, first to last. first is false when one was
// taken already (a duplicate); then, and on an error, the claims taken so
// far are released, so a redelivery is processed.
func claimAll(ctx context.Context, c Claimer, log *slog.Logger, claims []Claim) (taken []string, first bool, err error) {
	for _, cl := range claims {
		if cl.TTL <= 0 {
			err = fmt.Errorf("queue: claim %q: ttl must be positive, got %v", cl.Key, cl.TTL)
		} else {
			var ok bool
			if ok, err = c.Claim(ctx, cl.Key, cl.TTL); err == nil && !ok {
				release(c, log, taken)
				return nil, false, nil
			}
		}
		if err != nil {
			release(c, log, taken)
			return nil, false, err
		}
		taken = append(taken, cl.Key)
	}
	return taken, true, nil
}

// release gives claims back, on a context of its own: the caller's may be
// the one that just failed.
func release(c Claimer, log *slog.Logger, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := c.Release(ctx, k); err != nil {
			log.Warn("releasing a claim failed", "key", k, "error", err)
		}
	}
}
