package rag

import (
	"slices"
	"testing"
)

// Bigrams across a conjunction (合和, 和欠) are no topic: left in, they
// made a question about two things look half unrelated to a document on
// one of them.
func TestQueryTermsSkipConjunctionBigrams(t *testing.T) {
	tok, _ := NewTokenizer(TokBigram)
	got := multiRune(tok.QueryTerms("过拟合和欠拟合有什么区别？"))
	for _, junk := range []string{"合和", "和欠"} {
		if slices.Contains(got, junk) {
			t.Errorf("query terms %q keep %q", got, junk)
		}
	}
	for _, topic := range []string{"过拟", "拟合", "欠拟", "区别"} {
		if !slices.Contains(got, topic) {
			t.Errorf("query terms %q lack %q", got, topic)
		}
	}
}
