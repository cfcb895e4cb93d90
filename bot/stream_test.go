package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/rag/llmfake"
	"kbbot/store/index"
	"kbbot/store/queue"
	"kbbot/store/state"
)

// llmQuestion is answered by the LLM from retrieved passages (not a
// curated Q&A item) in the seed knowledge base.
const llmQuestion = "检索增强生成的原理和实现步骤"

// fakeLLM is an OpenAI-compatible chat endpoint; serve scripts each request
// (n counts from 1).
type fakeLLM struct {
	*httptest.Server
	mu    sync.Mutex
	n     int
	serve func(n int, w http.ResponseWriter, r *http.Request)
}

func newFakeLLM(t testing.TB, serve func(n int, w http.ResponseWriter, r *http.Request)) *fakeLLM {
	t.Helper()
	f := &fakeLLM{serve: serve}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body)) // for serve to read again
		f.mu.Lock()
		f.n++
		n := f.n
		f.mu.Unlock()
		f.serve(n, w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLLM) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// sse streams tokens as chat completion chunks, every apart. With finish
// the stream ends properly; without, it stops sending and holds the
// connection open until the client leaves (a stalled provider).
func sse(w http.ResponseWriter, r *http.Request, tokens []string, every time.Duration, finish bool) {
	if finish {
		llmfake.Stream(w, r, tokens, every)
		return
	}
	llmfake.Begin(w)
	for _, tok := range tokens {
		select {
		case <-time.After(every):
		case <-r.Context().Done():
			return
		}
		llmfake.Chunk(w, tok, false)
	}
	<-r.Context().Done()
}

type llmOpts struct {
	timeout time.Duration   // whole answer; default 10s
	idle    time.Duration   // per token; default 5s
	sleep   *testkit.Sleeps // LLM retry waits; default: recorded and skipped
	noLLM   bool            // an extractive engine
}

// llmEngine is a real engine over the seed knowledge base whose LLM is
// the fake at url, wrapped as the bot's Answerer.
func llmEngine(t testing.TB, url string, o llmOpts) *fakeAnswerer {
	t.Helper()
	idx, err := index.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := rag.Options{Index: idx}
	if !o.noLLM {
		if o.timeout == 0 {
			o.timeout = 10 * time.Second
		}
		if o.idle == 0 {
			o.idle = 5 * time.Second
		}
		if o.sleep == nil {
			o.sleep = &testkit.Sleeps{}
		}
		l := rag.NewLLM(rag.NewOpenAIClient("test-key", url+"/v1"), "fake-model", o.timeout)
		l.Idle, l.Sleep = o.idle, o.sleep.Sleep
		opts.LLM = l
	}
	eng, err := rag.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.EnsureSeeded(context.Background(), "../seeds"); err != nil {
		t.Fatal(err)
	}
	return &fakeAnswerer{StreamFn: eng.AskStream, LLM: eng.HasLLM()}
}

// untilReplied holds an LLM answer back until the thinking card is out, so
// tests see the whole stream typed into it. It gives up after a while
// rather than hang a test that sends no card.
func untilReplied(fake *feishufake.Server) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if fake.Calls(feishufake.OpReply) > 0 {
			return
		}
	}
}

func tokens(s string) []string {
	var out []string
	r := []rune(s)
	for i := 0; i < len(r); i += 2 {
		out = append(out, string(r[i:min(i+2, len(r))]))
	}
	return out
}

const llmText = "检索增强生成先从知识库里找出和问题相关的段落 [1]，再把它们交给大模型，让模型依据资料写出回答 [2]。"

// streamingHarness is a bot answering through a fake LLM that streams toks,
// every apart, once the bot's thinking card has been sent.
func streamingHarness(t *testing.T, toks []string, every time.Duration) *harness {
	t.Helper()
	fake := feishufake.New(testBotID)
	t.Cleanup(fake.Close)
	llm := newFakeLLM(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		untilReplied(fake)
		sse(w, r, toks, every, true)
	})
	return newHarness(t, harnessOpts{fake: fake, ans: llmEngine(t, llm.URL, llmOpts{})})
}

