package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Work queues hold jobs between the webhook, which records them, and the
// workers that run them. Two backends behave alike (queue_test.go runs one
// suite against both):
//
//   - MemoryQueue keeps jobs in process: a crash loses what is waiting, and
//     it serves one replica only.
//   - RedisQueue keeps them in Redis Streams with a consumer group: a job is
//     acknowledged only once its handler has returned, and a crashed
//     replica's jobs are taken over by another after the visibility timeout.
//
// In both, jobs with the same key (a chat) run one at a time, in the order
// they were enqueued; a job that keeps failing is given up after
// MaxAttempts and handed to Handlers.Dead.

// Job is one queued piece of work as a handler sees it.
type Job struct {
	ID      string // assigned by the queue (the stream entry id in Redis)
	Key     string // ordering key: jobs with one key run one at a time, in order
	Payload []byte
	// Attempt is 1 on the first delivery. Failures and crashes of the
	// replica running the job both count.
	Attempt int
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
	// Depth, when set, is told how many jobs wait (MemoryQueue) or are not
	// yet done (RedisQueue, every replica, measured by each scan).
	Depth func(n int)
}

// Queue errors.
var (
	// ErrQueueFull: a MemoryQueue holds Capacity waiting jobs.
	ErrQueueFull = errors.New("store: work queue full")
	// ErrQueueStopped: Stop was called; the job was not recorded.
	ErrQueueStopped = errors.New("store: work queue stopped")
)

// QueueOptions tune a queue. Zero values get the defaults named.
type QueueOptions struct {
	Workers     int           // jobs this process runs at once; default 1
	MaxAttempts int           // deliveries before a job is given up; default 5
	RetryBase   time.Duration // wait after a job's first failure, doubling (at most 30 s); default 1 s
	Log         *slog.Logger  // default slog.Default()

	// MemoryQueue: jobs waiting for a worker (running ones not counted);
	// default 64.
	Capacity int

	// RedisQueue: streams the keys are hashed into (default 512). One
	// worker in the whole deployment runs a shard at a time, so this caps
	// how many jobs run at once across all replicas. Every replica must use
	// the same number. Raising it leaves queued jobs where it still looks;
	// lowering it strands the jobs of the dropped shards: drain first.
	Shards int
	// RedisQueue: how long a shard's lease lasts without renewal (default
	// 30 s). The holder renews it every third of that while it works, so
	// the timeout need not exceed the longest answer; it is how long the
	// jobs of a crashed replica wait before another takes them over. Keep
	// it well above Redis hiccups: a holder that cannot renew for two
	// thirds of it gives up its jobs.
	Visibility time.Duration
	// RedisQueue: this process's consumer name; default host-pid-random.
	Consumer string
	// RedisQueue: approximate cap on a shard stream's length (default
	// 100000), a safety net only: jobs are deleted once done.
	MaxLen int64
}

const (
	maxAckTries   = 10 // about 10 s of retries
	maxRetryWait  = 30 * time.Second
	deadStreamLen = 10000
	queueGroup    = "workers"
)

