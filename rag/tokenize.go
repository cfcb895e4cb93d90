package rag

import (
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"kbbot/store/index"
)

// Tokenizer names, selectable for evaluation. The index must be rebuilt when
// the tokenizer changes, so its name is part of every chunk id.
const (
	TokBigram        = "bigram"         // Han character bigrams + Latin words
	TokUnigramBigram = "unigram+bigram" // the above plus single Han characters
)

// BM25 document-side parameters. avgLen is fixed rather than measured so a
// chunk's vector depends on the chunk alone: that keeps chunk ids stable and
// lets Qdrant (which only applies IDF) rank exactly like the embedded index.
const (
	bm25K1     = 1.2
	bm25B      = 0.75
	bm25AvgLen = 300
)

// Tokenizer splits mixed Chinese/English text into index terms.
type Tokenizer struct {
	unigrams bool
	name     string
}

// NewTokenizer returns the named tokenizer; an unknown name is an error the
// caller reports.
func NewTokenizer(name string) (Tokenizer, bool) {
	switch name {
	case TokBigram, "":
		return Tokenizer{name: TokBigram}, true
	case TokUnigramBigram:
		return Tokenizer{unigrams: true, name: TokUnigramBigram}, true
	}
	return Tokenizer{}, false
}

// Name identifies the tokenizer in chunk ids and eval reports.
func (t Tokenizer) Name() string { return t.name }

// stopTerms are question words that match almost every text and would let
// noise clear the relevance floor. Dropping them on both sides keeps the
// index and queries consistent.
var stopTerms = map[string]bool{
	// Chinese bigrams from question phrasing.
	"什么": true, "是什": true, "么是": true, "怎么": true, "么样": true, "如何": true, "哪些": true,
	"为什": true, "怎样": true, "请问": true, "一下": true, "可以": true, "有没": true, "没有": true,
	"的是": true, "是的": true, "我们": true, "你们": true, "我的": true, "这个": true, "那个": true,
	"吗？": true, "么？": true, "一个": true, "有哪": true, "关于": true, "告诉": true, "诉我": true,
	// Chinese bigrams of "tell me more" ("还有呢", "再详细说说", "展开讲讲"):
	// alone they matched any text that happens to use them; without them
	// such a question has no terms and is searched with the previous one.
	"还有": true, "有呢": true, "详细": true, "细说": true, "说说": true, "讲讲": true, "展开": true,
	"开讲": true, "继续": true, "更多": true, "再说": true, "再详": true, "具体": true, "体说": true,
	"然后": true, "后呢": true, "多讲": true, "讲一": true, "多说": true, "说一": true, "一点": true,
	// English function words.
	"a": true, "an": true, "the": true, "is": true, "are": true, "was": true, "be": true, "of": true,
	"to": true, "in": true, "on": true, "for": true, "and": true, "or": true, "what": true, "how": true,
	"why": true, "which": true, "who": true, "does": true, "do": true, "can": true, "i": true, "you": true,
	"it": true, "its": true, "this": true, "that": true, "with": true, "about": true, "me": true, "my": true,
	"there": true, "any": true, "from": true, "by": true, "as": true, "at": true, "tell": true, "should": true,
	"much": true, "many": true, "did": true, "has": true, "have": true, "had": true, "will": true, "would": true,
	"could": true, "when": true, "where": true, "get": true, "so": true, "if": true, "not": true, "than": true,
	"then": true, "into": true, "more": true, "most": true, "some": true, "such": true, "very": true, "just": true,
	"also": true, "these": true, "those": true, "their": true, "them": true, "they": true, "we": true, "our": true,
	"your": true, "were": true, "been": true, "being": true, "explain": true, "please": true,
}

// stem strips the English plural "s" so "GPUs" matches "GPU". Anything
// smarter needs a dictionary, which Latin product names would defeat anyway.
func stem(w string) string {
	if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is") {
		return w[:len(w)-1]
	}
	return w
}

// Tokens returns the terms of text in order, duplicates kept.
func (t Tokenizer) Tokens(text string) []string {
	var out []string
	var han []rune
	var word strings.Builder
	flushHan := func() {
		switch {
		case len(han) == 1:
			out = append(out, string(han))
		case len(han) > 1:
			for i := 0; i+1 < len(han); i++ {
				if bg := string(han[i : i+2]); !stopTerms[bg] {
					out = append(out, bg)
				}
			}
			if t.unigrams {
				// A character only ever part of stop bigrams (还, 有, 呢 of
				// 还有呢) is a question word too, not a topic.
				for i, r := range han {
					if (i > 0 && !stopTerms[string(han[i-1:i+1])]) || (i+1 < len(han) && !stopTerms[string(han[i:i+2])]) {
						out = append(out, string(r))
					}
				}
			}
		}
		han = han[:0]
	}
	flushWord := func() {
		if w := word.String(); w != "" && !stopTerms[w] {
			out = append(out, stem(w))
		}
		word.Reset()
	}
	for _, r := range text {
		r = foldWidth(r)
		switch {
		case unicode.Is(unicode.Han, r):
			flushWord()
			han = append(han, r)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			flushHan()
			word.WriteRune(unicode.ToLower(r))
		default:
			flushHan()
			flushWord()
		}
	}
	flushHan()
	flushWord()
	return out
}

