package bot

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/rag/llmfake"
	"kbbot/store/state"
)

// rewritingLLM answers rewrite requests (not streamed) with rewrite and
// streams answer to the others.
func rewritingLLM(t *testing.T, rewrite, answer string) *llmfake.Server {
	t.Helper()
	return llmfake.Start(t, llmfake.Default(llmfake.Handle(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Stream bool `json:"stream"`
		}
		_ = json.Unmarshal(body, &req)
		if !req.Stream {
			llmfake.Completion(w, rewrite)
			return
		}
		llmfake.Stream(w, r, []string{answer}, 0)
	})))
}

// A reply to one of the bot's cards brings that card's question and answer
// to the model, though newer turns pushed it out of the history window.
func TestReplyToAnOldCardBringsItsAnswer(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		llm := rewritingLLM(t, llmQuestion, "检索增强生成先检索再生成 [1]。")
		h := newHarness(t, harnessOpts{state: st, history: 1, ans: llmEngine(t, strings.TrimSuffix(llm.URL, "/v1"), llmOpts{})})
		first := h.dm(llmQuestion)
		conv := "chat:" + first.ChatID
		h.mustPost(h.signer.MessageEvent(first))
		card := h.replyTo(first.MessageID)
		newer := h.dm("Transformer 的自注意力机制是怎么回事？")
		h.mustPost(h.signer.MessageEvent(newer))
		h.replyTo(newer.MessageID)
		testkit.Eventually(t, "the newer turn alone in the window", func() bool {
			turns, _ := h.st.Turns(context.Background(), conv)
			return len(turns) == 1 && strings.Contains(string(turns[0]), "Transformer")
		})

		reply := h.dm("第二步具体怎么做？")
		reply.ParentID = card.SentID
		before := len(llm.Chats())
		h.mustPost(h.signer.MessageEvent(reply))
		h.replyTo(reply.MessageID)
		chats := llm.Chats()[before:]
		if len(chats) != 2 {
			t.Fatalf("%d model requests for the reply, want the rewrite and the answer", len(chats))
		}
		if rw := chats[0].Question(); !strings.Contains(rw, llmQuestion) || !strings.Contains(rw, "最新消息是对上面最后一条回答的回复") {
			t.Errorf("the rewrite does not see the answer replied to:\n%s", rw)
		}
		answer := chats[1].Messages
		n := len(answer)
		if n < 4 || answer[n-3].Content != llmQuestion || !strings.Contains(answer[n-2].Content, "先检索再生成") {
			t.Fatalf("the answer replied to is not the last turn before the question: %+v", answer)
		}
		if q := answer[n-1].Content; !strings.Contains(q, "回复的是你之前对「"+llmQuestion+"」的回答") || !strings.HasSuffix(q, "问题：第二步具体怎么做？") {
			t.Errorf("the question does not say what it replies to:\n%s", q)
		}
	})
}

