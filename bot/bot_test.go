package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/bot/kblink"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/index"
	"kbbot/store/redistest"
	"kbbot/store/state"
)

func TestURLVerification(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
	}{{"plain", ""}, {"encrypted", testEncrypt}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{encryptKey: &tc.key})
			req, err := h.signer.Request(context.Background(), h.srv.URL+"/feishu/events", h.signer.Challenge("ch-123"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if got := decodeJSON(t, string(body))["challenge"]; got != "ch-123" {
				t.Errorf("challenge = %v, want ch-123", got)
			}

			wrong := feishufake.Signer{EncryptKey: tc.key, Token: "not-the-token"}
			if status, body := h.post(wrong.Challenge("ch-x")); status != rejectStatus || body != rejectBody {
				t.Errorf("challenge with a wrong token: %d %s, want the common rejection", status, body)
			}
		})
	}
}

func TestDirectMessageGetsOneAnswerCard(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h := newHarness(t, harnessOpts{state: st})
		m := h.dm("什么是知识库？")
		h.mustPost(h.signer.MessageEvent(m))
		r := h.replyTo(m.MessageID)

		if r.MsgType != "interactive" || r.UUID == "" {
			t.Errorf("msg_type %q uuid %q: want an interactive card with an idempotency uuid", r.MsgType, r.UUID)
		}
		if r.Card["schema"] != "2.0" || r.Card["config"].(map[string]any)["update_multi"] != true {
			t.Errorf("card is not schema 2.0 with update_multi: %v", r.Card["config"])
		}
		text := feishufake.CardText(r.Card)
		for _, want := range []string{"关于「什么是知识库？」：答案在这里 [1]", cards.AINotice, "**参考资料**",
			"[文档一](" + testPublic + "/kb/doc-1?exp=", "[Doc Two](https://example.com/doc-2)", "**其他人在问**"} {
			if !strings.Contains(text, want) {
				t.Errorf("card lacks %q:\n%s", want, text)
			}
		}
		if fu := feishufake.ButtonsWith(r.Card, cards.ActionAsk); len(fu) < 1 || fu[0]["q"] != "如何开始？" {
			t.Errorf("follow-up buttons = %v", fu)
		}
		if fb := feishufake.ButtonsWith(r.Card, cards.ActionFeedback); len(fb) != 2 {
			t.Errorf("feedback buttons = %v", fb)
		}
		if len(feishufake.ButtonsWith(r.Card, cards.ActionReset)) != 1 {
			t.Error("no new-topic button")
		}
		if calls := h.ans.Calls(); len(calls) != 1 || calls[0].Question != "什么是知识库？" {
			t.Errorf("answerer calls = %+v", calls)
		}
		h.sentinel()
		if n := h.fake.Replies(m.MessageID); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
	})
}

func TestGroupNeedsMention(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	group := func(text string, mentions ...feishufake.Mention) feishufake.Message {
		return feishufake.Message{EventID: h.id("ev"), MessageID: h.id("om"), ChatID: "oc_group", ChatType: "group", Sender: "ou_bob", Text: text, Mentions: mentions}
	}
	plain := group("大家好，有人知道怎么配置吗")
	other := group("@_user_1 你知道吗", feishufake.Mention{Key: "@_user_1", OpenID: "ou_carol", Name: "Carol"})
	h.mustPost(h.signer.MessageEvent(plain))
	h.mustPost(h.signer.MessageEvent(other))

	mentioned := group("@_user_1 怎么配置 @_user_2 说的那个？",
		feishufake.Mention{Key: "@_user_1", OpenID: testBotID, Name: "kbbot"},
		feishufake.Mention{Key: "@_user_2", OpenID: "ou_carol", Name: "Carol"})
	h.mustPost(h.signer.MessageEvent(mentioned))
	h.replyTo(mentioned.MessageID)

	if n := h.fake.Replies(plain.MessageID) + h.fake.Replies(other.MessageID); n != 0 {
		t.Errorf("%d replies to group messages that did not mention the bot", n)
	}
	calls := h.ans.Calls()
	if len(calls) != 1 || calls[0].Question != "怎么配置 Carol 说的那个？" {
		t.Errorf("answerer calls = %+v, want one with the mention placeholders stripped", calls)
	}
}

