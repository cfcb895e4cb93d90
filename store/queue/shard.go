package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"kbbot/store/retry"

	"github.com/redis/go-redis/v9"
)

// serveShard takes the shard's lease, if free, and runs its jobs until it
// is empty, the lease is lost or the queue stops.
//
// Redis round trips are most of this queue's cost under load (a shard
// usually holds one job), so each step is one script: acquire (lease and
// take-over), next (acknowledge the job just done and fetch the next one),
// release (lease, and how many jobs arrived meanwhile). A single job costs
// four round trips, plus one heartbeat per Visibility/3 while it runs.
func (q *Redis) serveShard(shard int) (recheck bool) {
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

// acquire runs acquireShard: taken, and how many pending jobs it found gone.
func (q *Redis) acquire(shard int, token string) (taken bool, vanished int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := acquireShard.Run(ctx, q.rdb, []string{q.leaseKey(shard), q.streamKey(shard)},
		token, q.opt.Visibility.Milliseconds(), queueGroup, q.opt.Consumer).Int()
	if err != nil || n == 0 {
		return false, 0, err
	}
	return true, n - 1, nil
}

// next is one call of nextJob. done is the job to acknowledge first.
func (q *Redis) next(l *lease, done string) (job Job, state int, err error) {
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
	return Job{}, 0, fmt.Errorf("queue: unexpected reply from the queue script: %T", v)
}

const (
	nextJobReady = iota + 1
	nextVanished
	nextEmpty
	nextLost
)

func parseNext(v []any) (Job, int, error) {
	if len(v) < 2 {
		return Job{}, 0, fmt.Errorf("queue: unexpected reply from the queue script: %v", v)
	}
	id, _ := v[0].(string)
	n, _ := v[1].(int64)
	j := Job{ID: id, Attempt: int(n), Enqueued: entryTime(id)}
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
func (q *Redis) drain(l *lease) bool {
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
			// Gone while pending: deleted by hand (nothing trims the
			// streams). Its asker gets nothing, so say so loudly.
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
func (q *Redis) prune(shard int) {
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
func (q *Redis) process(l *lease, j Job) bool {
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
func (q *Redis) pause(l *lease, d time.Duration) bool {
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
func (q *Redis) ack(l *lease, id string) bool {
	stream := q.streamKey(l.shard)
	p := retry.Policy{Attempts: maxAckTries, Base: 50 * time.Millisecond, Max: 2 * time.Second,
		OnRetry: func(_ int, _ time.Duration, err error) {
			l.log.Warn("acknowledging a job failed; retrying", "job", id, "error", err)
		}}
	// Each try gets a timeout of its own, not the lease's context: a lease
	// lost mid-try ends the waits between tries, not a try in flight.
	err := p.Do(l.ctx, func(context.Context, int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XAck(ctx, stream, queueGroup, id)
			p.XDel(ctx, stream, id)
			return nil
		})
		return err
	})
	if err != nil && l.ctx.Err() == nil {
		l.log.Error("acknowledging a job keeps failing; leaving it pending to run again", "job", id, "error", err)
	}
	return err == nil
}

// bury moves a job to the dead-letter stream and tells Handlers.Dead; true
// means the caller may acknowledge it. The copy comes first, so a crash
// before the acknowledgement leaves the job pending rather than lost; it is
// then buried again.
func (q *Redis) bury(l *lease, j Job, reason string) bool {
	l.log.Error("job given up; moving it to the dead-letter stream", "job", j.ID, "key", j.Key, "attempts", j.Attempt, "reason", firstLine(reason))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	// Entries older than the retention go as this one comes (a stream id
	// is its time; "~" trims whole nodes, O(1) amortised), and the length
	// stays capped.
	now := time.Now()
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: q.DeadKey(), MinID: strconv.FormatInt(now.Add(-q.opt.Retention).UnixMilli(), 10), Approx: true, Values: []any{
			"key", j.Key, "payload", j.Payload, "job", j.ID, "shard", l.shard, "attempts", j.Attempt,
			"reason", reason, "at", now.UTC().Format(time.RFC3339)}})
		p.XTrimMaxLenApprox(ctx, q.DeadKey(), deadStreamLen, 0)
		return nil
	})
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

// entryTime is the time in a stream entry id ("<ms>-<seq>", XADD's "*"):
// when Redis recorded it.
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