func TestLLMAnswerStreamsThroughCardKit(t *testing.T) {
	h := streamingHarness(t, tokens(llmText), 20*time.Millisecond) // about 30 tokens
	fake := h.fake
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID) // counted once the card has settled
	if r.CardID == "" {
		t.Fatalf("the answer was not streamed: reply %s", r.Content)
	}
	ops := fake.CardOps(r.CardID)
	var kinds []string
	for _, op := range ops {
		if op.Status != http.StatusOK {
			t.Errorf("%s answered %d code %d", op.Op, op.Status, op.Code)
		}
		if len(kinds) == 0 || kinds[len(kinds)-1] != op.Op {
			kinds = append(kinds, op.Op)
		}
	}
	want := []string{feishufake.OpCardCreate, feishufake.OpReply, feishufake.OpCardContent, feishufake.OpCardSettings, feishufake.OpCardUpdate}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("card operations %v, want %v", kinds, want)
	}

	if cfg := ops[0].Card["config"].(map[string]any); cfg["streaming_mode"] != true {
		t.Errorf("created without streaming_mode: %v", cfg)
	}
	if !strings.Contains(feishufake.CardText(ops[0].Card), cards.ThinkingText) {
		t.Error("the thinking card lacks its placeholder")
	}
	// Its own uuid, not the one-card answer's: the docs say a uuid must
	// change when the content differs.
	if ops[1].UUID != openapi.UUID("stream", m.MessageID) {
		t.Errorf("streaming reply uuid %q, want the streaming card's", ops[1].UUID)
	}

	seq, prev := 0, ""
	uuids := map[string]bool{}
	for _, op := range ops[2:] {
		if op.Sequence <= seq {
			t.Errorf("%s sequence %d after %d", op.Op, op.Sequence, seq)
		}
		seq = op.Sequence
		if op.UUID == "" || uuids[op.UUID] {
			t.Errorf("%s uuid %q missing or reused", op.Op, op.UUID)
		}
		uuids[op.UUID] = true
		if op.Op != feishufake.OpCardContent {
			continue
		}
		if op.ElementID != cards.AnswerElement || !strings.HasPrefix(op.Content, prev) || len(op.Content) <= len(prev) {
			t.Errorf("text update to %q does not extend %q with %q", op.ElementID, prev, op.Content)
		}
		prev = op.Content
	}
	if !strings.HasPrefix(llmText, prev) {
		t.Errorf("last streamed text %q is not a prefix of the answer", prev)
	}
	if rate := fake.MaxCardRate(r.CardID); rate > 10 {
		t.Errorf("%d operations within a second on one card, Feishu allows 10", rate)
	}

	final := ops[len(ops)-1].Card
	text := feishufake.CardText(final)
	if !strings.Contains(text, "参考资料") || len(feishufake.ButtonsWith(final, cards.ActionAsk)) == 0 || len(feishufake.ButtonsWith(final, cards.ActionFeedback)) != 2 {
		t.Errorf("final card lacks references, follow-ups or feedback:\n%s", text)
	}
	if !strings.Contains(text, "让模型依据资料写出回答") {
		t.Errorf("final card lacks the answer:\n%s", text)
	}
	settings := ops[len(ops)-2].Settings
	if cfg, _ := settings["config"].(map[string]any); cfg["streaming_mode"] != false {
		t.Errorf("settings %v do not end streaming", settings)
	}
	if _, streaming, _ := fake.Card(r.CardID); streaming {
		t.Error("the card is still streaming")
	}
	if shown := feishufake.CardText(r.Card); !strings.Contains(shown, "让模型依据资料写出回答") || strings.Contains(shown, cards.ThinkingText) {
		t.Errorf("the reply does not show the final card:\n%s", shown)
	}
	h.waitTurns("chat:"+m.ChatID, 1)
}

func TestExtractiveAnswerIsOneCard(t *testing.T) {
	h := newHarness(t, harnessOpts{ans: llmEngine(t, "", llmOpts{noLLM: true})})
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID)
	if r.CardID != "" || !strings.Contains(feishufake.CardText(r.Card), "参考资料") {
		t.Errorf("extractive answer: card_id %q, card:\n%s", r.CardID, feishufake.CardText(r.Card))
	}
	for _, op := range []string{feishufake.OpCardCreate, feishufake.OpCardContent, feishufake.OpCardUpdate, feishufake.OpCardSettings} {
		if n := h.fake.Calls(op); n != 0 {
			t.Errorf("%d %s calls for an extractive answer", n, op)
		}
	}
	if n := h.fake.Calls(feishufake.OpReply); n != 1 {
		t.Errorf("%d replies, want 1", n)
	}
}

// BenchmarkStreamLatency answers questions through the whole bot (signed
// webhook event, queue, engine over the seeds, a fake LLM with a fixed time
// to first token, the fake Open API) and reports, per question:
//   - thinking: from posting the event to the thinking card's reply arriving
//     at the Open API;
//   - first-text: from posting the event to the first streamed text arriving;
//   - overhead: from the fake LLM sending its first token to that text
//     arriving, i.e. what the bot adds on top of the model's own latency.
//
// Run: go test -run XXX -bench StreamLatency -benchtime 40x ./bot/
func BenchmarkStreamLatency(b *testing.B) {
	for _, tc := range []struct {
		ttft time.Duration
		conc int
	}{{300 * time.Millisecond, 1}, {300 * time.Millisecond, 8}, {1500 * time.Millisecond, 8}} {
		b.Run(fmt.Sprintf("ttft=%v/concurrent=%d", tc.ttft, tc.conc), func(b *testing.B) { benchStream(b, tc.ttft, tc.conc) })
	}
}

