package rag

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// EvalCase is one line of an evaluation file: a question and substrings of
// the titles that count as a correct retrieval. An empty expect ("expect":
// []) marks a question outside the knowledge base: answering it must cite
// nothing.
type EvalCase struct {
	Q      string   `json:"q"`
	Expect []string `json:"expect"`
}

// OutOfDomain reports whether the case is a question that must find
// nothing.
func (c EvalCase) OutOfDomain() bool { return len(c.Expect) == 0 }

// EvalResult holds retrieval quality over an evaluation set: recall over
// its in-domain questions, and how many of its out-of-domain ones would
// still be answered with a reference (the goal is none).
type EvalResult struct {
	Cases   int // in-domain questions
	Recall1 float64
	Recall3 float64
	MRR     float64 // over the top 10 documents
	Misses  []string

	OutOfDomain int      // questions that must find nothing
	Cited       []string // those of them answered with a reference
}

// ReadEvalCases reads JSON lines; blank lines and lines starting with # are
// skipped.
func ReadEvalCases(r io.Reader) ([]EvalCase, error) {
	var cases []EvalCase
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// A pointer tells "expect": [] (must find nothing) from a line
		// that forgot expect.
		var c struct {
			Q      string    `json:"q"`
			Expect *[]string `json:"expect"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if c.Q == "" || c.Expect == nil {
			return nil, fmt.Errorf("line %d: needs \"q\" and \"expect\" (title substrings, or [] for a question that must find nothing)", n)
		}
		cases = append(cases, EvalCase{Q: c.Q, Expect: *c.Expect})
	}
	return cases, sc.Err()
}

// Evaluate measures how well retrieval finds the expected documents, and
// whether out-of-domain questions stay without references.
func (e *Engine) Evaluate(ctx context.Context, cases []EvalCase) (EvalResult, error) {
	var res EvalResult
	for _, c := range cases {
		if c.OutOfDomain() {
			res.OutOfDomain++
			cited, err := e.cites(ctx, c.Q)
			if err != nil {
				return res, err
			}
			if cited {
				res.Cited = append(res.Cited, c.Q)
			}
			continue
		}
		res.Cases++
		titles, err := e.RetrieveTitles(ctx, c.Q, 10)
		if err != nil {
			return res, err
		}
		rank := 0
		for i, t := range titles {
			if matchesAny(t, c.Expect) {
				rank = i + 1
				break
			}
		}
		switch {
		case rank == 1:
			res.Recall1++
			res.Recall3++
		case rank > 1 && rank <= 3:
			res.Recall3++
		}
		if rank > 0 {
			res.MRR += 1 / float64(rank)
		}
		if rank == 0 || rank > 3 {
			res.Misses = append(res.Misses, fmt.Sprintf("%s (rank %d)", c.Q, rank))
		}
	}
	if n := float64(res.Cases); n > 0 {
		res.Recall1 /= n
		res.Recall3 /= n
		res.MRR /= n
	}
	return res, nil
}

// cites reports whether the answer to question, written without an LLM,
// would carry a reference. An LLM answer cites a subset of the passages
// such an answer draws on, so this bounds what any answer can cite.
func (e *Engine) cites(ctx context.Context, question string) (bool, error) {
	offline := *e
	offline.llm = nil
	a, err := offline.ask(ctx, question, nil, nil)
	return len(a.References) > 0, err
}

func matchesAny(title string, subs []string) bool {
	t := strings.ToLower(strings.ReplaceAll(title, " ", ""))
	for _, s := range subs {
		if strings.Contains(t, strings.ToLower(strings.ReplaceAll(s, " ", ""))) {
			return true
		}
	}
	return false
}
