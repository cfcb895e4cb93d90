package rag

import (
	"context"
	"os"
	"testing"
)

// TestEvalRecall guards retrieval quality on the shipped evaluation set; the
// figures per tokenizer are reported in the README.
func TestEvalRecall(t *testing.T) {
	f, err := os.Open("testdata/eval.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := ReadEvalCases(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("evaluation set has %d questions, want at least 30", len(cases))
	}
	for _, tok := range []string{TokBigram, TokUnigramBigram} {
		t.Run(tok, func(t *testing.T) {
			eng := seededEngine(t, Options{Tokenizer: tok})
			res, err := eng.Evaluate(context.Background(), cases)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: recall@1 %.3f recall@3 %.3f MRR %.3f misses %q", tok, res.Recall1, res.Recall3, res.MRR, res.Misses)
			if tok == TokBigram && res.Recall3 < 0.9 {
				t.Errorf("recall@3 = %.3f, want ≥ 0.9", res.Recall3)
			}
		})
	}
}