func TestIgnoresBotsAndItself(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	fromBot := h.dm("hello")
	fromBot.SenderType = "bot"
	self := h.dm("hello")
	self.Sender = testBotID
	h.mustPost(h.signer.MessageEvent(fromBot))
	h.mustPost(h.signer.MessageEvent(self))
	h.sentinel()
	if n := h.fake.Replies(fromBot.MessageID) + h.fake.Replies(self.MessageID); n != 0 {
		t.Errorf("%d replies to bot messages", n)
	}
}

func TestRedeliveryAnsweredOnce(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h := newHarness(t, harnessOpts{state: st, workers: 1})
		m := h.dm("重复投递的问题")
		ev := h.signer.MessageEvent(m)
		for range 3 {
			h.mustPost(ev)
		}
		// The same message in a second event id (another delivery path).
		m2 := m
		m2.EventID = h.id("ev")
		h.mustPost(h.signer.MessageEvent(m2))

		h.replyTo(m.MessageID)
		h.sentinel()
		if n := h.fake.Replies(m.MessageID); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
		if n := h.fake.Calls(feishufake.OpReply); n != 2 { // the message and the sentinel
			t.Errorf("%d reply calls, want 2", n)
		}
		if n := len(h.ans.Calls()); n != 2 {
			t.Errorf("answerer asked %d times, want 2", n)
		}
	})
}

func TestFollowUpClick(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h := newHarness(t, harnessOpts{state: st})
		m := h.dm("第一个问题")
		h.mustPost(h.signer.MessageEvent(m))
		card := h.replyTo(m.MessageID)
		h.waitTurns("chat:"+m.ChatID, 1)
		fu := feishufake.ButtonsWith(card.Card, cards.ActionAsk)[0]

		click := feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: m.ChatID, Value: fu}
		status, body := h.post(h.signer.CardActionEvent(click))
		if status != 200 {
			t.Fatalf("click: status %d %s", status, body)
		}
		toast, _ := decodeJSON(t, body)["toast"].(map[string]any)
		if toast == nil || toast["content"] != "正在回答…" {
			t.Errorf("click answered %s, want a 正在回答… toast", body)
		}
		// A double click (a second event) and a redelivery of the first.
		dbl := click
		dbl.EventID = h.id("ev")
		h.mustPost(h.signer.CardActionEvent(dbl))
		h.mustPost(h.signer.CardActionEvent(click))

		testkit.Eventually(t, "the follow-up answer", func() bool { return h.fake.Creates(m.ChatID) > 0 })
		var created feishufake.Request
		for _, r := range h.fake.Sent() {
			if r.Op == feishufake.OpCreate {
				created = r
			}
		}
		if created.ReceiveID != m.ChatID || created.Query.Get("receive_id_type") != "chat_id" {
			t.Errorf("created in %q (%v), want chat %q by chat_id", created.ReceiveID, created.Query, m.ChatID)
		}
		text := feishufake.CardText(created.Card)
		if !strings.Contains(text, "<at id=ou_alice></at>") || !strings.Contains(text, "关于「如何开始？」") {
			t.Errorf("follow-up card does not name the asker or answer the question:\n%s", text)
		}
		// The follow-up is answered in the chat's context.
		calls := h.ans.Calls()
		if len(calls) != 2 || len(calls[1].History) != 1 || calls[1].History[0].Question != "第一个问题" {
			t.Errorf("answerer calls = %+v, want the follow-up with the first turn as history", calls)
		}
		h.sentinel()
		if n := h.fake.Creates(m.ChatID); n != 1 {
			t.Errorf("%d follow-up answers, want 1", n)
		}
	})
}

