// Package llmfake writes what an OpenAI-compatible chat completions
// endpoint sends: streamed chunks (server-sent events), whole completions
// and provider errors. Fake providers in tests and the load tool are built
// on it, so they all speak the format the real go-openai client parses.
package llmfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Begin starts a streamed completion: the event-stream header, flushed so
// the client sees the response before the first token.
func Begin(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

// Chunk sends one chunk carrying text; last marks it as the final one
// (finish_reason "stop").
func Chunk(w http.ResponseWriter, text string, last bool) {
	type delta struct {
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	c := choice{Delta: delta{Content: text}}
	if last {
		stop := "stop"
		c.FinishReason = &stop
	}
	b, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion.chunk", "choices": []choice{c}})
	fmt.Fprintf(w, "data: %s\n\n", b)
	w.(http.Flusher).Flush()
}

// End closes a streamed completion.
func End(w http.ResponseWriter) {
	fmt.Fprint(w, "data: [DONE]\n\n")
	w.(http.Flusher).Flush()
}

// Stream sends parts as one streamed completion, waiting gap before each
// part (none when gap is 0). It returns false, having stopped, when the
// client went away first.
func Stream(w http.ResponseWriter, r *http.Request, parts []string, gap time.Duration) bool {
	Begin(w)
	for i, p := range parts {
		if gap > 0 {
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return false
			}
		}
		Chunk(w, p, i == len(parts)-1)
	}
	End(w)
	return true
}

// Completion sends text as one whole (non-streamed) completion.
func Completion(w http.ResponseWriter, text string) {
	b, _ := json.Marshal(text)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}]}`, b)
}

// Error answers as a provider failing with status, with header (say
// Retry-After) set on the response.
func Error(w http.ResponseWriter, status int, header map[string]string) {
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":"fake provider says %d","type":"server_error"}}`, status)
}