func (o QueueOptions) withDefaults() QueueOptions {
	if o.Workers < 1 {
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
	if o.MaxLen <= 0 {
		o.MaxLen = 100000
	}
	return o
}

func (o QueueOptions) retryWait(attempt int) time.Duration {
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

// MemoryQueue is the in-process queue: bounded, not durable (a crash loses
// every waiting job) and for a single replica. Keys waiting for a worker are
// served first come, first served, one job of a key at a time.
type MemoryQueue struct {
	opt QueueOptions
	log *slog.Logger

	mu       sync.Mutex
	wake     *sync.Cond
	keys     map[string]*memKey
	ready    []*memKey // keys with a job waiting and none running, oldest first
	waiting  int
	seq      uint64
	h        Handlers
	started  bool
	stopping bool // no more Enqueue; workers drain what waits
	abandon  bool // Stop's deadline passed: workers take nothing more

	runCtx context.Context // handlers' context, cancelled when Stop gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type memKey struct {
	key     string
	jobs    []Job // waiting, oldest first
	running bool
}

// NewMemoryQueue returns an in-process queue; Start it to run jobs.
func NewMemoryQueue(opt QueueOptions) *MemoryQueue {
	opt = opt.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	q := &MemoryQueue{opt: opt, log: opt.Log, keys: map[string]*memKey{}, runCtx: ctx, cancel: cancel}
	q.wake = sync.NewCond(&q.mu)
	return q
}

// Enqueue records a job for key. It fails with ErrQueueFull when Capacity
// jobs wait, and with ErrQueueStopped after Stop.
func (q *MemoryQueue) Enqueue(ctx context.Context, key string, payload []byte) error {
	q.mu.Lock()
	if q.stopping {
		q.mu.Unlock()
		return ErrQueueStopped
	}
	if q.waiting >= q.opt.Capacity {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.seq++
	k := q.keys[key]
	if k == nil {
		k = &memKey{key: key}
		q.keys[key] = k
	}
	k.jobs = append(k.jobs, Job{ID: strconv.FormatUint(q.seq, 10), Key: key, Payload: bytes.Clone(payload)})
	q.waiting++
	if !k.running && len(k.jobs) == 1 {
		q.ready = append(q.ready, k)
		q.wake.Signal()
	}
	n := q.waiting
	q.mu.Unlock()
	q.depth(n)
	return nil
}

// Start runs Workers goroutines calling h.
func (q *MemoryQueue) Start(ctx context.Context, h Handlers) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("store: memory queue started twice")
	}
	q.started, q.h = true, h
	q.wg.Add(q.opt.Workers)
	for range q.opt.Workers {
		go q.worker()
	}
	return nil
}

// Stop takes no more jobs and lets the workers run everything already
// queued, since nothing else would. When ctx ends first, running handlers'
// contexts are cancelled, the jobs still waiting are dropped (and logged),
// and Stop returns ctx's error once the workers have returned.
func (q *MemoryQueue) Stop(ctx context.Context) error {
	q.mu.Lock()
	q.stopping = true
	started := q.started
	q.wake.Broadcast()
	q.mu.Unlock()
	if !started {
		return nil
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		q.cancel()
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	q.abandon = true
	lost := q.waiting
	q.wake.Broadcast()
	q.mu.Unlock()
	q.cancel()
	<-done
	if lost > 0 {
		q.log.Error("in-process queue stopped with jobs still waiting; they are lost", "jobs", lost)
	}
	return ctx.Err()
}

func (q *MemoryQueue) depth(n int) {
	if q.h.Depth != nil {
		q.h.Depth(n)
	}
}

func (q *MemoryQueue) worker() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		for len(q.ready) == 0 && !q.abandon && !(q.stopping && q.waiting == 0) {
			q.wake.Wait()
		}
		if q.abandon || len(q.ready) == 0 {
			q.mu.Unlock()
			return
		}
		k := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		j := k.jobs[0]
		k.jobs = k.jobs[1:]
		k.running = true
		q.waiting--
		n := q.waiting
		q.mu.Unlock()
		q.depth(n)

		q.run(j)

		q.mu.Lock()
		k.running = false
		if len(k.jobs) > 0 {
			q.ready = append(q.ready, k)
		} else {
			delete(q.keys, k.key)
		}
		// Idle workers may be waiting for the last job to end (stopping).
		q.wake.Broadcast()
		q.mu.Unlock()
	}
}

// run runs j until it succeeds, is given up, or Stop gives up on it.
func (q *MemoryQueue) run(j Job) {
	for attempt := 1; ; attempt++ {
		j.Attempt = attempt
		err := runHandler(q.runCtx, q.h.Handle, j)
		if err == nil {
			return
		}
		log := q.log.With("job", j.ID, "key", j.Key, "attempt", attempt)
		if q.runCtx.Err() != nil {
			log.Warn("job interrupted by shutdown; it is lost (in-process queue)", "error", err)
			return
		}
		if attempt >= q.opt.MaxAttempts {
			log.Error("job failed too often; giving up", "error", err)
			runDead(q.runCtx, q.log, q.h, j)
			return
		}
		log.Warn("job failed; retrying", "error", err, "wait", q.opt.retryWait(attempt))
		if !sleepCtx(q.runCtx, q.opt.retryWait(attempt)) {
			return
		}
	}
}