func TestHistoryFedToAnswerer(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	first := h.dm("第一个问题")
	h.mustPost(h.signer.MessageEvent(first))
	h.replyTo(first.MessageID)
	second := h.dm("那第二个呢")
	h.mustPost(h.signer.MessageEvent(second))
	h.replyTo(second.MessageID)

	// A thread is a conversation of its own.
	inThread := h.dm("话题里的问题")
	inThread.ThreadID = "omt_1"
	h.mustPost(h.signer.MessageEvent(inThread))
	r := h.replyTo(inThread.MessageID)
	if !r.InThread {
		t.Error("answer to a thread message not sent with reply_in_thread")
	}

	calls := h.ans.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	if len(calls[0].History) != 0 {
		t.Errorf("first question had history %+v", calls[0].History)
	}
	if hist := calls[1].History; len(hist) != 1 || hist[0].Question != "第一个问题" || !strings.Contains(hist[0].Answer, "答案在这里") || len(hist[0].Sources) != 2 {
		t.Errorf("second question's history = %+v", hist)
	}
	if len(calls[2].History) != 0 {
		t.Errorf("thread question had the chat's history %+v", calls[2].History)
	}

	// /reset clears it.
	reset := h.dm("/reset")
	h.mustPost(h.signer.MessageEvent(reset))
	if !strings.Contains(feishufake.CardText(h.replyTo(reset.MessageID).Card), "已开始新话题") {
		t.Error("no reset confirmation")
	}
	third := h.dm("第三个问题")
	h.mustPost(h.signer.MessageEvent(third))
	h.replyTo(third.MessageID)
	if calls := h.ans.Calls(); len(calls[3].History) != 0 {
		t.Errorf("history after /reset = %+v", calls[3].History)
	}
}

func TestHistorySurvivesRestart(t *testing.T) {
	url := redistest.URL(t)
	prefix := redistest.Prefix(t)
	fake := feishufake.New(testBotID)
	defer fake.Close()

	h1 := newHarness(t, harnessOpts{state: openRedisReplica(t, url, prefix).st, fake: fake})
	first := h1.dm("重启前的问题")
	h1.mustPost(h1.signer.MessageEvent(first))
	h1.replyTo(first.MessageID)
	h1.srv.Close()
	if err := h1.bot.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, harnessOpts{state: openRedisReplica(t, url, prefix).st, fake: fake})
	second := h2.dm("重启后的问题")
	second.ChatID = first.ChatID
	h2.mustPost(h2.signer.MessageEvent(second))
	h2.replyTo(second.MessageID)
	calls := h2.ans.Calls()
	if len(calls) != 1 || len(calls[0].History) != 1 || calls[0].History[0].Question != "重启前的问题" {
		t.Errorf("after restart the answerer got %+v, want the first turn as history", calls)
	}
	// A redelivery of the first message after the restart is still a duplicate.
	h2.mustPost(h2.signer.MessageEvent(first))
	h2.sentinel()
	if n := fake.Replies(first.MessageID); n != 1 {
		t.Errorf("first message has %d replies after restart, want 1", n)
	}
}

