package rag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kbbot/store/retry"

	openai "github.com/sashabaranov/go-openai"
)

// ErrStalled means the model stopped sending its answer for longer than the
// LLM's idle timeout. Mid-answer, Complete returns the text so far with it.
var ErrStalled = errors.New("the model stopped responding")

// LLM writes answers through an OpenAI-compatible chat completion API.
type LLM struct {
	client  *openai.Client
	model   string
	timeout time.Duration
	// Idle bounds the wait for each next piece of the stream, the first one
	// included; a provider silent for longer has stalled. Default 20 s.
	Idle time.Duration
	// MaxRetryAfter caps the provider's Retry-After: a longer one is not
	// waited out, the call fails instead. Default 20 s.
	MaxRetryAfter time.Duration
	// Sleep waits between retries (nil: a timer that ctx cuts short);
	// tests replace it.
	Sleep func(context.Context, time.Duration) error
	// MaxTokens caps each answer (OPENAI_MAX_TOKENS); 0 leaves it to the
	// provider.
	MaxTokens int
	// ShortTimeout bounds a short call (the rewrite of a follow-up), which
	// has a fallback and is not retried. Default 5 s.
	ShortTimeout time.Duration

	// completionTokens is set once the provider refused max_tokens (as
	// reasoning models do): later requests send max_completion_tokens.
	completionTokens atomic.Bool
}

// NewOpenAIClient builds a go-openai client for any OpenAI-compatible
// provider (OpenAI, DeepSeek, DashScope, Ollama, vLLM…). Its HTTP client
// notes the Retry-After of throttled answers, which go-openai's errors drop.
func NewOpenAIClient(apiKey, baseURL string) *openai.Client {
	cfg := openai.DefaultConfig(apiKey)
	cfg.BaseURL = strings.TrimRight(baseURL, "/")
	cfg.HTTPClient = hintDoer{c: &http.Client{}}
	return openai.NewClientWithConfig(cfg)
}

// NewLLM returns an LLM using model; timeout bounds one whole answer.
func NewLLM(client *openai.Client, model string, timeout time.Duration) *LLM {
	return &LLM{client: client, model: model, timeout: timeout}
}

// Model names the chat model, for logs and `doctor`.
func (l *LLM) Model() string { return l.model }

const (
	llmAttempts          = 3
	defaultIdle          = 20 * time.Second
	defaultMaxRetryAfter = 20 * time.Second
	defaultShortTimeout  = 5 * time.Second
)

// Complete streams one chat completion, calling onDelta with the text so far.
// Rate limits, server errors and stalls before the first token are retried
// with backoff, or after the provider's Retry-After. A failure after text
// has streamed is not retried, since the caller has already shown part of
// the answer: Complete returns that text with the error (ErrStalled when the
// stream went quiet).
func (l *LLM) Complete(ctx context.Context, msgs []openai.ChatCompletionMessage, onDelta func(string)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	var text string
	p := retry.Policy{Attempts: llmAttempts, Base: 500 * time.Millisecond, Max: l.maxRetryAfter(), Sleep: l.Sleep}
	err := p.Do(ctx, func(ctx context.Context, _ int) error {
		hint := &retryHint{}
		t, started, err := l.stream(context.WithValue(ctx, retryHintKey{}, hint), msgs, onDelta)
		switch {
		case err == nil:
			text = t
			return nil
		case started:
			// The caller has shown part of the answer already: no retry,
			// but what was said comes back with the error.
			text = t
			return retry.Permanent(err)
		case !retryable(err):
			return retry.Permanent(err)
		}
		ra := hint.get()
		if ra > l.maxRetryAfter() {
			return retry.Permanent(fmt.Errorf("%w (the provider asks to retry after %v, over the %v kbbot waits)", err, ra, l.maxRetryAfter()))
		}
		return retry.WithWait(err, ra)
	})
	if err != nil {
		return text, fmt.Errorf("llm %s: %w", l.model, err)
	}
	return text, nil
}