// RedisQueue keeps jobs in Redis Streams, so they survive the replica that
// recorded them and the one running them.
//
// Ordering. A job goes to one of Shards streams by the hash of its key, and
// each shard is run by at most one worker in the whole deployment at a
// time: the worker holding the shard's lease, a Redis key set with SET NX PX
// and deleted only by its holder (compare-and-delete in Lua). The holder
// runs the shard's jobs one by one, oldest first, and takes the next only
// when the previous one is done (acknowledged) or given up (moved to the
// dead-letter stream). A new holder first moves every job a previous holder
// left pending into its own pending list (XAUTOCLAIM from 0-0); pending jobs
// are older than any not yet delivered. Then it always runs the oldest job
// of its pending list, reading a new one (XREADGROUP >, one at a time) only
// when that list is empty. So jobs with one key run in enqueue order,
// whichever replica recorded them and whichever runs them, across crashes
// too. The price: a slow job delays the other keys of its shard, and at
// most Shards jobs run at once.
//
// Visibility. The holder renews its lease every Visibility/3 while it works
// (Lua: PEXPIRE if the token is still ours, plus XCLAIM … JUSTID on the job
// so its idle time shows it is alive; JUSTID leaves the delivery count
// alone). A replica that dies stops renewing; after Visibility another
// replica's scan finds the shard with jobs and no lease, and takes it over.
// A holder that cannot renew for two thirds of Visibility, or learns its
// lease was lost, cancels its handler and stops: it never runs a job after
// its lease may have passed to someone else. (A handler already sending its
// reply when that happens can still finish it; replies carry an
// idempotency uuid, so Feishu shows one message.)
//
// Failures. Redis counts deliveries: XREADGROUP starts at 1, a take-over
// (XAUTOCLAIM) and a retry after a failure (XCLAIM without JUSTID) add one.
// A job delivered more than MaxAttempts times, including one that crashed
// its replica each time, is copied to the dead-letter stream, handed to
// Handlers.Dead and acknowledged. A job is acknowledged and deleted
// (XACK+XDEL, by the script that fetches the next job) only after its
// handler returns nil, so a shard's stream length is the number of jobs not
// yet done.
//
// Finding work. Enqueue wakes a local worker for the shard at once; every
// replica also scans all shards (XLEN, EXISTS lease, pipelined) about once
// a second, or every Visibility/4 if that is shorter, for shards with jobs
// and no holder: new jobs another replica had no free worker for, and jobs
// of crashed replicas.
type RedisQueue struct {
	rdb    redis.UniversalClient
	st     *RedisState
	prefix string
	opt    QueueOptions
	log    *slog.Logger

	hints chan int // shards worth a look; each at most once (hinted)

	mu          sync.Mutex
	hinted      []bool
	held        []bool // a worker of this process holds the shard's lease
	pruned      []time.Time
	h           Handlers
	started     bool
	scanFailing bool

	stopOnce sync.Once
	stopc    chan struct{}   // closed by Stop: read nothing new
	runCtx   context.Context // handlers' parent; cancelled when Stop gives up
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// NewRedisQueue returns a queue in st's Redis, under st's key prefix; Start
// it to run jobs.
func NewRedisQueue(st *RedisState, opt QueueOptions) *RedisQueue {
	opt = opt.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &RedisQueue{
		rdb: st.rdb, st: st, prefix: st.prefix, opt: opt,
		log:    opt.Log.With("component", "queue", "consumer", opt.Consumer),
		hints:  make(chan int, opt.Shards),
		hinted: make([]bool, opt.Shards), held: make([]bool, opt.Shards), pruned: make([]time.Time, opt.Shards),
		stopc: make(chan struct{}), runCtx: ctx, cancel: cancel,
	}
}

// Keys. A shard's stream and lease share a hash tag so the Lua scripts that
// touch both stay in one Cluster slot.
func (q *RedisQueue) streamKey(shard int) string {
	return q.prefix + "{queue:" + strconv.Itoa(shard) + "}"
}
func (q *RedisQueue) leaseKey(shard int) string { return q.streamKey(shard) + ":lease" }

// DeadKey is the dead-letter stream: jobs given up, with their payload,
// key, attempts and the last error.
func (q *RedisQueue) DeadKey() string { return q.prefix + "queue:dead" }

func (q *RedisQueue) shardOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(q.opt.Shards))
}

// Enqueue appends a job to its key's shard.
func (q *RedisQueue) Enqueue(ctx context.Context, key string, payload []byte) error {
	shard := q.shardOf(key)
	err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(shard), MaxLen: q.opt.MaxLen, Approx: true,
		Values: []any{"key", key, "payload", payload}}).Err()
	if err != nil {
		return fmt.Errorf("store: enqueue for %q: %w", key, err)
	}
	q.hint(shard)
	return nil
}

// Claim is a de-duplication key for EnqueueClaimed, as RedisState.Claim
// takes it.
type Claim struct {
	Key string
	TTL time.Duration
}

