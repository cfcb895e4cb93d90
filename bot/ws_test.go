package bot

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	larkws "github.com/larksuite/oapi-sdk-go/v3/ws"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/store/state"
)

// newWSHarness is a bot without an encrypt key (frames are plain) reading
// events from a gateway of its own through RunLongConnection. Cleanup
// cancels the connection and checks it stopped cleanly before the bot's
// workers are drained.
func newWSHarness(t *testing.T, o harnessOpts) (*harness, *feishufake.Gateway) {
	t.Helper()
	noKey := ""
	o.encryptKey = &noKey
	if o.appID == "" {
		o.appID = uniqueAppID()
	}
	h := newHarness(t, o)
	g := feishufake.NewGateway(t, o.appID, "secret")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.bot.RunLongConnection(ctx, o.appID, "secret", g.URL) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunLongConnection after cancel = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunLongConnection did not return after cancel")
		}
	})
	return h, g
}

// wsSentinel is harness.sentinel over the long connection.
func wsSentinel(h *harness, g *feishufake.Gateway) {
	h.t.Helper()
	m := h.dm("sentinel question")
	g.MustDeliver(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
}

func TestWSDirectMessageAnsweredOnce(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h, g := newWSHarness(t, harnessOpts{state: st, workers: 1})
		m := h.dm("长连接的问题")
		ev := h.signer.MessageEvent(m)
		a := g.MustDeliver(ev)
		if len(a.Data) != 0 {
			t.Errorf("event answered with data %s, want none", a.Data)
		}
		reply := h.replyTo(m.MessageID)
		if text := feishufake.CardText(reply.Card); !strings.Contains(text, "关于「长连接的问题」") {
			t.Errorf("reply card does not answer the question:\n%s", text)
		}

		// Feishu redelivers the event, and the message arrives again under
		// a new event id.
		g.MustDeliver(ev)
		m2 := m
		m2.EventID = h.id("ev")
		g.MustDeliver(h.signer.MessageEvent(m2))

		wsSentinel(h, g)
		if n := h.fake.Replies(m.MessageID); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
		if n := len(h.ans.Calls()); n != 2 { // the message and the sentinel
			t.Errorf("answerer asked %d times, want 2", n)
		}
		if n := h.events(evMessage, outcomeDuplicate); n != 2 {
			t.Errorf("%d duplicates counted, want the redelivery and the new event id", n)
		}

		pings := g.Pings()
		if len(pings) == 0 || pings[0].Service != g.ServiceID() {
			t.Errorf("pings %+v, want one on service %d (from the endpoint URL)", pings, g.ServiceID())
		}
	})
}

func TestWSCardActionToastThenAnswer(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{workers: 1})
	m := h.dm("第一个问题")
	g.MustDeliver(h.signer.MessageEvent(m))
	card := h.replyTo(m.MessageID)
	h.waitTurns("chat:"+m.ChatID, 1)
	fu := feishufake.ButtonsWith(card.Card, cards.ActionAsk)
	if len(fu) == 0 {
		t.Fatalf("answer card has no follow-up buttons: %v", card.Card)
	}

	click := feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: m.ChatID, Value: fu[0]}
	a := g.MustDeliver(h.signer.CardActionEvent(click))
	var resp struct {
		Toast struct{ Type, Content string } `json:"toast"`
	}
	if err := json.Unmarshal(a.Data, &resp); err != nil || resp.Toast.Content != "正在回答…" || resp.Toast.Type != "info" {
		t.Errorf("click answered %s, want an info toast 正在回答…", a.Data)
	}

	testkit.Eventually(t, "the follow-up answer", func() bool { return h.fake.Creates(m.ChatID) > 0 })
	var created feishufake.Request
	for _, r := range h.fake.Sent() {
		if r.Op == feishufake.OpCreate {
			created = r
		}
	}
	if text := feishufake.CardText(created.Card); !strings.Contains(text, "<at id=ou_alice></at>") || !strings.Contains(text, "关于「如何开始？」") {
		t.Errorf("follow-up card does not name the asker or answer the question:\n%s", text)
	}

	// A redelivered click gets the toast again and no second answer.
	if a := g.MustDeliver(h.signer.CardActionEvent(click)); !strings.Contains(string(a.Data), "正在回答…") {
		t.Errorf("redelivered click answered %s", a.Data)
	}
	wsSentinel(h, g)
	if n := h.fake.Creates(m.ChatID); n != 1 {
		t.Errorf("%d follow-up answers, want 1", n)
	}
}

func TestWSWelcome(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{})
	chat := "oc_" + h.id("dm")
	g.MustDeliver(h.signer.ChatEnteredEvent(h.id("ev"), chat, "ou_alice"))
	g.MustDeliver(h.signer.ChatEnteredEvent(h.id("ev"), chat, "ou_alice"))
	// The second event was acknowledged after SeenChat said "seen", so
	// it queued nothing: one card now means one card for good.
	testkit.Eventually(t, "the welcome card", func() bool { return h.fake.Creates(chat) > 0 })
	wsSentinel(h, g)
	if n := createRequests(h.fake, chat); n != 1 {
		t.Errorf("%d welcome cards sent, want 1", n)
	}
}

// failingClaims is a state store whose de-duplication is down.
type failingClaims struct{ State }

func (failingClaims) Claim(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("store down")
}

func TestWSHandlerErrorAnswers500(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{state: failingClaims{State: state.NewMemory()}})
	m := h.dm("存储挂了")
	if a := g.Deliver(h.signer.MessageEvent(m)); a.Code != http.StatusInternalServerError {
		t.Errorf("response frame code %d, want 500 so Feishu redelivers", a.Code)
	}
	if n := h.fake.Calls(feishufake.OpReply); n != 0 {
		t.Errorf("%d replies, want none", n)
	}
}

func TestWSReconnects(t *testing.T) {
	h, g := newWSHarness(t, harnessOpts{})
	g.Connections(1)
	g.Drop()
	g.Connections(2)
	m := h.dm("断线之后")
	g.MustDeliver(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
	endpoints := g.Endpoints()
	if endpoints != 2 {
		t.Errorf("%d endpoint requests, want 2 (the SDK asks again before redialling)", endpoints)
	}
}

func TestWSBadCredentialsIsFatal(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	g := feishufake.NewGateway(t, "cli_other", "other-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.bot.RunLongConnection(ctx, "cli_wrong", "secret", g.URL)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("RunLongConnection = %v (ctx %v), want a prompt error", err, ctx.Err())
	}
	if _, ok := errors.AsType[*larkws.ClientError](err); !ok || !strings.Contains(err.Error(), "invalid app_id or app_secret") {
		t.Errorf("error %q (%T), want the endpoint's client error", err, err)
	}
}

// A base URL without the long-connection endpoint (here the fake Open API,
// which answers 404) fails at once instead of being retried forever.
func TestWSEndpointNotFoundIsFatal(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.bot.RunLongConnection(ctx, uniqueAppID(), "secret", h.fake.URL)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("RunLongConnection = %v (ctx %v), want a prompt error", err, ctx.Err())
	}
	if se, ok := errors.AsType[*larkws.ServerError](err); !ok || se.Code != http.StatusNotFound || !strings.Contains(err.Error(), h.fake.URL) {
		t.Errorf("error %q, want the endpoint's 404 naming the base URL", err)
	}
}