func benchStream(b *testing.B, ttft time.Duration, conc int) {
	fake := feishufake.New(testBotID)
	b.Cleanup(fake.Close)
	var mu sync.Mutex
	firstToken := map[string]time.Time{} // question tag → when the LLM sent its first token
	tagOf := func(s string) string {
		i := strings.LastIndex(s, "#")
		if i < 0 {
			return ""
		}
		return strings.TrimSpace(s[i:])
	}
	toks := tokens(llmText)
	llm := newFakeLLM(b, func(_ int, w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		tag := tagOf(req.Messages[len(req.Messages)-1].Content)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-time.After(ttft):
		case <-r.Context().Done():
			return
		}
		for i, tok := range toks {
			if i == 1 {
				time.Sleep(10 * time.Millisecond)
			}
			llmfake.Chunk(w, tok, i == len(toks)-1)
			if i == 0 {
				mu.Lock()
				firstToken[tag] = time.Now()
				mu.Unlock()
			} else {
				time.Sleep(10 * time.Millisecond)
			}
		}
		llmfake.End(w)
	})
	log := slog.New(slog.DiscardHandler)
	bt, err := New(Config{VerificationToken: testToken, EncryptKey: testEncrypt, PublicURL: testPublic, Workers: 2 * conc},
		openapi.NewLarkClient(uniqueAppID(), "secret", fake.URL, log), llmEngine(b, llm.URL, llmOpts{}), state.NewMemory(), log)
	if err != nil {
		b.Fatal(err)
	}
	if err := bt.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(bt.Handler())
	b.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = bt.Shutdown(ctx)
	})
	signer := feishufake.Signer{EncryptKey: testEncrypt, Token: testToken}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	type asked struct {
		msgID, tag string
		at         time.Time
	}
	var qs []asked
	b.ResetTimer()
	for start := 0; start < b.N; start += conc {
		var wg sync.WaitGroup
		for i := start; i < min(start+conc, b.N); i++ {
			q := asked{msgID: fmt.Sprintf("om_bench_%s_%d", run, i), tag: fmt.Sprintf("#%d", i)}
			m := feishufake.Message{EventID: "ev_" + q.msgID, MessageID: q.msgID, ChatID: fmt.Sprintf("oc_bench_%d", i), Text: llmQuestion + " " + q.tag}
			req, err := signer.Request(context.Background(), srv.URL+"/feishu/events", signer.MessageEvent(m))
			if err != nil {
				b.Fatal(err)
			}
			q.at = time.Now()
			qs = append(qs, q)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		for _, q := range qs[start:] {
			for deadline := time.Now().Add(30 * time.Second); fake.Replies(q.msgID) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("no answer to %s", q.msgID)
				}
			}
		}
	}
	b.StopTimer()

	reqs := fake.Requests()
	var thinking, firstText, overhead []time.Duration
	for _, q := range qs {
		var cardID string
		var shown time.Time
		for _, r := range reqs {
			if r.Op == feishufake.OpReply && r.MessageID == q.msgID && r.Delivered {
				cardID, shown = r.CardID, r.At
			}
		}
		if cardID == "" {
			b.Fatalf("%s was not streamed", q.msgID)
		}
		thinking = append(thinking, shown.Sub(q.at))
		for _, r := range reqs {
			if r.Op == feishufake.OpCardContent && r.CardID == cardID && r.Status == http.StatusOK {
				firstText = append(firstText, r.At.Sub(q.at))
				mu.Lock()
				overhead = append(overhead, r.At.Sub(firstToken[q.tag]))
				mu.Unlock()
				break
			}
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"thinking", thinking}, {"first-text", firstText}, {"overhead", overhead}} {
		slices.Sort(m.ds)
		if len(m.ds) == 0 {
			continue
		}
		b.ReportMetric(float64(m.ds[len(m.ds)/2])/float64(time.Millisecond), m.name+"-p50-ms")
		b.ReportMetric(float64(m.ds[len(m.ds)*9/10])/float64(time.Millisecond), m.name+"-p90-ms")
	}
}