// enqueueClaimed sets every claim and adds the job in one step, or does
// nothing when a claim is taken. KEYS: stream, claims…; ARGV: maxlen, key,
// payload, TTL in ms per claim.
var enqueueClaimed = redis.NewScript(`
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], '1', 'PX', ARGV[i + 2])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'key', ARGV[2], 'payload', ARGV[3])
`)

// EnqueueClaimed claims the keys (as RedisState.Claim would) and enqueues
// the job; first is false, and nothing is enqueued, when a key was already
// claimed. On a single server or Sentinel both happen in one Lua script, so
// no crash can leave a claim without its job (which would make Feishu's
// redelivery look like a duplicate and lose the question). Cluster keeps
// claims in other slots, so there it claims first and releases the claims
// when the job cannot be added.
func (q *RedisQueue) EnqueueClaimed(ctx context.Context, claims []Claim, key string, payload []byte) (first bool, err error) {
	shard := q.shardOf(key)
	if _, cluster := q.rdb.(*redis.ClusterClient); cluster {
		return q.enqueueClaimedCluster(ctx, claims, key, payload)
	}
	keys := []string{q.streamKey(shard)}
	args := []any{q.opt.MaxLen, key, payload}
	for _, c := range claims {
		if c.TTL <= 0 {
			return false, fmt.Errorf("store: claim %q: ttl must be positive, got %v", c.Key, c.TTL)
		}
		keys = append(keys, q.st.claimKey(c.Key))
		args = append(args, c.TTL.Milliseconds())
	}
	err = enqueueClaimed.Run(ctx, q.rdb, keys, args...).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: enqueue for %q: %w", key, err)
	}
	q.hint(shard)
	return true, nil
}

func (q *RedisQueue) enqueueClaimedCluster(ctx context.Context, claims []Claim, key string, payload []byte) (bool, error) {
	var taken []string
	release := func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, k := range taken {
			if err := q.st.Release(rctx, k); err != nil {
				q.log.Warn("releasing a claim failed", "key", k, "error", err)
			}
		}
	}
	for _, c := range claims {
		ok, err := q.st.Claim(ctx, c.Key, c.TTL)
		if err != nil {
			release()
			return false, err
		}
		if !ok {
			return false, nil
		}
		taken = append(taken, c.Key)
	}
	if err := q.Enqueue(ctx, key, payload); err != nil {
		release()
		return false, err
	}
	return true, nil
}

// Start makes sure every shard has its consumer group, then runs Workers
// workers and the scanner.
func (q *RedisQueue) Start(ctx context.Context, h Handlers) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("store: redis queue started twice")
	}
	if err := q.ensureGroups(ctx); err != nil {
		return err
	}
	q.started, q.h = true, h
	q.wg.Add(q.opt.Workers + 1)
	for range q.opt.Workers {
		go q.worker()
	}
	go q.scanner()
	q.log.Info("queue started", "workers", q.opt.Workers, "shards", q.opt.Shards, "visibility", q.opt.Visibility, "max_attempts", q.opt.MaxAttempts)
	return nil
}

// ensureGroups creates each shard's stream and group. The group starts at 0,
// not $, so it also serves jobs added before it existed.
func (q *RedisQueue) ensureGroups(ctx context.Context) error {
	cmds := make([]*redis.StatusCmd, q.opt.Shards)
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.XGroupCreateMkStream(ctx, q.streamKey(i), queueGroup, "0")
		}
		return nil
	})
	for i, c := range cmds {
		if err := c.Err(); err != nil && !isBusyGroup(err) {
			return fmt.Errorf("store: create the consumer group of %s: %w", q.streamKey(i), err)
		}
	}
	return nil
}

func (q *RedisQueue) ensureGroup(ctx context.Context, shard int) {
	if err := q.rdb.XGroupCreateMkStream(ctx, q.streamKey(shard), queueGroup, "0").Err(); err != nil && !isBusyGroup(err) {
		q.log.Warn("recreating a consumer group failed", "shard", shard, "error", err)
	}
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }

// isNoGroup: the stream or its group is gone (Redis lost its data, or
// someone deleted the key); the group is created again.
func isNoGroup(err error) bool { return err != nil && strings.Contains(err.Error(), "NOGROUP") }

// Stop reads no new jobs and waits for the running ones until ctx ends;
// then it cancels their contexts and waits for them to return. Jobs not
// finished stay pending in Redis, and their shards' leases are released, so
// another replica takes them over at its next scan. Nothing is lost.
func (q *RedisQueue) Stop(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stopc) })
	q.mu.Lock()
	started := q.started
	q.mu.Unlock()
	if !started {
		return nil
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		q.cancel()
		return nil
	case <-ctx.Done():
		q.log.Warn("jobs still running at the shutdown deadline are cancelled; they stay pending for another replica")
		q.cancel()
		<-done
		return ctx.Err()
	}
}

