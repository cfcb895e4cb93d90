package openapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/store/retry"
)

// testClient is a client of fake with pacing off, so tests run at full
// speed; appID keeps the SDK's process-wide token cache and the fake's
// per-app windows apart between tests.
func testClient(t *testing.T, fake *feishufake.Server, appID string, p retry.Policy) *Client {
	t.Helper()
	log := testkit.Logger(t)
	c := New(NewLarkClient(appID, "secret", fake.URL, log), log, p)
	for _, api := range []string{APIListSpaces, APIGetSpace, APIListNodes, APIGetNode, APIGetDocument, APIListBlocks} {
		c.SetPace(api, rate.Inf, 1)
	}
	return c
}

// newFake is a fake Open API closed when the test ends.
func newFake(t *testing.T) *feishufake.Server {
	fake := feishufake.New("ou_kbbot")
	t.Cleanup(fake.Close)
	return fake
}

// TestCardKitSequenceRules checks the fake enforces what Feishu does, and
// that the bot's CardKit calls survive a lost answer.
func TestCardKitSequenceRules(t *testing.T) {
	fake := newFake(t)
	log := testkit.Logger(t)
	f := testClient(t, fake, "cli_sequence_rules", retry.Policy{Attempts: 3, Base: time.Millisecond})
	ctx := context.Background()
	id, err := f.CreateCard(ctx, log, cards.Thinking(cards.AnswerView{Question: "q"}))
	if err != nil {
		t.Fatal(err)
	}
	code := func(err error) int {
		t.Helper()
		if err == nil {
			return 0
		}
		ae, ok := err.(*Error)
		if !ok {
			t.Fatalf("not an API error: %v", err)
		}
		return ae.Code
	}
	for _, step := range []struct {
		text string
		seq  int
		uuid string
		want int
	}{
		{"a", 2, "u2", 0},
		{"ab", 2, "u3", feishufake.CodeSequence},
		{"ab", 1, "u4", feishufake.CodeSequence},
		{"a", 2, "u2", 0}, // a replay of an applied update
		{"abc", 3, "u2", feishufake.CodeUUIDConflict},
		{"abc", 3, "u5", 0},
	} {
		if got := code(f.SetCardText(ctx, log, id, cards.AnswerElement, step.text, step.seq, step.uuid)); got != step.want {
			t.Errorf("text %q seq %d uuid %s: code %d, want %d", step.text, step.seq, step.uuid, got, step.want)
		}
	}
	card, _, _ := fake.Card(id)
	if !strings.Contains(feishufake.CardText(card), "abc") {
		t.Errorf("the element was not updated:\n%s", feishufake.CardText(card))
	}

	// The first attempt lands but its answer is lost; the retry repeats
	// sequence and uuid and is answered as a replay.
	fake.Fail(feishufake.Fault{Op: feishufake.OpCardUpdate, Times: 1, Status: 502, Applied: true})
	if err := f.UpdateCard(ctx, log, id, cards.Thinking(cards.AnswerView{Question: "q2"}), 6, "u6"); err != nil {
		t.Fatalf("update after a lost answer: %v", err)
	}
	// Without a uuid Feishu cannot tell; the sequence refusal says the
	// first attempt landed.
	fake.Fail(feishufake.Fault{Op: feishufake.OpCardSettings, Times: 1, Status: 502, Applied: true})
	if err := f.CardSettings(ctx, log, id, cards.StreamingOff, 7, ""); err != nil {
		t.Fatalf("settings after a lost answer: %v", err)
	}
	if _, streaming, _ := fake.Card(id); streaming {
		t.Error("streaming still on")
	}
	if got := code(f.SetCardText(ctx, log, id, cards.AnswerElement, "abcd", 8, "u8")); got != feishufake.CodeStreamingOff {
		t.Errorf("text update after streaming ended: code %d, want %d", got, feishufake.CodeStreamingOff)
	}
}

// A settings call refused while a user interacts with the card (200810)
// is tried again; a refusal of the request itself is not.
func TestCardOpRetriesUserInteraction(t *testing.T) {
	fake := newFake(t)
	log := testkit.Logger(t)
	var sleeps testkit.Sleeps
	f := testClient(t, fake, "cli_interaction", retry.Policy{Attempts: 3, Base: time.Millisecond, Sleep: sleeps.Sleep})
	ctx := t.Context()
	id, err := f.CreateCard(ctx, log, cards.Thinking(cards.AnswerView{Question: "q"}))
	if err != nil {
		t.Fatal(err)
	}
	fake.Fail(feishufake.Fault{Op: feishufake.OpCardSettings, Times: 1, Status: 400, Code: 200810})
	if err := f.CardSettings(ctx, log, id, cards.StreamingOff, 2, "s2"); err != nil {
		t.Fatalf("settings after one 200810: %v", err)
	}
	if n := len(sleeps.Waits()); n != 1 {
		t.Errorf("%d waits, want one retry", n)
	}
	fake.Fail(feishufake.Fault{Op: feishufake.OpCardSettings, Times: 1, Status: 400, Code: 10002})
	if err := f.CardSettings(ctx, log, id, cards.StreamingOff, 3, "s3"); err == nil {
		t.Error("a bad request was retried into success")
	}
	if n := len(sleeps.Waits()); n != 1 {
		t.Errorf("%d waits, want no retry of a bad request", n)
	}
}
