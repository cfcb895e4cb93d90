package llmfake

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Step is how the server answers one chat request. Build one with Reply,
// Stall, Cut, ErrorMidStream, Fail, Whole or Handle, and time it with After
// and Every.
type Step struct {
	kind   stepKind
	parts  []string
	delay  time.Duration
	gap    time.Duration
	finish string
	status int
	header map[string]string
	handle func(http.ResponseWriter, *http.Request)
}

type stepKind int

const (
	kindReply stepKind = iota
	kindStall
	kindCut
	kindMidStream
	kindFail
	kindWhole
	kindHandle
)

// Reply answers parts: one chunk each, the last one finished, then [DONE];
// or, to a request that did not ask to stream, one completion of the parts
// joined.
func Reply(parts ...string) Step { return Step{kind: kindReply, parts: parts} }

// Stall streams parts, unfinished, then sends nothing more until the client
// leaves: a provider that stopped mid-answer (before its first token, with
// no parts). To a request that did not ask to stream it sends nothing.
func Stall(parts ...string) Step { return Step{kind: kindStall, parts: parts} }

// Cut streams parts, then ends the body with no finish_reason and no
// [DONE]: a stream the provider cut off. To a request that did not ask to
// stream it sends half a completion.
func Cut(parts ...string) Step { return Step{kind: kindCut, parts: parts} }

// ErrorMidStream streams parts, then an error event ("data: {"error":…}"),
// as providers report a failure after the answer started. To a request that
// did not ask to stream it answers 500.
func ErrorMidStream(parts ...string) Step { return Step{kind: kindMidStream, parts: parts} }

// Fail answers status with an OpenAI-style error body and the header pairs
// given (say "Retry-After", "7" or "Retry-After-Ms", "1500").
func Fail(status int, header ...string) Step {
	h := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return Step{kind: kindFail, status: status, header: h}
}

// Whole answers text as one non-streamed completion even when the request
// asked to stream, as a provider that ignores "stream" does.
func Whole(text string) Step { return Step{kind: kindWhole, parts: []string{text}} }

// Handle answers with f, for what the other steps cannot say. The request's
// body can be read again.
func Handle(f func(w http.ResponseWriter, r *http.Request)) Step {
	return Step{kind: kindHandle, handle: f}
}

// After waits d before the first part, or before answering at all: the
// model's time to first token.
func (s Step) After(d time.Duration) Step { s.delay = d; return s }

// Every waits d between parts.
func (s Step) Every(d time.Duration) Step { s.gap = d; return s }

// Finish sets a Reply's finish_reason (default "stop"), e.g. "length".
func (s Step) Finish(reason string) Step { s.finish = reason; return s }

// play answers one chat request with st.
func (s *Server) play(st Step, w http.ResponseWriter, r *http.Request, stream bool) {
	if st.kind == kindHandle {
		st.handle(w, r)
		return
	}
	if !s.wait(r, st.delay) {
		return
	}
	finish := st.finish
	if finish == "" {
		finish = "stop"
	}
	whole := strings.Join(st.parts, "")
	switch {
	case st.kind == kindFail:
		apiError(w, st.status, st.header, fmt.Sprintf("fake provider says %d", st.status), "server_error", "")
		return
	case st.kind == kindWhole:
		completion(w, whole, finish)
		return
	case !stream:
		switch st.kind {
		case kindReply:
			completion(w, whole, finish)
		case kindStall:
			s.wait(r, -1)
		case kindCut:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q`, whole)
		case kindMidStream:
			Error(w, http.StatusInternalServerError, nil)
		}
		return
	}

	Begin(w)
	for i, p := range st.parts {
		if i > 0 && !s.wait(r, st.gap) {
			return
		}
		if st.kind == kindReply && i == len(st.parts)-1 {
			chunk(w, p, finish)
		} else {
			chunk(w, p, "")
		}
	}
	switch st.kind {
	case kindReply:
		if len(st.parts) == 0 {
			chunk(w, "", finish)
		}
		End(w)
	case kindStall:
		s.wait(r, -1)
	case kindMidStream:
		fmt.Fprint(w, `data: {"error":{"message":"fake provider failed mid-stream","type":"server_error","param":null,"code":null}}`+"\n\n")
		w.(http.Flusher).Flush()
	}
}

// wait waits d (forever when negative); false when the client left or the
// server closed first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d == 0 {
		return true
	}
	var after <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-after:
		return true
	case <-r.Context().Done():
		return false
	case <-s.quit:
		return false
	}
}