func (q *RedisQueue) stopping() bool {
	select {
	case <-q.stopc:
		return true
	default:
		return false
	}
}

// hint queues shard for a local worker, unless it is queued or held here.
func (q *RedisQueue) hint(shard int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hinted[shard] || q.held[shard] {
		return
	}
	q.hinted[shard] = true
	q.hints <- shard // never blocks: the channel holds every shard once
}

func (q *RedisQueue) worker() {
	defer q.wg.Done()
	for {
		select {
		case <-q.stopc:
			return
		case shard := <-q.hints:
			q.mu.Lock()
			q.hinted[shard] = false
			if q.held[shard] || q.stopping() {
				q.mu.Unlock()
				continue
			}
			q.held[shard] = true
			q.mu.Unlock()
			recheck := q.serveShard(shard)
			q.mu.Lock()
			q.held[shard] = false
			q.mu.Unlock()
			if recheck {
				q.hint(shard)
			}
		}
	}
}

// scanner looks for shards with jobs and no holder.
func (q *RedisQueue) scanner() {
	defer q.wg.Done()
	every := min(time.Second, q.opt.Visibility/4)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		q.scan()
		select {
		case <-q.stopc:
			return
		case <-t.C:
		}
	}
}

func (q *RedisQueue) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lens := make([]*redis.IntCmd, q.opt.Shards)
	leases := make([]*redis.IntCmd, q.opt.Shards)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range lens {
			lens[i] = p.XLen(ctx, q.streamKey(i))
			leases[i] = p.Exists(ctx, q.leaseKey(i))
		}
		return nil
	})
	q.mu.Lock()
	was := q.scanFailing
	q.scanFailing = err != nil
	q.mu.Unlock()
	if err != nil {
		if !was {
			q.log.Warn("scanning the queue failed; retrying", "error", err)
		}
		return
	}
	if was {
		q.log.Info("scanning the queue works again")
	}
	depth := 0
	for i := range lens {
		n := int(lens[i].Val())
		depth += n
		if n > 0 && leases[i].Val() == 0 {
			q.hint(i)
		}
	}
	if q.h.Depth != nil {
		q.h.Depth(depth)
	}
}

// serveShard takes the shard's lease, if free, and runs its jobs until it
// is empty, the lease is lost or the queue stops.
//
// Redis round trips are most of this queue's cost under load (a shard
// usually holds one job), so each step is one script: acquire (lease and
// take-over), next (acknowledge the job just done and fetch the next one),
// release (lease, and how many jobs arrived meanwhile). A single job costs
// four round trips, plus one heartbeat per Visibility/3 while it runs.
func (q *RedisQueue) serveShard(shard int) (recheck bool) {
	log := q.log.With("shard", shard)
	token := randomHex(16)
	ok, vanished, err := q.acquire(shard, token)
	if err != nil {
		log.Warn("taking a shard's lease failed", "error", err)
		return
	}
	if !ok {
		return // another worker, here or elsewhere, runs it
	}
	if vanished > 0 {
		// Their askers get nothing, so say so loudly.
		log.Error("queued questions vanished from their stream before they were answered (stream trimmed?)", "jobs", vanished, "stream", q.streamKey(shard))
	}
	l := q.newLease(shard, token, log)
	q.prune(shard) // the heartbeat runs meanwhile
	emptied := q.drain(l)
	n, err := l.release()
	// A job added after our last read but before the release found the
	// lease taken; the worker looks again once it no longer holds the
	// shard (hint ignores held shards), so the job need not wait for the
	// next scan. After an error the scanner comes back to it, at its pace.
	return emptied && !q.stopping() && err == nil && n > 0
}

// acquireShard takes a shard's lease and moves every job earlier holders
// left pending into our own pending list (XAUTOCLAIM from 0-0, which
// counts a delivery for each: the crash or stop that left it counts as an
// attempt). It runs none: next runs our pending list oldest first. A lease
// already holding our token was taken by this very call, whose reply was
// lost and which the client ran again: its take-over is done, and doing it
// again would count every delivery twice. A missing group is created; on
// any other error the lease is given back. Each holder leaves at most a job
// or two pending per shard, so the loop is short. KEYS: lease, stream;
// ARGV: token, ttl ms, group, consumer. Returns 0 when the lease is not
// ours, else 1 plus the number of pending jobs found deleted from the
// stream (Redis 7 drops them from the pending list as it claims).
var acquireShard = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
  return 0
