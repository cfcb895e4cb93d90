package rag

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"kbbot/store/index"
)

// Index is what the engine needs from a knowledge store; the embedded index
// and the Qdrant adapter both provide it.
type Index interface {
	Upsert(ctx context.Context, chunks []index.Chunk) error
	Delete(ctx context.Context, ids []string) error
	Refs(ctx context.Context) ([]index.ChunkRef, error)
	Search(ctx context.Context, q index.Query) ([]index.Hit, error)
	DocChunks(ctx context.Context, docID string) ([]index.Chunk, error)
	List(ctx context.Context, kind string, limit int) ([]index.Chunk, error)
	Count(ctx context.Context) (int, error)
}

// Retrieval tuning, chosen on the evaluation sets in testdata: eval.jsonl
// (recall on covered questions) and ood.jsonl (nothing cited for the rest).
const (
	candidates    = 12   // hits fetched per question
	maxPassages   = 5    // passages given to the LLM
	maxExtracts   = 3    // documents quoted in an extractive answer
	coverageFloor = 0.3  // share of question terms a hit must contain…
	minMatched    = 3    // …or this many of them…
	minTogether   = 2    // …of which this many in one place (see meet)
	faqSimilarity = 0.75 // question likeness that returns a curated answer
	denseFloor    = 0.3  // cosine below which a dense match is noise
	maxFollowUps  = 5
	minFollowUps  = 3
	// rewriteTokens caps the model's rewrite of a follow-up: one question.
	rewriteTokens = 100
)

// Options configures an Engine. Index is required; a nil Embedder means
// lexical retrieval only, a nil LLM means extractive answers.
type Options struct {
	Index     Index
	Tokenizer string
	Embedder  *Embedder
	LLM       *LLM
	Logger    *slog.Logger
	// OutOfKB is what an LLM does with a question the knowledge base does
	// not cover: OutOfKBGeneral (the default) or OutOfKBRefuse.
	OutOfKB string
}

// Engine answers questions from an index.
type Engine struct {
	index   Index
	tok     Tokenizer
	embed   *Embedder
	llm     *LLM
	general bool // OutOfKBGeneral
	log     *slog.Logger
	cache   *termCache
}