func TestWithReplied(t *testing.T) {
	turn := func(id, q string) storedTurn { return storedTurn{Turn: rag.Turn{Question: q}, ID: id} }
	window := []storedTurn{turn("a", "A"), turn("b", "B")}
	questions := func(h []rag.Turn) (out []string) {
		for _, t := range h {
			q := t.Question
			if t.Replied {
				q += "*"
			}
			out = append(out, q)
		}
		return out
	}
	old, inWindow := turn("z", "Z"), turn("a", "A")
	for _, tc := range []struct {
		name     string
		replied  *storedTurn
		inThread bool
		want     []string
	}{
		{"no reply", nil, false, []string{"A", "B"}},
		{"reply to an old answer", &old, false, []string{"A", "B", "Z*"}},
		{"reply to one in the window", &inWindow, false, []string{"B", "A*"}},
		// In a thread the parent is the thread's root: what the thread is
		// about, not what this message answers.
		{"thread rooted in an answer", &old, true, []string{"Z", "A", "B"}},
	} {
		if got := questions(withReplied(window, tc.replied, tc.inThread)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: history %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A 600 KB message is cut to what the engine reads before anything keeps
// it: the queued item and the stored turn hold MaxQuestionRunes.
func TestHugeMessageIsCutAtIntake(t *testing.T) {
	var mu sync.Mutex
	var queued []string
	h := newQueueHarness(t, queueOpts{hook: func(it item) {
		if it.Msg != nil {
			mu.Lock()
			queued = append(queued, it.Msg.Text)
			mu.Unlock()
		}
	}})
	m := h.dm(strings.Repeat("长", 200_000)) // 600 KB
	h.mustPost(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
	h.waitTurns("chat:"+m.ChatID, 1)
	mu.Lock()
	if len(queued) != 1 || utf8.RuneCountInString(queued[0]) != rag.MaxQuestionRunes {
		t.Errorf("queued %d items, the first of %d runes; want one of %d", len(queued), utf8.RuneCountInString(queued[0]), rag.MaxQuestionRunes)
	}
	mu.Unlock()
	turns, err := h.bot.history(context.Background(), "chat:"+m.ChatID)
	if err != nil || len(turns) != 1 || utf8.RuneCountInString(turns[0].Question) != rag.MaxQuestionRunes {
		t.Fatalf("stored turns %d, err %v; want one question of %d runes", len(turns), err, rag.MaxQuestionRunes)
	}
	if calls := h.ans.Calls(); len(calls) != 1 || utf8.RuneCountInString(calls[0].Question) != rag.MaxQuestionRunes {
		t.Errorf("the answerer was asked %d times, not with the cut question", len(calls))
	}
}

// A vote on a card whose turn left the history window still records the
// question and answer: the card's message names them.
func TestFeedbackOnACardOutOfTheWindow(t *testing.T) {
	st := &recordingState{State: state.NewMemory()}
	h := newHarness(t, harnessOpts{state: st, history: 1, workers: 1})
	first := h.dm("第一个被评价的问题")
	h.mustPost(h.signer.MessageEvent(first))
	card := h.replyTo(first.MessageID)
	newer := h.dm("更新的问题")
	h.mustPost(h.signer.MessageEvent(newer))
	h.replyTo(newer.MessageID)
	h.sentinel()
	up := feishufake.ButtonsWith(card.Card, cards.ActionFeedback)[0]
	h.mustPost(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: card.SentID, ChatID: first.ChatID, Value: up}))
	if rec := st.lastFeedback(); !strings.Contains(rec, `"question":"第一个被评价的问题"`) {
		t.Errorf("feedback record lacks the question: %s", rec)
	}
}

// A question the knowledge base does not cover, with an LLM: the card
// carries the model's general answer, says it is not from the knowledge
// base, and lists no sources.
func TestOutOfKnowledgeBaseCard(t *testing.T) {
	llm := llmfake.Start(t, llmfake.Default(llmfake.Reply("目前知识库中暂时没有关于红烧肉的相关内容。", "但一般来说，先焯水再炖。")))
	h := newHarness(t, harnessOpts{ans: llmEngine(t, strings.TrimSuffix(llm.URL, "/v1"), llmOpts{})})
	m := h.dm("红烧肉怎么做")
	h.mustPost(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
	var final string
	testkit.Eventually(t, "the final card", func() bool {
		for _, r := range h.fake.Sent() {
			if text := feishufake.CardText(r.Card); strings.Contains(text, "但一般来说") && strings.Contains(text, "👍") {
				final = text
				return true
			}
		}
		return false
	})
	if !strings.Contains(final, cards.GeneralNotice) || strings.Contains(final, "参考资料") {
		t.Errorf("general answer card:\n%s", final)
	}
}

// A follow-up button's question is cut like a message's: the callback
// value is the client's to send.
func TestHugeClickIsCutAtIntake(t *testing.T) {
	var mu sync.Mutex
	var queued []string
	h := newQueueHarness(t, queueOpts{hook: func(it item) {
		if it.Click != nil {
			mu.Lock()
			queued = append(queued, it.Click.Text)
			mu.Unlock()
		}
	}})
	chat := "oc_click_" + t.Name()
	h.mustPost(h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev"), Operator: "ou_alice", MessageID: h.id("om"), ChatID: chat,
		Value: map[string]any{"action": cards.ActionAsk, "q": strings.Repeat("长", 5000), "conv": "chat:" + chat}}))
	testkit.Eventually(t, "the click run", func() bool { mu.Lock(); defer mu.Unlock(); return len(queued) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if n := utf8.RuneCountInString(queued[0]); n != rag.MaxQuestionRunes {
		t.Errorf("queued click question of %d runes, want %d", n, rag.MaxQuestionRunes)
	}
}
