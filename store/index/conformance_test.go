package index

import (
	"context"
	"errors"
	"math"
	"reflect"
	"sort"
	"testing"
)

// index is the method set rag/ (rag.Index) and cmd/kbbot need from a
// knowledge index; every backend must pass runIndexConformance with the same
// results.
type index interface {
	Upsert(ctx context.Context, chunks []Chunk) error
	Delete(ctx context.Context, ids []string) error
	Refs(ctx context.Context) ([]ChunkRef, error)
	Search(ctx context.Context, q Query) ([]Hit, error)
	DocChunks(ctx context.Context, docID string) ([]Chunk, error)
	List(ctx context.Context, kind string, limit int) ([]Chunk, error)
	Count(ctx context.Context) (int, error)
	Rebuild(ctx context.Context) error
	Close() error
}

var (
	_ index = (*Embedded)(nil)
	_ index = (*Qdrant)(nil)
)

// conformanceDenseDim is the dense size the suite's chunks use.
const conformanceDenseDim = 4

func TestEmbeddedConformance(t *testing.T) {
	runIndexConformance(t, func(t *testing.T) index {
		e, err := OpenEmbedded(t.TempDir())
		if err != nil {
			t.Fatalf("OpenEmbedded: %v", err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	})
}

func TestQdrantStandInConformance(t *testing.T) {
	runIndexConformance(t, func(t *testing.T) index {
		q, _ := openStandInQdrant(t, conformanceDenseDim)
		return q
	})
}

// TestQdrantRealConformance runs the suite against the server at QDRANT_URL,
// one fresh collection per subtest, deleted afterwards.
func TestQdrantRealConformance(t *testing.T) {
	requireRealQdrant(t)
	runIndexConformance(t, func(t *testing.T) index {
		return openRealQdrant(t, conformanceDenseDim)
	})
}

// runIndexConformance checks the index contract. open returns an empty index
// that lives until the (sub)test ends.
func runIndexConformance(t *testing.T, open func(t *testing.T) index) {
	ctx := context.Background()

	t.Run("UpsertThenCount", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, testDocChunks("a", 3)...)
		wantCount(t, idx, 3)
	})

	t.Run("ReupsertOverwrites", func(t *testing.T) {
		idx := open(t)
		chunks := testDocChunks("a", 3)
		mustUpsert(t, idx, chunks...)
		for i := range chunks {
			chunks[i].Text += " (edited)"
		}
		mustUpsert(t, idx, chunks...)
		wantCount(t, idx, 3)
		got, err := idx.DocChunks(ctx, "a")
		if err != nil {
			t.Fatalf("DocChunks: %v", err)
		}
		for _, c := range got {
			if want := "text of " + c.ID + " (edited)"; c.Text != want {
				t.Errorf("chunk %s text = %q, want %q", c.ID, c.Text, want)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		idx := open(t)
		chunks := testDocChunks("a", 3)
		mustUpsert(t, idx, chunks...)
		if err := idx.Delete(ctx, []string{chunks[1].ID, "no-such-chunk"}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := idx.Delete(ctx, nil); err != nil {
			t.Fatalf("Delete(nil): %v", err)
		}
		wantCount(t, idx, 2)
		wantRefs(t, idx, chunks[0], chunks[2])
		if hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1)}); hasChunk(hits, chunks[1].ID) {
			t.Errorf("deleted chunk %s still found by Search", chunks[1].ID)
		}
	})

	t.Run("Refs", func(t *testing.T) {
		idx := open(t)
		a, b := testDocChunks("a", 2), testDocChunks("b", 1)
		mustUpsert(t, idx, append(a, b...)...)
		wantRefs(t, idx, a[0], a[1], b[0])
	})

	t.Run("RefsCarryTheVersion", func(t *testing.T) {
		idx := open(t)
		c := testDocChunks("wiki", 1)[0]
		c.Version = "1764576000"
		mustUpsert(t, idx, c)
		wantRefs(t, idx, c)
	})

	// A search kept to some spaces finds only their chunks ("" stands for
	// local files), on both sides of a hybrid search.
	t.Run("SpacesFilter", func(t *testing.T) {
		idx := open(t)
		inSpace := func(c Chunk, space string) Chunk { c.SpaceID = space; return c }
		a := inSpace(testWithDense(testChunk("s-a", "a", KindPassage, testTerms(1, 1)), 1, 0, 0, 0), "space_a")
		b := inSpace(testWithDense(testChunk("s-b", "b", KindPassage, testTerms(1, 1)), 1, 0, 0, 0), "space_b")
		f := testWithDense(testChunk("s-f", "f", KindPassage, testTerms(1, 1)), 1, 0, 0, 0)
		mustUpsert(t, idx, a, b, f)
		for _, tc := range []struct {
			spaces []string
			want   []string
		}{
			{nil, []string{"s-a", "s-b", "s-f"}},
			{[]string{"space_a"}, []string{"s-a"}},
			{[]string{"space_b", ""}, []string{"s-b", "s-f"}},
			{[]string{"space_none"}, nil},
		} {
			for _, dense := range [][]float32{nil, {1, 0, 0, 0}} {
				hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1), Dense: dense, Spaces: tc.spaces, Limit: 10})
				got := hitIDs(hits)
				sort.Strings(got)
				if !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
					t.Errorf("spaces %q (dense %v): hits %v, want %v", tc.spaces, dense != nil, got, tc.want)
				}
			}
		}
	})

	t.Run("DocChunksSortedByKey", func(t *testing.T) {
		idx := open(t)
		a := testDocChunks("a", 4)
		// Insert out of order, with another document in between.
		mustUpsert(t, idx, a[2], a[0], testDocChunks("b", 1)[0], a[3], a[1])
		got, err := idx.DocChunks(ctx, "a")
		if err != nil {
			t.Fatalf("DocChunks: %v", err)
		}
		if ids, want := chunkIDs(got), chunkIDs(a); !reflect.DeepEqual(ids, want) {
			t.Errorf("DocChunks(a) = %v, want %v (sorted by Key)", ids, want)
		}
		if _, err := idx.DocChunks(ctx, "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DocChunks(missing) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("PayloadRoundTrip", func(t *testing.T) {
		idx := open(t)
		want := Chunk{
			ID:     "qa-0001",
			Key:    "faq/报销.md#报销#0",
			DocID:  "报销",
			Kind:   KindQA,
			Title:  "差旅报销需要哪些材料？",
			URL:    "https://example.feishu.cn/wiki/abc",
			Path:   []string{"财务", "差旅 & 报销"},
			Date:   "2026-11-28",
			Source: "faq/报销.md",
			Text:   "问：差旅报销需要哪些材料？\n答：发票、行程单。",
			Answer: "发票、行程单和审批单，见 <财务手册>。",
			Refs:   []string{"finance-handbook", "travel-policy"},
			Sparse: SparseVector{Indices: []uint32{7, 3}, Values: []float32{1.2, 0.4}},
			Dense:  []float32{0.1, 0.2, 0.3, 0.4},

			SpaceID:    "7034502641455497244",
			NodeToken:  "wikcnpJLIzbAptN4cMQrQoewaLc",
			DocumentID: "doxcnAJ9VRRJqVMYZ1MyKnavXWe",
			Anchor:     "doxcnXYZ",
			Version:    "1764576000",
		}
		mustUpsert(t, idx, want)
		got, err := idx.DocChunks(ctx, want.DocID)
		if err != nil {
			t.Fatalf("DocChunks: %v", err)
		}
		if len(got) != 1 || !reflect.DeepEqual(chunkFields(got[0]), chunkFields(want)) {
			t.Errorf("DocChunks round trip:\n got %#v\nwant %#v", got, chunkFields(want))
		}
		hits := mustSearch(t, idx, Query{Sparse: testTerms(7, 1)})
		if len(hits) != 1 || !reflect.DeepEqual(chunkFields(hits[0].Chunk), chunkFields(want)) {
			t.Errorf("Search round trip:\n got %#v\nwant %#v", hits, chunkFields(want))
		}
	})

	// The IDF corpus: term 1 is in 9 of 10 chunks, term 2 only in i9.
	// N = 10; idf(1) = ln(1 + 1.5/9.5), idf(2) = ln(1 + 9.5/1.5).
	idfCorpus := func() []Chunk {
		var cs []Chunk
		for i := range 9 {
			w := float32(1)
			if i == 0 {
				w = 1.5 // more of the common term does not beat one rare term
			}
			kind := KindPassage
			if i < 4 {
				kind = KindQA
			}
			cs = append(cs, testChunk("i"+string(rune('0'+i)), "idf", kind, testTerms(1, w)))
		}
		return append(cs, testChunk("i9", "idf", KindPassage, testTerms(2, 1)))
	}
	idfCommon := math.Log(1 + 1.5/9.5)
	idfRare := math.Log(1 + 9.5/1.5)

	t.Run("SearchIDF", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, idfCorpus()...)
		hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1, 2, 1)})
		want := []string{"i9", "i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8"} // ties by ID
		if got := hitIDs(hits); !reflect.DeepEqual(got, want) {
			t.Fatalf("ranking = %v, want %v", got, want)
		}
		wantScore(t, "i9 (rare term)", hits[0].SparseScore, idfRare)
		wantScore(t, "i0 (common term ×1.5)", hits[1].SparseScore, 1.5*idfCommon)
		for _, h := range hits {
			if h.Score != h.SparseScore {
				t.Errorf("%s: Score %v != SparseScore %v without a dense query", h.Chunk.ID, h.Score, h.SparseScore)
			}
		}
	})

	t.Run("SearchKindFilter", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, idfCorpus()...)
		hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1, 2, 1), Kind: KindQA})
		if got, want := hitIDs(hits), []string{"i0", "i1", "i2", "i3"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("qa hits = %v, want %v", got, want)
		}
		// IDF statistics cover the whole collection, not just the filtered kind.
		wantScore(t, "i0 filtered", hits[0].SparseScore, 1.5*idfCommon)
	})

	t.Run("SearchLimit", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, idfCorpus()...)
		hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1, 2, 1), Limit: 3})
		if got, want := hitIDs(hits), []string{"i9", "i0", "i1"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Limit 3 = %v, want %v", got, want)
		}
	})

	t.Run("SearchEmptyAndNoMatch", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, idfCorpus()...)
		for name, q := range map[string]Query{
			"empty query": {},
			"no match":    {Sparse: testTerms(99, 1)},
			"kind absent": {Sparse: testTerms(2, 1), Kind: KindQA},
		} {
			if hits := mustSearch(t, idx, q); len(hits) != 0 {
				t.Errorf("%s: got %v, want no hits", name, hitIDs(hits))
			}
		}
	})

	// The fusion corpus, queried with term 10 and dense (1,0,0,0) at
	// threshold 0.5. Sparse list: f1, f2. Dense list: f1 (cos 1), f3 (cos
	// 0.99); f2 (cos 0) and f4 (cos −1) fall under the threshold.
	fusionCorpus := []Chunk{
		testWithDense(testChunk("f1", "fus", KindPassage, testTerms(10, 1)), 1, 0, 0, 0),
		testWithDense(testChunk("f2", "fus", KindPassage, testTerms(10, 0.5)), 0, 0, 0, 1),
		testWithDense(testChunk("f3", "fus", KindPassage, testTerms(11, 1)), 0.9, 0.1, 0, 0),
		testWithDense(testChunk("f4", "fus", KindPassage, testTerms(11, 1)), -1, 0, 0, 0),
		testChunk("f5", "fus", KindPassage, testTerms(12, 1)),
	}

	t.Run("SearchFusion", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, fusionCorpus...)
		hits := mustSearch(t, idx, Query{Sparse: testTerms(10, 1), Dense: []float32{1, 0, 0, 0}, DenseThreshold: 0.5})
		// Qdrant's RRF: Σ 1/(2 + rank), ranks from 0. f1 is first on both
		// sides; f2 and f3 are second on one side each and tie, by ID.
		if got, want := hitIDs(hits), []string{"f1", "f2", "f3"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("fused = %v, want %v", got, want)
		}
		for i, want := range []float64{1.0/2 + 1.0/2, 1.0 / 3, 1.0 / 3} {
			wantScore(t, hits[i].Chunk.ID+" fused", hits[i].Score, want)
		}
	})

	t.Run("SearchDenseOnly", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, fusionCorpus...)
		hits := mustSearch(t, idx, Query{Dense: []float32{1, 0, 0, 0}, DenseThreshold: 0.5})
		if got, want := hitIDs(hits), []string{"f1", "f3"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("dense only = %v, want %v", got, want)
		}
		wantScore(t, "f1 fused", hits[0].Score, 1.0/2)
		wantScore(t, "f3 fused", hits[1].Score, 1.0/3)
	})

	t.Run("Rebuild", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, testDocChunks("a", 3)...)
		if err := idx.Rebuild(ctx); err != nil {
			t.Fatalf("Rebuild: %v", err)
		}
		wantCount(t, idx, 0)
		wantRefs(t, idx)
		if hits := mustSearch(t, idx, Query{Sparse: testTerms(1, 1)}); len(hits) != 0 {
			t.Errorf("Search after Rebuild = %v, want none", hitIDs(hits))
		}
		mustUpsert(t, idx, testDocChunks("b", 1)...)
		wantCount(t, idx, 1)
	})

	t.Run("List", func(t *testing.T) {
		idx := open(t)
		mustUpsert(t, idx, idfCorpus()...)
		got, err := idx.List(ctx, KindQA, 0)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if ids, want := chunkIDs(got), []string{"i0", "i1", "i2", "i3"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("List(qa) = %v, want %v", ids, want)
		}
		got, err = idx.List(ctx, "", 2)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if ids, want := chunkIDs(got), []string{"i0", "i1"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("List(all, 2) = %v, want %v", ids, want)
		}
	})
}