func (l *LLM) idle() time.Duration {
	if l.Idle > 0 {
		return l.Idle
	}
	return defaultIdle
}

func (l *LLM) maxRetryAfter() time.Duration {
	if l.MaxRetryAfter > 0 {
		return l.MaxRetryAfter
	}
	return defaultMaxRetryAfter
}

// stream runs one request. started reports whether any text reached onDelta.
func (l *LLM) stream(ctx context.Context, msgs []openai.ChatCompletionMessage, onDelta func(string)) (text string, started bool, err error) {
	// A watchdog cancels the request when the provider goes quiet; every
	// chunk (reasoning and usage chunks too) rearms it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := l.idle()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(idle, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	stallErr := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("%w: nothing for %v", ErrStalled, idle)
		}
		return err
	}

	req := openai.ChatCompletionRequest{Model: l.model, Messages: msgs, Stream: true}
	l.limit(&req, l.MaxTokens)
	st, err := l.client.CreateChatCompletionStream(ctx, req)
	if l.refusedMaxTokens(&req, err) {
		st, err = l.client.CreateChatCompletionStream(ctx, req)
	}
	if err != nil {
		return "", false, stallErr(err)
	}
	defer st.Close()
	var b strings.Builder
	finished := false
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return b.String(), b.Len() > 0, stallErr(err)
		}
		watchdog.Reset(idle)
		if len(r.Choices) == 0 {
			continue
		}
		if r.Choices[0].FinishReason != "" {
			finished = true
		}
		if d := r.Choices[0].Delta.Content; d != "" {
			b.WriteString(d)
			if onDelta != nil {
				onDelta(b.String())
			}
		}
	}
	if b.Len() == 0 {
		return "", false, errors.New("the model returned an empty answer")
	}
	if !finished {
		// The stream ended without a finish reason: the provider cut it off.
		// Keep what was said, marked as cut.
		b.WriteString(" …")
	}
	return b.String(), true, nil
}

// Short runs one small completion, not streamed: at most maxTokens, within
// ShortTimeout, with no retries, for a caller that has a fallback.
func (l *LLM) Short(ctx context.Context, msgs []openai.ChatCompletionMessage, maxTokens int) (string, error) {
	timeout := l.ShortTimeout
	if timeout <= 0 {
		timeout = defaultShortTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := openai.ChatCompletionRequest{Model: l.model, Messages: msgs}
	l.limit(&req, maxTokens)
	resp, err := l.client.CreateChatCompletion(ctx, req)
	if l.refusedMaxTokens(&req, err) {
		resp, err = l.client.CreateChatCompletion(ctx, req)
	}
	if err != nil {
		return "", fmt.Errorf("llm %s: %w", l.model, err)
	}
	if len(resp.Choices) == 0 || strings.TrimSpace(resp.Choices[0].Message.Content) == "" {
		return "", fmt.Errorf("llm %s: the model returned an empty answer", l.model)
	}
	return resp.Choices[0].Message.Content, nil
}

// limit caps req at n tokens, in the field the provider takes.
func (l *LLM) limit(req *openai.ChatCompletionRequest, n int) {
	if n <= 0 {
		return
	}
	if l.completionTokens.Load() {
		req.MaxCompletionTokens = n
	} else {
		req.MaxTokens = n
	}
}

// refusedMaxTokens reports whether err is the provider (or go-openai, which
// knows the reasoning models) refusing max_tokens; it then moves the limit
// to max_completion_tokens, for req's one retry and every later request.
func (l *LLM) refusedMaxTokens(req *openai.ChatCompletionRequest, err error) bool {
	if req.MaxTokens == 0 || !maxTokensRefused(err) {
		return false
	}
	l.completionTokens.Store(true)
	req.MaxTokens, req.MaxCompletionTokens = 0, req.MaxTokens
	return true
}

func maxTokensRefused(err error) bool {
	if errors.Is(err, openai.ErrReasoningModelMaxTokensDeprecated) {
		return true
	}
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		return apiErr.HTTPStatusCode == http.StatusBadRequest &&
			((apiErr.Param != nil && *apiErr.Param == "max_tokens") || strings.Contains(apiErr.Message, "max_tokens"))
	}
	var reqErr *openai.RequestError
	return errors.As(err, &reqErr) && reqErr.HTTPStatusCode == http.StatusBadRequest && strings.Contains(string(reqErr.Body), "max_tokens")
}

