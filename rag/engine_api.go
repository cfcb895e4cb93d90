package rag

import "context"

// Document is a knowledge-base document reassembled from its chunks, for the
// bot's /kb/{doc_id} page.
type Document struct {
	DocID  string
	Kind   string
	Title  string
	URL    string
	Date   string
	Source string
	Path   []string
	Text   string // for a Q&A item: the curated answer
}

// Ask answers one question, given the earlier turns of the conversation
// (oldest first). It fails only when the index or the LLM fails; a question
// the knowledge base does not cover is a normal answer with Covered false.
func (e *Engine) Ask(ctx context.Context, question string, history []Turn) (Answer, error) {
	return e.ask(ctx, question, func() []Turn { return history }, nil)
}

// AskStream is Ask, with onDelta called with the answer text so far each time
// the LLM produces more of it. Extractive and FAQ answers call it once. When
// the LLM fails after it has started answering (ErrStalled, a dropped
// stream), the error comes back together with an Answer holding the partial
// text, so the caller can show what was said.
//
// history is called at most once, and only when the earlier turns matter:
// for an answer the LLM writes (and the rewrite of a follow-up before it),
// for a follow-up that points back at them (它, "that"), and for a question
// that finds nothing on its own. A caller keeping turns in a store loads
// them in history, so curated and most extractive answers never pay for
// it. A nil history means none. A turn marked Replied, last, is the
// earlier answer the question replies to.
func (e *Engine) AskStream(ctx context.Context, question string, history func() []Turn, onDelta func(textSoFar string)) (Answer, error) {
	return e.ask(ctx, question, history, onDelta)
}