// chunk builds a test chunk whose Key sorts like its ID.
func testChunk(id, doc, kind string, sparse SparseVector) Chunk {
	return Chunk{
		ID:     id,
		Key:    "src/" + doc + ".md#" + doc + "#" + id,
		DocID:  doc,
		Kind:   kind,
		Title:  "title of " + doc,
		Source: "src/" + doc + ".md",
		Text:   "text of " + id,
		Sparse: sparse,
	}
}

func testWithDense(c Chunk, v ...float32) Chunk {
	c.Dense = v
	return c
}

// docChunks returns n passages of one document, in Key order, all holding
// term 1.
func testDocChunks(doc string, n int) []Chunk {
	var cs []Chunk
	for i := range n {
		cs = append(cs, testChunk(doc+"-"+string(rune('0'+i)), doc, KindPassage, testTerms(1, 1, float32(100+i), 0.5)))
	}
	return cs
}

// terms builds a sparse vector from index, value pairs.
func testTerms(pairs ...float32) SparseVector {
	var v SparseVector
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Indices = append(v.Indices, uint32(pairs[i]))
		v.Values = append(v.Values, pairs[i+1])
	}
	return v
}

// chunkFields drops what backends may legitimately return differently: the
// vectors (Qdrant does not return them; the embedded index normalises dense
// ones) and nil-versus-empty lists.
func chunkFields(c Chunk) Chunk {
	c.Sparse, c.Dense = SparseVector{}, nil
	if len(c.Path) == 0 {
		c.Path = nil
	}
	if len(c.Refs) == 0 {
		c.Refs = nil
	}
	return c
}