// functionChars are Chinese particles, pronouns and conjunctions. A question
// bigram containing one ("是怎", "作的", "合和" of 过拟合和欠拟合) straddles a
// word boundary and says little about the topic, so queries leave such
// bigrams out; the index keeps them. Left in, they diluted the floor: half
// the terms of 过拟合和欠拟合有什么区别 were such bigrams.
const functionChars = "的了是么些吗呢吧啊呀怎哪们把被很我你他她它这那和与或及"

// QueryTerms returns the distinct terms of a question that carry its topic.
func (t Tokenizer) QueryTerms(question string) []string {
	var out []string
	for _, tok := range distinct(t.Tokens(question)) {
		if utf8.RuneCountInString(tok) == 2 && strings.ContainsAny(tok, functionChars) && unicode.Is(unicode.Han, []rune(tok)[0]) {
			continue
		}
		out = append(out, tok)
	}
	return out
}

// foldWidth maps full-width ASCII (Ａ, １) to its half-width form so "ＡＩ"
// and "AI" are one term.
func foldWidth(r rune) rune {
	if r >= 0xFF01 && r <= 0xFF5E {
		return r - 0xFEE0
	}
	return r
}

// termIndex hashes a term to a sparse-vector dimension. Collisions among 2^32
// dimensions are rare enough to ignore for a knowledge base.
func termIndex(term string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(term))
	return h.Sum32()
}

// DocVector is the BM25 document side: tf saturation and length
// normalisation; IDF is left to the store.
func DocVector(tokens []string) index.SparseVector {
	tf := map[uint32]float64{}
	for _, tok := range tokens {
		tf[termIndex(tok)]++
	}
	norm := bm25K1 * (1 - bm25B + bm25B*float64(len(tokens))/bm25AvgLen)
	return sortedVector(tf, func(f float64) float32 {
		return float32(f * (bm25K1 + 1) / (f + norm))
	})
}

// QueryVector weighs each distinct query term 1.0, as BM25 does.
func QueryVector(tokens []string) index.SparseVector {
	seen := map[uint32]float64{}
	for _, tok := range tokens {
		seen[termIndex(tok)] = 1
	}
	return sortedVector(seen, func(f float64) float32 { return float32(f) })
}

func sortedVector(m map[uint32]float64, weight func(float64) float32) index.SparseVector {
	v := index.SparseVector{Indices: make([]uint32, 0, len(m)), Values: make([]float32, 0, len(m))}
	for i := range m {
		v.Indices = append(v.Indices, i)
	}
	sort.Slice(v.Indices, func(a, b int) bool { return v.Indices[a] < v.Indices[b] })
	for _, i := range v.Indices {
		v.Values = append(v.Values, weight(m[i]))
	}
	return v
}

// termCache remembers the term sets of texts scored again and again: the
// sentences of often-retrieved chunks, whose tokenising otherwise dominates
// the cost of an extractive answer. When full it starts over, which bounds
// its memory without bookkeeping.
type termCache struct {
	mu sync.Mutex
	m  map[string]map[string]struct{}
}

const termCacheSize = 20_000

func (c *termCache) terms(tok Tokenizer, text string) map[string]struct{} {
	c.mu.Lock()
	set, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return set
	}
	set = map[string]struct{}{}
	for _, t := range tok.Tokens(text) {
		set[t] = struct{}{}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= termCacheSize {
		c.m = make(map[string]map[string]struct{}, 1024)
	}
	c.m[text] = set
	c.mu.Unlock()
	return set
}

// coverage is the share of the query's distinct terms found in text: the
// relevance floor, computed the same way whichever store ranked the hit.
func (c *termCache) coverage(tok Tokenizer, queryTerms []string, text string) float64 {
	if len(queryTerms) == 0 {
		return 0
	}
	have := c.terms(tok, text)
	n := 0
	for _, q := range queryTerms {
		if _, ok := have[q]; ok {
			n++
		}
	}
	return float64(n) / float64(len(queryTerms))
}

// vectorCoverage is coverage computed from a chunk's stored sparse vector
// (sorted term hashes built from the same text), which saves tokenising the
// chunk again on every query.
func vectorCoverage(queryTerms []string, v index.SparseVector) float64 {
	if len(queryTerms) == 0 {
		return 0
	}
	n := 0
	for _, q := range queryTerms {
		if _, ok := slices.BinarySearch(v.Indices, termIndex(q)); ok {
			n++
		}
	}
	return float64(n) / float64(len(queryTerms))
}

func distinct(tokens []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tokens {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