func TestCommandsAndUnsupported(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, cmd := range []string{"/help", "帮助"} {
		m := h.dm(cmd)
		h.mustPost(h.signer.MessageEvent(m))
		if text := feishufake.CardText(h.replyTo(m.MessageID).Card); !strings.Contains(text, "/reset") {
			t.Errorf("%s: no help card:\n%s", cmd, text)
		}
	}
	img := h.dm("")
	img.MsgType, img.Content = "image", `{"image_key":"img_1"}`
	h.mustPost(h.signer.MessageEvent(img))
	if text := feishufake.CardText(h.replyTo(img.MessageID).Card); !strings.Contains(text, "文字") || !strings.Contains(text, "image") {
		t.Errorf("no unsupported-message card:\n%s", text)
	}
	for _, content := range []string{
		`{"title":"标题","content":[[{"tag":"at","user_id":"@_user_1","user_name":"kbbot"},{"tag":"text","text":" 富文本问题"}]]}`,
		`{"zh_cn":{"title":"","content":[[{"tag":"text","text":"包装过的"},{"tag":"a","text":"链接","href":"https://x"}]]}}`,
	} {
		p := h.dm("")
		p.MsgType, p.Content = "post", content
		p.Mentions = []feishufake.Mention{{Key: "@_user_1", OpenID: testBotID, Name: "kbbot"}}
		h.mustPost(h.signer.MessageEvent(p))
		h.replyTo(p.MessageID)
	}
	var qs []string
	for _, c := range h.ans.Calls() {
		qs = append(qs, c.Question)
	}
	if want := []string{"标题\n富文本问题", "包装过的链接"}; fmt.Sprint(qs) != fmt.Sprint(want) {
		t.Errorf("post questions = %q, want %q", qs, want)
	}
}

func TestWelcomeOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.mustPost(h.signer.ChatEnteredEvent(h.id("ev"), "oc_new", "ou_dave"))
	testkit.Eventually(t, "the welcome card", func() bool { return h.fake.Creates("oc_new") > 0 })
	h.mustPost(h.signer.ChatEnteredEvent(h.id("ev"), "oc_new", "ou_dave"))
	h.sentinel()
	// Requests, not delivered messages: Feishu would drop a second welcome
	// by its uuid within the hour, but only "once per chat" keeps the bot
	// from sending one at all (and a day later).
	if n := createRequests(h.fake, "oc_new"); n != 1 {
		t.Errorf("%d welcome cards sent, want 1", n)
	}
	for _, r := range h.fake.Sent() {
		if r.ReceiveID == "oc_new" {
			if qs := feishufake.ButtonsWith(r.Card, cards.ActionAsk); len(qs) != 2 || qs[0]["q"] != "什么是知识库？" {
				t.Errorf("starter buttons = %v", qs)
			}
		}
	}
}

func TestFeedbackAndReset(t *testing.T) {
	st := state.NewMemory()
	h := newHarness(t, harnessOpts{state: st})
	m := h.dm("值得点赞的问题")
	h.mustPost(h.signer.MessageEvent(m))
	card := h.replyTo(m.MessageID)
	h.waitTurns("chat:"+m.ChatID, 1)
	up := feishufake.ButtonsWith(card.Card, cards.ActionFeedback)[0]
	click := func(v map[string]any) string {
		_, body := h.post(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: m.ChatID, Value: v}))
		return body
	}
	if body := click(up); !strings.Contains(body, "感谢反馈") {
		t.Errorf("feedback answered %s", body)
	}
	if body := click(up); !strings.Contains(body, "已经收到") {
		t.Errorf("second vote answered %s", body)
	}
	u, d, _ := st.AddFeedback(context.Background(), "down", []byte(`{}`))
	if u != 1 || d != 1 {
		t.Errorf("votes up=%d down=%d after one 👍 (and this probe's 👎)", u, d)
	}
	if body := click(feishufake.ButtonsWith(card.Card, cards.ActionReset)[0]); !strings.Contains(body, "已开始新话题") {
		t.Errorf("reset answered %s", body)
	}
	turns, _ := st.Turns(context.Background(), "chat:"+m.ChatID)
	if len(turns) != 0 {
		t.Errorf("%d turns left after reset", len(turns))
	}
}

func TestFeedbackRecordsTheTurn(t *testing.T) {
	st := &recordingState{State: state.NewMemory()}
	h := newHarness(t, harnessOpts{state: st})
	m := h.dm("被评价的问题")
	h.mustPost(h.signer.MessageEvent(m))
	card := h.replyTo(m.MessageID)
	h.waitTurns("chat:"+m.ChatID, 1)
	down := feishufake.ButtonsWith(card.Card, cards.ActionFeedback)[1]
	h.mustPost(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: m.ChatID, Value: down}))
	rec := st.lastFeedback()
	for _, want := range []string{`"vote":"down"`, `"question":"被评价的问题"`, `"answer":"关于`, `"doc_id":"doc-1"`} {
		if !strings.Contains(rec, want) {
			t.Errorf("feedback record lacks %s: %s", want, rec)
		}
	}
}