end
local start, vanished = '0-0', 0
repeat
  local r = redis.pcall('XAUTOCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, start, 'COUNT', 100)
  if r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[3], '0', 'MKSTREAM')
      return 1 + vanished
    end
    redis.call('DEL', KEYS[1])
    return r
  end
  start = r[1]
  if r[3] then vanished = vanished + #r[3] end
until start == '0-0'
return 1 + vanished
`)

// acquire runs acquireShard: taken, and how many pending jobs it found gone.
func (q *RedisQueue) acquire(shard int, token string) (taken bool, vanished int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := acquireShard.Run(ctx, q.rdb, []string{q.leaseKey(shard), q.streamKey(shard)},
		token, q.opt.Visibility.Milliseconds(), queueGroup, q.opt.Consumer).Int()
	if err != nil || n == 0 {
		return false, 0, err
	}
	return true, n - 1, nil
}

// nextJob acknowledges and deletes the job just done (ARGV[4], if any),
// then, if the lease is still ours, returns the oldest job of our pending
// list, or moves the next new one into it (XREADGROUP >, one at a time)
// and returns that. Never running what a read returned unless it is the
// oldest pending keeps the order when a reply is lost and the client runs
// the script again: the job read by the lost call is returned by the
// retry, since it is now the oldest pending one. KEYS: lease, stream;
// ARGV: token, group, consumer, done id. Returns 0 when the lease is not
// ours, 1 when the shard is empty, else {id, deliveries[, fields]} (no
// fields: the job vanished from the stream while pending).
var nextJob = redis.NewScript(`
if ARGV[4] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[4])
  redis.call('XDEL', KEYS[2], ARGV[4])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
-- pcall, returning the error itself: before Redis 7 an error raised by
-- call() reaches the client wrapped, and NOGROUP would not be recognised.
local p = redis.pcall('XPENDING', KEYS[2], ARGV[2], '-', '+', 1, ARGV[3])
if p.err then return p end
if #p == 0 then
  local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
  if type(r) == 'table' and r.err then return r end
  if not r then return 1 end
  local m = r[1][2][1]
  return {m[1], 1, m[2]}
