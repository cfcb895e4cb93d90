package rag

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"kbbot/rag/llmfake"
)

// startLLM is a fake provider that knows the key test-key and answers
// with steps, one per request in order, the last one repeating.
func startLLM(t *testing.T, steps ...llmfake.Step) *llmfake.Server {
	t.Helper()
	return llmfake.Start(t, llmfake.Key("test-key"),
		llmfake.Script(steps[:len(steps)-1]...), llmfake.Default(steps[len(steps)-1]))
}

// newLLM is an LLM of model fake-model on s whose retry waits rec records
// and skips; idle 0 keeps the default.
func newLLM(s *llmfake.Server, rec *sleepRecorder, idle time.Duration) *LLM {
	l := NewLLM(NewOpenAIClient("test-key", s.URL), "fake-model", 10*time.Second)
	l.Sleep = rec.sleep
	l.Idle = idle
	return l
}

func TestLLMAnswerCitesPassagesAndUsesHistory(t *testing.T) {
	// The follow-up is rewritten first (as itself: it stands alone); the
	// answer cites passage 3 first, then 1, and one that does not exist.
	f := startLLM(t, llmfake.Reply("检索增强生成的原理和实现步骤"), llmfake.Reply("RAG 先检索", "再生成 [3]。", "它还会标注来源 [1][9]。"))
	eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0)})
	history := []Turn{{Question: "什么是 AIGC？", Answer: "AIGC 是生成式 AI 创作的内容。"}}
	var deltas []string
	ans, err := eng.AskStream(context.Background(), "检索增强生成的原理和实现步骤", func() []Turn { return history }, func(s string) { deltas = append(deltas, s) })
	if err != nil {
		t.Fatal(err)
	}
	// The text streams already numbered as the final answer numbers it.
	if ans.Mode != ModeLLM || !slices.Equal(deltas, []string{"RAG 先检索", "RAG 先检索再生成 [1]。", "RAG 先检索再生成 [1]。它还会标注来源 [2]。"}) {
		t.Errorf("mode %s, deltas %q", ans.Mode, deltas)
	}
	if rw := f.Chats()[0]; rw.Stream || rw.MaxTokens != rewriteTokens || !strings.Contains(rw.Question(), "什么是 AIGC？") {
		t.Errorf("rewrite request stream=%v max_tokens=%d asks %q", rw.Stream, rw.MaxTokens, rw.Question())
	}
	req := f.Chats()[1]
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
			f := startLLM(t, llmfake.Fail(tt.status))
			eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0)})
			_, err := eng.Ask(context.Background(), "RAG 的实现步骤", nil)
			if err == nil || !strings.Contains(err.Error(), "llm fake-model") || !strings.Contains(err.Error(), fmt.Sprint(tt.status)) {
				t.Fatalf("err = %v", err)
			}
			if n := len(f.Chats()); n != tt.wantReqs {
				t.Errorf("requests = %d, want %d", n, tt.wantReqs)
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
		f := startLLM(t, llmfake.Fail(500))
		eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0)})
		ans, err := eng.Ask(context.Background(), "模型训练的底层原理", nil)
		if err != nil || ans.Mode != ModeFAQ || len(f.Requests()) != 0 {
			t.Errorf("mode %s err %v requests %d", ans.Mode, err, len(f.Requests()))
		}
	})
}

// sleepRecorder stands in for LLM.Sleep: it returns at once and remembers
// each wait asked for.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return ctx.Err()
}

var testMsgs = []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "q"}}

func TestLLMStallMidAnswerReturnsPartialText(t *testing.T) {
	s := startLLM(t, llmfake.Stall("第一句。", "第二句"))
	rec := &sleepRecorder{}
	var deltas []string
	text, err := newLLM(s, rec, 100*time.Millisecond).Complete(context.Background(), testMsgs, func(t string) { deltas = append(deltas, t) })
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if text != "第一句。第二句" || len(deltas) != 2 {
		t.Errorf("partial text %q, deltas %q", text, deltas)
	}
	if n := len(s.Chats()); n != 1 || len(rec.waits) != 0 {
		t.Errorf("a stall after text was retried: %d calls", n)
	}
}

func TestLLMStallBeforeFirstTokenIsRetried(t *testing.T) {
	s := startLLM(t, llmfake.Stall(), llmfake.Reply("好的。"))
	text, err := newLLM(s, &sleepRecorder{}, 100*time.Millisecond).Complete(context.Background(), testMsgs, nil)
	if n := len(s.Chats()); err != nil || text != "好的。" || n != 2 {
		t.Fatalf("text %q err %v after %d calls", text, err, n)
	}
}