// recordingState remembers the last feedback record.
type recordingState struct {
	State
	mu   sync.Mutex
	last []byte
}

func (s *recordingState) AddFeedback(ctx context.Context, vote string, record []byte) (int64, int64, error) {
	s.mu.Lock()
	s.last = record
	s.mu.Unlock()
	return s.State.AddFeedback(ctx, vote, record)
}

func (s *recordingState) lastFeedback() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.last)
}

func TestReplyRetriedOn5xxAnd429(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 3, Status: 500})
	m := h.dm("会重试的问题")
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID)
	if !strings.Contains(feishufake.CardText(r.Card), "答案在这里") {
		t.Error("the retried reply is not the answer")
	}
	if n := h.fake.Calls(feishufake.OpReply); n != 4 {
		t.Errorf("%d reply calls, want 4 (3 failures + 1)", n)
	}

	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 1, Status: 429, RetryAfter: "0"})
	m2 := h.dm("限流的问题")
	h.mustPost(h.signer.MessageEvent(m2))
	h.replyTo(m2.MessageID)
	if n := h.fake.Replies(m2.MessageID); n != 1 {
		t.Errorf("%d replies after a 429, want 1", n)
	}
}

func TestPersistentSendFailure(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	// 5 attempts for the answer, 5 for the error card.
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 10, Status: 503})
	m := h.dm("发不出去的问题")
	h.mustPost(h.signer.MessageEvent(m))
	errorAttempts := func() int {
		n := 0
		for _, r := range h.fake.Requests() {
			if r.Op == feishufake.OpReply && strings.HasPrefix(r.UUID, "error-") {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, "the error card attempts", func() bool { return errorAttempts() >= 5 })
	testkit.Eventually(t, "the answer counted as failed", func() bool { return h.events(evMessage, outcomeFailed) == 1 })
	if errorAttempts := errorAttempts(); errorAttempts != 5 {
		t.Errorf("%d error card attempts, want 5", errorAttempts)
	}
	h.sentinel() // still serving
}

func TestAnswerFailureSendsErrorCard(t *testing.T) {
	h := newHarness(t, harnessOpts{ans: &fakeAnswerer{AskFn: func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
		if q == "panic" {
			panic("boom")
		}
		return rag.Answer{}, errors.New("LLM unreachable")
	}}})
	for _, q := range []string{"坏掉的问题", "panic"} {
		m := h.dm(q)
		h.mustPost(h.signer.MessageEvent(m))
		r := h.replyTo(m.MessageID)
		retry := feishufake.ButtonsWith(r.Card, cards.ActionRetry)
		if len(retry) != 1 || retry[0]["q"] != q {
			t.Errorf("%s: error card retry buttons = %v", q, retry)
		}
		if strings.Contains(feishufake.CardText(r.Card), "unreachable") {
			t.Error("error card leaks the internal error")
		}
	}
	// The retry button asks again, as a new card in the chat.
	m := h.dm("重试的问题")
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID)
	retry := feishufake.ButtonsWith(r.Card, cards.ActionRetry)[0]
	_, body := h.post(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: r.SentID, ChatID: m.ChatID, Value: retry}))
	if !strings.Contains(body, "正在回答") {
		t.Errorf("retry click answered %s", body)
	}
	testkit.Eventually(t, "the retried answer", func() bool { return h.fake.Creates(m.ChatID) == 1 })
	if calls := h.ans.Calls(); calls[len(calls)-1].Question != "重试的问题" {
		t.Errorf("retry asked %q", calls[len(calls)-1].Question)
	}
	h.sentinel() // still serving
}