end
local m = redis.call('XRANGE', KEYS[2], p[1][1], p[1][1])
if #m == 0 then return {p[1][1], p[1][4]} end
return {p[1][1], p[1][4], m[1][2]}
`)

// next is one call of nextJob. done is the job to acknowledge first.
func (q *RedisQueue) next(l *lease, done string) (job Job, state int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := nextJob.Run(ctx, q.rdb, []string{q.leaseKey(l.shard), q.streamKey(l.shard)},
		l.token, queueGroup, q.opt.Consumer, done).Result()
	if err != nil {
		return Job{}, 0, err
	}
	switch v := v.(type) {
	case int64:
		if v == 0 {
			return Job{}, nextLost, nil
		}
		return Job{}, nextEmpty, nil
	case []any:
		return parseNext(v)
	}
	return Job{}, 0, fmt.Errorf("store: unexpected reply from the queue script: %T", v)
}

const (
	nextJobReady = iota + 1
	nextVanished
	nextEmpty
	nextLost
)

func parseNext(v []any) (Job, int, error) {
	if len(v) < 2 {
		return Job{}, 0, fmt.Errorf("store: unexpected reply from the queue script: %v", v)
	}
	id, _ := v[0].(string)
	n, _ := v[1].(int64)
	j := Job{ID: id, Attempt: int(n)}
	if len(v) < 3 {
		return j, nextVanished, nil
	}
	fields, _ := v[2].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		switch name {
		case "key":
			j.Key = val
		case "payload":
			j.Payload = []byte(val)
		}
	}
	return j, nextJobReady, nil
}

// drain runs the shard's jobs one by one, oldest first; true when it found
// the shard empty, false when it stopped early. A finished job is
// acknowledged by the call that fetches the next one.
func (q *RedisQueue) drain(l *lease) bool {
	stream := q.streamKey(l.shard)
	done := "" // finished, not yet acknowledged
	for {
		if q.stopping() || l.ctx.Err() != nil {
			if done != "" {
				q.ack(l, done)
			}
			return false
		}
		j, state, err := q.next(l, done)
		switch {
		case isNoGroup(err):
			q.ensureGroup(l.ctx, l.shard)
			done = "" // nothing to acknowledge in a group that was gone
			continue
		case err != nil && done != "":
			// A job done but not acknowledged would run again: acknowledge
			// it on its own, with retries, then read on.
			l.log.Warn("acknowledging a job with the next read failed", "job", done, "error", err)
			if !q.ack(l, done) {
				return false
			}
			done = ""
			continue
		case err != nil:
			l.log.Warn("reading jobs failed", "error", err)
			return false
		}
		done = ""
		switch state {
		case nextEmpty:
			return true
		case nextLost:
			l.markLost("taken by another worker after it expired", nil)
			return false
		case nextVanished:
			// Gone while pending: trimmed by MAXLEN (a flood or a long
			// outage filled the shard) or deleted by hand. Its asker gets
			// nothing, so say so loudly.
			l.log.Error("a queued question vanished from its stream before it was answered (stream trimmed?)", "job_id", j.ID, "stream", stream)
			done = j.ID
		default:
			if !q.process(l, j) {
				return false
			}
			done = j.ID
		}
	}
}

// prune drops other consumers with nothing pending from the shard's group,
// at most every ten minutes: each process start adds a consumer name. It is
// safe while we hold the lease: nobody else reads the shard, and a consumer
// is created again when it next reads.
func (q *RedisQueue) prune(shard int) {
	q.mu.Lock()
	due := time.Since(q.pruned[shard]) > 10*time.Minute
	if due {
		q.pruned[shard] = time.Now()
	}
	q.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream := q.streamKey(shard)
	cs, err := q.rdb.XInfoConsumers(ctx, stream, queueGroup).Result()
	if err != nil {
		return
	}
	for _, c := range cs {
		if c.Name != q.opt.Consumer && c.Pending == 0 {
			_ = q.rdb.XGroupDelConsumer(ctx, stream, queueGroup, c.Name).Err()
		}
	}
}

// process runs one delivered job to its end: true when it is done or given
// up (the caller acknowledges it), false when it stays pending and the
// worker must stop serving the shard.
func (q *RedisQueue) process(l *lease, j Job) bool {
	log := l.log.With("job", j.ID, "key", j.Key)
	for {
		if j.Attempt > q.opt.MaxAttempts {
			return q.bury(l, j, fmt.Sprintf("delivered %d times without finishing (its replica crashed or stopped)", j.Attempt-1))
		}
		if j.Attempt > 1 {
			log.Warn("running a job again", "attempt", j.Attempt)
		}
		l.working(j.ID)
		err := runHandler(l.ctx, q.h.Handle, j)
		l.working("")
		if err == nil {
			return true
		}
		if l.ctx.Err() != nil {
			log.Warn("job interrupted; it stays pending for the next holder", "attempt", j.Attempt, "error", err)
			return false
		}
		if j.Attempt >= q.opt.MaxAttempts {
			return q.bury(l, j, err.Error())
		}
		wait := q.opt.retryWait(j.Attempt)
		log.Warn("job failed; retrying", "attempt", j.Attempt, "wait", wait, "error", err)
		if !q.pause(l, wait) {
			return false // stopping: another replica retries it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := retryJob.Run(ctx, q.rdb, []string{q.leaseKey(l.shard), q.streamKey(l.shard)},
			l.token, queueGroup, q.opt.Consumer, j.ID).Int()
		cancel()
		switch {
		case err != nil:
			log.Warn("counting a retry failed; leaving the job pending", "error", err)
			return false
		case n < 0:
			l.markLost("taken by another worker after it expired", nil)
			return false
		case n == 0:
			return true // no longer pending: nothing left to do
		}
		j.Attempt++
	}
}

// pause waits d; false when the lease ends or the queue stops first.
func (q *RedisQueue) pause(l *lease, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
	case <-q.stopc:
	}
	return false
}

// ack marks a job done and deletes it, retrying while the lease lasts: a
// job done but not acknowledged would run again. An error that persists
// while the heartbeat works is not a blip, so it gives up after
// maxAckTries; the job then runs again under the next holder (replies
// carry an idempotency key).
func (q *RedisQueue) ack(l *lease, id string) bool {
	stream := q.streamKey(l.shard)
	wait := 50 * time.Millisecond
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XAck(ctx, stream, queueGroup, id)
			p.XDel(ctx, stream, id)
			return nil
		})
		cancel()
		if err == nil {
			return true
		}
		if try >= maxAckTries {
			l.log.Error("acknowledging a job keeps failing; leaving it pending to run again", "job", id, "error", err)
			return false
		}
		l.log.Warn("acknowledging a job failed; retrying", "job", id, "error", err)
		if !sleepCtx(l.ctx, wait) {
			return false
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// bury moves a job to the dead-letter stream and tells Handlers.Dead; true
// means the caller may acknowledge it. The copy comes first, so a crash
// before the acknowledgement leaves the job pending rather than lost; it is
// then buried again.
func (q *RedisQueue) bury(l *lease, j Job, reason string) bool {
	l.log.Error("job given up; moving it to the dead-letter stream", "job", j.ID, "key", j.Key, "attempts", j.Attempt, "reason", firstLine(reason))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.DeadKey(), MaxLen: deadStreamLen, Approx: true, Values: []any{
		"key", j.Key, "payload", j.Payload, "job", j.ID, "shard", l.shard, "attempts", j.Attempt,
		"reason", reason, "at", time.Now().UTC().Format(time.RFC3339)}}).Err()
	cancel()
	if err != nil {
		l.log.Warn("writing to the dead-letter stream failed; the job stays pending", "job", j.ID, "error", err)
		return false
	}
	runDead(l.ctx, l.log, q.h, j)
	return true
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// lease is a held shard: its context ends when the lease is lost or the
// queue gives up on running jobs.
type lease struct {
	q     *RedisQueue
	shard int
	token string
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	current string // the job running, renewed with the lease
	isLost  bool
}

// renewLease extends the lease if it is still ours, and marks the running
// job as alive. KEYS: lease, stream; ARGV: token, ttl ms, job id or "",
// group, consumer.
var renewLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('XCLAIM', KEYS[2], ARGV[4], ARGV[5], 0, ARGV[3], 'JUSTID')
end
return 1
`)