func mustUpsert(t *testing.T, idx index, chunks ...Chunk) {
	t.Helper()
	if err := idx.Upsert(context.Background(), chunks); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
}

func mustSearch(t *testing.T, idx index, q Query) []Hit {
	t.Helper()
	hits, err := idx.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return hits
}

func wantCount(t *testing.T, idx index, want int) {
	t.Helper()
	n, err := idx.Count(context.Background())
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	if n != want {
		t.Errorf("Count = %d, want %d", n, want)
	}
}

func wantRefs(t *testing.T, idx index, chunks ...Chunk) {
	t.Helper()
	got, err := idx.Refs(context.Background())
	if err != nil {
		t.Fatalf("Refs: %v", err)
	}
	want := []ChunkRef{}
	for _, c := range chunks {
		want = append(want, ChunkRef{ID: c.ID, Key: c.Key, Source: c.Source, Version: c.Version})
	}
	got = append([]ChunkRef{}, got...)
	for _, refs := range [][]ChunkRef{got, want} {
		sort.Slice(refs, func(i, j int) bool { return refs[i].ID < refs[j].ID })
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Refs = %v, want %v", got, want)
	}
}

// wantScore allows for float32 arithmetic in the backend.
func wantScore(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
		t.Errorf("%s score = %.7f, want %.7f", what, got, want)
	}
}

func hitIDs(hits []Hit) []string {
	ids := []string{}
	for _, h := range hits {
		ids = append(ids, h.Chunk.ID)
	}
	return ids
}

func chunkIDs(cs []Chunk) []string {
	ids := []string{}
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

func hasChunk(hits []Hit, id string) bool {
	for _, h := range hits {
		if h.Chunk.ID == id {
			return true
		}
	}
	return false
}
