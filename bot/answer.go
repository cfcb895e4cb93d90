package bot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher/callback"

	"kbbot/bot/cards"
	"kbbot/bot/openapi"
	"kbbot/bot/wiki"
	"kbbot/rag"
)

// question is one thing to answer and where the answer goes.
type question struct {
	Text     string
	Conv     string
	ChatID   string
	ReplyTo  string // message to reply to; empty: a new message in ChatID
	InThread bool
	Asker    string // open_id named on the card (answers to clicks)
	Seed     string // idempotency seed: the message id, or the click's event id
	ParentID string // the message this one replies to, if any
}

// question is what m asks, and where the answer goes: a reply to it.
func (m incoming) question() question {
	return question{Text: m.Text, Conv: m.conv(), ChatID: m.ChatID, ReplyTo: m.MessageID, InThread: m.ThreadID != "", Seed: m.MessageID, ParentID: m.ParentID}
}

// kind names the event type a question came from, for metrics.
func (q question) kind() string {
	if q.Asker != "" {
		return evClick
	}
	return evMessage
}

// storedTurn is a rag.Turn with the id feedback buttons refer to.
type storedTurn struct {
	rag.Turn
	ID string `json:"id"`
}

// feedbackRecord is what a 👍/👎 stores.
type feedbackRecord struct {
	QID       string          `json:"qid"`
	Vote      string          `json:"vote"`
	Operator  string          `json:"operator"`
	ChatID    string          `json:"chat_id"`
	MessageID string          `json:"message_id"`
	Conv      string          `json:"conv"`
	Question  string          `json:"question,omitempty"`
	Answer    string          `json:"answer,omitempty"`
	Sources   []rag.Reference `json:"sources,omitempty"`
	At        time.Time       `json:"at"`
}

var (
	helpCommands  = map[string]bool{"/help": true, "帮助": true, "help": true}
	resetCommands = map[string]bool{"/reset": true, "新话题": true}
	syncCommands  = map[string]bool{"/sync": true, "同步": true}
)

// handleMessage runs in a worker: commands, unsupported messages, or an
// answer.
func (b *Bot) handleMessage(ctx context.Context, log *slog.Logger, m incoming) {
	q := m.question()
	cmd := strings.ToLower(strings.TrimSpace(m.Text))
	switch {
	case m.MsgType != "text" && m.MsgType != "post":
		b.deliver(ctx, log, q, "unsupported", cards.Unsupported(m.MsgType))
	case cmd == "" || helpCommands[cmd]:
		b.deliver(ctx, log, q, "help", cards.Help(q.Conv))
	case resetCommands[cmd]:
		if err := b.st.ResetTurns(ctx, q.Conv); err != nil {
			log.Error("reset failed", "error", err)
			b.deliver(ctx, log, q, "error", cards.Error(m.Text, q.Conv))
			return
		}
		log.Info("conversation reset", "conv", q.Conv)
		b.deliver(ctx, log, q, "reset", cards.Reset())
	case syncCommands[cmd] && m.ChatType == "p2p" && b.cfg.Syncer != nil && slices.Contains(b.cfg.Admins, m.Sender):
		b.syncNow(ctx, log, q)
	case syncCommands[cmd]:
		// Not an admin (or no sync configured): the same answer as for
		// anything the bot does not take as a command from them.
		log.Info("sync asked for by someone not in KBBOT_ADMINS, or no Feishu source configured", "sender", m.Sender)
		b.deliver(ctx, log, q, "help", cards.Help(q.Conv))
	default:
		b.answer(ctx, log, q)
	}
}

// syncNow runs a sync for an admin's /sync: a card says it started, and a
// second card, when it ends, what it did.
func (b *Bot) syncNow(ctx context.Context, log *slog.Logger, q question) {
	started := q
	started.Seed = "sync-start:" + q.Seed
	b.deliver(ctx, log, started, "sync-start", cards.SyncStarted())
	rep, err := b.cfg.Syncer.Now(ctx)
	v := cards.SyncView{Busy: errors.Is(err, wiki.ErrBusy)}
	switch {
	case v.Busy:
	case err != nil:
		log.Error("sync asked for by an admin failed", "error", err)
		v.Error = err.Error()
	default:
		v.Summary = rep.Summary()
		for _, f := range rep.Failed {
			v.Failed = append(v.Failed, f.Title+"："+f.Reason)
		}
		for _, s := range rep.Skipped {
			v.Skipped = append(v.Skipped, s.Title+"："+s.Reason)
		}
	}
	b.deliver(ctx, log, q, "sync", cards.Sync(v))
}

