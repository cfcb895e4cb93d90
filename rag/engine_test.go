package rag

import (
	"context"
	"os"
	"strings"
	"testing"

	"kbbot/store/index"
)

// seededEngine returns an engine over a fresh embedded index holding the
// shipped seeds.
func seededEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	idx, err := index.OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Index = idx
	eng, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	chdir(t, "..")
	if _, err := eng.EnsureSeeded(context.Background(), "seeds"); err != nil {
		t.Fatal(err)
	}
	return eng
}

// chdir moves to dir for the test, so source names are repo-relative.
func chdir(t testing.TB, dir string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
}

func TestAskSeedQuestionOffline(t *testing.T) {
	eng := seededEngine(t, Options{})
	ans, err := eng.Ask(context.Background(), "模型训练的底层原理是什么？", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", ans)
	if ans.Mode != ModeFAQ || !ans.Covered {
		t.Errorf("mode = %s covered=%v, want faq", ans.Mode, ans.Covered)
	}
	if len(ans.References) != 3 || !strings.Contains(ans.Text, "[1]") {
		t.Errorf("references = %d, text cites: %q", len(ans.References), ans.Text)
	}
	if len(ans.FollowUps) < 3 || len(ans.FollowUps) > 5 {
		t.Errorf("follow-ups = %q, want 3–5", ans.FollowUps)
	}
	for _, f := range ans.FollowUps {
		if f == "模型训练的底层原理" {
			t.Errorf("follow-ups repeat the question: %q", ans.FollowUps)
		}
	}
}

func TestAskExtractiveAndNotCovered(t *testing.T) {
	for _, tok := range []string{TokBigram, TokUnigramBigram} {
		t.Run(tok, func(t *testing.T) { testExtractiveAndNotCovered(t, tok) })
	}
}

func testExtractiveAndNotCovered(t *testing.T, tok string) {
	eng := seededEngine(t, Options{Tokenizer: tok})
	ctx := context.Background()
	ans, err := eng.Ask(ctx, "RAG 是怎么工作的，有哪些步骤？", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s\n%+v\n%q", ans.Text, ans.References, ans.FollowUps)
	if ans.Mode != ModeExtractive || len(ans.References) == 0 || !strings.Contains(ans.Text, "[1]") {
		t.Errorf("extractive answer = %+v", ans)
	}
	again, _ := eng.Ask(ctx, "RAG 是怎么工作的，有哪些步骤？", nil)
	if again.Text != ans.Text {
		t.Error("extractive answer is not deterministic")
	}
	for _, q := range []string{"今天北京天气怎么样？", "What's the best pizza topping in Naples?", "周末去哪里吃火锅比较好", "如何申请护照和签证", "How do I fix a flat bicycle tire?"} {
		ans, err = eng.Ask(ctx, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ans.Covered || len(ans.References) != 0 {
			t.Errorf("%q: cited noise: %+v", q, ans.References)
		}
	}
}

// History is loaded only when it matters: never for an extractive answer
// the question finds on its own; for a question with no terms of its own
// ("tell me more"), once, and its previous question then finds the answer.
func TestAskLoadsHistoryOnlyWhenNeeded(t *testing.T) {
	for _, tok := range []string{TokBigram, TokUnigramBigram} {
		t.Run(tok, func(t *testing.T) { testAskLoadsHistoryOnlyWhenNeeded(t, tok) })
	}
}

func testAskLoadsHistoryOnlyWhenNeeded(t *testing.T, tok string) {
	eng := seededEngine(t, Options{Tokenizer: tok})
	ctx := context.Background()
	loads := 0
	history := func() []Turn {
		loads++
		return []Turn{{Question: "RAG 是怎么工作的，有哪些步骤？", Answer: "…"}}
	}
	ans, err := eng.AskStream(ctx, "RAG 是怎么工作的，有哪些步骤？", history, nil)
	if err != nil || !ans.Covered {
		t.Fatalf("%+v, %v", ans, err)
	}
	if loads != 0 {
		t.Errorf("history loaded %d times for a question answered on its own", loads)
	}
	ans, err = eng.AskStream(ctx, "再详细说说", history, nil)
	if err != nil {
		t.Fatal(err)
	}
	if loads != 1 || !ans.Covered {
		t.Errorf("history loaded %d times, covered %v; want once, and the previous question to find sources", loads, ans.Covered)
	}
	// Without a previous question, "tell me more" cites nothing: its words
	// alone used to match any text using them.
	for _, q := range []string{"再详细说说", "还有呢", "然后呢", "展开讲讲", "具体说说", "多讲一点"} {
		ans, err := eng.AskStream(ctx, q, nil, nil)
		if err != nil || ans.Covered || len(ans.References) != 0 {
			t.Errorf("%q with no history: %v, covered %v, references %v", q, err, ans.Covered, ans.References)
		}
	}
}
