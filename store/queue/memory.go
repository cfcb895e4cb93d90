package queue

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Memory is the in-process queue: bounded, not durable (a crash loses
// every waiting job) and for a single replica. Keys waiting for a worker are
// served first come, first served, one job of a key at a time.
type Memory struct {
	// Now is the clock of Job.Enqueued; tests replace it.
	Now func() time.Time

	opt    Options
	log    *slog.Logger
	claims Claimer

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

// NewMemory returns an in-process queue; Start it to run jobs. claims keeps
// the claims of EnqueueClaimed; nil when no job is recorded with claims.
func NewMemory(claims Claimer, opt Options) *Memory {
	opt = opt.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	q := &Memory{opt: opt, log: opt.Log, claims: claims, keys: map[string]*memKey{}, runCtx: ctx, cancel: cancel}
	q.wake = sync.NewCond(&q.mu)
	return q
}

// Enqueue records a job for key. It fails with ErrQueueFull when Capacity
// jobs wait, and with ErrQueueStopped after Stop.
func (q *Memory) Enqueue(ctx context.Context, key string, payload []byte) error {
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
	k.jobs = append(k.jobs, Job{ID: strconv.FormatUint(q.seq, 10), Key: key, Payload: bytes.Clone(payload), Enqueued: q.now()})
	q.waiting++
	if !k.running && len(k.jobs) == 1 {
		q.ready = append(q.ready, k)
		q.wake.Signal()
	}
	n, oldest := q.waiting, q.oldestLocked()
	q.mu.Unlock()
	q.depth(n, oldest)
	return nil
}

// EnqueueClaimed takes the claims and records the job; first is false, and
// nothing is recorded, when a claim was taken already. On ErrQueueFull
// (first true) no claim is kept, as with Redis.EnqueueClaimed.
func (q *Memory) EnqueueClaimed(ctx context.Context, claims []Claim, key string, payload []byte) (first bool, err error) {
	if len(claims) > 0 && q.claims == nil {
		return false, errors.New("queue: a job with claims, but the memory queue has no Claimer")
	}
	return claimThenEnqueue(ctx, q.claims, q.log, claims, func() error { return q.Enqueue(ctx, key, payload) })
}

// Start runs Workers goroutines calling h.
func (q *Memory) Start(ctx context.Context, h Handlers) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("queue: memory queue started twice")
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
func (q *Memory) Stop(ctx context.Context) error {
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

// oldestLocked is how long the first job ready to run has waited: keys are
// served first come, first served, so it is about the oldest waiting.
func (q *Memory) oldestLocked() time.Duration {
	if len(q.ready) == 0 || len(q.ready[0].jobs) == 0 {
		return 0
	}
	return q.now().Sub(q.ready[0].jobs[0].Enqueued)
}

func (q *Memory) depth(n int, oldest time.Duration) {
	if q.h.Depth != nil {
		q.h.Depth(n, oldest)
	}
}

func (q *Memory) worker() {
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
		n, oldest := q.waiting, q.oldestLocked()
		q.mu.Unlock()
		q.depth(n, oldest)

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
func (q *Memory) run(j Job) {
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

func (q *Memory) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}
