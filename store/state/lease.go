package state

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a named lock held by one holder at a time (one replica, with
// Redis), for work only one may do at once, such as a knowledge sync. It
// lasts TTL unless renewed: the holder renews it every TTL/3 while it
// works, and a holder that dies loses it after TTL. Done is closed when
// the lease is lost (it could not be renewed in time): the holder must
// stop. Release gives it up; releasing twice does nothing.
type Lease struct {
	done    chan struct{}
	release func()
	once    sync.Once
}

// Done is closed when the lease is lost or released.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Release gives the lease up.
func (l *Lease) Release() { l.once.Do(l.release) }

// renewLeaseScript extends the lease only while it is ours; releaseLease
// deletes it only then. KEYS: lease; ARGV: token[, ttl ms].
var (
	renewLeaseScript   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
	releaseLeaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// TryLease takes the lease name for ttl (at least 3 s) if nobody holds it;
// nil, nil when someone does.
func (r *Redis) TryLease(ctx context.Context, name string, ttl time.Duration) (*Lease, error) {
	ttl = max(ttl, 3*time.Second)
	key := r.prefix + "lease:" + name
	token := rand.Text()
	ok, err := r.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("state: lease %q: %w", name, err)
	}
	if !ok {
		// go-redis runs a command again when its reply was lost: the key
		// may hold our own token.
		if got, err := r.rdb.Get(ctx, key).Result(); err != nil || got != token {
			return nil, nil
		}
	}
	stop := make(chan struct{})
	l := &Lease{done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(l.done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		lastOK := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			sent := time.Now()
			rctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			n, err := renewLeaseScript.Run(rctx, r.rdb, []string{key}, token, ttl.Milliseconds()).Int()
			cancel()
			switch {
			case err == nil && n == 1:
				lastOK = sent
			case err == nil, time.Since(lastOK) > ttl*2/3:
				return // taken over, or not renewed in time: lost
			}
		}
	})
	l.release = func() {
		close(stop)
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = releaseLeaseScript.Run(rctx, r.rdb, []string{key}, token).Err()
	}
	return l, nil
}

// TryLease takes the lease name if nobody in this process holds it; a
// Memory lease is never lost, and ttl does not apply (one replica only).
func (m *Memory) TryLease(ctx context.Context, name string, ttl time.Duration) (*Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leases == nil {
		m.leases = map[string]bool{}
	}
	if m.leases[name] {
		return nil, nil
	}
	m.leases[name] = true
	l := &Lease{done: make(chan struct{})}
	l.release = func() {
		m.mu.Lock()
		delete(m.leases, name)
		m.mu.Unlock()
		close(l.done)
	}
	return l, nil
}
