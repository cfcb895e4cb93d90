package openapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/retry"
)

// IsContentRefused tells a card Feishu will never take (send a plain one)
// from a call that failed for another reason (retry, or give up).
func TestIsContentRefused(t *testing.T) {
	fake := newFake(t)
	log := testkit.Logger(t)
	f := testClient(t, fake, "cli_content_refused", retry.Policy{Attempts: 2, Base: time.Millisecond})
	ctx := context.Background()

	// A card as a careless renderer would make it, straight from the model.
	hostile := []byte(`{"schema":"2.0","config":{"update_multi":true},"body":{"elements":[{"tag":"markdown","content":"![x](https://evil.example/a.png)"}]}}`)
	huge := []byte(`{"schema":"2.0","config":{"update_multi":true},"body":{"elements":[{"tag":"markdown","content":"` + strings.Repeat("a&b", 8000) + `"}]}}`)
	plain := cards.PlainAnswer(cards.AnswerView{Question: "q", Answer: rag.Answer{Text: "![x](https://evil.example/a.png) <at id=all></at>"}})

	_, replyErr := f.Reply(ctx, log, "om_1", false, hostile, "u1")
	_, hugeErr := f.Reply(ctx, log, "om_1", false, huge, "u2")
	_, cardErr := f.CreateCard(ctx, log, huge)
	_, plainErr := f.Reply(ctx, log, "om_1", false, plain, "u3")
	fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 2, Status: 502})
	_, outage := f.Reply(ctx, log, "om_1", false, plain, "u4")
	id, err := f.CreateCard(ctx, log, cards.Thinking(cards.AnswerView{Question: "q"}))
	if err != nil {
		t.Fatal(err)
	}
	seqErr := f.SetCardText(ctx, log, id, cards.AnswerElement, "a", 0, "u5")

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"remote image", replyErr, true},
		{"remote image, wrapped", fmt.Errorf("answering: %w", replyErr), true},
		{"message too large", hugeErr, true},
		{"card entity too large", cardErr, true},
		{"an outage", outage, false},
		{"a bad sequence", seqErr, false},
		{"not an API error", errors.New("230099"), false},
		{"no error", nil, false},
	} {
		if got := IsContentRefused(tc.err); got != tc.want {
			t.Errorf("%s (%v): IsContentRefused %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	if plainErr != nil {
		t.Errorf("the plain answer was refused: %v", plainErr)
	}
	for _, tc := range []struct {
		err  error
		code int
	}{{replyErr, CodeCardContent}, {hugeErr, CodeMessageTooLarge}, {cardErr, CodeCardTooLarge}} {
		if ae, ok := errors.AsType[*Error](tc.err); !ok || ae.Code != tc.code || ae.Status != 400 {
			t.Errorf("%v: want HTTP 400 code %d", tc.err, tc.code)
		}
	}
}
