package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"kbbot/bot/cards"
	"kbbot/store/queue"
)

// Queue is what the bot needs from its work queue: queue.Memory (in
// process, for one replica) or queue.Redis (durable, shared by replicas).
// Items with the same key (the chat) run one at a time, in order, so a
// chat's answers keep the order of its questions. EnqueueClaimed records an
// item together with its de-duplication claims, so a redelivered event
// finds its claim and records nothing; on queue.ErrQueueFull nothing is
// recorded and no claim is kept: the bot claims the message itself once
// its busy card is queued (see onMessage).
type Queue interface {
	EnqueueClaimed(ctx context.Context, claims []queue.Claim, key string, payload []byte) (first bool, err error)
	Start(ctx context.Context, h queue.Handlers) error
	Stop(ctx context.Context) error
}

var (
	_ Queue = (*queue.Memory)(nil)
	_ Queue = (*queue.Redis)(nil)
)

// Kinds of work item.
const (
	kindMessage = "message" // answer a message (or run its command)
	kindClick   = "click"   // answer a button's question
	kindWelcome = "welcome" // greet a new direct chat
	kindBusy    = "busy"    // tell the asker the in-process queue was full
	kindLimited = "limited" // tell the asker a rate limit was reached
)

// item is one unit of work. It is stored in the queue as JSON and may be
// run by another replica, or by a newer version after a deploy: add fields,
// never rename them.
type item struct {
	Kind    string     `json:"kind"`
	Msg     *incoming  `json:"msg,omitempty"`      // message, busy, limited
	Click   *clickJob  `json:"click,omitempty"`    // click
	ChatID  string     `json:"chat_id,omitempty"`  // welcome
	EventID string     `json:"event_id,omitempty"` // welcome
	Limit   *limitNote `json:"limit,omitempty"`    // limited
}

// clickJob is a button's question and where its answer goes.
type clickJob struct {
	EventID  string `json:"event_id,omitempty"`
	Text     string `json:"text"`
	Conv     string `json:"conv"`
	ChatID   string `json:"chat_id"`
	ReplyTo  string `json:"reply_to,omitempty"`
	InThread bool   `json:"in_thread,omitempty"`
	Asker    string `json:"asker,omitempty"`
	Seed     string `json:"seed"`
}

func (c clickJob) question() question {
	return question{Text: c.Text, Conv: c.Conv, ChatID: c.ChatID, ReplyTo: c.ReplyTo, InThread: c.InThread, Asker: c.Asker, Seed: c.Seed}
}

// key orders items: one chat's items run one at a time, in order.
func (it item) key() string {
	switch {
	case it.Msg != nil:
		return it.Msg.ChatID
	case it.Click != nil:
		return it.Click.ChatID
	}
	return it.ChatID
}

func (it item) logger(log *slog.Logger) *slog.Logger {
	switch {
	case it.Msg != nil:
		return it.Msg.logger(log)
	case it.Click != nil:
		return log.With("event_id", it.Click.EventID, "chat_id", it.Click.ChatID)
	}
	return log.With("event_id", it.EventID, "chat_id", it.ChatID)
}

// asked is the question an item answers, and where a reply goes; false for
// items without an asker to tell (welcome).
func (it item) asked() (question, bool) {
	switch {
	case it.Msg != nil:
		m := it.Msg
		return m.question(), true
	case it.Click != nil:
		return it.Click.question(), true
	}
	return question{}, false
}

// submit records the item in q under the claims (keys ending in ":" have
// no id and are left out); first is false for a duplicate. On
// queue.ErrQueueFull no claim is kept (see Queue).
func (b *Bot) submit(ctx context.Context, q Queue, it item, claims ...string) (first bool, err error) {
	payload, err := json.Marshal(it)
	if err != nil {
		return false, err
	}
	var cs []queue.Claim
	for _, k := range claims {
		if !strings.HasSuffix(k, ":") {
			cs = append(cs, queue.Claim{Key: k, TTL: claimTTL(k)})
		}
	}
	return q.EnqueueClaimed(ctx, cs, it.key(), payload)
}

// runJob runs one queued item. It returns ctx's error when the run was cut
// short (shutdown, or the Redis lease lost), so the queue keeps the item for
// another replica; failures inside answering end in an error card there and
// count as done. A panic makes the queue retry the item.
func (b *Bot) runJob(ctx context.Context, j queue.Job) error {
	var it item
	if err := json.Unmarshal(j.Payload, &it); err != nil {
		b.log.Error("dropping a work item that does not decode", "job", j.ID, "error", err)
		return nil
	}
	log := it.logger(b.log).With("job", j.ID)
	if j.Attempt > 1 {
		log = log.With("attempt", j.Attempt)
	}
	if b.jobHook != nil {
		b.jobHook(it)
	}
	q, asked := it.asked()
	if asked && j.Attempt > 1 && b.sentRecordOf(ctx, log, q).Final {
		// An earlier run answered and died before the queue heard of it.
		log.Info("already answered by an earlier run of this item; nothing to send")
		return ctx.Err()
	}
	if asked && (it.Kind == kindMessage || it.Kind == kindClick) && !j.Enqueued.IsZero() {
		if waited := b.Now().Sub(j.Enqueued); waited > b.cfg.MaxAge {
			log.Warn("question waited too long in the queue; telling the asker instead of answering", "waited", waited.Round(time.Second), "max_age", b.cfg.MaxAge)
			b.cfg.Metrics.event(q.kind(), outcomeTooLate)
			b.deliver(ctx, log, q, "too-late", cards.TooLate(q.Text, q.Conv))
			return ctx.Err()
		}
	}
	b.runItem(ctx, log, it)
	return ctx.Err()
}

// runItem dispatches an item to its handler.
func (b *Bot) runItem(ctx context.Context, log *slog.Logger, it item) {
	switch {
	case it.Kind == kindMessage && it.Msg != nil:
		b.handleMessage(ctx, log, *it.Msg)
	case it.Kind == kindClick && it.Click != nil:
		b.answer(ctx, log, it.Click.question())
	case it.Kind == kindWelcome && it.ChatID != "":
		b.sendWelcome(ctx, log, it.ChatID)
	case it.Kind == kindBusy && it.Msg != nil:
		b.sendBusy(ctx, log, *it.Msg)
	case it.Kind == kindLimited && it.Msg != nil && it.Limit != nil:
		b.sendLimited(ctx, log, *it.Msg, *it.Limit)
	default:
		log.Error("dropping a work item of unknown kind or without its fields", "kind", it.Kind)
	}
}

// deadJob tells the asker of an item the queue gave up on (it kept failing,
// or kept crashing its replica) with an error card and a retry button.
func (b *Bot) deadJob(ctx context.Context, j queue.Job) {
	var it item
	if err := json.Unmarshal(j.Payload, &it); err != nil {
		b.log.Error("gave up on a work item that does not decode", "job", j.ID, "error", err)
		return
	}
	log := it.logger(b.log).With("job", j.ID, "attempts", j.Attempt)
	q, ok := it.asked()
	if !ok {
		log.Error("gave up on a work item; there is no one to tell", "kind", it.Kind)
		return
	}
	b.cfg.Metrics.event(q.kind(), outcomeFailed)
	log.Error("gave up on a work item; sending an error card", "kind", it.Kind)
	b.deliver(ctx, log, q, "error", cards.Error(q.Text, q.Conv))
}

// shortHash names things derived from long strings (questions in claim keys,
// turn ids).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
