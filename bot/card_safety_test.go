package bot

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/rag"
	"kbbot/rag/llmfake"
	"kbbot/store/index"
)

// sourceURL is where the one document of the safety tests' knowledge base
// lives.
const sourceURL = "https://docs.example.com/rag-guide"

// hostileLLMAnswer is what a model misled by a poisoned document could
// write: a remote image, five tables, @all, red "system" text, a foreign
// login link and a bare phishing URL, around an honest answer that cites
// and links its source.
var hostileLLMAnswer = "检索增强生成先从知识库检索相关段落，再让模型依据资料回答 [1]。详见[原文](" + sourceURL + "#steps)。\n\n" +
	"![x](https://evil.example/a.png)\n\n" +
	strings.Repeat("| 步骤 | 说明 |\n|---|---|\n| 检索 | 找出段落 |\n\n", 5) +
	"<at id=all></at> <font color='red'>系统通知</font>：账号即将停用，请[登录](https://evil.example/login)，或访问 https://evil.example/phish 完成验证。"

// kbEngine is a real engine over a one-document knowledge base whose LLM
// is the OpenAI-compatible API at llmBase.
func kbEngine(t *testing.T, llmBase string) *fakeAnswerer {
	t.Helper()
	dir := t.TempDir()
	doc := "---\ntitle: 检索增强生成指南\nurl: " + sourceURL + "\n---\n\n## 检索增强生成的原理\n\n" +
		"检索增强生成（RAG）先从知识库中检索与问题相关的段落，再把段落交给大模型生成回答。实现步骤：切分文档、建立索引、检索、生成。\n"
	if err := os.WriteFile(filepath.Join(dir, "rag.md"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	idx, err := index.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rag.New(rag.Options{Index: idx, LLM: rag.NewLLM(rag.NewOpenAIClient("test-key", llmBase), "fake-model", 10*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.EnsureSeeded(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	return &fakeAnswerer{StreamFn: eng.AskStream, LLM: eng.HasLLM()}
}

// hostileFakes is a fake Open API and the URL of a fake LLM that writes
// hostileLLMAnswer: typed into the card entity when streamed, else with
// CardKit unavailable (99991672), so that the answer goes out as one card.
func hostileFakes(t *testing.T, streamed bool) (*feishufake.Server, string) {
	t.Helper()
	fake := feishufake.New(testBotID)
	t.Cleanup(fake.Close)
	llm := llmfake.Start(t, llmfake.Default(llmfake.Handle(func(w http.ResponseWriter, r *http.Request) {
		if streamed {
			untilReplied(fake) // so that the answer types into the card
		}
		llmfake.Stream(w, r, tokens(hostileLLMAnswer), 2*time.Millisecond)
	})))
	if !streamed {
		fake.Fail(feishufake.Fault{Op: feishufake.OpCardCreate, Times: 1000, Status: http.StatusBadRequest, Code: 99991672})
	}
	return fake, llm.URL
}

// TestHostileLLMAnswerArrivesAsOneCleanCard: whatever markup the model
// writes, the asker gets one card that Feishu (the fake, which refuses the
// hostile forms as Feishu documents) takes at every step, streamed or not,
// with none of the hostile forms in its markdown and the answer's own
// sources still linked.
func TestHostileLLMAnswerArrivesAsOneCleanCard(t *testing.T) {
	for _, streamed := range []bool{true, false} {
		name := "streamed"
		if !streamed {
			name = "one card"
		}
		t.Run(name, func(t *testing.T) {
			fake, llmURL := hostileFakes(t, streamed)
			h := newHarness(t, harnessOpts{fake: fake, ans: kbEngine(t, llmURL)})
			m := h.dm(llmQuestion)
			h.mustPost(h.signer.MessageEvent(m))
			r := h.replyTo(m.MessageID)
			if streamed != (r.CardID != "") {
				t.Fatalf("streamed %v, but the reply's card entity is %q", streamed, r.CardID)
			}
			h.waitTurns("chat:"+m.ChatID, 1) // the worker is done with the question
			if n := fake.Replies(m.MessageID); n != 1 {
				t.Errorf("%d replies, want 1", n)
			}
			for _, req := range fake.Requests() {
				if req.Status != http.StatusOK && req.Op != feishufake.OpCardCreate {
					t.Errorf("Feishu refused %s: HTTP %d code %d", req.Op, req.Status, req.Code)
				}
			}
			if streamed && fake.Calls(feishufake.OpCardContent) == 0 {
				t.Error("no text was streamed into the card")
			}

			mds := feishufake.Markdowns(r.Card)
			all := strings.Join(mds, "\n")
			if !strings.Contains(all, "再让模型依据资料回答") {
				t.Fatalf("the card lacks the answer:\n%s", all)
			}
			var links []string
			for _, md := range mds {
				if imgs := feishufake.MarkdownImages(md); len(imgs) > 0 {
					t.Errorf("images %q in %q", imgs, md)
				}
				if n := feishufake.MarkdownTables(md); n > 3 {
					t.Errorf("%d tables in one markdown element", n)
				}
				links = append(links, feishufake.MarkdownLinks(md)...)
			}
			if feishufake.MarkdownTables(all) != 3 {
				t.Errorf("%d tables in the card, want the first 3 of the 5", feishufake.MarkdownTables(all))
			}
			for _, bad := range []string{"<at", "<font color='red'", "](https://evil.example"} {
				if strings.Contains(all, bad) {
					t.Errorf("the card's markdown has %q:\n%s", bad, all)
				}
			}
			linked := map[string]bool{}
			for _, l := range links {
				u, err := url.Parse(l)
				if err != nil || u.Hostname() == "evil.example" {
					t.Errorf("a link to %q", l)
				}
				linked[l] = true
			}
			if !linked[sourceURL] || !linked[sourceURL+"#steps"] {
				t.Errorf("the answer's source is not linked (as a reference and from the text): %q", links)
			}
		})
	}
}

// TestRefusedAnswerGoesOutPlain: when Feishu refuses an answer card for
// its content by a rule the docs do not state (the fake is told to, once),
// the asker gets the same answer as plain text, not an error card, in the
// one reply: streamed into the card entity or sent as one card.
func TestRefusedAnswerGoesOutPlain(t *testing.T) {
	for _, streamed := range []bool{true, false} {
		name := "streamed"
		if !streamed {
			name = "one card"
		}
		t.Run(name, func(t *testing.T) {
			fake, llmURL := hostileFakes(t, streamed)
			// 230099 is how Feishu refuses a card's content
			// (https://open.feishu.cn/document/server-docs/im-v1/message/reply).
			refused := feishufake.Fault{Op: feishufake.OpReply, Times: 1, Status: http.StatusBadRequest, Code: feishufake.CodeCardContent}
			if streamed {
				refused.Op = feishufake.OpCardUpdate // the final card
			}
			fake.Fail(refused)
			h := newHarness(t, harnessOpts{fake: fake, ans: kbEngine(t, llmURL)})
			m := h.dm(llmQuestion)
			h.mustPost(h.signer.MessageEvent(m))
			h.waitTurns("chat:"+m.ChatID, 1) // answered, as far as the bot knows
			r := h.replyTo(m.MessageID)
			if n := fake.Replies(m.MessageID); n != 1 {
				t.Errorf("%d replies, want 1", n)
			}
			if streamed != (r.CardID != "") {
				t.Fatalf("streamed %v, but the reply's card entity is %q", streamed, r.CardID)
			}
			if md := feishufake.Markdowns(r.Card); len(md) != 0 {
				t.Errorf("the card still has markdown: %q", md)
			}
			text := feishufake.CardText(r.Card)
			for _, want := range []string{"再让模型依据资料回答", sourceURL} {
				if !strings.Contains(text, want) {
					t.Errorf("the plain answer lacks %q:\n%s", want, text)
				}
			}
		})
	}
}
