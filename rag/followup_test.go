package rag

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kbbot/rag/llmfake"
	"kbbot/store/index"
)

// mlEngine is an engine over a small knowledge base about model training
// (written to the test's temp dir): 过拟合 has a document, 欠拟合 has none.
func mlEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"overfitting.md": "# 过拟合\n\n过拟合是指模型在训练数据上表现很好，在没见过的新数据上却表现很差的现象：模型连训练数据里的噪声也记住了。\n\n避免过拟合的常用方法有正则化、早停、数据增强，以及收集更多训练数据。\n",
		"lr.md":          "# 学习率\n\n学习率决定梯度下降每一步更新参数的幅度。学习率太大，损失会震荡甚至发散；太小，训练收敛很慢。\n",
		"labeling.md":    "# 数据标注\n\n数据标注是给样本打上标签的过程，标注质量直接决定监督学习的上限。常见做法有众包标注和专家审核。\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := index.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Index = idx
	eng, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Ingest(context.Background(), []string{dir}, nil); err != nil {
		t.Fatal(err)
	}
	return eng
}

const (
	overfitQ = "什么是过拟合？"
	followQ  = "它和欠拟合有什么区别？"
)

func overfitHistory() []Turn {
	return []Turn{{Question: overfitQ, Answer: "过拟合是模型在训练数据上很好、在新数据上很差的现象 [1]。"}}
}

func citesTitle(refs []Reference, title string) bool {
	return slices.ContainsFunc(refs, func(r Reference) bool { return strings.HasPrefix(r.Title, title) })
}

// On its own the follow-up finds nothing (it only shares 拟合 with the
// knowledge base); read with the conversation it finds the 过拟合 document.
func TestFollowUpWithoutLLMIsSearchedWithThePreviousQuestion(t *testing.T) {
	for _, tok := range []string{TokBigram, TokUnigramBigram} {
		t.Run(tok, func(t *testing.T) {
			eng := mlEngine(t, Options{Tokenizer: tok})
			ctx := context.Background()
			alone, err := eng.Ask(ctx, followQ, nil)
			if err != nil || alone.Covered {
				t.Fatalf("the follow-up alone: %+v, %v; want nothing found", alone, err)
			}
			ans, err := eng.Ask(ctx, followQ, overfitHistory())
			if err != nil {
				t.Fatal(err)
			}
			if ans.Mode != ModeExtractive || !citesTitle(ans.References, "过拟合") {
				t.Errorf("mode %s, references %+v; want the 过拟合 document", ans.Mode, ans.References)
			}
			// One that finds something else on its own is read with the
			// conversation too.
			const related = "那它跟学习率有关系吗？"
			if alone, _ := eng.Ask(ctx, related, nil); citesTitle(alone.References, "过拟合") || !alone.Covered {
				t.Fatalf("%q alone: %+v; want the 学习率 document only", related, alone.References)
			}
			if ans, _ := eng.Ask(ctx, related, overfitHistory()); !citesTitle(ans.References, "过拟合") {
				t.Errorf("%q after %q: references %+v; want the 过拟合 document", related, overfitQ, ans.References)
			}
			// A question that stands alone is not mixed with the previous
			// one, and needs no history.
			loads := 0
			ans, err = eng.AskStream(ctx, "学习率太大会怎样？", func() []Turn { loads++; return overfitHistory() }, nil)
			if err != nil || loads != 0 || !citesTitle(ans.References, "学习率") || citesTitle(ans.References, "过拟合") {
				t.Errorf("standalone question: loads %d, references %+v, err %v", loads, ans.References, err)
			}
		})
	}
}

func TestLeansOnContext(t *testing.T) {
	eng := mlEngine(t, Options{})
	for q, want := range map[string]bool{
		"它和欠拟合有什么区别？":                            true,
		"那第二点呢？":                                 true,
		"这个怎么用？":                                 true,
		"RAG 呢？":                                 true,
		"How is it different from underfitting?": true,
		"Tell me more about that":                true,
		"学习率太大会怎样？":                              false,
		"数据标注有哪些常见做法？":                           false,
		"How do I choose a learning rate?":       false,
	} {
		if got := eng.leansOnContext(q); got != want {
			t.Errorf("leansOnContext(%q) = %v, want %v", q, got, want)
		}
	}
}

// With an LLM the follow-up is rewritten by one short call and the search
// uses the rewrite; the answer is still asked in the user's words.
func TestFollowUpWithLLMIsRewrittenBeforeRetrieval(t *testing.T) {
	f := startLLM(t, llmfake.Reply("过拟合和欠拟合有什么区别？"), llmfake.Reply("过拟合是记住了噪声 [1]，欠拟合是没学到规律。"))
	l := newLLM(f, &sleepRecorder{}, 0)
	l.MaxTokens = 1024
	eng := mlEngine(t, Options{LLM: l})
	ans, err := eng.Ask(context.Background(), followQ, overfitHistory())
	if err != nil {
		t.Fatal(err)
	}
	chats := f.Chats()
	if len(chats) != 2 {
		t.Fatalf("%d chat requests, want the rewrite and the answer", len(chats))
	}
	if rw := chats[0]; rw.Stream || rw.MaxTokens != rewriteTokens || !strings.Contains(rw.Question(), overfitQ) || !strings.HasSuffix(rw.Question(), followQ) {
		t.Errorf("rewrite request: stream %v, max_tokens %d, asks %q", rw.Stream, rw.MaxTokens, rw.Question())
	}
	answer := chats[1]
	if !answer.Stream || answer.MaxTokens != 1024 {
		t.Errorf("answer request: stream %v, max_tokens %d", answer.Stream, answer.MaxTokens)
	}
	if prompt := answer.Question(); !strings.Contains(prompt, "《过拟合》") || !strings.HasSuffix(prompt, "问题："+followQ) {
		t.Errorf("answer prompt lacks the 过拟合 passage or the user's own words:\n%s", prompt)
	}
	if ans.Mode != ModeLLM || !citesTitle(ans.References, "过拟合") {
		t.Errorf("mode %s, references %+v", ans.Mode, ans.References)
	}
}

// When the rewrite fails, slowly or at once, the follow-up is searched as
// asked (and read with the previous question when that finds nothing), and
// the answer still comes.
func TestFollowUpRewriteFailureFallsBack(t *testing.T) {
	for name, step := range map[string]llmfake.Step{
		"error":   llmfake.Fail(500),
		"timeout": llmfake.Reply("过拟合和欠拟合有什么区别？").After(2 * time.Second),
		"empty":   llmfake.Reply("  "),
	} {
		t.Run(name, func(t *testing.T) {
			f := startLLM(t, step, llmfake.Reply("过拟合是记住了噪声 [1]。"))
			l := newLLM(f, &sleepRecorder{}, 0)
			l.ShortTimeout = 200 * time.Millisecond
			eng := mlEngine(t, Options{LLM: l})
			ans, err := eng.Ask(context.Background(), followQ, overfitHistory())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(f.Chats()); n != 2 {
				t.Errorf("%d chat requests, want one rewrite (not retried) and the answer", n)
			}
			if ans.Mode != ModeLLM || !citesTitle(ans.References, "过拟合") {
				t.Errorf("mode %s, references %+v", ans.Mode, ans.References)
			}
		})
	}
}
