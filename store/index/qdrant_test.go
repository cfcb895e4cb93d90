package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kbbot/store/index/qdranttest"
)

const standInCollection = "kbbot_test"

// openStandInQdrant opens a Qdrant index on a fresh in-process stand-in.
func openStandInQdrant(t *testing.T, denseDim int, opts ...grpc.DialOption) (*Qdrant, *qdranttest.Server) {
	t.Helper()
	srv := qdranttest.Start(t)
	q, err := NewQdrant(context.Background(), standInConfig(srv, denseDim, opts...))
	if err != nil {
		t.Fatalf("NewQdrant: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q, srv
}

func standInConfig(srv *qdranttest.Server, denseDim int, opts ...grpc.DialOption) QdrantConfig {
	return QdrantConfig{
		URL:                    srv.URL(),
		Collection:             standInCollection,
		DenseDim:               denseDim,
		Timeout:                5 * time.Second,
		SkipCompatibilityCheck: true,
		GRPCOptions:            opts,
	}
}

// requireRealQdrant skips unless QDRANT_URL names a server. CI sets
// KBBOT_TEST_QDRANT=1 to turn a missing server into a failure.
func requireRealQdrant(t *testing.T) string {
	t.Helper()
	url := os.Getenv("QDRANT_URL")
	if url == "" {
		if os.Getenv("KBBOT_TEST_QDRANT") != "" {
			t.Fatal("KBBOT_TEST_QDRANT is set but QDRANT_URL is empty")
		}
		t.Skip("QDRANT_URL is not set; the real-Qdrant tests need a server")
	}
	return url
}

// openRealQdrant opens a Qdrant index on a uniquely named collection of the
// server at QDRANT_URL and deletes the collection when the test ends.
func openRealQdrant(t *testing.T, denseDim int) *Qdrant {
	t.Helper()
	url := requireRealQdrant(t)
	name := fmt.Sprintf("kbbot_test_%d_%08x", time.Now().UnixNano(), rand.Uint32())
	q, err := NewQdrant(context.Background(), QdrantConfig{
		URL:                    url,
		APIKey:                 os.Getenv("QDRANT_API_KEY"),
		Collection:             name,
		DenseDim:               denseDim,
		SkipCompatibilityCheck: true, // a test binary's client version is "Unknown"
	})
	if err != nil {
		t.Fatalf("NewQdrant(%s): %v", url, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := q.drop(ctx); err != nil {
			t.Errorf("deleting test collection %s: %v", name, err)
		}
		q.Close()
	})
	return q
}

func TestParseQdrantURL(t *testing.T) {
	tests := []struct {
		in      string
		host    string
		port    int
		tls     bool
		wantErr bool
	}{
		{in: "http://qdrant:6334", host: "qdrant", port: 6334},
		{in: "https://xyz.cloud.qdrant.io:6334", host: "xyz.cloud.qdrant.io", port: 6334, tls: true},
		{in: "https://xyz.cloud.qdrant.io", host: "xyz.cloud.qdrant.io", port: 6334, tls: true},
		{in: "qdrant:7000", host: "qdrant", port: 7000},
		{in: "qdrant", host: "qdrant", port: 6334},
		{in: " http://127.0.0.1:6334/ ", host: "127.0.0.1", port: 6334},
		{in: "http://[::1]:6334", host: "[::1]", port: 6334},
		{in: "[::1]", host: "[::1]", port: 6334},
		{in: "", wantErr: true},
		{in: "grpc://qdrant:6334", wantErr: true},
		{in: "http://qdrant:6334/collections", wantErr: true},
		{in: "qdrant:http", wantErr: true},
		{in: "qdrant:70000", wantErr: true},
		{in: "http://:6334", wantErr: true},
	}
	for _, tt := range tests {
		host, port, tls, err := parseQdrantURL(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseQdrantURL(%q) = %s %d %v, want an error", tt.in, host, port, tls)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port || tls != tt.tls {
			t.Errorf("parseQdrantURL(%q) = %q %d %v %v, want %q %d %v", tt.in, host, port, tls, err, tt.host, tt.port, tt.tls)
		}
	}
}

func TestQdrantCreatesCollection(t *testing.T) {
	for _, dim := range []int{0, 8} {
		t.Run(fmt.Sprintf("dense%d", dim), func(t *testing.T) {
			_, srv := openStandInQdrant(t, dim)
			cfg, ok := srv.CollectionConfig(standInCollection)
			if !ok {
				t.Fatalf("collection %s not created; have %v", standInCollection, srv.Collections())
			}
			sparse := cfg.GetSparseVectorsConfig().GetMap()["bm25"]
			if sparse == nil || sparse.GetModifier() != qdrant.Modifier_Idf {
				t.Errorf("sparse vector bm25 = %v, want one with the IDF modifier", sparse)
			}
			dense := cfg.GetVectorsConfig().GetParamsMap().GetMap()["dense"]
			switch {
			case dim == 0 && cfg.GetVectorsConfig() != nil:
				t.Errorf("vectors config = %v, want none without a dense dimension", cfg.GetVectorsConfig())
			case dim > 0 && (dense.GetSize() != uint64(dim) || dense.GetDistance() != qdrant.Distance_Cosine):
				t.Errorf("dense vector = %v, want size %d, cosine", dense, dim)
			}
			indexes := srv.PayloadIndexes(standInCollection)
			for _, field := range []string{"kind", "doc_id", "source"} {
				if ft, ok := indexes[field]; !ok || ft != qdrant.FieldType_FieldTypeKeyword {
					t.Errorf("payload index %q = %v (present %v), want keyword", field, ft, ok)
				}
			}

			// Reopening a matching collection changes nothing.
			before := srv.CallCounts()
			q, err := NewQdrant(context.Background(), standInConfig(srv, dim))
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			q.Close()
			after := srv.CallCounts()
			for _, m := range []string{"Collections/Create", "Collections/Delete", "Points/CreateFieldIndex"} {
				if after[m] != before[m] {
					t.Errorf("reopen called %s %d times", m, after[m]-before[m])
				}
			}
		})
	}
}

func TestQdrantMismatch(t *testing.T) {
	const fix = "run `kbbot ingest --rebuild` to recreate the collection"
	// rawCreate makes a collection the way someone else might have.
	rawCreate := func(req *qdrant.CreateCollection) func(*testing.T, *qdranttest.Server) {
		return func(t *testing.T, srv *qdranttest.Server) {
			host, port, _, err := parseQdrantURL(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			c, err := qdrant.NewClient(&qdrant.Config{Host: host, Port: port, SkipCompatibilityCheck: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req.CollectionName = standInCollection
			if err := c.CreateCollection(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
	}
	openWith := func(dim int) func(*testing.T, *qdranttest.Server) {
		return func(t *testing.T, srv *qdranttest.Server) {
			q, err := NewQdrant(context.Background(), standInConfig(srv, dim))
			if err != nil {
				t.Fatal(err)
			}
			q.Close()
		}
	}
	idf := qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{"bm25": {Modifier: qdrant.Modifier_Idf.Enum()}})
	tests := []struct {
		name  string
		setup func(*testing.T, *qdranttest.Server)
		dim   int
		want  []string
	}{
		{name: "dense size changed", setup: openWith(8), dim: 16, want: []string{"size 8", "16 is configured"}},
		{name: "dense added", setup: openWith(0), dim: 8, want: []string{"no dense vector", "dimension 8"}},
		{name: "dense removed", setup: openWith(8), dim: 0, want: []string{"size 8", "no dense vector is configured"}},
		{name: "sparse without IDF", dim: 0, want: []string{`"bm25" has no IDF modifier`},
			setup: rawCreate(&qdrant.CreateCollection{SparseVectorsConfig: qdrant.NewSparseVectorsConfig(
				map[string]*qdrant.SparseVectorParams{"bm25": {}})})},
		{name: "sparse missing", dim: 4, want: []string{`no sparse vector "bm25"`},
			setup: rawCreate(&qdrant.CreateCollection{VectorsConfig: qdrant.NewVectorsConfigMap(
				map[string]*qdrant.VectorParams{"dense": {Size: 4, Distance: qdrant.Distance_Cosine}})})},
		{name: "unnamed dense vector", dim: 4, want: []string{"unnamed dense vector of size 4", "no dense vector"},
			setup: rawCreate(&qdrant.CreateCollection{
				VectorsConfig:       qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 4, Distance: qdrant.Distance_Cosine}),
				SparseVectorsConfig: idf})},
		{name: "dot distance", dim: 4, want: []string{"Dot distance"},
			setup: rawCreate(&qdrant.CreateCollection{
				VectorsConfig: qdrant.NewVectorsConfigMap(
					map[string]*qdrant.VectorParams{"dense": {Size: 4, Distance: qdrant.Distance_Dot}}),
				SparseVectorsConfig: idf})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := qdranttest.Start(t)
			tt.setup(t, srv)

			_, err := NewQdrant(context.Background(), standInConfig(srv, tt.dim))
			var mismatch *MismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("NewQdrant error = %v, want a *MismatchError", err)
			}
			msg := err.Error()
			if !strings.HasSuffix(msg, fix) {
				t.Errorf("error %q does not end with %q", msg, fix)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}

			// What `kbbot ingest --rebuild` does: drop, then open afresh ...
			if err := DropQdrantCollection(context.Background(), standInConfig(srv, 0)); err != nil {
				t.Fatalf("DropQdrantCollection: %v", err)
			}
			if got := srv.Collections(); len(got) != 0 {
				t.Fatalf("collections after drop = %v", got)
			}
			if err := DropQdrantCollection(context.Background(), standInConfig(srv, 0)); err != nil {
				t.Errorf("DropQdrantCollection of a missing collection: %v", err)
			}
			tt.setup(t, srv)
			// ... or recreate on open; either way it matches afterwards.
			cfg := standInConfig(srv, tt.dim)
			cfg.Recreate = true
			q, err := NewQdrant(context.Background(), cfg)
			if err != nil {
				t.Fatalf("NewQdrant with Recreate: %v", err)
			}
			defer q.Close()
			if _, err := NewQdrant(context.Background(), standInConfig(srv, tt.dim)); err != nil {
				t.Errorf("reopen after Recreate: %v", err)
			}
		})
	}
}

func TestQdrantRetry(t *testing.T) {
	tests := []struct {
		code      codes.Code
		failures  int
		wantErr   bool
		wantCalls int
	}{
		{codes.Unavailable, 2, false, 3},
		{codes.Unavailable, 3, true, 3},
		{codes.DeadlineExceeded, 1, false, 2},
		{codes.ResourceExhausted, 1, false, 2},
		{codes.Aborted, 1, false, 2},
		{codes.InvalidArgument, 1, true, 1},
		{codes.NotFound, 1, true, 1},
		{codes.PermissionDenied, 1, true, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s×%d", tt.code, tt.failures), func(t *testing.T) {
			q, srv := openStandInQdrant(t, 0)
			q.retryBase = time.Millisecond
			srv.FailNext("Points/Count", tt.code, tt.failures)
			before := srv.Calls("Points/Count")
			_, err := q.Count(context.Background())
			if calls := srv.Calls("Points/Count") - before; calls != tt.wantCalls {
				t.Errorf("Count made %d calls, want %d", calls, tt.wantCalls)
			}
			switch {
			case tt.wantErr && err == nil:
				t.Errorf("Count succeeded, want a %s error", tt.code)
			case tt.wantErr && (status.Code(err) != tt.code || !strings.HasPrefix(err.Error(), "qdrant count: ")):
				t.Errorf("Count error = %v (code %s), want %q wrapping %s", err, status.Code(err), "qdrant count: ", tt.code)
			case !tt.wantErr && err != nil:
				t.Errorf("Count error = %v, want success after retries", err)
			}
		})
	}
}

// TestQdrantPerCallTimeout stalls the first Count until its deadline: the
// timeout applies per attempt and the retry gets a fresh one.
func TestQdrantPerCallTimeout(t *testing.T) {
	var mu sync.Mutex
	stalled := 0
	stall := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		first := strings.HasSuffix(method, "/Count") && stalled == 0
		if first {
			stalled++
		}
		mu.Unlock()
		if first {
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	})
	srv := qdranttest.Start(t)
	cfg := standInConfig(srv, 0, stall)
	cfg.Timeout = 100 * time.Millisecond
	q, err := NewQdrant(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.retryBase = time.Millisecond
	start := time.Now()
	if _, err := q.Count(context.Background()); err != nil {
		t.Fatalf("Count: %v", err)
	}
	if stalled != 1 || srv.Calls("Points/Count") != 1 {
		t.Errorf("stalled %d, server saw %d counts; want 1 and 1", stalled, srv.Calls("Points/Count"))
	}
	if d := time.Since(start); d < cfg.Timeout || d > 3*time.Second {
		t.Errorf("Count took %v, want a little over the %v timeout", d, cfg.Timeout)
	}
}

func TestQdrantUpsertBatchesAndPayload(t *testing.T) {
	q, srv := openStandInQdrant(t, 0)
	var chunks []Chunk
	for i := range 300 {
		c := testChunk(fmt.Sprintf("c%03d", i), "big", KindPassage, testTerms(1, 1))
		c.Path = []string{"a", "b"}
		chunks = append(chunks, c)
	}
	chunks[7].Sparse = SparseVector{} // no terms: stored without a sparse vector
	before := srv.Calls("Points/Upsert")
	mustUpsert(t, q, chunks...)
	if n := srv.Calls("Points/Upsert") - before; n != 3 {
		t.Errorf("300 chunks took %d upserts, want 3 batches of ≤128", n)
	}
	wantCount(t, q, 300)

	ns := uuid.MustParse(qdrantPointNamespace)
	byID := map[string]qdranttest.Point{}
	for _, p := range srv.Points(standInCollection) {
		byID[p.ID] = p
	}
	p, ok := byID[uuid.NewSHA1(ns, []byte("c007")).String()]
	if !ok {
		t.Fatal("no point with the deterministic id of c007")
	}
	if got := p.Payload["chunk_id"].GetStringValue(); got != "c007" {
		t.Errorf("payload chunk_id = %q", got)
	}
	if got := p.Payload["path"].GetListValue().GetValues(); len(got) != 2 || got[1].GetStringValue() != "b" {
		t.Errorf("payload path = %v, want a list [a b]", got)
	}
	for _, field := range []string{"key", "doc_id", "kind", "title", "url", "date", "source", "text", "answer", "refs"} {
		if _, ok := p.Payload[field]; !ok {
			t.Errorf("payload lacks %q", field)
		}
	}
	if _, ok := p.Sparse["bm25"]; ok {
		t.Errorf("chunk without terms got a sparse vector")
	}
	if _, ok := byID[uuid.NewSHA1(ns, []byte("c008")).String()].Sparse["bm25"]; !ok {
		t.Errorf("chunk c008 has no sparse vector")
	}
}

// TestQdrantSearchRequests checks the shape of the Query requests, which
// the stand-in cannot vouch for on ranking alone.
func TestQdrantSearchRequests(t *testing.T) {
	var mu sync.Mutex
	var last *qdrant.QueryPoints
	capture := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if qp, ok := req.(*qdrant.QueryPoints); ok {
			mu.Lock()
			last = qp
			mu.Unlock()
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	})
	q, _ := openStandInQdrant(t, conformanceDenseDim, capture)
	ctx := context.Background()

	if _, err := q.Search(ctx, Query{Sparse: testTerms(1, 1), Kind: KindQA, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	if len(last.GetPrefetch()) != 0 || last.GetUsing() != "bm25" || last.GetQuery().GetNearest().GetSparse() == nil {
		t.Errorf("sparse-only request = %v, want a nearest sparse query using bm25 without prefetch", last)
	}
	if kw := last.GetFilter().GetMust()[0].GetField(); kw.GetKey() != "kind" || kw.GetMatch().GetKeyword() != KindQA {
		t.Errorf("filter = %v, want kind = qa", last.GetFilter())
	}

	if _, err := q.Search(ctx, Query{Sparse: testTerms(1, 1), Dense: []float32{1, 0, 0, 0}, DenseThreshold: 0.4, Limit: 20}); err != nil {
		t.Fatal(err)
	}
	if last.GetQuery().GetFusion() != qdrant.Fusion_RRF || len(last.GetPrefetch()) != 2 {
		t.Fatalf("hybrid request = %v, want RRF over two prefetches", last)
	}
	sparse, dense := last.GetPrefetch()[0], last.GetPrefetch()[1]
	if sparse.GetUsing() != "bm25" || sparse.ScoreThreshold != nil {
		t.Errorf("sparse prefetch = %v, want bm25 without threshold", sparse)
	}
	if dense.GetUsing() != "dense" || dense.ScoreThreshold == nil || dense.GetScoreThreshold() != 0.4 {
		t.Errorf("dense prefetch = %v, want dense with threshold 0.4", dense)
	}
	for _, p := range last.GetPrefetch() {
		if p.GetLimit() != 80 || p.GetLimit() < last.GetLimit() {
			t.Errorf("prefetch limit %d, want max(4×20, 40) = 80 and ≥ main limit %d", p.GetLimit(), last.GetLimit())
		}
	}
	if last.ScoreThreshold != nil {
		t.Errorf("top-level score threshold set; it would cut on the RRF score")
	}
}

// TestQdrantSearchSettlesTies: Qdrant cuts tied scores arbitrarily (the
// stand-in by point id), so the adapter must fetch the whole tie group to
// return the lowest chunk IDs, as the embedded index does.
func TestQdrantSearchSettlesTies(t *testing.T) {
	q, srv := openStandInQdrant(t, 0)
	var chunks []Chunk
	for i := range 30 {
		chunks = append(chunks, testChunk(fmt.Sprintf("t%02d", i), "ties", KindPassage, testTerms(5, 1)))
	}
	mustUpsert(t, q, chunks...)
	before := srv.Calls("Points/Query")
	hits := mustSearch(t, q, Query{Sparse: testTerms(5, 1), Limit: 3})
	if got, want := hitIDs(hits), []string{"t00", "t01", "t02"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tied hits = %v, want %v", got, want)
	}
	// 6 come back all tied, then 24 all tied, then all 30.
	if n := srv.Calls("Points/Query") - before; n != 3 {
		t.Errorf("search made %d queries, want 3", n)
	}
	// Three clear winners: no tie at the cut, one query.
	for _, id := range []string{"u0", "u1", "u2"} {
		mustUpsert(t, q, testChunk(id, "ties", KindPassage, testTerms(5, 1, 6, 1)))
	}
	before = srv.Calls("Points/Query")
	hits = mustSearch(t, q, Query{Sparse: testTerms(5, 1, 6, 1), Limit: 3})
	if got, want := hitIDs(hits), []string{"u0", "u1", "u2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("hits = %v, want %v", got, want)
	}
	if n := srv.Calls("Points/Query") - before; n != 1 {
		t.Errorf("search without boundary ties made %d queries, want 1", n)
	}
}

func TestQdrantRejectsBadVectors(t *testing.T) {
	q, srv := openStandInQdrant(t, conformanceDenseDim)
	ctx := context.Background()
	before := srv.Calls("Points/Upsert") + srv.Calls("Points/Query")
	tests := []struct {
		name string
		run  func() error
	}{
		{"dense size", func() error {
			return q.Upsert(ctx, []Chunk{testWithDense(testChunk("x", "d", KindPassage, testTerms(1, 1)), 1, 2)})
		}},
		{"sparse lengths", func() error {
			return q.Upsert(ctx, []Chunk{testChunk("x", "d", KindPassage, SparseVector{Indices: []uint32{1, 2}, Values: []float32{1}})})
		}},
		{"sparse duplicate", func() error {
			return q.Upsert(ctx, []Chunk{testChunk("x", "d", KindPassage, testTerms(1, 1, 1, 2))})
		}},
		{"no id", func() error { return q.Upsert(ctx, []Chunk{{Key: "k"}}) }},
		{"query dense size", func() error {
			_, err := q.Search(ctx, Query{Dense: []float32{1}})
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.run(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	if n := srv.Calls("Points/Upsert") + srv.Calls("Points/Query") - before; n != 0 {
		t.Errorf("bad input reached the server %d times", n)
	}
}

// TestQdrantRankingMatchesEmbedded proves, against a real Qdrant, that both
// backends rank a seeded corpus the same. Where two scores differ by float
// rounding only (Qdrant computes in float32), their order may differ.
func TestQdrantRankingMatchesEmbedded(t *testing.T) {
	requireRealQdrant(t)
	const dim = 8
	ctx := context.Background()
	q := openRealQdrant(t, dim)
	e, err := OpenEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	rng := rand.New(rand.NewPCG(20261128, 1))
	term := func() float32 { return float32(1 + int(math.Pow(rng.Float64(), 2.5)*300)) } // skewed: low ids are common
	var corpus []Chunk
	for i := range 400 {
		var pairs []float32
		seen := map[float32]bool{}
		for range 4 + rng.IntN(20) {
			if tm := term(); !seen[tm] {
				seen[tm] = true
				pairs = append(pairs, tm, 0.3+1.7*rng.Float32())
			}
		}
		kind := KindPassage
		if i%4 == 0 {
			kind = KindQA
		}
		c := testChunk(fmt.Sprintf("r%03d", i), fmt.Sprintf("doc%02d", i/10), kind, testTerms(pairs...))
		if i%5 != 0 { // some chunks have no embedding
			c.Dense = make([]float32, dim)
			for j := range c.Dense {
				c.Dense[j] = float32(rng.NormFloat64())
			}
		}
		corpus = append(corpus, c)
	}
	mustUpsert(t, q, corpus...)
	mustUpsert(t, e, corpus...)

	for i := range 40 {
		var pairs []float32
		for range 1 + rng.IntN(4) {
			pairs = append(pairs, term(), 1)
		}
		qry := Query{Sparse: testTerms(pairs...), Limit: 10}
		qry.Sparse = dedupeTerms(qry.Sparse)
		if i%2 == 1 {
			qry.Dense = make([]float32, dim)
			for j := range qry.Dense {
				qry.Dense[j] = float32(rng.NormFloat64())
			}
			qry.DenseThreshold = 0.2
		}
		if i%3 == 2 {
			qry.Kind = KindQA
		}
		want, err := e.Search(ctx, qry)
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.Search(ctx, qry)
		if err != nil {
			t.Fatal(err)
		}
		compareRankings(t, fmt.Sprintf("query %d %+v", i, qry.Sparse), want, got)
	}
}

func dedupeTerms(v SparseVector) SparseVector {
	var out SparseVector
	seen := map[uint32]bool{}
	for i, idx := range v.Indices {
		if !seen[idx] {
			seen[idx] = true
			out.Indices = append(out.Indices, idx)
			out.Values = append(out.Values, v.Values[i])
		}
	}
	return out
}

// compareRankings requires the same scores rank by rank and the same chunk
// at each rank, unless its score is within rounding of a neighbour's.
func compareRankings(t *testing.T, what string, want, got []Hit) {
	t.Helper()
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-5*math.Max(1e-3, math.Abs(a)) }
	if len(want) != len(got) {
		t.Errorf("%s: embedded %v, qdrant %v", what, hitIDs(want), hitIDs(got))
		return
	}
	for i := range want {
		if !near(want[i].Score, got[i].Score) {
			t.Errorf("%s: rank %d score %.7f (embedded %s) vs %.7f (qdrant %s)\nembedded %v\nqdrant   %v",
				what, i, want[i].Score, want[i].Chunk.ID, got[i].Score, got[i].Chunk.ID, hitIDs(want), hitIDs(got))
			return
		}
		tied := (i > 0 && near(want[i].Score, want[i-1].Score)) || (i+1 < len(want) && near(want[i].Score, want[i+1].Score))
		if want[i].Chunk.ID != got[i].Chunk.ID && !tied {
			t.Errorf("%s: rank %d is %s in embedded, %s in qdrant\nembedded %v\nqdrant   %v",
				what, i, want[i].Chunk.ID, got[i].Chunk.ID, hitIDs(want), hitIDs(got))
			return
		}
	}
}