// answer asks the engine with the conversation's history, puts the answer
// in front of the user, and records the turn. With an LLM the answer
// streams into a card shown at once (stream.go); otherwise it goes out as
// one card. Every failure ends in an error card attempt.
func (b *Bot) answer(ctx context.Context, log *slog.Logger, q question) {
	log = log.With("conv", q.Conv)
	actx, cancel := context.WithTimeout(ctx, b.cfg.AnswerTimeout)
	defer cancel()
	var stream *streamCard
	finished := false
	// finish sends the card the user ends up with, and returns the id of
	// the message showing it. It runs on the worker's context, not the
	// answer's: an answer out of time still gets its card.
	// plain, when not nil, makes the version of an answer card Feishu
	// cannot refuse for its content.
	finish := func(kind string, card []byte, plain func() []byte) (string, bool) {
		finished = true
		fctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		if stream != nil {
			return stream.finish(fctx, kind, card, plain)
		}
		return b.deliverOr(fctx, log, q, kind, card, plain)
	}
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic while answering", "panic", v, "stack", stack())
			if !finished {
				finish("error", cards.Error(q.Text, q.Conv), nil)
			}
		}
	}()
	var onDelta func(string)
	if b.ans.HasLLM() {
		stream = b.openStream(actx, log, q, b.sentRecordOf(ctx, log, q))
		onDelta = stream.update
	}
	var hist []rag.Turn
	// Loaded only if the engine asks: most answers without an LLM never
	// need the history, and reading and decoding it was a fifth of the
	// bot's CPU under load.
	history := func() []rag.Turn {
		turns, err := b.history(actx, q.Conv)
		if err != nil {
			// Answering without context beats not answering.
			log.Warn("reading history failed; answering without it", "error", err)
		}
		hist = withReplied(turns, b.repliedTurn(actx, log, q), q.InThread)
		return hist
	}
	start := time.Now()
	ans, err := b.ans.AskStream(actx, q.Text, history, onDelta)
	b.cfg.Metrics.observe(stageRetrieval, ans.Timings.Retrieval)
	b.cfg.Metrics.observe(stageFirstToken, ans.Timings.FirstToken)
	b.cfg.Metrics.observe(stageLLM, ans.Timings.LLM)
	qid := shortHash(q.Seed)
	view := cards.AnswerView{Question: q.Text, Asker: q.Asker, Answer: ans, QID: qid, Conv: q.Conv, KBLink: b.links.URL, LinkHosts: b.linkHosts}
	switch {
	case err != nil && ans.Text == "":
		log.Error("answering failed", "error", err, "elapsed", time.Since(start))
		b.cfg.Metrics.event(q.kind(), outcomeFailed)
		finish("error", cards.Error(q.Text, q.Conv), nil)
		return
	case err != nil:
		// The model stopped mid-answer: keep what it said, offer a retry,
		// and keep the unfinished turn out of the history.
		stalled := errors.Is(err, rag.ErrStalled)
		log.Warn("the answer was cut short", "error", err, "stalled", stalled, "chars", len(ans.Text), "elapsed", time.Since(start))
		b.cfg.Metrics.event(q.kind(), outcomeFailed)
		finish("answer", cards.Partial(view, stalled), func() []byte { return cards.PlainAnswer(view) })
		return
	}
	card := cards.Answer(view)
	log.Info("answered", "mode", ans.Mode, "covered", ans.Covered, "refs", len(ans.References), "history", len(hist), "elapsed", time.Since(start), "card_bytes", len(card))
	sentID, ok := finish("answer", card, func() []byte { return cards.PlainAnswer(view) })
	if !ok {
		b.cfg.Metrics.event(q.kind(), outcomeFailed)
		return
	}
	b.cfg.Metrics.event(q.kind(), outcomeAnswered)
	b.cfg.Metrics.observe(stageAnswer, time.Since(start))
	if b.cfg.HistoryTurns < 1 {
		return
	}
	turn := storedTurn{Turn: rag.Turn{Question: q.Text, Answer: ans.Text, Sources: ans.References, At: b.Now()}, ID: qid}
	raw, _ := json.Marshal(turn)
	if err := b.st.AppendTurn(ctx, q.Conv, raw, b.cfg.HistoryTurns, b.cfg.HistoryTTL); err != nil {
		log.Warn("saving the turn failed; the next question will lack it", "error", err)
	}
	// Kept by the card's message too: a reply to the card brings it back
	// once it has left the history window.
	if sentID == "" {
		return
	}
	if err := b.st.Remember(ctx, answerKey(sentID), raw, b.cfg.HistoryTTL); err != nil {
		log.Warn("saving the answer by its message failed; a reply to its card will lack it", "sent_message_id", sentID, "error", err)
	}
}

