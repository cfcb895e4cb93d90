package bot

import (
	"strings"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
)

// TestThinkingCardSentButLostFallbackFinishesIt: Feishu applies the
// thinking card's reply but every answer the bot gets is a 502, so the bot
// takes the card for unsent. The fallback send carries the same uuid and
// Feishu returns the thinking card's message; the bot must finish that
// card rather than leave it streaming the placeholder.
func TestThinkingCardSentButLostFallbackFinishesIt(t *testing.T) {
	h := streamingHarness(t, tokens(llmText), time.Millisecond)
	fake := h.fake
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: h.bot.cfg.SendAttempts, Status: 502, Applied: true})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	if r.CardID == "" {
		t.Fatalf("want the thinking card's message, got a plain card:\n%s", feishufake.CardText(r.Card))
	}
	card, streaming, ok := fake.Card(r.CardID)
	if !ok || streaming {
		t.Fatalf("card %s: found %v, streaming %v", r.CardID, ok, streaming)
	}
	text := feishufake.CardText(card)
	if !strings.Contains(text, "让模型依据资料写出回答") || !strings.Contains(text, "参考资料") || strings.Contains(text, cards.ThinkingText) {
		t.Errorf("the message does not show the answer:\n%s", text)
	}
	if len(feishufake.ButtonsWith(card, cards.ActionFeedback)) != 2 || len(feishufake.ButtonsWith(card, cards.ActionAsk)) == 0 {
		t.Errorf("the answer lacks follow-ups or feedback buttons:\n%s", text)
	}
	if n := fake.Replies(m.MessageID); n != 1 {
		t.Errorf("%d messages for the question, want 1", n)
	}
}