// retryJob counts another delivery of a job about to run again (XCLAIM
// without JUSTID), so a job that also crashes replicas is still given up
// after MaxAttempts; only while the lease is ours, since a claim by a
// holder that lost its lease would pull the job away from the new holder.
// KEYS: lease, stream; ARGV: token, group, consumer, id. Returns -1 when
// the lease is not ours, else how many jobs were claimed (0: no longer
// pending).
var retryJob = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return #redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4])
`)

// releaseLease deletes the lease if it is still ours and returns how many
// jobs the shard holds. KEYS: lease, stream; ARGV: token.
var releaseLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('XLEN', KEYS[2])
`)

func (q *RedisQueue) newLease(shard int, token string, log *slog.Logger) *lease {
	ctx, cancel := context.WithCancel(q.runCtx)
	l := &lease{q: q, shard: shard, token: token, log: log, ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.heartbeat()
	return l
}

func (l *lease) working(id string) {
	l.mu.Lock()
	l.current = id
	l.mu.Unlock()
}

func (l *lease) lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isLost
}

func (l *lease) markLost(why string, err error) {
	l.mu.Lock()
	l.isLost = true
	l.mu.Unlock()
	l.log.Warn("shard lease lost; stopping its jobs", "why", why, "error", err)
	l.cancel()
}

func (l *lease) heartbeat() {
	defer close(l.done)
	vis := l.q.opt.Visibility
	t := time.NewTicker(vis / 3)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		current := l.current
		l.mu.Unlock()
		sent := time.Now() // Redis extends from a later instant, so our deadline is early
		ctx, cancel := context.WithTimeout(context.Background(), vis/3)
		n, err := renewLease.Run(ctx, l.q.rdb, []string{l.q.leaseKey(l.shard), l.q.streamKey(l.shard)},
			l.token, vis.Milliseconds(), current, queueGroup, l.q.opt.Consumer).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			lastOK = sent
		case err == nil:
			l.markLost("taken by another worker after it expired", nil)
			return
		case time.Since(lastOK) > vis*2/3:
			l.markLost("not renewed for two thirds of the visibility timeout", err)
			return
		default:
			l.log.Warn("renewing the shard lease failed; retrying", "error", err)
		}
	}
}

// release stops the heartbeat and deletes the lease if it is still ours;
// it returns how many jobs the shard holds then (0 when the lease was lost).
func (l *lease) release() (int64, error) {
	close(l.stop)
	<-l.done
	defer l.cancel()
	if l.lost() {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := releaseLease.Run(ctx, l.q.rdb, []string{l.q.leaseKey(l.shard), l.q.streamKey(l.shard)}, l.token).Int64()
	if err != nil {
		l.log.Warn("releasing the shard lease failed; it expires by itself", "error", err)
	}
	return n, err
}
