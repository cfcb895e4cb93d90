// Package index keeps the knowledge index: chunks of knowledge with their
// sparse (BM25) and dense vectors and everything needed to cite them, and
// the search over them. Two backends behave alike and pass one conformance
// suite (conformance_test.go): Embedded, an in-process index kept in one
// snapshot file, and Qdrant, a collection in a Qdrant server. The
// interfaces that use them are declared by their consumers (rag, cmd).
package index

import (
	"errors"
	"slices"
)

// ErrNotFound is returned when a requested record does not exist.
var ErrNotFound = errors.New("not found")

// Chunk kinds. A "qa" chunk is a curated question and answer; a "passage" is
// any other text.
const (
	KindQA      = "qa"
	KindPassage = "passage"
)

// SparseVector is a bag of hashed terms with weights, shaped exactly like a
// Qdrant sparse vector: indices are unique, values are BM25 term weights for
// documents and 1.0 per term for queries. IDF is applied by the store.
type SparseVector struct {
	Indices []uint32  `json:"indices"`
	Values  []float32 `json:"values"`
}

// Chunk is one retrievable unit of knowledge with everything needed to cite it.
type Chunk struct {
	ID     string       `json:"id"`     // content hash, stable across re-ingests
	Key    string       `json:"key"`    // position: source#doc#ordinal, used to tell updates from additions
	DocID  string       `json:"doc_id"` // stable document id, used in /kb/{doc_id}
	Kind   string       `json:"kind"`   // KindQA or KindPassage
	Title  string       `json:"title"`  // document title; for a Q&A item, its question
	URL    string       `json:"url"`    // may be empty
	Path   []string     `json:"path"`   // heading path inside the document
	Date   string       `json:"date"`   // YYYY-MM-DD when known
	Source string       `json:"source"` // file the chunk came from (slash-separated, relative)
	Text   string       `json:"text"`   // the chunk's text
	Answer string       `json:"answer"` // for KindQA: the curated answer in full
	Refs   []string     `json:"refs"`   // doc ids this document cites (a Q&A page's 参考资料)
	Sparse SparseVector `json:"sparse"`
	Dense  []float32    `json:"dense,omitempty"`

	// Where a chunk read from Feishu came from, so a citation links to the
	// document (and its section) and a search can be kept to some spaces;
	// empty for local files.
	SpaceID    string `json:"space_id,omitempty"`    // wiki space
	NodeToken  string `json:"node_token,omitempty"`  // wiki node; empty for a standalone docx
	DocumentID string `json:"document_id,omitempty"` // docx document
	Anchor     string `json:"anchor,omitempty"`      // block id of the heading that opens the chunk's section
	// Version is the source's version the chunk was read at (a Feishu
	// document's edit time): a source whose stored version is current
	// need not be read again.
	Version string `json:"version,omitempty"`
}

// ChunkRef is what ingestion needs to know about a stored chunk to decide
// whether it is unchanged, updated or gone.
type ChunkRef struct {
	ID      string
	Key     string
	Source  string
	Version string
}

// Query asks the index for the chunks nearest a question.
type Query struct {
	Sparse SparseVector
	Dense  []float32 // nil when no embedding model is configured
	Kind   string    // optional filter on Chunk.Kind
	// Spaces, when not empty, keeps the search to chunks whose SpaceID is
	// one of these ("" stands for chunks from files).
	Spaces []string
	// DenseThreshold drops dense matches below this cosine similarity; it is
	// the relevance floor of the dense side.
	DenseThreshold float32
	Limit          int
}

// Hit is one search result. Score is the fused score when both sides ran,
// otherwise the BM25 score; SparseScore and DenseScore keep the raw parts.
type Hit struct {
	Chunk       Chunk
	Score       float64
	SparseScore float64
	DenseScore  float64
}

// admits reports whether c passes q's filters (kind and spaces), as both
// backends apply them.
func (q Query) admits(c *Chunk) bool {
	return (q.Kind == "" || c.Kind == q.Kind) && (len(q.Spaces) == 0 || slices.Contains(q.Spaces, c.SpaceID))
}
