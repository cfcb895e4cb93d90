package rag

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// fakeLLM is an OpenAI-compatible chat server on 127.0.0.1 that streams a
// scripted answer and records every request it gets.
type fakeLLM struct {
	*httptest.Server
	mu       sync.Mutex
	requests []openai.ChatCompletionRequest
	reply    func(req openai.ChatCompletionRequest) (status int, chunks []string)
}

func newFakeLLM(t *testing.T, reply func(openai.ChatCompletionRequest) (int, []string)) *fakeLLM {
	f := &fakeLLM{reply: reply}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer test-key" {
			http.Error(w, "bad path or key", http.StatusNotFound)
			return
		}
		var req openai.ChatCompletionRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		status, chunks := f.reply(req)
		if status != http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"message":"fake provider says %d","type":"server_error"}}`, status)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i, c := range chunks {
			finish := ""
			if i == len(chunks)-1 {
				finish = `"stop"`
			} else {
				finish = "null"
			}
			b, _ := json.Marshal(c)
			fmt.Fprintf(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":%s}]}\n\n", b, finish)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLLM) newLLM() *LLM {
	l := NewLLM(NewOpenAIClient("test-key", f.URL+"/v1"), "fake-model", 10*time.Second)
	l.Sleep = func(context.Context, time.Duration) error { return nil }
	return l
}

func TestLLMAnswerCitesPassagesAndUsesHistory(t *testing.T) {
	f := newFakeLLM(t, func(req openai.ChatCompletionRequest) (int, []string) {
		// Cite passage 3 first, then 1, and one that does not exist.
		return http.StatusOK, []string{"RAG 先检索", "再生成 [3]。", "它还会标注来源 [1][9]。"}
	})
	eng := seededEngine(t, Options{LLM: f.newLLM()})
	history := []Turn{{Question: "什么是 AIGC？", Answer: "AIGC 是生成式 AI 创作的内容。"}}
	var deltas []string
	ans, err := eng.AskStream(context.Background(), "检索增强生成的原理和实现步骤", history, func(s string) { deltas = append(deltas, s) })
	if err != nil {
		t.Fatal(err)
	}
	if ans.Mode != ModeLLM || len(deltas) != 3 || deltas[2] != strings.Join([]string{"RAG 先检索", "再生成 [3]。", "它还会标注来源 [1][9]。"}, "") {
		t.Errorf("mode %s, deltas %q", ans.Mode, deltas)
	}
	req := f.requests[0]
	if !req.Stream || req.Model != "fake-model" {
		t.Errorf("request stream=%v model=%q", req.Stream, req.Model)
	}
	msgs := req.Messages
	if len(msgs) != 4 || msgs[0].Role != "system" || msgs[1].Content != "什么是 AIGC？" || msgs[2].Role != "assistant" || !strings.Contains(msgs[2].Content, "生成式") {
		t.Fatalf("history not sent as turns: %+v", msgs)
	}
	prompt := msgs[3].Content
	if !strings.Contains(prompt, "[1] 《") || !strings.Contains(prompt, "[3] 《") || !strings.HasSuffix(prompt, "检索增强生成的原理和实现步骤") {
		t.Errorf("prompt lacks numbered passages: %s", prompt)
	}
	// Renumbered: the passage cited as [3] is now reference 1, [1] is 2, [9] is gone.
	if ans.Text != "RAG 先检索再生成 [1]。它还会标注来源 [2]。" || len(ans.References) != 2 {
		t.Fatalf("answer %q with %d references", ans.Text, len(ans.References))
	}
	third := passageTitle(prompt, 3)
	first := passageTitle(prompt, 1)
	if ans.References[0].Title != third || ans.References[1].Title != first {
		t.Errorf("references %q, %q; want %q, %q", ans.References[0].Title, ans.References[1].Title, third, first)
	}
}

// passageTitle finds passage n's title in a prompt.
func passageTitle(prompt string, n int) string {
	marker := fmt.Sprintf("[%d] 《", n)
	i := strings.Index(prompt, marker)
	if i < 0 {
		return ""
	}
	rest := prompt[i+len(marker):]
	return rest[:strings.Index(rest, "》")]
}

func TestLLMProviderErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		wantReqs int
	}{
		{"server error retried then reported", http.StatusInternalServerError, 3},
		{"rate limit retried then reported", http.StatusTooManyRequests, 3},
		{"bad request not retried", http.StatusBadRequest, 1},
		{"unauthorised not retried", http.StatusUnauthorized, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLLM(t, func(openai.ChatCompletionRequest) (int, []string) { return tt.status, nil })
			eng := seededEngine(t, Options{LLM: f.newLLM()})
			_, err := eng.Ask(context.Background(), "RAG 的实现步骤", nil)
			if err == nil || !strings.Contains(err.Error(), "llm fake-model") || !strings.Contains(err.Error(), fmt.Sprint(tt.status)) {
				t.Fatalf("err = %v", err)
			}
			if len(f.requests) != tt.wantReqs {
				t.Errorf("requests = %d, want %d", len(f.requests), tt.wantReqs)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		l := NewLLM(NewOpenAIClient("k", "http://127.0.0.1:1/v1"), "m", 2*time.Second)
		l.Sleep = func(context.Context, time.Duration) error { return nil }
		eng := seededEngine(t, Options{LLM: l})
		if _, err := eng.Ask(context.Background(), "RAG 的实现步骤", nil); err == nil {
			t.Fatal("no error from an unreachable provider")
		}
	})
	t.Run("faq needs no llm", func(t *testing.T) {
		f := newFakeLLM(t, func(openai.ChatCompletionRequest) (int, []string) { return 500, nil })
		eng := seededEngine(t, Options{LLM: f.newLLM()})
		ans, err := eng.Ask(context.Background(), "模型训练的底层原理", nil)
		if err != nil || ans.Mode != ModeFAQ || len(f.requests) != 0 {
			t.Errorf("mode %s err %v requests %d", ans.Mode, err, len(f.requests))
		}
	})
}