// repliedTurn is the answer q replies to: the turn the bot answered in
// message q.ParentID, when that message is one of its answers (found only
// if the bot sent it), or nil.
func (b *Bot) repliedTurn(ctx context.Context, log *slog.Logger, q question) *storedTurn {
	if q.ParentID == "" || b.cfg.HistoryTurns < 1 {
		return nil
	}
	t, err := b.answerIn(ctx, q.ParentID)
	if err != nil {
		log.Warn("reading the answer replied to failed; answering without it", "parent_id", q.ParentID, "error", err)
	}
	return t
}

// answerIn is the turn the bot answered in message msgID, or nil when
// that message is not one of its answers (or one too old).
func (b *Bot) answerIn(ctx context.Context, msgID string) (*storedTurn, error) {
	raw, err := b.st.Recall(ctx, answerKey(msgID))
	if err != nil {
		return nil, err
	}
	var t storedTurn
	if raw == nil || json.Unmarshal(raw, &t) != nil {
		return nil, nil
	}
	return &t, nil
}

// withReplied is the history the engine gets: the conversation's turns,
// and the answer replied to (once, even when it is in the window). A reply
// to a card is about that card, so its turn comes last, marked: the engine
// reads the follow-up against it. Inside a thread every message names the
// thread's root as its parent, so the root's answer is what the thread is
// about, not what this message replies to: it opens the history instead.
func withReplied(turns []storedTurn, replied *storedTurn, inThread bool) []rag.Turn {
	hist := make([]rag.Turn, 0, len(turns)+1)
	if replied != nil && inThread {
		hist = append(hist, replied.Turn)
	}
	for _, t := range turns {
		if replied == nil || t.ID != replied.ID {
			hist = append(hist, t.Turn)
		}
	}
	if replied != nil && !inThread {
		r := replied.Turn
		r.Replied = true
		hist = append(hist, r)
	}
	return hist
}

// history is the conversation's stored turns, oldest first. Undecodable
// entries (from an older version) are skipped.
func (b *Bot) history(ctx context.Context, conv string) ([]storedTurn, error) {
	if b.cfg.HistoryTurns < 1 {
		return nil, nil
	}
	raws, err := b.st.Turns(ctx, conv)
	if err != nil {
		return nil, err
	}
	out := make([]storedTurn, 0, len(raws))
	for _, r := range raws {
		var t storedTurn
		if json.Unmarshal(r, &t) == nil {
			out = append(out, t)
		}
	}
	if len(out) > b.cfg.HistoryTurns {
		out = out[len(out)-b.cfg.HistoryTurns:]
	}
	return out, nil
}

// sentRecord is the message (and CardKit card) a question was answered
// with, kept under the question's seed so a re-run of its job never posts
// a second message: Feishu's idempotency uuid holds one hour only (the
// send and reply pages: https://open.feishu.cn/document/server-docs/im-v1/message/create),
// and what a repeated uuid returns is not documented. Final is false while
// a streaming card is still being written.
type sentRecord struct {
	MessageID string `json:"message_id"`
	CardID    string `json:"card_id,omitempty"`
	Final     bool   `json:"final,omitempty"`
}

// sentTTL outlives every re-run of a job: the queue gives a job up after
// KBBOT_QUEUE_ATTEMPTS deliveries, and KBBOT_QUEUE_MAX_AGE ends its
// answering long before a day.
const sentTTL = 24 * time.Hour

func sentKey(q question) string { return "sent:" + q.Seed }

// answerKey keeps an answered turn under the message that shows it.
func answerKey(messageID string) string { return "answer:" + messageID }

// sentRecordOf is q's record, the zero record when there is none or it
// cannot be read (the uuid is then the only guard: a second message is
// possible after an hour).
func (b *Bot) sentRecordOf(ctx context.Context, log *slog.Logger, q question) sentRecord {
	var rec sentRecord
	raw, err := b.st.Recall(ctx, sentKey(q))
	if err != nil {
		log.Warn("reading what this question was answered with failed", "error", err)
	}
	if raw != nil {
		_ = json.Unmarshal(raw, &rec)
	}
	return rec
}

func (b *Bot) remember(ctx context.Context, log *slog.Logger, q question, rec sentRecord) {
	raw, _ := json.Marshal(rec)
	if err := b.st.Remember(ctx, sentKey(q), raw, sentTTL); err != nil {
		log.Warn("recording the answer's message failed; a re-run after an hour could post it again", "error", err)
	}
}

// deliver sends a card where q says, retrying transient failures, and
// records it as what q was answered with. When an answer cannot be
// delivered it tries an error card, and logs either way: a failure is never
// silent in the log, and the user sees something if Feishu lets us send
// anything at all. It returns the id of the message sent (empty when only
// the error card, or nothing, went out).
func (b *Bot) deliver(ctx context.Context, log *slog.Logger, q question, kind string, card []byte) (string, bool) {
	return b.deliverOr(ctx, log, q, kind, card, nil)
}