// New builds an Engine.
func New(opts Options) (*Engine, error) {
	if opts.Index == nil {
		return nil, errors.New("rag: no index")
	}
	tok, ok := NewTokenizer(opts.Tokenizer)
	if !ok {
		return nil, fmt.Errorf("rag: unknown tokenizer %q (use %s or %s)", opts.Tokenizer, TokBigram, TokUnigramBigram)
	}
	if opts.OutOfKB != "" && opts.OutOfKB != OutOfKBGeneral && opts.OutOfKB != OutOfKBRefuse {
		return nil, fmt.Errorf("rag: unknown out-of-knowledge-base policy %q (use %s or %s)", opts.OutOfKB, OutOfKBGeneral, OutOfKBRefuse)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{index: opts.Index, tok: tok, embed: opts.Embedder, llm: opts.LLM, general: opts.OutOfKB != OutOfKBRefuse,
		log: log, cache: &termCache{}}, nil
}

// HasLLM reports whether answers may be generated (and streamed) by an LLM;
// without one every answer is extractive or curated and arrives at once.
func (e *Engine) HasLLM() bool { return e.llm != nil }

// salt is mixed into chunk ids: vectors change when the tokenizer or the
// embedding model does, so either change must re-index.
func (e *Engine) salt() string { return tokensVersion + "|" + e.tok.Name() + "|" + e.embed.Model() }

// tokensVersion changes whenever what a tokenizer emits does (its rules,
// the stop terms), so that a plain `kbbot ingest` re-indexes every chunk.
// v2: "tell me more" words became stop terms.
const tokensVersion = "v2"

func (e *Engine) embedChunks(ctx context.Context, chunks []index.Chunk) error {
	if e.embed == nil || len(chunks) == 0 {
		return nil
	}
	texts := make([]string, len(chunks))
	for i, c := range chunks {
		texts[i] = indexText(c)
	}
	vecs, err := e.embed.Embed(ctx, texts)
	if err != nil {
		return err
	}
	for i := range chunks {
		chunks[i].Dense = vecs[i]
	}
	return nil
}

// retrieved is a hit that cleared the relevance floor.
type retrieved struct {
	index.Hit
	coverage float64
}

// retrieve returns the hits for question that clear the relevance floor,
// best first.
func (e *Engine) retrieve(ctx context.Context, question, kind string, limit int) ([]retrieved, error) {
	return e.search(ctx, nil, []string{question}, kind, limit)
}

// vectors embeds each text once: one answer searches the curated Q&A
// items and then everything, usually with the same question, and each
// embedding is a call to the provider.
type vectors map[string][]float32

func (e *Engine) vector(ctx context.Context, memo vectors, text string) ([]float32, error) {
	if v, ok := memo[text]; ok {
		return v, nil
	}
	vecs, err := e.embed.Embed(ctx, []string{text})
	if err != nil {
		return nil, fmt.Errorf("embed question: %w", err)
	}
	if memo != nil {
		memo[text] = vecs[0]
	}
	return vecs[0], nil
}

// search ranks by the terms of all parts together and keeps the hits that
// clear the relevance floor for one of them: a follow-up searched with the
// previous question (过拟合…, then 它跟学习率有关系吗) finds documents on
// either, though none covers the two at once.
// memo, when not nil, keeps the question vectors for the next search.
func (e *Engine) search(ctx context.Context, memo vectors, parts []string, kind string, limit int) ([]retrieved, error) {
	whole := strings.Join(parts, " ")
	terms := e.tok.QueryTerms(whole)
	if len(terms) == 0 {
		return nil, nil
	}
	q := index.Query{Sparse: QueryVector(terms), Kind: kind, Limit: limit, DenseThreshold: denseFloor}
	if e.embed != nil {
		v, err := e.vector(ctx, memo, whole)
		if err != nil {
			return nil, err
		}
		q.Dense = v
	}
	hits, err := e.index.Search(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	// Single Han characters help ranking but match almost any Chinese text,
	// so the floor counts only bigrams and words.
	floors := make([][]string, 0, len(parts))
	for _, p := range parts {
		pt := terms
		if len(parts) > 1 {
			pt = e.tok.QueryTerms(p)
		}
		if ft := multiRune(pt); len(ft) > 0 {
			floors = append(floors, ft)
		}
	}
	var out []retrieved
	for _, h := range hits {
		best, pass := 0.0, q.Dense != nil && h.DenseScore >= denseFloor
		for _, ft := range floors {
			cov := e.coverage(ft, h.Chunk)
			// The coverage of every part counts; whether a part clears
			// the floor only until one has.
			best, pass = max(best, cov), pass || clears(ft, h.Chunk, cov)
		}
		if pass {
			out = append(out, retrieved{Hit: h, coverage: best})
		}
	}
	return out, nil
}

// coverage is the share of the floor terms terms that c holds.
func (e *Engine) coverage(terms []string, c index.Chunk) float64 {
	if len(c.Sparse.Indices) > 0 {
		return vectorCoverage(terms, c.Sparse)
	}
	return e.cache.coverage(e.tok, terms, indexText(c))
}

// clears reports whether c, holding cov of the floor terms terms, is
// relevant enough to the question. A dense match has its own floor in the
// store; a lexical one must share enough of the question's terms: a share
// of a short question, or several terms of a long one. And the terms must
// meet: a question's words scattered over unrelated sentences of a long
// chunk (图片 in one, 压缩 in another) are not its topic.
func clears(terms []string, c index.Chunk, cov float64) bool {
	matched := int(cov*float64(len(terms)) + 0.5)
	return (cov >= coverageFloor || matched >= minMatched) &&
		(matched < minTogether || meet(terms, c, minTogether))
}

// meet reports whether k of terms are found in one place of c: within
// nearBytes of each other in its text, or anywhere in its title and heading
// path, which name what the whole chunk is about. Terms are found as
// substrings, which is cheap; only those the chunk's own vector holds are
// looked for, so a substring inside another word cannot add one. It runs
// for every candidate of every question, so it stops as soon as it knows.
func meet(terms []string, c index.Chunk, k int) bool {
	// Lowered apart, not joined: a chunk's head is mostly lower case
	// already, and then this allocates nothing.
	title, path, cloned := lowerText(c.Title), c.Path, false
	for i, p := range c.Path {
		if l := lowerText(p); l != p {
			if !cloned {
				path, cloned = slices.Clone(c.Path), true
			}
			path[i] = l
		}
	}
	inHead := func(t string) bool {
		return strings.Contains(title, t) || slices.ContainsFunc(path, func(p string) bool { return strings.Contains(p, t) })
	}
	// Fixed buffers keep a typical question's slices off the heap.
	var restBuf [16]string
	rest := restBuf[:0] // held by the vector, not in the head
	headed := 0
	for _, t := range terms {
		if len(c.Sparse.Indices) > 0 {
			if _, ok := slices.BinarySearch(c.Sparse.Indices, termIndex(t)); !ok {
				continue
			}
		}
		if inHead(t) {
			if headed++; headed >= k {
				return true
			}
			continue
		}
		rest = append(rest, t)
	}
	need := k - headed
	if len(rest) < need {
		return false
	}
	text := c.Text
	switch latin, ascii := latinTerms(rest); {
	case ascii:
		// ASCII terms are found in ASCII-lowered text: the same places,
		// bar a Kelvin sign or a dotted İ, and a fifth of the cost.
		text = lowerASCII(text)
	case latin:
		text = lowerText(text)
	}
	type at struct{ pos, term int }
	var foundBuf [64]at
	found := foundBuf[:0]
	for i, t := range rest {
		for off := 0; ; {
			j := strings.Index(text[off:], t)
			if j < 0 {
				break
			}
			if need == 1 {
				return true
			}
			found = append(found, at{off + j, i})
			off += j + len(t)
		}
	}
	slices.SortFunc(found, func(a, b at) int { return cmp.Compare(a.pos, b.pos) })
	// Slide a window over the occurrences, counting distinct terms in it.
	distinct, lo := 0, 0
	var countBuf [16]int
	count := countBuf[:]
	if len(rest) > len(count) {
		count = make([]int, len(rest))
	}
	for _, f := range found {
		if count[f.term]++; count[f.term] == 1 {
			distinct++
		}
		for found[lo].pos < f.pos-nearBytes {
			if count[found[lo].term]--; count[found[lo].term] == 0 {
				distinct--
			}
			lo++
		}
		if distinct >= need {
			return true
		}
	}
	return false
}

// nearBytes is how close two terms must be to count as one place: about
// a sentence (40 Han characters, or 20 English words).
const nearBytes = 120

// lowerText is strings.ToLower for text that is mostly Chinese: it copies
// runes that have no case (CJK punctuation, kana, Han, Hangul) as bytes
// rather than passing each through unicode.ToLower, which made lowering a
// chunk for meet an eighth of an answer's time. It returns s itself
// when nothing changes.
func lowerText(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' && b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			if b != nil {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		l := r
		if !caseless(r) {
			l = unicode.ToLower(r)
		}
		if l != r && b == nil {
			b = append(make([]byte, 0, len(s)), s[:i]...)
		}
		switch {
		case l != r:
			b = utf8.AppendRune(b, l)
		case b != nil:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	if b == nil {
		return s
	}
	return string(b)
}

// caseless reports runes of blocks without letter case: from CJK Symbols
// and Punctuation (U+3000) up to Cyrillic Extended-B (U+A640), which holds
// kana, Bopomofo, Hangul Jamo, the CJK ideographs and Yi, and the Hangul
// syllables. TestLowerText checks every rune against strings.ToLower.
func caseless(r rune) bool {
	return 0x3000 <= r && r < 0xA640 || 0xAC00 <= r && r <= 0xD7A3
}

// latinTerms reports whether any of terms is a Latin word (it starts with
// an ASCII byte), and whether there are such words and all are ASCII.
func latinTerms(terms []string) (latin, ascii bool) {
	ascii = true
	for _, t := range terms {
		if r, _ := utf8.DecodeRuneInString(t); r >= utf8.RuneSelf {
			continue
		}
		latin = true
		for i := 0; i < len(t) && ascii; i++ {
			ascii = t[i] < utf8.RuneSelf
		}
	}
	return latin, latin && ascii
}

// lowerASCII lowers the ASCII letters of s and leaves every other byte as
// it is, so byte offsets stay those of s.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// RetrieveTitles returns the titles of the best documents for question, for
// evaluation.
func (e *Engine) RetrieveTitles(ctx context.Context, question string, k int) ([]string, error) {
	hits, err := e.retrieve(ctx, question, "", candidates)
	if err != nil {
		return nil, err
	}
	var titles []string
	seen := map[string]bool{}
	for _, h := range hits {
		if !seen[h.Chunk.DocID] && len(titles) < k {
			seen[h.Chunk.DocID] = true
			titles = append(titles, h.Chunk.Title)
		}
	}
	return titles, nil
}

func (e *Engine) ask(ctx context.Context, question string, loadHistory func() []Turn, onDelta func(string)) (Answer, error) {
	var history []Turn
	loaded := loadHistory == nil
	past := func() []Turn {
		if !loaded {
			history, loaded = loadHistory(), true
		}
		return history
	}
	question = CutQuestion(strings.TrimSpace(question))
	zh := isChinese(question)
	emit := func(a Answer) Answer {
		if onDelta != nil {
			onDelta(a.Text)
		}
		return a
	}

	start := time.Now()
	// One search of the curated Q&A items serves both the FAQ check and
	// the follow-up questions.
	memo := vectors{}
	qaHits, err := e.search(ctx, memo, []string{question}, index.KindQA, candidates)
	if err != nil {
		return Answer{}, err
	}
	asked := e.termSet(question)
	if a, ok, err := e.faq(ctx, asked, qaHits); err != nil {
		return Answer{}, err
	} else if ok {
		a.Timings.Retrieval = time.Since(start)
		return emit(a), nil
	}

	// A follow-up is searched for as the question it stands for; the
	// answer still gets the user's own words and the history.
	query := e.searchQuery(ctx, question, zh, past)
	hits, err := e.search(ctx, memo, query, "", candidates)
	if err != nil {
		return Answer{}, err
	}
	// A follow-up like "tell me more" has no terms of its own: search with
	// the previous question too. A question read with the previous one
	// that found nothing is searched alone.
	if len(hits) == 0 {
		alt := []string{question}
		if slices.Equal(query, alt) {
			alt = withPrevious(question, past())
		}
		if !slices.Equal(alt, query) {
			if hits, err = e.search(ctx, memo, alt, "", candidates); err != nil {
				return Answer{}, err
			}
		}
	}
	follow, err := e.followUps(ctx, asked, qaHits, nil)
	if err != nil {
		return Answer{}, err
	}

	timings := Timings{Retrieval: time.Since(start)}
	if e.llm != nil && (len(hits) > 0 || e.general || len(past()) > 0) {
		passages := topDocs(hits, maxPassages)
		var msgs []openai.ChatCompletionMessage
		if len(passages) == 0 && e.general {
			msgs = buildGeneralMessages(question, past(), zh)
		} else {
			msgs = buildMessages(question, past(), passages, zh, e.general)
		}
		llmStart := time.Now()
		first := func(s string) {
			if timings.FirstToken == 0 {
				timings.FirstToken = time.Since(llmStart)
			}
			if onDelta != nil {
				onDelta(streamedText(s, len(passages)))
			}
		}
		text, err := e.llm.Complete(ctx, msgs, first)
		if err != nil && text == "" {
			return Answer{}, err
		}
		// With an error here the model failed mid-answer (errors.Is(err,
		// ErrStalled) when it went quiet): the caller gets what was said,
		// with its references, to show as an unfinished answer.
		timings.LLM = time.Since(llmStart)
		text, refs := renumberCitations(text, passages)
		a := Answer{Text: text, References: refs, FollowUps: follow, Mode: ModeLLM, Covered: len(refs) > 0, Timings: timings}
		if len(refs) == 0 && e.general {
			// Nothing retrieved, or the model found the passages unrelated
			// and answered in general, as its rules say.
			a.Mode = ModeGeneral
		}
		return a, err
	}
	mode := ModeExtractive
	if e.llm != nil {
		mode = ModeLLM
	}
	if len(hits) == 0 {
		return emit(Answer{Text: notCovered(zh), FollowUps: follow, Mode: mode, Timings: timings}), nil
	}
	docs := topDocs(hits, maxExtracts)
	return emit(Answer{Text: e.extract(question, docs, zh), References: references(docs), FollowUps: follow, Mode: ModeExtractive, Covered: true, Timings: timings}), nil
}

// searchQuery is what to search the knowledge base with for question (see
// search for why it comes in parts). In a conversation, a follow-up
// ("它和欠拟合有什么区别？") means more than its words: with an LLM, one
// short call rewrites it into a question that stands alone (on any
// failure, the question as asked); without one, a follow-up that leans on
// what came before is searched together with the previous question.
func (e *Engine) searchQuery(ctx context.Context, question string, zh bool, past func() []Turn) []string {
	if e.llm == nil {
		if !e.leansOnContext(question) {
			return []string{question}
		}
		return withPrevious(question, past())
	}
	h := past()
	if len(h) == 0 {
		return []string{question}
	}
	reply, err := e.llm.Short(ctx, buildRewriteMessages(question, h, zh), rewriteTokens)
	q := rewritten(reply)
	if err != nil || q == "" {
		e.log.Warn("rewriting the follow-up failed; searching with it as asked", "error", err, "reply", clip(reply, 100))
		return []string{question}
	}
	e.log.Debug("follow-up rewritten for the search", "rewritten", q)
	return []string{q}
}

// withPrevious is question searched together with the conversation's
// previous question, and the one before that when the previous one was a
// follow-up itself. Without history it is question alone.
func withPrevious(question string, history []Turn) []string {
	parts := []string{question}
	for i := len(history) - 1; i >= 0 && len(parts) < 3; i-- {
		parts = append([]string{history[i].Question}, parts...)
		if !leansOnWords(history[i].Question) {
			break
		}
	}
	return parts
}

// anaphora are words by which a message points back at the conversation:
// 它, 这个, 第二点, "it", "that"…
var anaphora = regexp.MustCompile(`它|这个|那个|这些|那些|这种|那种|这点|这一点|这里|上面|上述|前面|刚才|第[一二三四五六七八九十0-9]+[点条步个项]|^[那这]|(?i)\b(it|its|that|this|these|those|they|them|the above|the (first|second|third|last) (one|point|step))\b`)

// leansOnContext reports whether question reads as a follow-up that needs
// the conversation to be searched for: it points back (它, "that"), or has
// almost no topic of its own (RAG 呢？).
func (e *Engine) leansOnContext(question string) bool {
	return leansOnWords(question) || len(multiRune(e.tok.QueryTerms(question))) <= 1 && utf8.RuneCountInString(question) <= 12
}

func leansOnWords(question string) bool { return anaphora.MatchString(strings.TrimSpace(question)) }

// faq returns a curated answer when the question is, in effect, a stored
// Q&A item's question; hits are the question's Q&A search results.
func (e *Engine) faq(ctx context.Context, asked map[string]struct{}, hits []retrieved) (Answer, bool, error) {
	if len(hits) == 0 {
		return Answer{}, false, nil
	}
	best := hits[0].Chunk
	if e.similarity(asked, best.Title) < faqSimilarity {
		return Answer{}, false, nil
	}
	var sources []retrieved
	for _, id := range best.Refs {
		chunks, err := e.index.DocChunks(ctx, id)
		if errors.Is(err, index.ErrNotFound) {
			continue
		}
		if err != nil {
			return Answer{}, false, fmt.Errorf("load reference %s: %w", id, err)
		}
		sources = append(sources, retrieved{Hit: index.Hit{Chunk: chunks[0], Score: hits[0].Score}})
	}
	text := best.Answer
	if len(sources) == 0 {
		sources = []retrieved{hits[0]}
	} else {
		text = e.citeParagraphs(text, sources)
	}
	follow, err := e.followUps(ctx, asked, hits, map[string]bool{best.DocID: true})
	if err != nil {
		return Answer{}, false, err
	}
	return Answer{Text: text, References: references(sources), FollowUps: follow, Mode: ModeFAQ, Covered: true}, true, nil
}

// citeParagraphs appends [n] to each paragraph of a curated answer, naming
// the source that shares the most terms with it, so curated answers carry
// citations like generated ones.
func (e *Engine) citeParagraphs(text string, sources []retrieved) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		terms := distinct(e.tok.Tokens(l))
		// Short lines and lead-ins ("…如下:") introduce, they don't claim.
		if t := strings.TrimSpace(l); len(terms) < 4 || strings.HasSuffix(t, ":") || strings.HasSuffix(t, "：") {
			continue
		}
		best, bestCov := -1, 0.2
		for n, s := range sources {
			if cov := e.cache.coverage(e.tok, terms, s.Chunk.Text); cov > bestCov {
				best, bestCov = n, cov
			}
		}
		if best >= 0 {
			lines[i] = strings.TrimRight(l, " ") + " [" + strconv.Itoa(best+1) + "]"
		}
	}
	return strings.Join(lines, "\n")
}

// termSet is the distinct terms of a question, computed once per question
// for the similarity checks against curated ones.
func (e *Engine) termSet(question string) map[string]struct{} {
	set := map[string]struct{}{}
	for _, t := range e.tok.Tokens(question) {
		set[t] = struct{}{}
	}
	return set
}

// similarity is the Dice coefficient of the distinct terms of the question
// asked (from termSet) and of a curated question (cached: they come from the
// index, so the same ones come back).
func (e *Engine) similarity(asked map[string]struct{}, curated string) float64 {
	other := e.cache.terms(e.tok, curated)
	if len(asked) == 0 || len(other) == 0 {
		return 0
	}
	common := 0
	for t := range asked {
		if _, ok := other[t]; ok {
			common++
		}
	}
	return 2 * float64(common) / float64(len(asked)+len(other))
}

// followUps picks related curated questions from the question's Q&A hits,
// never the one just asked.
func (e *Engine) followUps(ctx context.Context, asked map[string]struct{}, hits []retrieved, exclude map[string]bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(c index.Chunk) {
		if len(out) >= maxFollowUps || seen[c.DocID] || exclude[c.DocID] || e.similarity(asked, c.Title) >= faqSimilarity {
			return
		}
		seen[c.DocID] = true
		out = append(out, c.Title)
	}
	for _, h := range hits {
		add(h.Chunk)
	}
	if len(out) < minFollowUps {
		// Too few related items: fill with what others ask most often, the
		// knowledge base's own order.
		more, err := e.index.List(ctx, index.KindQA, 50)
		if err != nil {
			return nil, fmt.Errorf("list questions: %w", err)
		}
		for _, c := range more {
			if len(out) >= minFollowUps {
				break
			}
			add(c)
		}
	}
	return out, nil
}

// topDocs keeps the best hit of each document, at most n documents.
func topDocs(hits []retrieved, n int) []retrieved {
	var out []retrieved
	seen := map[string]bool{}
	for _, h := range hits {
		if len(out) < n && !seen[h.Chunk.DocID] {
			seen[h.Chunk.DocID] = true
			out = append(out, h)
		}
	}
	return out
}

func references(docs []retrieved) []Reference {
	refs := make([]Reference, len(docs))
	for i, d := range docs {
		text := d.Chunk.Text
		if d.Chunk.Kind == index.KindQA {
			text = d.Chunk.Answer
		}
		refs[i] = Reference{DocID: d.Chunk.DocID, Title: refTitle(d.Chunk), URL: d.Chunk.URL, Snippet: clip(text, 120), Score: round(d.Score)}
	}
	return refs
}

// refTitle names a source for the reader: its title, and the section it
// came from, so two sections of one file are told apart.
func refTitle(c index.Chunk) string {
	if len(c.Path) == 0 || c.Kind == index.KindQA {
		return c.Title
	}
	return c.Title + " › " + c.Path[len(c.Path)-1]
}

// extract composes an answer from the question's best sentences in each
// document, citing each. It is deterministic: the same index and question
// give the same answer.
func (e *Engine) extract(question string, docs []retrieved, zh bool) string {
	terms := e.tok.QueryTerms(question)
	var b strings.Builder
	if zh {
		b.WriteString("根据知识库中的资料：\n")
	} else {
		b.WriteString("From the knowledge base:\n")
	}
	for n, d := range docs {
		text := d.Chunk.Text
		if d.Chunk.Kind == index.KindQA {
			text = d.Chunk.Answer
		}
		b.WriteString("\n- ")
		if d.Chunk.Kind == index.KindQA {
			b.WriteString("**" + d.Chunk.Title + "**：")
		}
		b.WriteString(clip(e.bestSentences(terms, text, 2), 240))
		b.WriteString(" [" + strconv.Itoa(n+1) + "]")
	}
	return b.String()
}

// bestSentences returns the k sentences of text sharing the most terms with
// the question, in their original order.
func (e *Engine) bestSentences(terms []string, text string, k int) string {
	ss := sentences(text)
	if len(ss) == 0 {
		return ""
	}
	type cand struct {
		i   int
		cov float64
	}
	var cs []cand
	for i, s := range ss {
		cs = append(cs, cand{i, e.cache.coverage(e.tok, terms, s)})
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].cov > cs[b].cov })
	if cs[0].cov == 0 {
		return ss[0]
	}
	var pick []int
	for _, c := range cs[:min(k, len(cs))] {
		if c.cov > 0 {
			pick = append(pick, c.i)
		}
	}
	sort.Ints(pick)
	var parts []string
	for _, i := range pick {
		parts = append(parts, ss[i])
	}
	return joinSentences(parts)
}

