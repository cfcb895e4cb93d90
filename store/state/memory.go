// Package state keeps each chat's conversation (and each answer by the
// message that shows it), the de-duplication claims that make a
// redelivered event a no-op, feedback votes and the chats already
// welcomed: in process (Memory, one replica) or in Redis (Redis, shared by
// replicas). Both pass the same suite (state_test.go).
package state

import (
	"context"
	"fmt"
	"sync"
	"time"

	"kbbot/store"
)

// Limits shared by every conversation-state backend so they behave alike.
const (
	// FeedbackCap is how many feedback records are kept; older ones are
	// dropped so the list cannot grow without bound.
	FeedbackCap = 10000
	// VoteUp and VoteDown are the only votes AddFeedback accepts.
	VoteUp   = "up"
	VoteDown = "down"
)

// memorySweepEvery is how many Claims pass between full sweeps of expired
// entries. Claims are keyed by event ids that are never looked up again, so
// lazy removal on access alone would let a flood of unique ids grow the map
// forever; an amortised sweep bounds it to roughly what is live plus this many.
const memorySweepEvery = 1024

// Memory keeps conversation turns, claims, feedback and seen chats in
// process memory. Nothing survives a restart, and claims are only exclusive
// within this process, so it is correct for a single replica only; run more
// than one replica and you need Redis.
//
// There is no background janitor goroutine (nothing to stop, nothing racing
// the tests): expired entries are dropped when touched, and every
// memorySweepEvery Claims a sweep drops the rest.
type Memory struct {
	// Now is the clock used for TTLs; tests replace it to expire entries
	// without sleeping.
	Now func() time.Time
	// Retention is how long a feedback record is kept; zero means
	// store.DefaultRetention.
	Retention time.Duration

	mu         sync.Mutex
	turns      map[string]memoryTurns
	claims     map[string]time.Time // key → expiry; zero means never
	chats      map[string]struct{}
	feedback   []memoryRecord // oldest first
	up, down   int64
	sinceSweep int
	leases     map[string]bool
	kv         map[string]memoryValue
}

type memoryTurns struct {
	items   [][]byte
	expires time.Time // zero means never
}

type memoryValue struct {
	data    []byte
	expires time.Time // zero means never
}

type memoryRecord struct {
	data []byte
	at   time.Time
}

// NewMemory returns an empty in-process state store.
func NewMemory() *Memory {
	return &Memory{
		Now:    time.Now,
		turns:  make(map[string]memoryTurns),
		claims: make(map[string]time.Time),
		chats:  make(map[string]struct{}),
	}
}

// expiry turns a TTL into a deadline; a TTL of zero or less means the entry
// never expires, matching Redis keys without an expiry.
func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

func expired(now, deadline time.Time) bool {
	return !deadline.IsZero() && !now.Before(deadline)
}

// AppendTurn appends turn to conv, keeps only the last maxTurns, and resets
// the conversation's TTL so an active chat never loses its history. A ttl of
// zero or less keeps the history until ResetTurns.
func (m *Memory) AppendTurn(ctx context.Context, conv string, turn []byte, maxTurns int, ttl time.Duration) error {
	if maxTurns < 1 {
		return fmt.Errorf("store: append turn to %q: maxTurns must be at least 1, got %d", conv, maxTurns)
	}
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.turns[conv]
	if expired(now, t.expires) {
		t = memoryTurns{}
	}
	// Copy so the caller may reuse its buffer.
	t.items = append(t.items, append([]byte(nil), turn...))
	if n := len(t.items); n > maxTurns {
		// Copy into a fresh slice so dropped turns are not pinned by the
		// backing array.
		t.items = append([][]byte(nil), t.items[n-maxTurns:]...)
	}
	t.expires = expiry(now, ttl)
	m.turns[conv] = t
	return nil
}

