package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/openapi"
)

// Streaming answers. With an LLM, the user sees a card within a second and
// watches the answer type itself into it:
//
//  1. a CardKit card entity is created with streaming_mode on and a
//     placeholder in the "answer" markdown element, and sent as the reply
//     (msg content {"type":"card","data":{"card_id":…}}, the reply's usual
//     idempotency uuid);
//  2. as the LLM writes, the element's text is replaced with the text so
//     far, coalesced: at most one update per StreamInterval, only when the
//     text grew, and never two at once;
//  3. the finished card (references, follow-ups, feedback buttons; or the
//     partial answer with a retry button; or the error card) replaces the
//     whole card, and a settings call turns streaming_mode off.
//
// Every operation on a card carries a sequence, strictly increasing across
// the card's operations as Feishu requires, and a uuid derived from it;
// retries repeat both. If CardKit fails before the card is shown, the
// answer goes out as one plain card when it is ready; if the final update
// fails, the message is patched to the final card instead.
//
// Streaming ends in this order: streaming_mode off, then the final card.
// The official plugin does the same; the other way round, a settings call
// refused while a user clicks (200810) left a finished card "typing" for up
// to the 10 minutes after which Feishu ends streaming itself
// (https://open.feishu.cn/document/cardkit-v1/streaming-updates-openapi-overview).
//
// An answer run again (its worker died mid-answer and the queue handed the
// job to another) must not post a second message. Feishu's reply uuid only
// holds for an hour, and what a repeated uuid returns is not documented, so
// the bot relies on its own record instead (answer.go, sentRecord): the
// message and card a question's answer went out in. A re-run that finds
// the answer finished sends nothing; one that finds a card still streaming
// finishes that card, its sequences above the first run's.

const (
	defaultStreamInterval = 300 * time.Millisecond
	// maxTextFailures stops text updates to a card that keeps refusing
	// them; the final update still tries.
	maxTextFailures = 3
	// finishTimeout bounds sending the final card, which runs even when
	// the answer itself ran out of time.
	finishTimeout = 2 * time.Minute
)

// streamCard is one answer being written into a CardKit card.
type streamCard struct {
	b      *Bot
	log    *slog.Logger
	q      question
	runID  string // tells this run's operations from an earlier run's
	view   cards.AnswerView
	gap    time.Duration
	budget int

	wake     chan struct{} // the text grew; capacity 1
	stop     chan struct{} // closed by finish
	loopDone chan struct{} // closed when run returns

	mu     sync.Mutex
	latest string

	// Owned by run until loopDone is closed, then by finish.
	cardID  string // the entity, once created (or adopted)
	msgID   string // the message showing it, once sent
	adopted bool   // the card is an earlier run's, from the sent record
	// maybeShown: the card's send failed without a refusal, so it may be
	// on screen under a message the bot never learned.
	maybeShown bool
	seq        int
	shown      string // text of the last update Feishu accepted
	updates    int
	fails      int
}

// adoptedSeq is where a run finishing an earlier run's card starts its
// sequences: a run makes about 600 operations at most, so this is past
// the first run's; a third run is refused (300317) and jumps past the
// second's (op).
const adoptedSeq = 1 << 16

// openStream starts showing the thinking card for q and returns the stream
// that its answer text goes to; with an earlier run's card still streaming
// (rec), it writes into that one. ctx bounds the streaming, not finish.
func (b *Bot) openStream(ctx context.Context, log *slog.Logger, q question, rec sentRecord) *streamCard {
	gap := b.cfg.StreamInterval
	if gap <= 0 {
		gap = defaultStreamInterval
	}
	v := cards.AnswerView{Question: q.Text, Asker: q.Asker, Conv: q.Conv, KBLink: b.links.URL, LinkHosts: b.linkHosts}
	s := &streamCard{b: b, log: log, q: q, runID: strconv.FormatUint(rand.Uint64(), 36), view: v, gap: gap, budget: cards.StreamBudget(v),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{})}
	if rec.CardID != "" && rec.MessageID != "" {
		s.cardID, s.msgID, s.adopted, s.seq = rec.CardID, rec.MessageID, true, adoptedSeq
		log.Info("finishing the card an earlier run of this answer left streaming", "card_id", rec.CardID, "sent_message_id", rec.MessageID)
	}
	go s.run(ctx)
	return s
}

