package rag

import (
	"time"
	"unicode/utf8"
)

// Answer modes, reported in --json output and in logs.
const (
	ModeLLM        = "llm"
	ModeExtractive = "extractive"
	ModeFAQ        = "faq"
	// ModeGeneral is an LLM answer from the model's general knowledge,
	// for a question the knowledge base does not cover: it says so, and
	// cites nothing.
	ModeGeneral = "general"
)

// What an engine with an LLM does with a question the knowledge base does
// not cover (KBBOT_OUT_OF_KB).
const (
	OutOfKBGeneral = "general" // say so, then answer in general (ModeGeneral)
	OutOfKBRefuse  = "refuse"  // say so, and stop
)

// MaxQuestionRunes is the most of a question kbbot reads, stores and
// answers: longer ones are cut, at intake and again by the engine.
const MaxQuestionRunes = 2000

// CutQuestion cuts s to MaxQuestionRunes.
func CutQuestion(s string) string {
	if utf8.RuneCountInString(s) <= MaxQuestionRunes {
		return s
	}
	return string([]rune(s)[:MaxQuestionRunes])
}

// Reference is one cited source. The n-th reference is what "[n]" in the
// answer text points at.
type Reference struct {
	DocID   string  `json:"doc_id"`
	Title   string  `json:"title"`
	URL     string  `json:"url"`
	Snippet string  `json:"snippet"`
	Score   float64 `json:"score"`
}

// Answer is what the engine returns for one question.
type Answer struct {
	Text       string      `json:"answer"`
	References []Reference `json:"references"`
	FollowUps  []string    `json:"follow_ups"`
	Mode       string      `json:"mode"`
	// Covered is false when nothing in the knowledge base was relevant; Text
	// then says so and References is empty.
	Covered bool `json:"-"`
	// Timings says where the time went, for metrics and logs.
	Timings Timings `json:"-"`
}

// Timings of one answer's stages; zero when a stage did not run.
type Timings struct {
	Retrieval  time.Duration // search, floor and follow-ups
	FirstToken time.Duration // from the LLM request to its first token
	LLM        time.Duration // the whole LLM call
}

// Turn is one earlier question and answer in a conversation, fed back to the
// LLM as history.
type Turn struct {
	Question string      `json:"q"`
	Answer   string      `json:"a"`
	Sources  []Reference `json:"sources,omitempty"`
	At       time.Time   `json:"at"`
	// Replied marks the earlier answer the new question replies to (a
	// reply to the bot's card), put last in the history the engine gets:
	// the model is told so, and a follow-up is read against it. Never
	// stored.
	Replied bool `json:"-"`
}
