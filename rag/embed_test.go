package rag

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	openai "github.com/sashabaranov/go-openai"
)

// fakeEmbeddings serves /v1/embeddings with deterministic vectors: a bag of
// hashed characters, so similar texts get similar vectors. It answers in
// reverse order to check results are mapped by index.
func fakeEmbeddings(t *testing.T, dim int, calls *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/embeddings" {
			http.NotFound(w, r)
			return
		}
		calls.Add(1)
		var req struct {
			Input []string `json:"input"`
			Model string   `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "fake-embed" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if len(req.Input) > embedBatch {
			http.Error(w, "batch too large", http.StatusBadRequest)
			return
		}
		resp := openai.EmbeddingResponse{Object: "list", Model: "fake-embed"}
		for i := len(req.Input) - 1; i >= 0; i-- {
			v := make([]float32, dim)
			for _, r := range req.Input[i] {
				h := fnv.New32a()
				h.Write([]byte(string(r)))
				v[h.Sum32()%uint32(dim)]++
			}
			resp.Data = append(resp.Data, openai.Embedding{Object: "embedding", Index: i, Embedding: v})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDenseVectorsFuseWithLexical(t *testing.T) {
	var calls atomic.Int64
	srv := fakeEmbeddings(t, 64, &calls)
	emb := NewEmbedder(NewOpenAIClient("k", srv.URL+"/v1"), "fake-embed", 0)
	eng := seededEngine(t, Options{Embedder: emb})
	if calls.Load() < 4 { // 34 chunks in batches of at most 10
		t.Fatalf("embedding calls = %d", calls.Load())
	}
	dim, err := emb.Dim(context.Background())
	if err != nil || dim != 64 {
		t.Fatalf("Dim = %d, %v", dim, err)
	}
	hits, err := eng.retrieve(context.Background(), "扩散模型加噪点和减噪点的训练过程", "", candidates)
	if err != nil {
		t.Fatal(err)
	}
	dense := 0
	for _, h := range hits {
		if h.DenseScore > 0 {
			dense++
		}
	}
	if len(hits) == 0 || dense == 0 {
		t.Fatalf("hits %d, with dense scores %d", len(hits), dense)
	}
	ans, err := eng.Ask(context.Background(), "扩散模型加噪点和减噪点的训练过程", nil)
	if err != nil || len(ans.References) == 0 {
		t.Fatalf("ask with dense retrieval: %+v %v", ans, err)
	}
	// Changing the embedding model changes every chunk id: a re-ingest
	// re-embeds rather than mixing vectors from two models.
	other := NewEmbedder(NewOpenAIClient("k", srv.URL+"/v1"), "fake-embed", 32)
	if other.Model() == emb.Model() {
		t.Error("embedding salt ignores the dimension")
	}
}

func TestEmbedderErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"message":"bad key","type":"invalid_request_error"}}`))
	}))
	defer srv.Close()
	emb := NewEmbedder(NewOpenAIClient("k", srv.URL+"/v1"), "fake-embed", 0)
	if _, err := emb.Embed(context.Background(), []string{"x"}); err == nil {
		t.Fatal("no error from a 401")
	}
	var nilEmb *Embedder
	if v, err := nilEmb.Embed(context.Background(), []string{"x"}); v != nil || err != nil {
		t.Errorf("nil embedder = %v, %v", v, err)
	}
}
