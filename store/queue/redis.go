package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"kbbot/store"
)

// Redis keeps jobs in Redis Streams, so they survive the replica that
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
type Redis struct {
	rdb     redis.UniversalClient
	prefix  string
	cluster bool
	claims  RedisClaimer
	opt     Options
	log     *slog.Logger

	hints chan int // shards worth a look; each at most once (hinted)
	// pending is the deployment's jobs not yet done: the last scan's
	// count plus what this replica recorded since.
	pending atomic.Int64

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

// RedisClaimer keeps claims in the same Redis as the queue (state.Redis):
// EnqueueClaimed sets them in the script that records the job, at ClaimKey.
type RedisClaimer interface {
	Claimer
	ClaimKey(key string) string
}

// NewRedis returns a queue in r's Redis, under r's key prefix, whose
// EnqueueClaimed keeps its claims where claims does; Start it to run jobs.
func NewRedis(r *store.Redis, claims RedisClaimer, opt Options) *Redis {
	opt = opt.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Redis{
		rdb: r.Client, prefix: r.Prefix, cluster: r.Cluster, claims: claims, opt: opt,
		log:    opt.Log.With("component", "queue", "consumer", opt.Consumer),
		hints:  make(chan int, opt.Shards),
		hinted: make([]bool, opt.Shards), held: make([]bool, opt.Shards), pruned: make([]time.Time, opt.Shards),
		stopc: make(chan struct{}), runCtx: ctx, cancel: cancel,
	}
}

// Keys. A shard's stream and lease share a hash tag so the Lua scripts that
// touch both stay in one Cluster slot.
func (q *Redis) streamKey(shard int) string {
	return q.prefix + "{queue:" + strconv.Itoa(shard) + "}"
}
func (q *Redis) leaseKey(shard int) string { return q.streamKey(shard) + ":lease" }

// DeadKey is the dead-letter stream: jobs given up, with their payload,
// key, attempts and the last error.
func (q *Redis) DeadKey() string { return q.prefix + "queue:dead" }

func (q *Redis) shardOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(q.opt.Shards))
}

// Enqueue appends a job to its key's shard; ErrQueueFull when MaxPending
// jobs are not yet done.
func (q *Redis) Enqueue(ctx context.Context, key string, payload []byte) error {
	if q.full() {
		return ErrQueueFull
	}
	shard := q.shardOf(key)
	err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(shard), Values: []any{"key", key, "payload", payload}}).Err()
	if err != nil {
		return fmt.Errorf("queue: enqueue for %q: %w", key, err)
	}
	q.pending.Add(1)
	q.hint(shard)
	return nil
}

func (q *Redis) full() bool { return q.pending.Load() >= int64(q.opt.MaxPending) }

// EnqueueClaimed takes the claims and records the job; first is false, and
// nothing is recorded, when a claim was taken already. With MaxPending
// jobs not yet done it records nothing and takes no claim, and returns
// ErrQueueFull with first true (false for a duplicate, as always): the
// caller tells the asker with a busy card, which Feishu sends once per
// message by its uuid, or asks Feishu to redeliver. Keeping the claims
// would need a release when the busy card cannot be queued either, and
// under the load that fills the queue that release fails: the claim then
// outlived it, every redelivery was a duplicate, and the question was lost
// without a card (a few hundred per 10 s at 5,000 events/s). On a single server
// or Sentinel both happen in one Lua script, so no crash can leave a claim
// without its job (which would make Feishu's redelivery look like a
// duplicate and lose the question). Cluster keeps claims in other slots, so
// there it claims first and releases the claims when the job cannot be
// added.
func (q *Redis) EnqueueClaimed(ctx context.Context, claims []Claim, key string, payload []byte) (first bool, err error) {
	if q.cluster {
		return q.enqueueClaimedCluster(ctx, claims, key, payload)
	}
	shard := q.shardOf(key)
	keys := []string{q.streamKey(shard)}
	mode, full := "add", q.full()
	if full {
		mode = "full"
	}
	args := []any{mode, key, payload}
	for _, c := range claims {
		if c.TTL <= 0 {
			return false, fmt.Errorf("queue: claim %q: ttl must be positive, got %v", c.Key, c.TTL)
		}
		keys = append(keys, q.claims.ClaimKey(c.Key))
		args = append(args, c.TTL.Milliseconds())
	}
	err = enqueueClaimed.Run(ctx, q.rdb, keys, args...).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("queue: enqueue for %q: %w", key, err)
	case full:
		return true, ErrQueueFull
	}
	q.pending.Add(1)
	q.hint(shard)
	return true, nil
}

func (q *Redis) enqueueClaimedCluster(ctx context.Context, claims []Claim, key string, payload []byte) (bool, error) {
	if q.full() {
		// Over the cap Cluster cannot check the claims and add nothing in
		// one step; a duplicate of an answered event may get a busy card.
		return true, ErrQueueFull
	}
	return claimThenEnqueue(ctx, q.claims, q.log, claims, func() error { return q.Enqueue(ctx, key, payload) })
}

// Start makes sure every shard has its consumer group, then runs Workers
// workers and the scanner.
func (q *Redis) Start(ctx context.Context, h Handlers) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("queue: redis queue started twice")
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
func (q *Redis) ensureGroups(ctx context.Context) error {
	cmds := make([]*redis.StatusCmd, q.opt.Shards)
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.XGroupCreateMkStream(ctx, q.streamKey(i), queueGroup, "0")
		}
		return nil
	})
	for i, c := range cmds {
		if err := c.Err(); err != nil && !isBusyGroup(err) {
			return fmt.Errorf("queue: create the consumer group of %s: %w", q.streamKey(i), err)
		}
	}
	return nil
}

func (q *Redis) ensureGroup(ctx context.Context, shard int) {
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
func (q *Redis) Stop(ctx context.Context) error {
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

func (q *Redis) stopping() bool {
	select {
	case <-q.stopc:
		return true
	default:
		return false
	}
}

// hint queues shard for a local worker, unless it is queued or held here.
func (q *Redis) hint(shard int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hinted[shard] || q.held[shard] {
		return
	}
	q.hinted[shard] = true
	q.hints <- shard // never blocks: the channel holds every shard once
}

func (q *Redis) worker() {
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
func (q *Redis) scanner() {
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

func (q *Redis) scan() {
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
	var busy []int
	for i := range lens {
		n := int(lens[i].Val())
		depth += n
		if n > 0 {
			busy = append(busy, i)
			if leases[i].Val() == 0 {
				q.hint(i)
			}
		}
	}
	q.pending.Store(int64(depth))
	if q.h.Depth != nil {
		q.h.Depth(depth, q.oldest(ctx, busy))
	}
}

// oldest is how long the oldest job of the busy shards has waited: each
// stream's first entry is its oldest, and its id holds the time Redis
// recorded it. One pipelined round trip, only for shards with jobs.
func (q *Redis) oldest(ctx context.Context, busy []int) time.Duration {
	if len(busy) == 0 {
		return 0
	}
	firsts := make([]*redis.XMessageSliceCmd, len(busy))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, shard := range busy {
			firsts[i] = p.XRangeN(ctx, q.streamKey(shard), "-", "+", 1)
		}
		return nil
	})
	if err != nil {
		return 0
	}
	var first time.Time
	for _, c := range firsts {
		if ms := c.Val(); len(ms) > 0 {
			if t := entryTime(ms[0].ID); !t.IsZero() && (first.IsZero() || t.Before(first)) {
				first = t
			}
		}
	}
	if first.IsZero() {
		return 0
	}
	return max(time.Since(first), 0)
}