func TestLLMHonoursRetryAfter(t *testing.T) {
	t.Run("seconds", func(t *testing.T) {
		s := startLLM(t, llmfake.Fail(429, "Retry-After", "7"), llmfake.Reply("答案。"))
		rec := &sleepRecorder{}
		text, err := newLLM(s, rec, time.Second).Complete(context.Background(), testMsgs, nil)
		if err != nil || text != "答案。" {
			t.Fatalf("text %q err %v", text, err)
		}
		if len(rec.waits) != 1 || rec.waits[0] < 7*time.Second {
			t.Errorf("waits %v, want one of at least 7s", rec.waits)
		}
	})
	t.Run("milliseconds", func(t *testing.T) {
		s := startLLM(t, llmfake.Fail(503, "Retry-After-Ms", "1500"), llmfake.Reply("答案。"))
		rec := &sleepRecorder{}
		if _, err := newLLM(s, rec, time.Second).Complete(context.Background(), testMsgs, nil); err != nil {
			t.Fatal(err)
		}
		if len(rec.waits) != 1 || rec.waits[0] != 1500*time.Millisecond {
			t.Errorf("waits %v, want one of 1.5s", rec.waits)
		}
	})
	t.Run("over the cap fails at once", func(t *testing.T) {
		s := startLLM(t, llmfake.Fail(429, "Retry-After", "3600"))
		rec := &sleepRecorder{}
		_, err := newLLM(s, rec, time.Second).Complete(context.Background(), testMsgs, nil)
		if n := len(s.Chats()); err == nil || !strings.Contains(err.Error(), "429") || n != 1 || len(rec.waits) != 0 {
			t.Errorf("err %v after %d calls, waits %v", err, n, rec.waits)
		}
	})
	t.Run("503 without a header backs off", func(t *testing.T) {
		s := startLLM(t, llmfake.Fail(503), llmfake.Reply("答案。"))
		rec := &sleepRecorder{}
		if _, err := newLLM(s, rec, time.Second).Complete(context.Background(), testMsgs, nil); err != nil {
			t.Fatal(err)
		}
		if len(rec.waits) != 1 || rec.waits[0] <= 0 || rec.waits[0] > 2*time.Second {
			t.Errorf("waits %v, want one jittered backoff", rec.waits)
		}
	})
}

func TestEngineReturnsPartialAnswerWhenTheModelStalls(t *testing.T) {
	s := startLLM(t, llmfake.Stall("RAG 先检索 [2]，", "再生成"))
	eng := seededEngine(t, Options{LLM: newLLM(s, &sleepRecorder{}, 100*time.Millisecond)})
	if !eng.HasLLM() {
		t.Fatal("HasLLM is false with an LLM")
	}
	ans, err := eng.AskStream(context.Background(), "检索增强生成的原理和实现步骤", nil, nil)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if ans.Text != "RAG 先检索 [1]，再生成" || len(ans.References) != 1 || ans.Mode != ModeLLM {
		t.Errorf("partial answer %q with %d references, mode %s", ans.Text, len(ans.References), ans.Mode)
	}
	if noLLM, _ := New(Options{Index: eng.index}); noLLM.HasLLM() {
		t.Error("HasLLM is true without an LLM")
	}
}

// Streamed text is numbered as the finished answer will be, drops markers
// naming no passage, and holds back a marker still being written, so each
// update extends the one before.
func TestStreamedText(t *testing.T) {
	const whole = "先检索 [3]，再生成 [1][9]。见 [3]。"
	var prev string
	for i := range len([]rune(whole)) + 1 {
		got := streamedText(string([]rune(whole)[:i]), 3)
		if !strings.HasPrefix(got, prev) {
			t.Fatalf("after %q: %q does not extend %q", string([]rune(whole)[:i]), got, prev)
		}
		prev = got
	}
	final, _ := renumber(whole, 3)
	if prev != final || final != "先检索 [1]，再生成 [2]。见 [1]。" {
		t.Errorf("streamed %q, final %q", prev, final)
	}
}

const generalText = "目前知识库中暂时没有关于红烧肉做法的相关内容。但一般来说，红烧肉要先焯水 [1]，再炒糖色。"

