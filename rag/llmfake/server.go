package llmfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Paths the server answers, under its URL's host.
const (
	ChatPath       = "/v1/chat/completions"
	EmbeddingsPath = "/v1/embeddings"
)

// Server is a fake OpenAI-compatible provider on 127.0.0.1. Each chat
// request takes the next step of the script, and the default step once the
// script is used up. Every request is recorded. It is safe for concurrent
// use.
type Server struct {
	// URL is the base URL, ending in /v1: OPENAI_BASE_URL, or go-openai's
	// ClientConfig.BaseURL.
	URL string

	srv  *httptest.Server
	quit chan struct{} // closed by Close, so a stalled answer lets go
	once sync.Once

	key      string
	models   []string
	script   []Step
	def      Step
	embed    EmbedFunc
	embedDim int
	maxBatch int

	mu    sync.Mutex
	reqs  []*Request
	taken int // script steps taken
}

// Option configures a Server.
type Option func(*Server)

// Key makes the server accept only requests carrying "Bearer key", and
// answer others 401 as OpenAI answers a wrong key.
func Key(key string) Option { return func(s *Server) { s.key = key } }

// Models makes only these models exist (chat and embedding models alike):
// a request for another is answered 404 model_not_found. Without it every
// model exists.
func Models(names ...string) Option { return func(s *Server) { s.models = names } }

// Script sets the steps the first chat requests take, one each, in order of
// arrival.
func Script(steps ...Step) Option { return func(s *Server) { s.script = steps } }

// Default sets the step every chat request takes once the script is used
// up. Without it: Reply("fake answer.").
func Default(step Step) Option { return func(s *Server) { s.def = step } }

// Embed sets how embeddings are computed. Without it: HashEmbed.
func Embed(f EmbedFunc) Option { return func(s *Server) { s.embed = f } }

// EmbedDim sets the dimension of vectors for requests that ask for none.
// Without it: 64.
func EmbedDim(n int) Option { return func(s *Server) { s.embedDim = n } }

// MaxBatch refuses (400) embedding requests with more than n inputs, as
// providers with a batch limit do. Without it: no limit.
func MaxBatch(n int) Option { return func(s *Server) { s.maxBatch = n } }

// New starts a server; Close it when done.
func New(opts ...Option) *Server {
	s := &Server{quit: make(chan struct{}), def: Reply("fake answer."), embed: HashEmbed, embedDim: 64}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL + "/v1"
	return s
}

// Start is New for a test: the server closes when tb ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := New(opts...)
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server. Stalled answers end at once, so Close does not
// wait for their clients to give up.
func (s *Server) Close() {
	s.once.Do(func() { close(s.quit) })
	s.srv.Close()
}

// Request is one request the server received, with its body decoded.
type Request struct {
	Path   string
	Header http.Header // Authorization among them
	Body   []byte

	Model               string
	Messages            []Message // chat
	Stream              bool      // chat
	MaxTokens           int       // chat: max_tokens
	MaxCompletionTokens int       // chat: max_completion_tokens
	Input               []string  // embeddings
	Dimensions          int       // embeddings

	At     time.Time // when it arrived
	Status int       // the HTTP status answered; 0 until the answer starts
	Done   bool      // the answer is over (or the client left)
}

// Message is one chat message of a request.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Key is the bearer token the request carried.
func (r Request) Key() string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// Question is the content of the request's last message: what a chat
// request asks.
func (r Request) Question() string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Content
}

// Requests is every request so far, in order of arrival.
func (s *Server) Requests() []Request { return s.requests("") }

// Chats is every request to the chat completions path so far.
func (s *Server) Chats() []Request { return s.requests(ChatPath) }

// Embeddings is every request to the embeddings path so far.
func (s *Server) Embeddings() []Request { return s.requests(EmbeddingsPath) }

func (s *Server) requests(path string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.reqs {
		if path == "" || r.Path == path {
			out = append(out, *r)
		}
	}
	return out
}

