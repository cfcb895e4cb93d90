package bot

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
)

// job is one piece of asynchronous work; log carries its event, message and
// chat ids.
type job struct {
	log *slog.Logger
	run func(ctx context.Context)
}

// pool is a fixed set of goroutines draining a bounded queue. submit never
// blocks: a full queue is the caller's to handle, so the webhook stays fast.
// Answers go through the work queue (queue.go); this is the notice lane, for
// busy cards when the in-process work queue is full.
type pool struct {
	log    *slog.Logger
	jobs   chan job
	wg     sync.WaitGroup
	ctx    context.Context // cancelled when a drain runs out of time
	cancel context.CancelFunc

	mu     sync.RWMutex
	closed bool
}

func newPool(workers, queue int, log *slog.Logger) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{log: log, jobs: make(chan job, queue), ctx: ctx, cancel: cancel}
	p.wg.Add(workers)
	for range workers {
		go p.worker()
	}
	return p
}

// submit queues j; false means the queue is full, the pool is closing, or
// it was never started (a nil pool).
func (p *pool) submit(j job) bool {
	if p == nil {
		return false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	select {
	case p.jobs <- j:
		return true
	default:
		return false
	}
}

// close stops intake and waits for queued jobs until ctx is done; then it
// cancels the running jobs' context and waits for them to return.
func (p *pool) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.jobs)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		p.cancel()
		return nil
	case <-ctx.Done():
		p.cancel()
		<-done
		return ctx.Err()
	}
}

func (p *pool) worker() {
	defer p.wg.Done()
	for j := range p.jobs {
		p.runOne(j)
	}
}

// runOne runs a job, surviving its panic: one bad answer must not take the
// process down.
func (p *pool) runOne(j job) {
	defer func() {
		if v := recover(); v != nil {
			log := j.log
			if log == nil {
				log = p.log
			}
			log.Error("panic in worker", "panic", v, "stack", stack())
		}
	}()
	j.run(p.ctx)
}

func stack() string { return string(debug.Stack()) }