// A question the knowledge base does not cover gets the model's general
// answer, streamed, marked general and citing nothing; with refuse, the
// refusal without asking the model.
func TestOutOfKnowledgeBase(t *testing.T) {
	t.Run("general", func(t *testing.T) {
		f := startLLM(t, llmfake.Reply("目前知识库中暂时没有关于红烧肉做法的相关内容。", "但一般来说，红烧肉要先焯水 [1]，再炒糖色。"))
		eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0)})
		var deltas []string
		ans, err := eng.AskStream(context.Background(), "红烧肉怎么做", nil, func(s string) { deltas = append(deltas, s) })
		if err != nil {
			t.Fatal(err)
		}
		if ans.Mode != ModeGeneral || ans.Covered || len(ans.References) != 0 || strings.Contains(ans.Text, "[1]") {
			t.Errorf("answer %+v; want general, not covered, citing nothing", ans)
		}
		if len(deltas) != 2 || strings.Contains(deltas[1], "[1]") {
			t.Errorf("deltas %q; want the answer streamed without markers", deltas)
		}
		chats := f.Chats()
		if len(chats) != 1 || !chats[0].Stream || chats[0].Messages[0].Content != generalPromptZH || chats[0].Question() != "红烧肉怎么做" {
			t.Fatalf("requests %+v; want one streamed request with the general prompt", chats)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		f := startLLM(t, llmfake.Reply(generalText))
		eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0), OutOfKB: OutOfKBRefuse})
		ans, err := eng.Ask(context.Background(), "红烧肉怎么做", nil)
		if err != nil {
			t.Fatal(err)
		}
		if ans.Text != notCovered(true) || ans.Mode != ModeLLM || ans.Covered || len(ans.References) != 0 || len(f.Chats()) != 0 {
			t.Errorf("answer %+v after %d requests; want the refusal, without the model", ans, len(f.Chats()))
		}
	})
	t.Run("unknown policy", func(t *testing.T) {
		if _, err := New(Options{Index: seededEngine(t, Options{}).index, OutOfKB: "maybe"}); err == nil {
			t.Error("New accepted OutOfKB maybe")
		}
	})
}

// Passages the model finds unrelated (its answer cites none) are not
// listed as references.
func TestAnswerCitingNothingHasNoReferences(t *testing.T) {
	for _, policy := range []string{OutOfKBGeneral, OutOfKBRefuse} {
		t.Run(policy, func(t *testing.T) {
			f := startLLM(t, llmfake.Reply("目前知识库中暂时没有关于这个问题的相关内容。"))
			eng := seededEngine(t, Options{LLM: newLLM(f, &sleepRecorder{}, 0), OutOfKB: policy})
			ans, err := eng.Ask(context.Background(), "检索增强生成的原理和实现步骤", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(f.Chats()[0].Question(), "[1] 《") {
				t.Fatal("the question found no passages; the test needs one that does")
			}
			want := map[string]string{OutOfKBGeneral: ModeGeneral, OutOfKBRefuse: ModeLLM}[policy]
			if ans.Mode != want || ans.Covered || len(ans.References) != 0 {
				t.Errorf("mode %s covered %v references %+v; want %s, none", ans.Mode, ans.Covered, ans.References, want)
			}
		})
	}
}

// max_tokens goes on every answer; a provider refusing it (reasoning
// models) gets max_completion_tokens instead, from then on.
func TestMaxTokens(t *testing.T) {
	refuse := llmfake.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}`)
	})
	f := startLLM(t, llmfake.Reply("一。"), refuse, llmfake.Reply("二。"))
	l := newLLM(f, &sleepRecorder{}, 0)
	l.MaxTokens = 512
	for _, want := range []string{"一。", "二。", "二。"} {
		if text, err := l.Complete(context.Background(), testMsgs, nil); err != nil || text != want {
			t.Fatalf("text %q err %v, want %q", text, err, want)
		}
	}
	var got [][2]int
	for _, r := range f.Chats() {
		got = append(got, [2]int{r.MaxTokens, r.MaxCompletionTokens})
	}
	if want := [][2]int{{512, 0}, {512, 0}, {0, 512}, {0, 512}}; !slices.Equal(got, want) {
		t.Errorf("(max_tokens, max_completion_tokens) per request = %v, want %v", got, want)
	}
	// The short call switches too, and go-openai's own check (it knows
	// the reasoning models) counts as a refusal.
	o := NewLLM(NewOpenAIClient("test-key", f.URL), "o3-mini", 10*time.Second)
	if _, err := o.Short(context.Background(), testMsgs, 50); err != nil {
		t.Fatal(err)
	}
	if last := f.Chats()[len(f.Chats())-1]; last.MaxTokens != 0 || last.MaxCompletionTokens != 50 {
		t.Errorf("o3-mini request: max_tokens %d, max_completion_tokens %d", last.MaxTokens, last.MaxCompletionTokens)
	}
}