var citation = regexp.MustCompile(`\[(\d{1,2})\]`)

// renumberCitations keeps the passages the answer cites, in order of first
// citation, and rewrites the markers to match, so [n] in the text is always
// References[n-1]. Markers naming no passage are dropped. An answer citing
// nothing has no references: the model cites what it uses, so it found the
// passages unrelated (they merely shared words with the question), and
// listing them would cite what does not answer it.
func renumberCitations(text string, passages []retrieved) (string, []Reference) {
	all := references(passages)
	out, order := renumber(text, len(all))
	if len(order) == 0 {
		return out, nil
	}
	refs := make([]Reference, len(order))
	for i, n := range order {
		refs[i] = all[n-1]
	}
	return out, refs
}

// renumber rewrites the markers [n] with 1 ≤ n ≤ count to their rank of
// first appearance and drops the others; order lists the original numbers,
// first cited first.
func renumber(text string, count int) (out string, order []int) {
	rank := map[int]int{}
	out = citation.ReplaceAllStringFunc(text, func(m string) string {
		n, _ := strconv.Atoi(m[1 : len(m)-1])
		if n < 1 || n > count {
			return ""
		}
		if _, ok := rank[n]; !ok {
			order = append(order, n)
			rank[n] = len(order)
		}
		return "[" + strconv.Itoa(rank[n]) + "]"
	})
	return out, order
}