// InFlight is how many requests are being answered now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if !r.Done {
			n++
		}
	}
	return n
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := &Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()}
	var in struct {
		Model               string          `json:"model"`
		Messages            []Message       `json:"messages"`
		Stream              bool            `json:"stream"`
		MaxTokens           int             `json:"max_tokens"`
		MaxCompletionTokens int             `json:"max_completion_tokens"`
		Input               json.RawMessage `json:"input"`
		Dimensions          int             `json:"dimensions"`
	}
	decodeErr := json.Unmarshal(body, &in)
	rec.Model, rec.Messages, rec.Stream, rec.MaxTokens, rec.MaxCompletionTokens, rec.Dimensions =
		in.Model, in.Messages, in.Stream, in.MaxTokens, in.MaxCompletionTokens, in.Dimensions
	if len(in.Input) > 0 && json.Unmarshal(in.Input, &rec.Input) != nil {
		var one string // a single input may be sent as a bare string
		if json.Unmarshal(in.Input, &one) == nil {
			rec.Input = []string{one}
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		rec.Done = true
		s.mu.Unlock()
	}()
	w = &recorder{ResponseWriter: w, s: s, rec: rec}

	switch {
	case r.Method != http.MethodPost || (r.URL.Path != ChatPath && r.URL.Path != EmbeddingsPath):
		apiError(w, http.StatusNotFound, nil, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path), "invalid_request_error", "unknown_url")
	case s.key != "" && r.Header.Get("Authorization") != "Bearer "+s.key:
		apiError(w, http.StatusUnauthorized, nil, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
	case decodeErr != nil:
		apiError(w, http.StatusBadRequest, nil, "bad JSON body: "+decodeErr.Error(), "invalid_request_error", "")
	case s.models != nil && !slices.Contains(s.models, in.Model):
		apiError(w, http.StatusNotFound, nil, fmt.Sprintf("The model `%s` does not exist", in.Model), "invalid_request_error", "model_not_found")
	case r.URL.Path == EmbeddingsPath:
		s.embeddings(w, rec)
	default:
		r.Body = io.NopCloser(bytes.NewReader(body)) // for a Handle step to read
		s.play(s.next(), w, r, in.Stream)
	}
}

// next is the step the next chat request takes.
func (s *Server) next() Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken < len(s.script) {
		s.taken++
		return s.script[s.taken-1]
	}
	return s.def
}

// recorder notes the status answered on the request's record.
type recorder struct {
	http.ResponseWriter
	s     *Server
	rec   *Request
	wrote bool
}

func (w *recorder) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.s.mu.Lock()
	w.rec.Status = code
	w.s.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

func (w *recorder) Flush() {
	w.WriteHeader(http.StatusOK)
	w.ResponseWriter.(http.Flusher).Flush()
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// EmbedFunc computes model's vector for one input; dim is the dimension the
// request asked for, or the server's EmbedDim when it asked for none.
type EmbedFunc func(model, input string, dim int) []float32

// HashEmbed is a bag of the input's characters, each hashed (FNV-1a) into
// one of dim dimensions: deterministic, and texts sharing characters get
// similar vectors, so dense retrieval has something to find.
func HashEmbed(_, input string, dim int) []float32 {
	v := make([]float32, dim)
	if dim == 0 {
		return v
	}
	for _, r := range input {
		h := fnv.New32a()
		h.Write([]byte(string(r)))
		v[h.Sum32()%uint32(dim)]++
	}
	return v
}

// embeddings answers one vector per input. The data comes back in reverse
// order, each item with its index, so a client that ignores the index is
// caught.
func (s *Server) embeddings(w http.ResponseWriter, rec *Request) {
	if s.maxBatch > 0 && len(rec.Input) > s.maxBatch {
		apiError(w, http.StatusBadRequest, nil, fmt.Sprintf("batch size %d is over the limit of %d", len(rec.Input), s.maxBatch), "invalid_request_error", "")
		return
	}
	dim := rec.Dimensions
	if dim <= 0 {
		dim = s.embedDim
	}
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	data := []item{}
	tokens := 0
	for i := len(rec.Input) - 1; i >= 0; i-- {
		data = append(data, item{"embedding", i, s.embed(rec.Model, rec.Input[i], dim)})
		tokens += len([]rune(rec.Input[i]))
	}
	b, _ := json.Marshal(map[string]any{"object": "list", "model": rec.Model, "data": data,
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens}})
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