// Turns returns conv's turns, oldest first, or an empty slice.
func (m *Memory) Turns(ctx context.Context, conv string) ([][]byte, error) {
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.turns[conv]
	if ok && expired(now, t.expires) {
		delete(m.turns, conv)
		t = memoryTurns{}
	}
	out := make([][]byte, len(t.items))
	for i, b := range t.items {
		out[i] = append([]byte(nil), b...)
	}
	return out, nil
}

// ResetTurns forgets conv's history.
func (m *Memory) ResetTurns(ctx context.Context, conv string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.turns, conv)
	return nil
}

// Claim reports true the first time key is claimed within ttl; the ttl must be
// positive, as for Redis.
func (m *Memory) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("store: claim %q: ttl must be positive, got %v", key, ttl)
	}
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sinceSweep++
	if m.sinceSweep >= memorySweepEvery {
		m.sweepLocked(now)
	}
	if deadline, ok := m.claims[key]; ok && !expired(now, deadline) {
		return false, nil
	}
	m.claims[key] = expiry(now, ttl)
	return true, nil
}

// sweepLocked drops every expired claim and conversation. It is O(n) but runs
// once per memorySweepEvery Claims, so its cost is amortised.
func (m *Memory) sweepLocked(now time.Time) {
	m.sinceSweep = 0
	for k, deadline := range m.claims {
		if expired(now, deadline) {
			delete(m.claims, k)
		}
	}
	for k, t := range m.turns {
		if expired(now, t.expires) {
			delete(m.turns, k)
		}
	}
	for k, v := range m.kv {
		if expired(now, v.expires) {
			delete(m.kv, k)
		}
	}
}

// Release drops a claim so a redelivery of the same key can be processed.
func (m *Memory) Release(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, key)
	return nil
}

// AddFeedback records a vote and returns the running totals. Records
// older than the retention, and any beyond FeedbackCap, are dropped.
func (m *Memory) AddFeedback(ctx context.Context, vote string, record []byte) (up, down int64, err error) {
	if err := checkVote(vote); err != nil {
		return 0, 0, err
	}
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.feedback = append(m.feedback, memoryRecord{data: append([]byte(nil), record...), at: now})
	// Oldest first, so what goes is a prefix, and each record goes once:
	// O(1) amortised. Appends move the live part to fresh arrays, so the
	// dropped records are not pinned for long.
	cutoff := now.Add(-retention(m.Retention))
	drop := max(0, len(m.feedback)-FeedbackCap)
	for drop < len(m.feedback) && m.feedback[drop].at.Before(cutoff) {
		drop++
	}
	m.feedback = m.feedback[drop:]
	if vote == VoteUp {
		m.up++
	} else {
		m.down++
	}
	return m.up, m.down, nil
}

// SeenChat reports true the first time chat is seen by this process.
func (m *Memory) SeenChat(ctx context.Context, chat string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.chats[chat]; ok {
		return false, nil
	}
	m.chats[chat] = struct{}{}
	return true, nil
}

// Ping always succeeds: memory is always reachable.
func (m *Memory) Ping(ctx context.Context) error { return nil }

func retention(d time.Duration) time.Duration {
	if d <= 0 {
		return store.DefaultRetention
	}
	return d
}

func checkVote(vote string) error {
	if vote != VoteUp && vote != VoteDown {
		return fmt.Errorf("store: add feedback: vote must be %q or %q, got %q", VoteUp, VoteDown, vote)
	}
	return nil
}

// Remember keeps value under key for ttl (positive), replacing what was
// there.
func (m *Memory) Remember(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("state: remember %q: ttl must be positive, got %v", key, ttl)
	}
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kv == nil {
		m.kv = map[string]memoryValue{}
	}
	m.kv[key] = memoryValue{data: append([]byte(nil), value...), expires: now.Add(ttl)}
	return nil
}

// Recall is what Remember kept under key, or nil when nothing (or it
// expired).
func (m *Memory) Recall(ctx context.Context, key string) ([]byte, error) {
	now := m.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.kv[key]
	if !ok || expired(now, v.expires) {
		delete(m.kv, key)
		return nil, nil
	}
	return append([]byte(nil), v.data...), nil
}