// unfinishedCitation is a marker still being written at the end of a
// streamed answer.
var unfinishedCitation = regexp.MustCompile(`\[\d{0,2}$`)

// streamedText is what a reader is shown of an answer still being written,
// given the count of passages: markers numbered as the finished answer will
// number them (first appearances in a prefix come first in the whole), and
// an unfinished marker held back, so every update extends the one before.
func streamedText(text string, count int) string {
	out, _ := renumber(unfinishedCitation.ReplaceAllString(text, ""), count)
	return out
}

// Document reassembles one document from its chunks.
func (e *Engine) Document(ctx context.Context, docID string) (Document, error) {
	chunks, err := e.index.DocChunks(ctx, docID)
	if err != nil {
		return Document{}, err
	}
	c := chunks[0]
	d := Document{DocID: c.DocID, Kind: c.Kind, Title: c.Title, URL: c.URL, Date: c.Date, Source: c.Source, Path: c.Path}
	if c.Kind == index.KindQA {
		d.Text = c.Answer
		return d, nil
	}
	text := c.Text
	for _, next := range chunks[1:] {
		text = joinOverlapping(text, next.Text)
	}
	d.Text = text
	return d, nil
}

// joinOverlapping appends b to a without the overlap chunking repeated.
func joinOverlapping(a, b string) string {
	ra, rb := []rune(a), []rune(b)
	for k := min(len(ra), len(rb), chunkOverlapRunes+1); k > 0; k-- {
		if string(ra[len(ra)-k:]) == string(rb[:k]) {
			return a + string(rb[k:])
		}
	}
	return a + "\n" + b
}

