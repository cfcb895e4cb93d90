package rag

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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

// lowerText skips unicode.ToLower for the blocks caseless names; every
// rune must still lower exactly as strings.ToLower lowers it.
func TestLowerText(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		if got, want := lowerText(s), strings.ToLower(s); got != want {
			t.Fatalf("lowerText(%U) = %q, want %q", r, got, want)
		}
	}
	for _, s := range []string{"", "过拟合 Overfitting 与 GPT-4o 的 ÉCOLE 和 İstanbul", "全中文没有大写", "plain ascii", "Ａｂ全角"} {
		if got, want := lowerText(s), strings.ToLower(s); got != want {
			t.Errorf("lowerText(%q) = %q, want %q", s, got, want)
		}
	}
}
