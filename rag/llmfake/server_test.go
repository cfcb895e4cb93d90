package llmfake_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"kbbot/rag/llmfake"
)

// The fake is checked with the real go-openai client: each step must reach
// the client as the fault it stands for.

func client(s *llmfake.Server, key string) *openai.Client {
	cfg := openai.DefaultConfig(key)
	cfg.BaseURL = s.URL
	return openai.NewClientWithConfig(cfg)
}

var ask = []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "q?"}}

// streamed reads one streamed answer: its text, finish reason and error.
func streamed(t *testing.T, ctx context.Context, c *openai.Client) (string, string, error) {
	t.Helper()
	st, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{Model: "m", Messages: ask, Stream: true})
	if err != nil {
		return "", "", err
	}
	defer st.Close()
	var text, finish string
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return text, finish, nil
		}
		if err != nil {
			return text, finish, err
		}
		if len(r.Choices) > 0 {
			text += r.Choices[0].Delta.Content
			if f := r.Choices[0].FinishReason; f != "" {
				finish = string(f)
			}
		}
	}
}

func TestSteps(t *testing.T) {
	s := llmfake.Start(t, llmfake.Key("k"), llmfake.Script(
		llmfake.Reply("a", "b").Every(time.Millisecond),
		llmfake.Cut("a", "b"),
		llmfake.ErrorMidStream("a"),
		llmfake.Fail(429, "Retry-After", "7"),
		llmfake.Stall("a"),
	), llmfake.Default(llmfake.Reply("whole").Finish("length")))
	c := client(s, "k")
	ctx := context.Background()

	if text, finish, err := streamed(t, ctx, c); text != "ab" || finish != "stop" || err != nil {
		t.Errorf("reply: %q %q %v", text, finish, err)
	}
	if text, finish, err := streamed(t, ctx, c); text != "ab" || finish != "" || err != nil {
		t.Errorf("cut: %q finish %q %v, want the text without a finish reason", text, finish, err)
	}
	var apiErr *openai.APIError
	if text, _, err := streamed(t, ctx, c); text != "a" || !errors.As(err, &apiErr) {
		t.Errorf("error mid-stream: %q %v, want the text then an API error", text, err)
	}
	if _, _, err := streamed(t, ctx, c); !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 429 {
		t.Errorf("fail: %v, want a 429 API error", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	text, _, err := streamed(t, sctx, c)
	cancel()
	if text != "a" || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stall: %q %v, want the text then the client's deadline", text, err)
	}
	resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "m", Messages: ask, MaxTokens: 1})
	if err != nil || resp.Choices[0].Message.Content != "whole" || resp.Choices[0].FinishReason != "length" {
		t.Errorf("non-streamed default: %+v %v", resp, err)
	}

	chats := s.Chats()
	if len(chats) != 6 || s.InFlight() != 0 {
		t.Fatalf("%d chats recorded, %d in flight", len(chats), s.InFlight())
	}
	if r := chats[0]; !r.Stream || r.Model != "m" || r.Question() != "q?" || r.Key() != "k" || r.Status != 200 {
		t.Errorf("first request recorded as %+v", r)
	}
	if r := chats[3]; r.Status != 429 {
		t.Errorf("the 429 recorded as %d", r.Status)
	}
	if r := chats[5]; r.Stream || r.MaxTokens != 1 {
		t.Errorf("last request: stream %v max_tokens %d", r.Stream, r.MaxTokens)
	}
}

func TestFailHeaders(t *testing.T) {
	s := llmfake.Start(t, llmfake.Default(llmfake.Fail(503, "Retry-After-Ms", "1500")))
	resp, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After-Ms") != "1500" || !strings.Contains(string(body), `"error":{`) {
		t.Errorf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestChecksKeyPathAndModel(t *testing.T) {
	s := llmfake.Start(t, llmfake.Key("k"), llmfake.Models("m", "e"))
	var apiErr *openai.APIError
	if _, _, err := streamed(t, context.Background(), client(s, "wrong")); !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 401 {
		t.Errorf("wrong key: %v", err)
	}
	_, err := client(s, "k").CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "other", Messages: ask})
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model: %v", err)
	}
	resp, err := http.Post(strings.TrimSuffix(s.URL, "/v1")+"/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("a path without /v1: %d", resp.StatusCode)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests recorded, want 3", n)
	}
}

func TestEmbeddings(t *testing.T) {
	s := llmfake.Start(t, llmfake.MaxBatch(3), llmfake.EmbedDim(16))
	c := client(s, "k")
	ctx := context.Background()
	resp, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{Input: []string{"扩散模型", "扩散", "other"}, Model: "e"})
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[int][]float32{}
	for _, d := range resp.Data {
		byIndex[d.Index] = d.Embedding
	}
	if len(resp.Data) != 3 || resp.Data[0].Index != 2 {
		t.Errorf("data not in reverse order: %+v", resp.Data)
	}
	if len(byIndex[0]) != 16 || !slices.Equal(byIndex[0], llmfake.HashEmbed("e", "扩散模型", 16)) {
		t.Errorf("vector 0 = %v", byIndex[0])
	}
	resp, err = c.CreateEmbeddings(ctx, openai.EmbeddingRequest{Input: []string{"x"}, Model: "e", Dimensions: 8})
	if err != nil || len(resp.Data[0].Embedding) != 8 {
		t.Errorf("requested dimensions ignored: %v %v", resp, err)
	}
	if _, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{Input: []string{"1", "2", "3", "4"}, Model: "e"}); err == nil {
		t.Error("a batch over the limit was accepted")
	}
	if got := s.Embeddings(); len(got) != 3 || got[1].Dimensions != 8 || !slices.Equal(got[0].Input, []string{"扩散模型", "扩散", "other"}) {
		t.Errorf("embedding requests recorded as %+v", got)
	}
}

// A stalled answer must not hold up Close until its client gives up.
func TestCloseEndsStalledAnswers(t *testing.T) {
	s := llmfake.New(llmfake.Default(llmfake.Stall()))
	errc := make(chan error, 1)
	go func() {
		_, _, err := streamed(t, context.Background(), client(s, "k"))
		errc <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); s.InFlight() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a stalled answer")
	}
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("the client was not released")
	}
}
