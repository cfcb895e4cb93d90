package bot

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"time"

	"kbbot/bot/cards"
	"kbbot/store/ratelimit"
)

// Abuse limits. Questions are counted per asker and per chat (messages and
// ask/retry clicks, after parsing, before de-duplication) in a shared
// Limiter, so every replica sees the same counts. The text is capped where
// it is used: the engine cuts a question at 2000 runes (rag maxQuestionLen)
// and the history it sends the LLM at 6000 (rag maxHistoryRunes); cards
// show at most cards.MaxQuestion runes of it.

// Rate is a limit on questions: at most N per Per. The zero Rate is no
// limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Limiter is what the bot needs from a rate limiter: ratelimit.Memory
// (one replica) or ratelimit.Redis (shared).
type Limiter interface {
	Allow(ctx context.Context, limits ...ratelimit.Limit) (ratelimit.Verdict, error)
}

var (
	_ Limiter = (*ratelimit.Memory)(nil)
	_ Limiter = (*ratelimit.Redis)(nil)
)

// outcomeLimited counts events refused by a rate limit.
const outcomeLimited = "limited"

// limitNote is what a limit card says; a kindLimited item carries it.
type limitNote struct {
	Scope         string `json:"scope"` // user | chat
	Max           int    `json:"max"`
	PerSeconds    int    `json:"per_seconds"`
	RetryAfterSec int    `json:"retry_after_seconds"`
}

func newLimitNote(v ratelimit.Verdict) *limitNote {
	scope := "user"
	if strings.HasPrefix(v.Limit.Key, "chat:") {
		scope = "chat"
	}
	return &limitNote{Scope: scope, Max: v.Limit.Max, PerSeconds: int(v.Limit.Window / time.Second),
		RetryAfterSec: int(math.Ceil(v.RetryAfter.Seconds()))}
}

// checkRate counts a question from user in chat. limited is true when a
// limit is exceeded; v says which, and whether this is the first time in
// its window. A limiter error lets the question through: better an answer
// too many than none while Redis hiccups.
func (b *Bot) checkRate(ctx context.Context, log *slog.Logger, user, chat string) (v ratelimit.Verdict, limited bool) {
	if b.cfg.Limiter == nil {
		return ratelimit.Verdict{Allowed: true}, false
	}
	var limits []ratelimit.Limit
	if user != "" {
		limits = append(limits, ratelimit.Limit{Key: "user:" + user, Max: b.cfg.RateUser.N, Window: b.cfg.RateUser.Per})
	}
	if chat != "" {
		limits = append(limits, ratelimit.Limit{Key: "chat:" + chat, Max: b.cfg.RateChat.N, Window: b.cfg.RateChat.Per})
	}
	v, err := b.cfg.Limiter.Allow(ctx, limits...)
	if err != nil {
		log.Warn("rate limit check failed; letting the question through", "error", err)
		return ratelimit.Verdict{Allowed: true}, false
	}
	if !v.Allowed {
		log.Info("rate limit reached", "limit", v.Limit.Key, "count", v.Count, "max", v.Limit.Max,
			"window", v.Limit.Window, "retry_after", v.RetryAfter.Round(time.Second), "first", v.First)
	}
	return v, !v.Allowed
}

func (b *Bot) sendLimited(ctx context.Context, log *slog.Logger, m incoming, n limitNote) {
	q := m.question()
	b.deliver(ctx, log, q, "limited", cards.Limit(n.view(), m.Text, q.Conv))
}

func (n limitNote) view() cards.LimitView {
	return cards.LimitView{Chat: n.Scope == "chat", Max: n.Max, PerSeconds: n.PerSeconds, RetryAfterSec: n.RetryAfterSec}
}
