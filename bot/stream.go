package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
// answer goes out as one plain card when it is ready (and when Feishu
// de-duplicates that send to a thinking card that did go out, that card is
// finished instead); if the final update fails, the message is patched to
// the final card instead.
//
// An answer run again (its worker died mid-answer and the queue handed the
// job to another) sends the same reply uuid, so Feishu shows no second
// message: the reply returns the first run's. A claim on the question's
// seed tells the second run it is one; it then asks Feishu which card that
// message shows and finishes that card, jumping its sequence past the first
// run's when Feishu refuses it.

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
	cardID string // the entity, once created
	msgID  string // the message showing it, once sent
	// maybeShown: a thinking card may be out under the answer's reply uuid
	// though msgID is empty (its send failed as far as the bot knows, or an
	// earlier run of the answer sent one).
	maybeShown bool
	seq        int
	shown      string // text of the last update Feishu accepted
	updates    int
	fails      int
}

// openStream starts showing the thinking card for q and returns the stream
// that its answer text goes to. ctx bounds the streaming, not finish.
func (b *Bot) openStream(ctx context.Context, log *slog.Logger, q question) *streamCard {
	gap := b.cfg.StreamInterval
	if gap <= 0 {
		gap = defaultStreamInterval
	}
	v := cards.AnswerView{Question: q.Text, Asker: q.Asker, Conv: q.Conv, BaseURL: b.cfg.PublicURL, LinkHosts: b.linkHosts}
	s := &streamCard{b: b, log: log, q: q, runID: strconv.FormatUint(rand.Uint64(), 36), view: v, gap: gap, budget: cards.StreamBudget(v),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{})}
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

func (s *streamCard) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cards.StreamText(s.view, s.latest, s.budget)
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

// show creates the thinking card and sends it where q says. Creating gives
// up when the answer is finished first: one plain card then does.
func (s *streamCard) show(ctx context.Context) bool {
	again := s.runAgain(ctx)
	s.maybeShown = again
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
	s.maybeShown = true
	msgID, err := s.b.send(ctx, s.log, s.q, cards.Ref(id), openapi.UUID("answer", s.q.Seed))
	if err != nil {
		s.log.Warn("sending the streaming card failed; the answer will be sent as one card", "card_id", id, "error", err)
		return false
	}
	s.msgID = msgID
	if again {
		s.adopt(ctx)
	}
	s.log.Info("thinking card sent", "card_id", s.cardID, "sent_message_id", msgID)
	return true
}

// runAgain reports whether an earlier run of this answer may have shown a
// card already: its claim on the seed is taken (or cannot be checked).
func (s *streamCard) runAgain(ctx context.Context) bool {
	first, err := s.b.st.Claim(ctx, "card:"+s.q.Seed, dedupTTL)
	if err != nil {
		s.log.Warn("claiming the streaming card failed; checking which card the reply shows", "error", err)
		return true
	}
	return !first
}

// adopt makes the stream write into the card the reply message shows,
// which is an earlier run's when Feishu de-duplicated the reply.
func (s *streamCard) adopt(ctx context.Context) {
	shown, err := s.b.feish.CardOf(ctx, s.log, s.msgID)
	switch {
	case err != nil:
		s.log.Warn("cannot tell which card the reply shows; streaming into this run's", "card_id", s.cardID, "error", err)
	case shown != "" && shown != s.cardID:
		s.log.Info("finishing the card an earlier run of this answer showed", "card_id", shown, "unsent_card_id", s.cardID)
		s.cardID = shown
	}
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
// one card. It reports whether the user got it.
func (s *streamCard) finish(ctx context.Context, kind string, card []byte) bool {
	close(s.stop)
	<-s.loopDone
	log := s.log.With("card_id", s.cardID)
	if s.msgID == "" {
		id, ok := s.b.deliver(ctx, log, s.q, kind, card)
		if !ok || !s.maybeShown || !s.adoptSent(ctx, log, id) {
			return ok
		}
		log = s.log.With("card_id", s.cardID)
	}
	err := s.op(func(seq int, uuid string) error {
		return s.b.feish.UpdateCard(ctx, log, s.cardID, card, seq, uuid)
	})
	if err == nil {
		err := s.op(func(seq int, uuid string) error {
			return s.b.feish.CardSettings(ctx, log, s.cardID, cards.StreamingOff, seq, uuid)
		})
		if err != nil {
			// The card shows the final answer; only the typing state lingers
			// until Feishu ends it.
			log.Warn("turning streaming mode off failed", "error", err)
		}
		log.Info("card sent", "kind", kind, "sent_message_id", s.msgID, "text_updates", s.updates)
		return true
	}
	log.Warn("CardKit refused the final card; patching the message instead", "kind", kind, "error", err)
	if err = s.b.feish.Patch(ctx, log, s.msgID, card); err == nil {
		log.Info("card sent", "kind", kind, "sent_message_id", s.msgID, "by", "patch")
		return true
	}
	log.Error("patching the streaming card failed; sending the card anew", "kind", kind, "error", err)
	_, ok := s.b.deliver(ctx, log, s.q, kind+"-resend", card)
	return ok
}

// adoptSent checks the message a one-card send returned. The send carries
// the answer's reply uuid, which a thinking card (this run's, whose send
// only seemed to fail, or an earlier run's) may have used already: Feishu
// then returns that message, still streaming its placeholder, instead of
// sending the card. adoptSent reports whether it did, and makes the stream
// finish that card.
func (s *streamCard) adoptSent(ctx context.Context, log *slog.Logger, msgID string) bool {
	shown, err := s.b.feish.CardOf(ctx, log, msgID)
	if ae, ok := errors.AsType[*openapi.Error](err); ok && ae.Code == openapi.CodeCardNotFound {
		return false // a plain card: the one just sent
	}
	if err != nil {
		log.Warn("cannot tell whether the reply is the answer or an unfinished streaming card", "sent_message_id", msgID, "error", err)
		return false
	}
	if shown == "" {
		return false
	}
	log.Info("the reply is a streaming card already shown; finishing it", "shown_card_id", shown, "sent_message_id", msgID)
	s.cardID, s.msgID = shown, msgID
	return true
}