func TestClickInThreadAnswersInThread(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	m := h.dm("话题里的问题")
	m.ThreadID = "omt_7"
	h.mustPost(h.signer.MessageEvent(m))
	card := h.replyTo(m.MessageID)
	conv := "chat:" + m.ChatID + ":thread:omt_7"
	h.waitTurns(conv, 1)
	fu := feishufake.ButtonsWith(card.Card, cards.ActionAsk)[0]
	if fu["conv"] != conv {
		t.Fatalf("follow-up conv = %v, want %s", fu["conv"], conv)
	}
	h.mustPost(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_bob", MessageID: card.SentID, ChatID: m.ChatID, Value: fu}))
	r := h.replyTo(card.SentID)
	if !r.InThread || !strings.Contains(feishufake.CardText(r.Card), "<at id=ou_bob></at>") {
		t.Errorf("follow-up in a thread: in_thread=%v card:\n%s", r.InThread, feishufake.CardText(r.Card))
	}
	if calls := h.ans.Calls(); len(calls) != 2 || len(calls[1].History) != 1 {
		t.Errorf("thread follow-up history = %+v", calls)
	}
	// A value naming another chat's conversation is not trusted: the answer
	// uses this chat's own history, not the other chat's, and its turn is
	// stored here, not there.
	elsewhere := "chat:oc_elsewhere"
	secret, _ := json.Marshal(storedTurn{Turn: rag.Turn{Question: "别的群的问题", Answer: "别的群的回答"}, ID: "x"})
	if err := h.st.AppendTurn(t.Context(), elsewhere, secret, 4, time.Hour); err != nil {
		t.Fatal(err)
	}
	fu["conv"] = elsewhere
	h.mustPost(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_carol", MessageID: card.SentID, ChatID: m.ChatID, Value: fu}))
	testkit.Eventually(t, "the second follow-up", func() bool { return h.fake.Creates(m.ChatID) == 1 })
	own := "chat:" + m.ChatID
	count := func(conv string) int {
		turns, err := h.st.Turns(t.Context(), conv)
		if err != nil {
			t.Fatal(err)
		}
		return len(turns)
	}
	testkit.Eventually(t, "the follow-up's turn stored", func() bool { return count(own) == 1 || count(elsewhere) == 2 })
	if n := count(own); n != 1 {
		t.Errorf("this chat has %d turns, want the follow-up's 1", n)
	}
	calls := h.ans.Calls()
	for _, turn := range calls[len(calls)-1].History {
		if turn.Question == "别的群的问题" {
			t.Errorf("the answer used the other chat's history: %+v", calls[len(calls)-1].History)
		}
	}
	if n := count(elsewhere); n != 1 {
		t.Errorf("the other chat has %d turns, want its 1: nothing may be written there", n)
	}
}

func TestBusyCardWhenQueueFull(t *testing.T) {
	started := make(chan struct{}, 1)
	unblock := make(chan struct{})
	ans := &fakeAnswerer{}
	ans.AskFn = func(ctx context.Context, q string, _ []rag.Turn) (rag.Answer, error) {
		if q == "slow" {
			started <- struct{}{}
			select {
			case <-unblock:
			case <-ctx.Done():
			}
		}
		return cannedAnswer(q), nil
	}
	h := newHarness(t, harnessOpts{workers: 1, queue: 1, ans: ans})
	slow, queued, over := h.dm("slow"), h.dm("queued"), h.dm("over")
	h.mustPost(h.signer.MessageEvent(slow))
	testkit.Receive(t, "the slow answer to start", started, 20*time.Second)
	h.mustPost(h.signer.MessageEvent(queued))
	h.mustPost(h.signer.MessageEvent(over))
	r := h.replyTo(over.MessageID)
	if len(feishufake.ButtonsWith(r.Card, cards.ActionRetry)) != 1 || !strings.Contains(feishufake.CardText(r.Card), "忙") {
		t.Errorf("overflow got %s, want a busy card with a retry button", feishufake.CardText(r.Card))
	}
	close(unblock)
	h.replyTo(slow.MessageID)
	h.replyTo(queued.MessageID)
}

func TestKBPage(t *testing.T) {
	h := newHarness(t, harnessOpts{ans: &fakeAnswerer{DocFn: func(ctx context.Context, id string) (rag.Document, error) {
		switch id {
		case "doc-1":
			return rag.Document{DocID: id, Kind: index.KindPassage, Title: "模型训练 <入门>", Date: "2026-01-02",
				Path: []string{"第一章", "数据"}, Text: "第一段 <script>alert(1)</script>\n第二段", URL: "javascript:alert(1)"}, nil
		case "qa-1":
			return rag.Document{DocID: id, Kind: index.KindQA, Title: "怎么提问？", Text: "直接发消息。"}, nil
		}
		return rag.Document{}, index.ErrNotFound
	}}})
	// link is the path and query of the link a card would carry for id.
	link := func(id string) string { return strings.TrimPrefix(h.bot.links.URL(id), testPublic) }
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for k, want := range map[string]string{
			"Cache-Control":           "private, no-store",
			"X-Robots-Tag":            "noindex",
			"Referrer-Policy":         "no-referrer",
			"X-Content-Type-Options":  "nosniff",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s %s: %s %q, want %q", method, path, k, got, want)
			}
		}
		return resp.StatusCode, string(b)
	}
	status, page := get("GET", link("doc-1"))
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	for _, want := range []string{"模型训练 &lt;入门&gt;", "2026-01-02", "第一章 › 数据", "&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "javascript:") {
		t.Error("page does not escape its content")
	}
	if _, page := get("GET", link("qa-1")); !strings.Contains(page, "怎么提问？") || !strings.Contains(page, "直接发消息。") || !strings.Contains(page, "回答") {
		t.Errorf("Q&A page lacks question or answer:\n%s", page)
	}
	if status, _ := get("GET", link("nope")); status != 404 {
		t.Errorf("unknown doc with a valid link: status %d, want 404", status)
	}

	// Without a valid, unexpired link: 403 and a page saying so, with no
	// content, whether or not the document exists.
	_, exp, _ := strings.Cut(link("doc-1"), "?exp=")
	exp, sig, _ := strings.Cut(exp, "&sig=")
	past := strconv.FormatInt(h.bot.Now().Add(-time.Minute).Unix(), 10)
	for name, path := range map[string]string{
		"no signature":     "/kb/doc-1",
		"wrong signature":  "/kb/doc-1?exp=" + exp + "&sig=" + strings.Repeat("0", 64),
		"another doc's":    "/kb/qa-1?exp=" + exp + "&sig=" + sig,
		"a later expiry":   "/kb/doc-1?exp=" + exp + "9&sig=" + sig,
		"expired":          "/kb/doc-1?exp=" + past + "&sig=" + kblink.Sig([]byte(testLinkKey), "doc-1", past),
		"unknown, no link": "/kb/nope",
	} {
		status, page := get("GET", path)
		if status != 403 || !strings.Contains(page, "链接已过期或无效") || !strings.Contains(page, "再向机器人提问") || strings.Contains(page, "模型训练") {
			t.Errorf("%s: %d\n%s", name, status, page)
		}
	}
	// Even the mux's own answers under /kb/ carry the headers.
	if status, _ := get("POST", link("doc-1")); status != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", status)
	}
	if status, _ := get("GET", "/kb/a/b"); status != 404 {
		t.Errorf("/kb/a/b: %d", status)
	}
}