// StarterQuestions returns up to n curated questions, short ones first, for
// a welcome card.
func (e *Engine) StarterQuestions(ctx context.Context, n int) ([]string, error) {
	qs, err := e.index.List(ctx, index.KindQA, 50)
	if err != nil {
		return nil, fmt.Errorf("list questions: %w", err)
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range qs {
		if utf8.RuneCountInString(c.Title) <= 30 && !seen[c.DocID] && len(out) < n {
			seen[c.DocID] = true
			out = append(out, c.Title)
		}
	}
	return out, nil
}

// Ready reports whether the knowledge store answers.
func (e *Engine) Ready(ctx context.Context) error {
	_, err := e.index.Count(ctx)
	return err
}

// multiRune drops single Han characters, unless nothing else is left.
func multiRune(terms []string) []string {
	var out []string
	for _, t := range terms {
		if r := []rune(t); len(r) > 1 || !unicode.Is(unicode.Han, r[0]) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return terms
	}
	return out
}

func notCovered(zh bool) string {
	if zh {
		return "抱歉，知识库里没有找到与这个问题相关的内容。可以换个说法，或试试下面的问题。"
	}
	return "Sorry, the knowledge base has nothing on this question. Try rephrasing it, or one of the questions below."
}

func isChinese(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Han, r) {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func round(f float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'f', 4, 64), 64)
	return v
}
