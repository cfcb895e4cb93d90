// Package llmfake is a fake OpenAI-compatible model provider for tests and
// the load tool: a scriptable server on 127.0.0.1 (server.go) that answers
// chat completions, streamed or whole, and embeddings, and records every
// request; and the writers of what such a provider sends (streamed chunks,
// whole completions, provider errors), so every fake speaks the format the
// real go-openai client parses.
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
	finish := ""
	if last {
		finish = "stop"
	}
	chunk(w, text, finish)
}

// chunk sends one chunk carrying text, with finish as its finish_reason
// (null when empty).
func chunk(w http.ResponseWriter, text, finish string) {
	type delta struct {
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	c := choice{Delta: delta{Content: text}}
	if finish != "" {
		c.FinishReason = &finish
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
	completion(w, text, "stop")
}

func completion(w http.ResponseWriter, text, finish string) {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Message      message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	}
	b, _ := json.Marshal(map[string]any{"id": "x", "object": "chat.completion", "created": time.Now().Unix(),
		"choices": []choice{{Message: message{Role: "assistant", Content: text}, FinishReason: finish}}})
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// Error answers as a provider failing with status, with header (say
// Retry-After) set on the response.
func Error(w http.ResponseWriter, status int, header map[string]string) {
	apiError(w, status, header, fmt.Sprintf("fake provider says %d", status), "server_error", "")
}

// apiError answers status with an OpenAI-style error body.
func apiError(w http.ResponseWriter, status int, header map[string]string, msg, typ, code string) {
	for k, v := range header {
		w.Header().Set(k, v)
	}
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