// update is the engine's onDelta: it records the text so far and wakes the
// writer. It never blocks the LLM stream.
func (s *streamCard) update(textSoFar string) {
	s.mu.Lock()
	s.latest = textSoFar
	s.mu.Unlock()
	s.poke()
}

// text is the answer so far as the card may show it. It sanitizes outside
// the lock: on pathological text that takes a while, and the LLM stream's
// update must not wait for it.
func (s *streamCard) text() string {
	s.mu.Lock()
	latest := s.latest
	s.mu.Unlock()
	return cards.StreamText(s.view, latest, s.budget)
}

func (s *streamCard) run(ctx context.Context) {
	defer close(s.loopDone)
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic while streaming a card", "panic", v, "stack", stack())
		}
	}()
	if !s.show(ctx) {
		return
	}
	var last time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if !s.pause(ctx, s.gap-time.Since(last)) {
			return
		}
		text := s.text()
		// Only growth is sent: once an answer outgrows the card and is cut
		// (with a note), a longer cut need not extend the last one, and
		// the final card carries the whole of what fits.
		if len(text) <= len(s.shown) || !strings.HasPrefix(text, s.shown) || s.fails >= maxTextFailures {
			continue
		}
		if !s.b.feish.AllowTextUpdate() {
			s.poke() // try again after the next gap
			last = time.Now()
			continue
		}
		err := s.op(func(seq int, uuid string) error {
			return s.b.feish.SetCardText(ctx, s.log, s.cardID, cards.AnswerElement, text, seq, uuid)
		})
		last = time.Now()
		if err != nil {
			s.fails++
			s.log.Warn("streaming text update failed; the final card will carry the text", "card_id", s.cardID, "sequence", s.seq, "error", err)
			if ae, ok := errors.AsType[*openapi.Error](err); ok && ae.RetryAfter > 0 && !s.pause(ctx, ae.RetryAfter) {
				return
			}
			continue
		}
		s.fails = 0
		s.shown = text
		s.updates++
	}
}

func (s *streamCard) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pause waits d, unless the stream stops or ctx ends first (false).
func (s *streamCard) pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// show creates the thinking card and sends it where q says, and records
// it as the answer's message. Creating gives up when the answer is
// finished first: one plain card then does.
func (s *streamCard) show(ctx context.Context) bool {
	if s.adopted {
		return true
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-cctx.Done():
		}
	}()
	id, err := s.b.feish.CreateCard(cctx, s.log, cards.Thinking(s.view))
	cancel()
	select {
	case <-s.stop:
		// The answer was ready first (a curated one, say): it goes out as
		// one card, and a card that got created anyway stays unsent.
		s.log.Debug("answer ready before the streaming card; sending it as one card")
		return false
	default:
	}
	if err != nil {
		s.log.Warn("creating the streaming card failed; the answer will be sent as one card", "error", err)
		return false
	}
	s.cardID = id
	// Its own uuid: the send/reply docs say a uuid must change when the
	// content does, and the one-card fallback carries other content.
	msgID, err := s.b.send(ctx, s.log, s.q, cards.Ref(id), openapi.UUID("stream", s.q.Seed))
	if err != nil {
		s.log.Warn("sending the streaming card failed; the answer will be sent as one card", "card_id", id, "error", err)
		if ae, ok := errors.AsType[*openapi.Error](err); !ok || ae.Status >= 500 || ae.Status == http.StatusTooManyRequests {
			// No answer, not a refusal: the send may have landed (a lost
			// reply). finish updates the entity too, so if it is shown it
			// shows the answer rather than a placeholder typing for ever.
			s.maybeShown = true
		}
		return false
	}
	s.msgID = msgID
	s.b.remember(ctx, s.log, s.q, sentRecord{MessageID: msgID, CardID: id})
	s.log.Info("thinking card sent", "card_id", s.cardID, "sent_message_id", msgID)
	return true
}

