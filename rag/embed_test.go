package rag

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"kbbot/rag/llmfake"
)

// startEmbeddings is a provider of one embedding model, fake-embed, with
// the smallest batch limit we allow for. Its vectors are bags of hashed
// characters (64 dimensions by default), so similar texts get similar
// vectors; it answers in reverse order, so results must be mapped by index.
func startEmbeddings(t *testing.T) *llmfake.Server {
	return llmfake.Start(t, llmfake.Key("test-key"), llmfake.Models("fake-embed"), llmfake.MaxBatch(embedBatch), llmfake.EmbedDim(64))
}

func TestDenseVectorsFuseWithLexical(t *testing.T) {
	srv := startEmbeddings(t)
	emb := NewEmbedder(NewOpenAIClient("test-key", srv.URL), "fake-embed", 0)
	eng := seededEngine(t, Options{Embedder: emb})
	if n := len(srv.Embeddings()); n < 4 { // 34 chunks in batches of at most 10
		t.Fatalf("embedding calls = %d", n)
	}
	for _, r := range srv.Embeddings() {
		if r.Status != http.StatusOK {
			t.Fatalf("an embedding call was answered %d", r.Status)
		}
	}
	// The provider answers in reverse order: each text must still get its
	// own vector.
	texts := []string{"扩散模型", "大语言模型的参数", "RAG"}
	vecs, err := emb.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		if !slices.Equal(vecs[i], llmfake.HashEmbed("fake-embed", text, 64)) {
			t.Errorf("vector %d is not the vector of %q", i, text)
		}
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
	before := len(srv.Embeddings())
	ans, err := eng.Ask(context.Background(), "扩散模型加噪点和减噪点的训练过程", nil)
	if err != nil || len(ans.References) == 0 {
		t.Fatalf("ask with dense retrieval: %+v %v", ans, err)
	}
	// The Q&A search and the main search embed the same question once.
	if n := len(srv.Embeddings()) - before; n != 1 {
		t.Errorf("one answer made %d embedding calls, want 1", n)
	}
	// Changing the embedding model changes every chunk id: a re-ingest
	// re-embeds rather than mixing vectors from two models.
	other := NewEmbedder(NewOpenAIClient("test-key", srv.URL), "fake-embed", 32)
	if other.Model() == emb.Model() {
		t.Error("embedding salt ignores the dimension")
	}
}

func TestEmbedderErrors(t *testing.T) {
	srv := startEmbeddings(t)
	emb := NewEmbedder(NewOpenAIClient("wrong-key", srv.URL), "fake-embed", 0)
	if _, err := emb.Embed(context.Background(), []string{"x"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v, want the provider's 401", err)
	}
	var nilEmb *Embedder
	if v, err := nilEmb.Embed(context.Background(), []string{"x"}); v != nil || err != nil {
		t.Errorf("nil embedder = %v, %v", v, err)
	}
}