// deliverOr is deliver, sending the card plain makes (when not nil) if
// Feishu refuses card for its content: the same answer, without the
// markdown a rule the docs do not state could still refuse.
func (b *Bot) deliverOr(ctx context.Context, log *slog.Logger, q question, kind string, card []byte, plain func() []byte) (string, bool) {
	id, err := b.send(ctx, log, q, card, openapi.UUID(kind, q.Seed))
	if err == nil {
		log.Info("card sent", "kind", kind, "sent_message_id", id)
		if q.Seed != "" {
			b.remember(ctx, log, q, sentRecord{MessageID: id, Final: true})
		}
		return id, true
	}
	if plain != nil && openapi.IsContentRefused(err) {
		// A new uuid: the content differs, and the refused send left no
		// message behind.
		log.Warn("Feishu refused the card's content; sending the answer as plain text", "kind", kind, "error", err)
		return b.deliverOr(ctx, log, q, kind+"-plain", plain(), nil)
	}
	log.Error("sending card failed", "kind", kind, "error", err)
	if kind != "error" && kind != "busy" {
		log.Warn("sending an error card instead", "kind", kind)
		b.deliver(ctx, log, q, "error", cards.Error(q.Text, q.Conv))
	}
	return "", false
}

// send posts an interactive message (a card, or a reference to a CardKit
// card entity) where q says: a reply to its message, or a new message in
// its chat. uuid makes Feishu deliver it at most once.
func (b *Bot) send(ctx context.Context, log *slog.Logger, q question, content []byte, uuid string) (string, error) {
	start := time.Now()
	defer func() { b.cfg.Metrics.observe(stageSend, time.Since(start)) }()
	if q.ReplyTo != "" {
		return b.feish.Reply(ctx, log, q.ReplyTo, q.InThread, content, uuid)
	}
	return b.feish.Create(ctx, log, q.ChatID, content, uuid)
}

func (b *Bot) sendBusy(ctx context.Context, log *slog.Logger, m incoming) {
	q := m.question()
	b.deliver(ctx, log, q, "busy", cards.Busy(m.Text, q.Conv))
}

func (b *Bot) sendWelcome(ctx context.Context, log *slog.Logger, chatID string) {
	starters, err := b.ans.StarterQuestions(ctx, 4)
	if err != nil {
		log.Warn("no starter questions for the welcome card", "error", err)
	}
	conv := convKey(chatID, "")
	b.deliver(ctx, log, question{ChatID: chatID, Conv: conv, Seed: chatID}, "welcome", cards.Welcome(starters, conv))
}

// clickFeedback records a 👍/👎 with the question, answer and sources of the
// turn it rates, once per person and answer.
func (b *Bot) clickFeedback(ctx context.Context, log *slog.Logger, c click) *callback.CardActionTriggerResponse {
	v := c.Value
	if (v.Vote != "up" && v.Vote != "down") || v.QID == "" {
		return toast("warning", "无法识别这个反馈")
	}
	_, first, err := b.claim(ctx, "evt:"+c.EventID, "vote:"+v.QID+":"+c.Operator)
	if err != nil {
		log.Error("claiming feedback failed", "error", err)
		return toast("error", "出错了，请稍后重试")
	}
	if !first {
		return toast("info", "已经收到你的反馈了")
	}
	rec := feedbackRecord{QID: v.QID, Vote: v.Vote, Operator: c.Operator, ChatID: c.ChatID, MessageID: c.MessageID, Conv: v.Conv, At: b.Now()}
	turns, err := b.history(ctx, v.Conv)
	if err != nil {
		log.Warn("reading history for feedback failed", "error", err)
	}
	for _, t := range turns {
		if t.ID == v.QID {
			rec.Question, rec.Answer, rec.Sources = t.Question, t.Answer, t.Sources
		}
	}
	if rec.Question == "" && c.MessageID != "" {
		// Out of the window: the card's message still names it.
		if t, _ := b.answerIn(ctx, c.MessageID); t != nil && t.ID == v.QID {
			rec.Question, rec.Answer, rec.Sources = t.Question, t.Answer, t.Sources
		}
	}
	if rec.Question == "" {
		log.Info("feedback for a turn no longer in history; recording the vote alone", "qid", v.QID)
	}
	raw, _ := json.Marshal(rec)
	up, down, err := b.st.AddFeedback(ctx, v.Vote, raw)
	if err != nil {
		log.Error("recording feedback failed", "error", err)
		return toast("error", "出错了，请稍后重试")
	}
	log.Info("feedback recorded", "vote", v.Vote, "qid", v.QID, "up_total", up, "down_total", down)
	return toast("success", "感谢反馈！")
}