// op runs one sequenced card operation with the next sequence. When Feishu
// refuses the sequence (an earlier run of this answer used the card), it
// jumps well past any run's and tries again.
func (s *streamCard) op(call func(seq int, uuid string) error) error {
	for jumps := 0; ; jumps++ {
		s.seq++
		err := call(s.seq, s.uuid())
		ae, ok := errors.AsType[*openapi.Error](err)
		if !ok || ae.Code != openapi.CodeSequence || jumps == 4 {
			return err
		}
		s.seq = max(s.seq*4, 1024) // a run makes about 600 operations at most
		s.log.Info("card sequence refused; jumping past an earlier run's", "card_id", s.cardID, "next", s.seq+1)
	}
}

// uuid names the card's current operation for Feishu's idempotency. The
// run is part of it: a later run of the answer reuses sequences on the same
// card, and must not pass for a repeat of the earlier run's operations.
func (s *streamCard) uuid() string {
	return openapi.UUID(fmt.Sprintf("c%d", s.seq), s.cardID+"\x00"+s.runID)
}

// finish puts card (an answer, partial answer or error card of kind) in
// front of the user: into the streaming card when it was shown, else as
// one card. plain, when not nil, makes the plain version of an answer, for
// when Feishu refuses card's content. It reports whether the user got it,
// and the id of the message that shows it.
func (s *streamCard) finish(ctx context.Context, kind string, card []byte, plain func() []byte) (string, bool) {
	close(s.stop)
	<-s.loopDone
	log := s.log.With("card_id", s.cardID)
	// toPlain swaps the card for its plain version, once, when err says
	// Feishu will never take the card as it is.
	toPlain := func(err error) bool {
		if plain == nil || !openapi.IsContentRefused(err) {
			return false
		}
		log.Warn("Feishu refused the card's content; sending the answer as plain text", "kind", kind, "error", err)
		kind, card, plain = kind+"-plain", plain(), nil
		return true
	}
	if s.msgID == "" {
		if s.maybeShown {
			// Whether Feishu shows it is unknown: finish the entity (a card
			// is updated by its id, no message needed), then send the
			// answer as a message of its own, so the asker gets it either
			// way, at worst twice.
			if err := s.end(ctx, log, card); toPlain(err) {
				s.put(ctx, log, card)
			}
		}
		return s.b.deliverOr(ctx, s.log, s.q, kind, card, plain)
	}
	err := s.end(ctx, log, card)
	if toPlain(err) {
		err = s.put(ctx, log, card)
	}
	if err == nil {
		log.Info("card sent", "kind", kind, "sent_message_id", s.msgID, "text_updates", s.updates)
		s.b.remember(ctx, log, s.q, sentRecord{MessageID: s.msgID, CardID: s.cardID, Final: true})
		return s.msgID, true
	}
	log.Warn("CardKit refused the final card; patching the message instead", "kind", kind, "error", err)
	err = s.b.feish.Patch(ctx, log, s.msgID, card)
	if toPlain(err) {
		err = s.b.feish.Patch(ctx, log, s.msgID, card)
	}
	if err == nil {
		log.Info("card sent", "kind", kind, "sent_message_id", s.msgID, "by", "patch")
		s.b.remember(ctx, log, s.q, sentRecord{MessageID: s.msgID, CardID: s.cardID, Final: true})
		return s.msgID, true
	}
	log.Error("patching the streaming card failed; sending the card anew", "kind", kind, "error", err)
	return s.b.deliverOr(ctx, log, s.q, kind+"-resend", card, plain)
}

// end turns the card's streaming off, then puts the final card in it.
func (s *streamCard) end(ctx context.Context, log *slog.Logger, card []byte) error {
	if err := s.op(func(seq int, uuid string) error {
		return s.b.feish.CardSettings(ctx, log, s.cardID, cards.StreamingOff, seq, uuid)
	}); err != nil {
		// The final card still goes in; Feishu ends streaming itself
		// after 10 minutes.
		log.Warn("turning streaming mode off failed", "error", err)
	}
	return s.put(ctx, log, card)
}

// put replaces the whole card entity with card.
func (s *streamCard) put(ctx context.Context, log *slog.Logger, card []byte) error {
	return s.op(func(seq int, uuid string) error {
		return s.b.feish.UpdateCard(ctx, log, s.cardID, card, seq, uuid)
	})
}
