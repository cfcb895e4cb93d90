package state

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"kbbot/store"
)

// Redis keeps conversation turns, claims, feedback and seen chats in
// Redis, so several bot replicas share them and they survive restarts (as far
// as the server's persistence does). It works against a single server,
// Sentinel or Cluster, and needs nothing newer than Redis 6.2.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	// Retention is how long a feedback record is kept; zero means
	// store.DefaultRetention.
	Retention time.Duration

	legacy sync.Once // see expireLegacyFeedback
}

// NewRedis keeps state in r's Redis, under r's key prefix.
func NewRedis(r *store.Redis) *Redis {
	return &Redis{rdb: r.Client, prefix: r.Prefix}
}

// Keys. Everything about one conversation carries the conversation as its
// hash tag, and the feedback keys share one tag, so the multi-key
// transactions below stay in one Cluster slot.
func (r *Redis) turnsKey(conv string) string { return r.prefix + "{" + conv + "}:turns" }

// ClaimKey is the Redis key a claim on key is kept at. The Redis queue
// sets claims in the same script that records a job, so it must write them
// where Claim looks.
func (r *Redis) ClaimKey(key string) string { return r.prefix + "claim:" + key }
func (r *Redis) chatsKey() string           { return r.prefix + "chats" }
func (r *Redis) feedbackKey(part string) string {
	return r.prefix + "{feedback}:" + part
}

// AppendTurn appends turn to conv, keeps only the last maxTurns, and resets
// the TTL so an active chat never loses its history. A ttl of zero or less
// keeps the history until ResetTurns.
func (r *Redis) AppendTurn(ctx context.Context, conv string, turn []byte, maxTurns int, ttl time.Duration) error {
	if maxTurns < 1 {
		return fmt.Errorf("store: append turn to %q: maxTurns must be at least 1, got %d", conv, maxTurns)
	}
	key := r.turnsKey(conv)
	// MULTI so a reader never sees the list over its cap or without a TTL.
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, turn)
		p.LTrim(ctx, key, int64(-maxTurns), -1)
		if ttl > 0 {
			p.PExpire(ctx, key, ttl)
		} else {
			p.Persist(ctx, key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: append turn to %q: %w", conv, err)
	}
	return nil
}

// Turns returns conv's turns, oldest first, or an empty slice.
func (r *Redis) Turns(ctx context.Context, conv string) ([][]byte, error) {
	items, err := r.rdb.LRange(ctx, r.turnsKey(conv), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: turns of %q: %w", conv, err)
	}
	out := make([][]byte, len(items))
	for i, s := range items {
		out[i] = []byte(s)
	}
	return out, nil
}

// ResetTurns forgets conv's history.
func (r *Redis) ResetTurns(ctx context.Context, conv string) error {
	if err := r.rdb.Del(ctx, r.turnsKey(conv)).Err(); err != nil {
		return fmt.Errorf("store: reset turns of %q: %w", conv, err)
	}
	return nil
}

// Claim reports true for exactly one caller, across all replicas, per key
// within ttl. The ttl must be positive: a claim that never expires would leak
// a key per event.
func (r *Redis) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("store: claim %q: ttl must be positive, got %v", key, ttl)
	}
	// The value is ours alone: go-redis retries a command whose reply was
	// lost (EOF, timeout) even when the first try ran, and that retry finds
	// the key already set. Reading our own token back tells "we took it"
	// from "someone else did", so a lost reply can't turn a new message
	// into a "duplicate" that is never answered.
	token := rand.Text()
	k := r.ClaimKey(key)
	ok, err := r.rdb.SetNX(ctx, k, token, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("store: claim %q: %w", key, err)
	}
	if ok {
		return true, nil
	}
	got, err := r.rdb.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil // taken and already expired or released: still not ours
	}
	if err != nil {
		return false, fmt.Errorf("store: claim %q: %w", key, err)
	}
	return got == token, nil
}

// Release drops a claim so a redelivery of the same key can be processed.
func (r *Redis) Release(ctx context.Context, key string) error {
	if err := r.rdb.Del(ctx, r.ClaimKey(key)).Err(); err != nil {
		return fmt.Errorf("store: release %q: %w", key, err)
	}
	return nil
}

// AddFeedback records a vote and returns the running totals. Records are
// kept in a stream, oldest first, each under an id that is its time: the
// write that adds one also drops those older than the retention (XADD
// MINID, O(1) amortised, as each record goes once) and any beyond
// FeedbackCap. Read them with XRANGE.
func (r *Redis) AddFeedback(ctx context.Context, vote string, record []byte) (up, down int64, err error) {
	if err := checkVote(vote); err != nil {
		return 0, 0, err
	}
	r.legacy.Do(func() { r.expireLegacyFeedback(ctx) })
	other := VoteDown
	if vote == VoteDown {
		other = VoteUp
	}
	records := r.feedbackKey("log")
	minID := strconv.FormatInt(time.Now().Add(-retention(r.Retention)).UnixMilli(), 10)
	var voted, unvoted *redis.IntCmd
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		// Exact trims: votes are rare, and a record past its retention
		// must go, not wait for its neighbours.
		p.XAdd(ctx, &redis.XAddArgs{Stream: records, MinID: minID, Values: []any{"record", record}})
		p.XTrimMaxLen(ctx, records, FeedbackCap)
		voted = p.Incr(ctx, r.feedbackKey(vote))
		// INCRBY 0 reads the other total without GET's nil-on-missing case.
		unvoted = p.IncrBy(ctx, r.feedbackKey(other), 0)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: add feedback %q: %w", vote, err)
	}
	if vote == VoteUp {
		return voted.Val(), unvoted.Val(), nil
	}
	return unvoted.Val(), voted.Val(), nil
}

// expireLegacyFeedback gives the list earlier versions kept feedback
// records in ({feedback}:records, forever) an expiry of one retention, once
// it has none. Nothing is added to it any more, so by then every record in
// it is older than the retention. Done once per process; a failure is
// retried by the next.
func (r *Redis) expireLegacyFeedback(ctx context.Context) {
	key := r.feedbackKey("records")
	if ttl, err := r.rdb.PTTL(ctx, key).Result(); err == nil && ttl == -1 {
		r.rdb.PExpire(ctx, key, retention(r.Retention))
	}
}

// SeenChat reports true the first time chat is seen, ever.
func (r *Redis) SeenChat(ctx context.Context, chat string) (bool, error) {
	added, err := r.rdb.SAdd(ctx, r.chatsKey(), chat).Result()
	if err != nil {
		return false, fmt.Errorf("store: seen chat %q: %w", chat, err)
	}
	return added == 1, nil
}

// Ping checks that Redis answers, for health checks.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: ping Redis: %w", err)
	}
	return nil
}

func (r *Redis) valueKey(key string) string { return r.prefix + "kv:" + key }

// Remember keeps value under key for ttl (positive), replacing what was
// there.
func (r *Redis) Remember(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("state: remember %q: ttl must be positive, got %v", key, ttl)
	}
	if err := r.rdb.Set(ctx, r.valueKey(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("state: remember %q: %w", key, err)
	}
	return nil
}

// Recall is what Remember kept under key, or nil when nothing (or it
// expired).
func (r *Redis) Recall(ctx context.Context, key string) ([]byte, error) {
	v, err := r.rdb.Get(ctx, r.valueKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: recall %q: %w", key, err)
	}
	return v, nil
}