// TestAnswerRunAgainFinishesTheFirstCard: a worker dies mid-answer, leaving
// its card streaming; the queue runs the answer again elsewhere. The record
// of what the question was answered with tells the second run the first
// run's card: it finishes that card and posts no second message.
func TestAnswerRunAgainFinishesTheFirstCard(t *testing.T) {
	fake := feishufake.New(testBotID)
	t.Cleanup(fake.Close)
	llm := newFakeLLM(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			sse(w, r, tokens(llmText)[:5], 5*time.Millisecond, false) // then the worker dies
			return
		}
		sse(w, r, tokens(llmText), time.Millisecond, true)
	})
	h := newHarness(t, harnessOpts{fake: fake, ans: llmEngine(t, llm.URL, llmOpts{idle: time.Minute})})
	q := question{Text: llmQuestion, Conv: "chat:oc_rerun", ChatID: "oc_rerun", ReplyTo: "om_rerun", Seed: "om_rerun"}

	ctx, die := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.bot.answer(ctx, h.bot.log, q) }()
	testkit.Eventually(t, "the first run's text", func() bool { return fake.Calls(feishufake.OpCardContent) > 0 })
	die() // nothing it does from here reaches Feishu
	testkit.Receive(t, "the first run to end", done, 20*time.Second)
	var first string
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpReply && r.Delivered {
			first = r.CardID
		}
	}
	if _, streaming, _ := fake.Card(first); !streaming {
		t.Fatal("the first run's card is not left streaming; the test does not simulate a crash")
	}

	h.bot.answer(context.Background(), h.bot.log, q)
	r := h.settledCard("om_rerun")
	if r.CardID != first || !strings.Contains(feishufake.CardText(r.Card), "让模型依据资料写出回答") {
		t.Errorf("reply shows card %s (first run's %s):\n%s", r.CardID, first, feishufake.CardText(r.Card))
	}
	if n := fake.Calls(feishufake.OpCardCreate); n != 1 {
		t.Errorf("%d cards created, want the first run's alone", n)
	}
	if n := fake.Calls(feishufake.OpReply); n != 1 {
		t.Errorf("%d replies, want the first run's alone", n)
	}
	if n := fake.Calls(feishufake.OpCardIDOf); n != 0 {
		t.Errorf("%d id_convert calls: the record says which card (and cardkit:card:read is no longer recommended)", n)
	}
	var applied int
	for _, op := range fake.CardOps(first) {
		if op.Code == 0 && op.Sequence > adoptedSeq {
			applied++
		}
	}
	if applied < 3 {
		t.Errorf("%d operations of the second run applied to the first card, want at least 3", applied)
	}

	// Run once more, hours later: past Feishu's one-hour uuid window the
	// record alone keeps the answer from going out twice.
	fake.Now = func() time.Time { return time.Now().Add(3 * time.Hour) }
	opsBefore, asksBefore := len(fake.CardOps(first)), llm.Requests()
	if err := h.bot.runJob(context.Background(), queue.Job{ID: "1-1", Attempt: 3, Payload: mustItem(t, item{Kind: kindMessage,
		Msg: &incoming{MessageID: "om_rerun", ChatID: "oc_rerun", ChatType: "p2p", MsgType: "text", Text: llmQuestion}})}); err != nil {
		t.Fatal(err)
	}
	if n := fake.Calls(feishufake.OpReply); n != 1 {
		t.Errorf("%d replies after a third run hours later, want still 1", n)
	}
	if ops, asks := len(fake.CardOps(first)), llm.Requests(); ops != opsBefore || asks != asksBefore {
		t.Errorf("the third run answered again (%d card operations, %d LLM requests, were %d, %d); the answer was finished", ops, asks, opsBefore, asksBefore)
	}
}

func mustItem(t *testing.T, it item) []byte {
	t.Helper()
	b, err := json.Marshal(it)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An answer that outgrows the card is cut with a note; the streamed updates
// still only ever extend what was shown (a longer cut of text heavy in
// characters JSON escapes need not), and the final card holds the cut.
func TestStreamedAnswerOutgrowingTheCardOnlyGrows(t *testing.T) {
	var toks []string
	for i := range 60 {
		toks = append(toks, fmt.Sprintf("第%d段：\"引号\" 与 \\反斜杠\\\n\n%s", i, strings.Repeat("\"长文本\"，", 60)))
	}
	h := streamingHarness(t, toks, 15*time.Millisecond)
	fake := h.fake
	m := h.dm(llmQuestion)
	h.mustPost(h.signer.MessageEvent(m))
	r := h.replyTo(m.MessageID)
	if r.CardID == "" {
		t.Fatalf("the answer was not streamed: reply %s", r.Content)
	}
	prev, updates := "", 0
	for _, op := range fake.CardOps(r.CardID) {
		if op.Op != feishufake.OpCardContent {
			continue
		}
		updates++
		if !strings.HasPrefix(op.Content, prev) || len(op.Content) <= len(prev) {
			t.Errorf("update %d does not extend the one before (%d → %d bytes)", updates, len(prev), len(op.Content))
		}
		prev = op.Content
	}
	if updates < 2 {
		t.Errorf("%d text updates, want several", updates)
	}
}