// pingState is a State whose Ping fails while down is set.
type pingState struct {
	State
	down atomic.Bool
}

func (p *pingState) Ping(ctx context.Context) error {
	if p.down.Load() {
		return errors.New("redis at 10.0.0.7:6379 unreachable")
	}
	return p.State.Ping(ctx)
}

// Readiness follows the state store alone: with the knowledge store down
// /readyz stays 200 (a Qdrant outage must not take every replica out of the
// load balancer) and says so, in its body and in kbbot_dependency_up.
func TestReadinessFollowsTheStateStore(t *testing.T) {
	st := &pingState{State: state.NewMemory()}
	h := newHarness(t, harnessOpts{state: st})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	up := func(dep string) float64 { return testutil.ToFloat64(h.bot.cfg.Metrics.deps.WithLabelValues(dep)) }
	if status, _ := get("/healthz"); status != 200 {
		t.Errorf("healthz %d", status)
	}
	if status, body := get("/readyz"); status != 200 || up("state") != 1 || up("knowledge") != 1 {
		t.Errorf("readyz %d %s; state up %v, knowledge up %v", status, body, up("state"), up("knowledge"))
	}

	h.ans.set(func(f *fakeAnswerer) {
		f.StartFn = func(context.Context, int) ([]string, error) { return nil, errors.New("index at 10.0.0.8 unreachable") }
	})
	// Which dependency, not its error text (it may name internal hosts).
	status, body := get("/readyz")
	if status != 200 || !strings.Contains(body, "knowledge store unavailable") || strings.Contains(body, "10.0.0") {
		t.Errorf("readyz with a broken index: %d %s, want 200 naming the knowledge store", status, body)
	}
	if up("knowledge") != 0 || up("state") != 1 {
		t.Errorf("with a broken index: knowledge up %v, state up %v", up("knowledge"), up("state"))
	}

	st.down.Store(true)
	if status, body := get("/readyz"); status != 503 || !strings.Contains(body, "state store") || strings.Contains(body, "10.0.0") {
		t.Errorf("readyz with the state store down: %d %s, want 503 naming the state store", status, body)
	}
	if up("state") != 0 {
		t.Errorf("state up %v with the state store down", up("state"))
	}
	st.down.Store(false)
	h.ans.set(func(f *fakeAnswerer) { f.StartFn = nil })
	if status, body := get("/readyz"); status != 200 || body != "ready\n" || up("state") != 1 || up("knowledge") != 1 {
		t.Errorf("after recovery: %d %q; state up %v, knowledge up %v", status, body, up("state"), up("knowledge"))
	}
}

