package queue

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// lease is a held shard: its context ends when the lease is lost or the
// queue gives up on running jobs.
type lease struct {
	q     *Redis
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

func (q *Redis) newLease(shard int, token string, log *slog.Logger) *lease {
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
