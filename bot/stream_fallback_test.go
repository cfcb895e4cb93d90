package bot

import (
	"strings"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
)

// TestThinkingCardSentButLostIsFinishedAnyway: Feishu applies the thinking
// card's reply but every answer the bot gets is a 502, so the bot cannot
// know whether the card is on screen. What a repeated uuid returns is not
// documented, so the bot does not lean on it: it finishes the card entity
// (so a shown card shows the answer, not a placeholder typing for ever)
// and sends the answer as a message of its own.
func TestThinkingCardSentButLostIsFinishedAnyway(t *testing.T) {
	h := streamingHarness(t, tokens(llmText), time.Millisecond)
	fake := h.fake
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: h.bot.cfg.SendAttempts, Status: 502, Applied: true})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	testkit.Eventually(t, "the answer as a message of its own", func() bool {
		for _, r := range fake.Sent() {
			if r.MessageID == m.MessageID && r.CardID == "" {
				return true
			}
		}
		return false
	})
	var cardID string
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpCardCreate && r.CardID != "" {
			cardID = r.CardID
		}
	}
	testkit.Eventually(t, "the thinking card finished", func() bool { return fake.Settled(cardID) })
	card, _, _ := fake.Card(cardID)
	text := feishufake.CardText(card)
	if !strings.Contains(text, "让模型依据资料写出回答") || !strings.Contains(text, "参考资料") || strings.Contains(text, cards.ThinkingText) {
		t.Errorf("the thinking card, shown or not, does not hold the answer:\n%s", text)
	}
	if len(feishufake.ButtonsWith(card, cards.ActionFeedback)) != 2 || len(feishufake.ButtonsWith(card, cards.ActionAsk)) == 0 {
		t.Errorf("the answer lacks follow-ups or feedback buttons:\n%s", text)
	}
}