// kbbot_dependency_up follows an outage between probes too.
func TestDependencyGaugeRefreshesInTheBackground(t *testing.T) {
	h := newHarness(t, harnessOpts{depInterval: 10 * time.Millisecond})
	up := func() float64 { return testutil.ToFloat64(h.bot.cfg.Metrics.deps.WithLabelValues("knowledge")) }
	testkit.Eventually(t, "the first background check", func() bool { return up() == 1 })
	h.ans.set(func(f *fakeAnswerer) {
		f.StartFn = func(context.Context, int) ([]string, error) { return nil, errors.New("index unreachable") }
	})
	testkit.Eventually(t, "knowledge reported down", func() bool { return up() == 0 })
	h.ans.set(func(f *fakeAnswerer) { f.StartFn = nil })
	testkit.Eventually(t, "knowledge reported up again", func() bool { return up() == 1 })
}

// A card at the size limit still gets through the fake's 30 KB check.
func TestHugeAnswerIsDelivered(t *testing.T) {
	var sb strings.Builder
	for sb.Len() < 300_000 {
		sb.WriteString("这是一段很长的回答，包含 \"引号\"、反斜杠 \\ 和 <标签> [1]。\n")
	}
	ans := cannedAnswer("q")
	ans.Text = sb.String()
	h := newHarness(t, harnessOpts{ans: &fakeAnswerer{AskFn: func(_ context.Context, q string, _ []rag.Turn) (rag.Answer, error) { return ans, nil }}})
	m := h.dm("huge")
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID)
	if len(r.Content) >= cards.MaxCardBytes {
		t.Errorf("sent card is %d bytes", len(r.Content))
	}
	if !strings.Contains(feishufake.CardText(r.Card), "已截断") {
		t.Error("the answer was not trimmed")
	}
}
