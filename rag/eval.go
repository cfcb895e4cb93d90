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
// the titles that count as a correct retrieval.
type EvalCase struct {
	Q      string   `json:"q"`
	Expect []string `json:"expect"`
}

// EvalResult holds retrieval quality over an evaluation set.
type EvalResult struct {
	Cases   int
	Recall1 float64
	Recall3 float64
	MRR     float64 // over the top 10 documents
	Misses  []string
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
		var c EvalCase
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if c.Q == "" || len(c.Expect) == 0 {
			return nil, fmt.Errorf("line %d: needs \"q\" and a non-empty \"expect\"", n)
		}
		cases = append(cases, c)
	}
	return cases, sc.Err()
}

// Evaluate measures how well retrieval finds the expected documents.
func (e *Engine) Evaluate(ctx context.Context, cases []EvalCase) (EvalResult, error) {
	res := EvalResult{Cases: len(cases)}
	for _, c := range cases {
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
	if n := float64(len(cases)); n > 0 {
		res.Recall1 /= n
		res.Recall3 /= n
		res.MRR /= n
	}
	return res, nil
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
