package bot

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/deploy/testkit"
	"kbbot/rag/llmfake"
)

// Fault injection: each test breaks the LLM or the Feishu Open API and
// checks the user still ends up with an answer or an error card (never
// silence), and that a streamed card always ends with streaming off.

// settledCard waits for the one reply to messageID to settle and returns
// it; a streamed card must have streaming mode off by then.
func (h *harness) settledCard(messageID string) feishufake.Request {
	h.t.Helper()
	r := h.replyTo(messageID)
	if n := h.fake.Replies(messageID); n != 1 {
		h.t.Errorf("%d replies to %s, want 1", n, messageID)
	}
	if r.CardID != "" {
		if _, streaming, _ := h.fake.Card(r.CardID); streaming {
			h.t.Error("the card is still streaming")
		}
	}
	return r
}

// wantRetryButton checks card offers to ask q again.
func wantRetryButton(t *testing.T, card map[string]any, q string) {
	t.Helper()
	retry := feishufake.ButtonsWith(card, cards.ActionRetry)
	if len(retry) != 1 || retry[0]["q"] != q {
		t.Errorf("retry buttons %v, want one asking %q; card:\n%s", retry, q, feishufake.CardText(card))
	}
}

func TestFaultLLMServerErrorsEndInErrorCard(t *testing.T) {
	llm := newFakeLLM(t, func(_ int, w http.ResponseWriter, _ *http.Request) { llmfake.Error(w, 500, nil) })
	waits := &testkit.Sleeps{}
	h := newHarness(t, harnessOpts{ans: llmEngine(t, llm.URL, llmOpts{sleep: waits})})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	if n := llm.Requests(); n != 3 {
		t.Errorf("%d LLM requests, want 3 (retried twice)", n)
	}
	if len(waits.Waits()) != 2 {
		t.Errorf("LLM backoffs %v, want 2", waits.Waits())
	}
	// The thinking card turns into the error card, or, when the error came
	// before the card could be shown, the error card is the reply.
	if !strings.Contains(feishufake.CardText(r.Card), "出错了") {
		t.Errorf("want an error card (card_id %q):\n%s", r.CardID, feishufake.CardText(r.Card))
	}
	wantRetryButton(t, r.Card, llmQuestion)
	if strings.Contains(feishufake.CardText(r.Card), "500") {
		t.Error("the error card leaks the provider's error")
	}
}

func TestFaultLLMTimeout(t *testing.T) {
	llm := newFakeLLM(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	h := newHarness(t, harnessOpts{ans: llmEngine(t, llm.URL, llmOpts{timeout: 300 * time.Millisecond, idle: time.Minute})})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	if !strings.Contains(feishufake.CardText(r.Card), "出错了") {
		t.Errorf("want an error card:\n%s", feishufake.CardText(r.Card))
	}
	wantRetryButton(t, r.Card, llmQuestion)
	if n := llm.Requests(); n != 1 {
		t.Errorf("%d LLM requests; a timed-out answer is not retried", n)
	}
}

func TestFaultLLMStallsMidAnswer(t *testing.T) {
	fake := feishufake.New(testBotID)
	t.Cleanup(fake.Close)
	said := "检索增强生成先检索相关段落 [1]，然后"
	llm := newFakeLLM(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		untilReplied(fake)
		sse(w, r, tokens(said), 10*time.Millisecond, false) // then silence
	})
	h := newHarness(t, harnessOpts{fake: fake, ans: llmEngine(t, llm.URL, llmOpts{idle: 300 * time.Millisecond})})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	text := feishufake.CardText(r.Card)
	if r.CardID == "" || !strings.Contains(text, "检索增强生成先检索相关段落 [1]，然后") || !strings.Contains(text, "没有写完") {
		t.Errorf("want the partial answer with a note in the streamed card (card_id %q):\n%s", r.CardID, text)
	}
	if !strings.Contains(text, "参考资料") {
		t.Errorf("the partial answer lost its references:\n%s", text)
	}
	wantRetryButton(t, r.Card, llmQuestion)
	if n := llm.Requests(); n != 1 {
		t.Errorf("%d LLM requests; a stall after text is not retried", n)
	}
	ops := fake.CardOps(r.CardID)
	if last := ops[len(ops)-1]; last.Op != feishufake.OpCardUpdate || ops[len(ops)-2].Op != feishufake.OpCardSettings {
		t.Errorf("the card ends with %s after %s, want streaming off, then the final card", last.Op, ops[len(ops)-2].Op)
	}
	if turns, _ := h.st.Turns(t.Context(), "chat:"+m.ChatID); len(turns) != 0 {
		t.Errorf("an unfinished answer was stored as a turn: %d", len(turns))
	}
}