func retryable(err error) bool {
	if errors.Is(err, ErrStalled) {
		return true
	}
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		return apiErr.HTTPStatusCode == http.StatusTooManyRequests || apiErr.HTTPStatusCode >= 500
	}
	var reqErr *openai.RequestError
	if errors.As(err, &reqErr) {
		return reqErr.HTTPStatusCode == http.StatusTooManyRequests || reqErr.HTTPStatusCode >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// retryHint carries a throttled answer's Retry-After from the HTTP client
// back to the call that made the request. It travels in the request's
// context because the client is shared by every call.
type retryHint struct {
	mu    sync.Mutex
	after time.Duration
}

type retryHintKey struct{}

func (h *retryHint) set(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.after = d
}

func (h *retryHint) get() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.after
}

// hintDoer is the openai client's HTTPDoer: a plain http.Client that notes
// Retry-After on 429 and 503 answers.
type hintDoer struct{ c *http.Client }

func (d hintDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(req)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	if h, ok := req.Context().Value(retryHintKey{}).(*retryHint); ok {
		h.set(retry.After(resp.Header, time.Now()))
	}
	return resp, nil
}

// Embedder computes dense vectors through an OpenAI-compatible embeddings
// endpoint. A nil *Embedder is valid and means "no dense vectors".
type Embedder struct {
	client *openai.Client
	model  string
	dim    int
}

// embedBatch is the smallest provider batch limit we know (DashScope v3/v4:
// 10 inputs), so every provider accepts our requests.
const embedBatch = 10

// NewEmbedder returns an Embedder for model; dim 0 keeps the model's default
// dimension.
func NewEmbedder(client *openai.Client, model string, dim int) *Embedder {
	return &Embedder{client: client, model: model, dim: dim}
}

// Model names the embedding model, "" for a nil Embedder.
func (e *Embedder) Model() string {
	if e == nil {
		return ""
	}
	return e.model + "/" + strconv.Itoa(e.dim)
}

// Embed returns one vector per text, in order.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if e == nil {
		return nil, nil
	}
	out := make([][]float32, len(texts))
	for start := 0; start < len(texts); start += embedBatch {
		end := min(start+embedBatch, len(texts))
		req := openai.EmbeddingRequest{Input: texts[start:end], Model: openai.EmbeddingModel(e.model), Dimensions: e.dim}
		resp, err := e.client.CreateEmbeddings(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("embeddings %s: %w", e.model, err)
		}
		for _, d := range resp.Data {
			if d.Index < 0 || start+d.Index >= end {
				return nil, fmt.Errorf("embeddings %s: result index %d out of range", e.model, d.Index)
			}
			out[start+d.Index] = d.Embedding
		}
	}
	for i, v := range out {
		if v == nil {
			return nil, fmt.Errorf("embeddings %s: no vector for input %d", e.model, i)
		}
	}
	return out, nil
}

// Dim asks the model for one vector to learn its dimension (used to size the
// Qdrant collection when OPENAI_EMBEDDING_DIM is 0).
func (e *Embedder) Dim(ctx context.Context) (int, error) {
	if e == nil {
		return 0, nil
	}
	if e.dim > 0 {
		return e.dim, nil
	}
	v, err := e.Embed(ctx, []string{"dimension probe"})
	if err != nil {
		return 0, err
	}
	return len(v[0]), nil
}