func TestFaultLLMRateLimitHonoursRetryAfter(t *testing.T) {
	llm := newFakeLLM(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			llmfake.Error(w, http.StatusTooManyRequests, map[string]string{"Retry-After": "4"})
			return
		}
		sse(w, r, tokens(llmText), 0, true)
	})
	waits := &testkit.Sleeps{}
	h := newHarness(t, harnessOpts{ans: llmEngine(t, llm.URL, llmOpts{sleep: waits})})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	if !strings.Contains(feishufake.CardText(r.Card), "让模型依据资料写出回答") {
		t.Errorf("want the answer after the rate limit:\n%s", feishufake.CardText(r.Card))
	}
	if got := waits.Longest(); got < 4*time.Second {
		t.Errorf("waited %v before retrying, want at least the 4s Retry-After (waits %v)", got, waits.Waits())
	}
	if n := llm.Requests(); n != 2 {
		t.Errorf("%d LLM requests, want 2", n)
	}
}

func TestFaultFeishuServerErrorsRetried(t *testing.T) {
	t.Run("one card", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 2, Status: 503})
		m := h.dm("会重试的问题")
		h.mustPost(h.signer.MessageEvent(m))
		r := h.settledCard(m.MessageID)
		if !strings.Contains(feishufake.CardText(r.Card), "答案在这里") || h.fake.Calls(feishufake.OpReply) != 3 {
			t.Errorf("%d reply calls; card:\n%s", h.fake.Calls(feishufake.OpReply), feishufake.CardText(r.Card))
		}
	})
	t.Run("streaming", func(t *testing.T) {
		h := streamingHarness(t, tokens(llmText), time.Millisecond)
		h.fake.Fail(feishufake.Fault{Op: feishufake.OpCardCreate, Times: 1, Status: 500})
		h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 1, Status: 502, Applied: true}) // sent, answer lost
		h.fake.Fail(feishufake.Fault{Op: feishufake.OpCardUpdate, Times: 1, Status: 500, Applied: true})
		h.fake.Fail(feishufake.Fault{Op: feishufake.OpCardSettings, Times: 1, Status: 504})
		m := h.dm(llmQuestion)
		h.mustPost(h.signer.MessageEvent(m))
		r := h.settledCard(m.MessageID)
		if r.CardID == "" || !strings.Contains(feishufake.CardText(r.Card), "让模型依据资料写出回答") {
			t.Errorf("want the streamed answer (card_id %q):\n%s", r.CardID, feishufake.CardText(r.Card))
		}
		for _, op := range h.fake.CardOps(r.CardID) {
			if op.Code == feishufake.CodeSequence || op.Code == feishufake.CodeUUIDConflict {
				t.Errorf("%s seq %d refused with %d: a retry was not idempotent", op.Op, op.Sequence, op.Code)
			}
		}
		if n := h.fake.Calls(feishufake.OpCardSettings); n != 2 {
			t.Errorf("%d settings calls, want 2", n)
		}
	})
}

func TestFaultFeishuRateLimitHonoursRetryAfter(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	waits := &testkit.Sleeps{}
	h.bot.feish.Retry.Sleep = waits.Sleep
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpReply, Times: 1, Status: http.StatusTooManyRequests, RetryAfter: "3"})
	m := h.dm("限流的问题")
	h.mustPost(h.signer.MessageEvent(m))
	h.settledCard(m.MessageID)
	if got := waits.Longest(); got < 3*time.Second {
		t.Errorf("waited %v before resending, want at least the 3s Retry-After (waits %v)", got, waits.Waits())
	}
}

func TestFaultCardKitCreateFailsFallsBackToOneCard(t *testing.T) {
	llm := newFakeLLM(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		sse(w, r, tokens(llmText), time.Millisecond, true)
	})
	h := newHarness(t, harnessOpts{ans: llmEngine(t, llm.URL, llmOpts{})})
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpCardCreate, Times: 100, Status: 500})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.settledCard(m.MessageID)
	text := feishufake.CardText(r.Card)
	if r.CardID != "" || !strings.Contains(text, "让模型依据资料写出回答") || !strings.Contains(text, "参考资料") {
		t.Errorf("want one complete answer card (card_id %q):\n%s", r.CardID, text)
	}
	if r.UUID != openapi.UUID("answer", m.MessageID) {
		t.Errorf("fallback uuid %q, want the answer's", r.UUID)
	}
	for _, op := range []string{feishufake.OpCardContent, feishufake.OpCardUpdate, feishufake.OpCardSettings} {
		if n := h.fake.Calls(op); n != 0 {
			t.Errorf("%d %s calls without a card", n, op)
		}
	}
}

func TestFaultFinalUpdateFailsFallsBackToPatch(t *testing.T) {
	h := streamingHarness(t, tokens(llmText), time.Millisecond)
	h.fake.Fail(feishufake.Fault{Op: feishufake.OpCardUpdate, Times: 100, Status: 500})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	testkit.Eventually(t, "the patched card", func() bool { return h.fake.Calls(feishufake.OpPatch) > 0 })
	r := h.replyTo(m.MessageID)
	if !strings.Contains(feishufake.CardText(r.Card), "让模型依据资料写出回答") || !strings.Contains(feishufake.CardText(r.Card), "参考资料") {
		t.Errorf("the message was not patched to the answer:\n%s", feishufake.CardText(r.Card))
	}
	if n := h.fake.Calls(feishufake.OpReply); n != 1 {
		t.Errorf("%d replies, want 1 (the streamed card, patched)", n)
	}
}
