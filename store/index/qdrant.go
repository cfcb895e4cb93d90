package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"kbbot/store/retry"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	qdrantSparseVector = "bm25"
	qdrantDenseVector  = "dense"

	qdrantDefaultPort    = 6334
	qdrantRESTPort       = 6333
	qdrantDefaultTimeout = 10 * time.Second
	qdrantUpsertBatch    = 128
	qdrantDeleteBatch    = 512
	qdrantScrollPage     = 256
	qdrantAttempts       = 3
	qdrantRetryBase      = 200 * time.Millisecond

	// qdrantPointNamespace turns chunk ids into point ids. It must never
	// change: a new namespace would orphan every point already stored.
	qdrantPointNamespace = "6f1d3a52-6c0b-4f7e-8d2a-2f4b9b1c7e10"
)

// QdrantConfig configures the Qdrant knowledge index.
type QdrantConfig struct {
	// URL is Qdrant's gRPC address: http://host:6334, https://host:6334
	// (TLS) or host:6334; the port defaults to 6334.
	URL        string
	APIKey     string
	Collection string
	// DenseDim is the embedding size; 0 means the collection has no dense
	// vector and only BM25 is used.
	DenseDim int
	// Timeout bounds each attempt of each call; 0 means 10s.
	Timeout time.Duration
	// Recreate drops and recreates the collection when opening it, for
	// `kbbot ingest --rebuild`: a collection whose vectors no longer match
	// the configuration makes NewQdrant fail before Rebuild could be called.
	// (DropQdrantCollection then NewQdrant does the same in two steps.)
	Recreate bool
	// SkipCompatibilityCheck skips the client's server-version probe; tests
	// need it because a test binary reports its client version as "Unknown".
	SkipCompatibilityCheck bool
	// GRPCOptions are extra dial options, for tests.
	GRPCOptions []grpc.DialOption
	Logger      *slog.Logger
}

// MismatchError reports that an existing collection was created with other
// vectors than the configuration asks for; searching it would fail or rank
// wrongly, and only recreating it (and re-ingesting) fixes that.
type MismatchError struct {
	Collection string
	Diffs      []string // one sentence per difference
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("qdrant collection %q does not match the configuration: %s; run `kbbot ingest --rebuild` to recreate the collection",
		e.Collection, strings.Join(e.Diffs, "; "))
}

// Qdrant is the knowledge index kept in a Qdrant collection: one point per
// chunk, with the BM25 sparse vector "bm25" (IDF applied by Qdrant), the
// optional dense vector "dense", and every other chunk field in the payload.
// It is safe for concurrent use.
type Qdrant struct {
	client     *qdrant.Client
	collection string
	denseDim   int
	timeout    time.Duration
	retryBase  time.Duration
	log        *slog.Logger
}

// NewQdrant connects to Qdrant and makes sure the collection exists with the
// configured vectors, creating it when missing. An existing collection with
// other vectors yields a *MismatchError (unless cfg.Recreate is set).
func NewQdrant(ctx context.Context, cfg QdrantConfig) (*Qdrant, error) {
	q, err := dialQdrant(cfg)
	if err != nil {
		return nil, err
	}
	if err := q.open(ctx, cfg.Recreate); err != nil {
		q.client.Close()
		return nil, err
	}
	return q, nil
}

// DropQdrantCollection deletes the configured collection if it exists. It
// is for `kbbot ingest --rebuild` when NewQdrant refused a mismatched
// collection; DenseDim is not needed.
func DropQdrantCollection(ctx context.Context, cfg QdrantConfig) error {
	q, err := dialQdrant(cfg)
	if err != nil {
		return err
	}
	defer q.client.Close()
	exists, err := q.exists(ctx)
	if err != nil || !exists {
		return err
	}
	return q.drop(ctx)
}

// dialQdrant validates the configuration and sets up the client; gRPC
// connects lazily, on the first call.
func dialQdrant(cfg QdrantConfig) (*Qdrant, error) {
	if cfg.Collection == "" {
		return nil, errors.New("qdrant: no collection name configured")
	}
	if cfg.DenseDim < 0 {
		return nil, fmt.Errorf("qdrant: dense dimension %d is negative", cfg.DenseDim)
	}
	host, port, useTLS, err := parseQdrantURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	q := &Qdrant{
		collection: cfg.Collection,
		denseDim:   cfg.DenseDim,
		timeout:    cfg.Timeout,
		retryBase:  qdrantRetryBase,
		log:        cfg.Logger,
	}
	if q.timeout <= 0 {
		q.timeout = qdrantDefaultTimeout
	}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	if port == qdrantRESTPort {
		q.log.Warn("QDRANT_URL uses port 6333, Qdrant's REST port; kbbot speaks gRPC, usually on 6334", "url", cfg.URL)
	}
	q.client, err = qdrant.NewClient(&qdrant.Config{
		Host:                   host,
		Port:                   port,
		APIKey:                 cfg.APIKey,
		UseTLS:                 useTLS,
		GrpcOptions:            cfg.GRPCOptions,
		SkipCompatibilityCheck: cfg.SkipCompatibilityCheck,
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant connect %s: %w", cfg.URL, err)
	}
	return q, nil
}

// parseQdrantURL accepts http://host[:port], https://host[:port] and
// host[:port]. A path makes no sense for gRPC, so it is refused rather than
// silently dropped.
func parseQdrantURL(raw string) (host string, port int, useTLS bool, err error) {
	s := strings.TrimSpace(raw)
	switch {
	case strings.HasPrefix(s, "https://"):
		s, useTLS = strings.TrimPrefix(s, "https://"), true
	case strings.HasPrefix(s, "http://"):
		s = strings.TrimPrefix(s, "http://")
	case strings.Contains(s, "://"):
		return "", 0, false, fmt.Errorf("qdrant URL %q: scheme must be http or https", raw)
	}
	s = strings.TrimSuffix(s, "/")
	if strings.ContainsAny(s, "/?#@") {
		return "", 0, false, fmt.Errorf("qdrant URL %q: want host[:port], optionally after http:// or https://", raw)
	}
	host, port = s, qdrantDefaultPort
	if h, p, splitErr := net.SplitHostPort(s); splitErr == nil {
		host = h
		if p != "" {
			port, err = strconv.Atoi(p)
			if err != nil || port < 1 || port > 65535 {
				return "", 0, false, fmt.Errorf("qdrant URL %q: bad port %q", raw, p)
			}
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return "", 0, false, fmt.Errorf("qdrant URL %q: no host", raw)
	}
	// The client joins host and port with a colon, so an IPv6 literal needs
	// its brackets back.
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host, port, useTLS, nil
}

// call runs one Qdrant request with a per-attempt timeout, retrying the
// failures that are worth retrying: the server was unreachable, slow, busy or
// aborted the operation. Every write kbbot makes is idempotent (deterministic
// point ids), so a retry after a lost answer does no harm. A rate limit's
// Retry-After is honoured up to the per-call timeout.
func (q *Qdrant) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	p := retry.Policy{Attempts: qdrantAttempts, Base: q.retryBase, Max: q.timeout,
		OnRetry: func(attempt int, wait time.Duration, err error) {
			q.log.WarnContext(ctx, "qdrant call failed, retrying", "op", op, "attempt", attempt, "wait", wait, slog.Any("error", err))
		}}
	err := p.Do(ctx, func(ctx context.Context, _ int) error {
		actx, cancel := context.WithTimeout(ctx, q.timeout)
		defer cancel()
		err := fn(actx)
		switch {
		case err == nil:
			return nil
		case !qdrantTransient(err):
			return retry.Permanent(err)
		}
		if busy, ok := errors.AsType[*qdrant.QdrantResourceExhaustedError](err); ok {
			return retry.WithWait(err, time.Duration(busy.RetryAfterS)*time.Second)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("qdrant %s: %w", op, err)
	}
	return nil
}

func qdrantTransient(err error) bool {
	var busy *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &busy) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

func (q *Qdrant) open(ctx context.Context, recreate bool) error {
	exists, err := q.exists(ctx)
	if err != nil {
		return err
	}
	if exists && recreate {
		if err := q.drop(ctx); err != nil {
			return err
		}
		exists = false
	}
	if !exists {
		if err := q.create(ctx); err != nil {
			// Another kbbot may have created it first; then verify theirs.
			if again, e := q.exists(ctx); e != nil || !again {
				return err
			}
		}
	}
	// Verify even a collection we just created: a server older than 1.10
	// would have dropped the IDF modifier without complaint.
	var info *qdrant.CollectionInfo
	err = q.call(ctx, "get collection", func(ctx context.Context) error {
		var err error
		info, err = q.client.GetCollectionInfo(ctx, q.collection)
		return err
	})
	if err != nil {
		return err
	}
	if diffs := qdrantSchemaDiffs(info, q.denseDim); len(diffs) > 0 {
		return &MismatchError{Collection: q.collection, Diffs: diffs}
	}
	return q.ensureIndexes(ctx, info.GetPayloadSchema())
}

func (q *Qdrant) exists(ctx context.Context) (bool, error) {
	var ok bool
	err := q.call(ctx, "collection exists", func(ctx context.Context) error {
		var err error
		ok, err = q.client.CollectionExists(ctx, q.collection)
		return err
	})
	return ok, err
}

func (q *Qdrant) create(ctx context.Context) error {
	req := &qdrant.CreateCollection{
		CollectionName: q.collection,
		SparseVectorsConfig: qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{
			qdrantSparseVector: {Modifier: qdrant.Modifier_Idf.Enum()},
		}),
	}
	if q.denseDim > 0 {
		req.VectorsConfig = qdrant.NewVectorsConfigMap(map[string]*qdrant.VectorParams{
			qdrantDenseVector: {Size: uint64(q.denseDim), Distance: qdrant.Distance_Cosine},
		})
	}
	return q.call(ctx, "create collection", func(ctx context.Context) error {
		return q.client.CreateCollection(ctx, req)
	})
}

func (q *Qdrant) drop(ctx context.Context) error {
	return q.call(ctx, "delete collection", func(ctx context.Context) error {
		return q.client.DeleteCollection(ctx, q.collection)
	})
}

// qdrantPayloadIndexes are the payload fields kbbot filters on.
func qdrantPayloadIndexes() []string { return []string{"kind", "doc_id", "source", "space_id"} }

// ensureIndexes adds missing payload indexes, so that a collection created by
// an older kbbot gains them without a rebuild.
func (q *Qdrant) ensureIndexes(ctx context.Context, schema map[string]*qdrant.PayloadSchemaInfo) error {
	for _, field := range qdrantPayloadIndexes() {
		if _, ok := schema[field]; ok {
			continue
		}
		err := q.call(ctx, "create payload index "+field, func(ctx context.Context) error {
			_, err := q.client.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{
				CollectionName: q.collection,
				FieldName:      field,
				FieldType:      qdrant.FieldType_FieldTypeKeyword.Enum(),
				Wait:           qdrant.PtrOf(true),
			})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// qdrantSchemaDiffs lists how a collection differs from what kbbot needs.
func qdrantSchemaDiffs(info *qdrant.CollectionInfo, denseDim int) []string {
	params := info.GetConfig().GetParams()
	var diffs []string
	vectors := params.GetVectorsConfig()
	if p := vectors.GetParams(); p != nil {
		diffs = append(diffs, fmt.Sprintf("the collection has an unnamed dense vector of size %d, kbbot expects one named %q", p.GetSize(), qdrantDenseVector))
	}
	dense, hasDense := vectors.GetParamsMap().GetMap()[qdrantDenseVector]
	switch {
	case hasDense && denseDim == 0:
		diffs = append(diffs, fmt.Sprintf("the collection has a dense vector %q of size %d but no dense vector is configured (dimension 0)", qdrantDenseVector, dense.GetSize()))
	case !hasDense && denseDim > 0:
		diffs = append(diffs, fmt.Sprintf("the collection has no dense vector %q but dimension %d is configured", qdrantDenseVector, denseDim))
	case hasDense && dense.GetSize() != uint64(denseDim):
		diffs = append(diffs, fmt.Sprintf("dense vector %q has size %d in the collection but %d is configured", qdrantDenseVector, dense.GetSize(), denseDim))
	}
	if hasDense && dense.GetDistance() != qdrant.Distance_Cosine {
		diffs = append(diffs, fmt.Sprintf("dense vector %q uses %s distance, kbbot needs Cosine", qdrantDenseVector, dense.GetDistance()))
	}
	sparse, hasSparse := params.GetSparseVectorsConfig().GetMap()[qdrantSparseVector]
	switch {
	case !hasSparse:
		diffs = append(diffs, fmt.Sprintf("the collection has no sparse vector %q", qdrantSparseVector))
	case sparse.GetModifier() != qdrant.Modifier_Idf:
		diffs = append(diffs, fmt.Sprintf("sparse vector %q has no IDF modifier (needs Qdrant 1.10 or later)", qdrantSparseVector))
	}
	for _, field := range qdrantPayloadIndexes() {
		if s, ok := info.GetPayloadSchema()[field]; ok && s.GetDataType() != qdrant.PayloadSchemaType_Keyword {
			diffs = append(diffs, fmt.Sprintf("payload index %q is of type %s, kbbot needs keyword", field, s.GetDataType()))
		}
	}
	return diffs
}

// qdrantPointID maps a chunk id to its point id; the same chunk always lands
// on the same point, so re-ingesting overwrites instead of duplicating.
func qdrantPointID(chunkID string) *qdrant.PointId {
	return qdrant.NewIDUUID(uuid.NewSHA1(uuid.MustParse(qdrantPointNamespace), []byte(chunkID)).String())
}

// Upsert inserts chunks or overwrites them by Chunk.ID.
func (q *Qdrant) Upsert(ctx context.Context, chunks []Chunk) error {
	points := make([]*qdrant.PointStruct, 0, len(chunks))
	for i := range chunks {
		p, err := q.point(&chunks[i])
		if err != nil {
			return fmt.Errorf("qdrant upsert: %w", err)
		}
		points = append(points, p)
	}
	for start := 0; start < len(points); start += qdrantUpsertBatch {
		batch := points[start:min(start+qdrantUpsertBatch, len(points))]
		err := q.call(ctx, "upsert", func(ctx context.Context) error {
			_, err := q.client.Upsert(ctx, &qdrant.UpsertPoints{
				CollectionName: q.collection,
				Wait:           qdrant.PtrOf(true),
				Points:         batch,
			})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// point checks a chunk before it reaches Qdrant, so a bad one is named in
// the error instead of failing its whole batch anonymously.
func (q *Qdrant) point(c *Chunk) (*qdrant.PointStruct, error) {
	if c.ID == "" {
		return nil, fmt.Errorf("chunk %q has no ID", c.Key)
	}
	if err := qdrantCheckSparse(c.Sparse); err != nil {
		return nil, fmt.Errorf("chunk %s: %w", c.ID, err)
	}
	vectors := map[string]*qdrant.Vector{}
	// A chunk without terms gets no sparse vector at all, so it does not
	// count in the IDF statistics (N is the number of points with one).
	if len(c.Sparse.Indices) > 0 {
		vectors[qdrantSparseVector] = qdrant.NewVectorSparse(c.Sparse.Indices, c.Sparse.Values)
	}
	if len(c.Dense) > 0 {
		if len(c.Dense) != q.denseDim {
			return nil, fmt.Errorf("chunk %s: dense vector has %d dimensions, the collection has %d", c.ID, len(c.Dense), q.denseDim)
		}
		vectors[qdrantDenseVector] = qdrant.NewVectorDense(c.Dense)
	}
	payload, err := qdrant.TryValueMap(map[string]any{
		"chunk_id": c.ID,
		"key":      c.Key,
		"doc_id":   c.DocID,
		"kind":     c.Kind,
		"title":    c.Title,
		"url":      c.URL,
		"path":     qdrantList(c.Path),
		"date":     c.Date,
		"source":   c.Source,
		"text":     c.Text,
		"answer":   c.Answer,
		"refs":     qdrantList(c.Refs),
		// Feishu origin; space_id is indexed, so a search kept to some
		// spaces is a filtered HNSW/sparse search, not a scan.
		"space_id":    c.SpaceID,
		"node_token":  c.NodeToken,
		"document_id": c.DocumentID,
		"anchor":      c.Anchor,
		"version":     c.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("chunk %s: payload: %w", c.ID, err)
	}
	return &qdrant.PointStruct{
		Id:      qdrantPointID(c.ID),
		Vectors: qdrant.NewVectorsMap(vectors),
		Payload: payload,
	}, nil
}

func qdrantCheckSparse(v SparseVector) error {
	if len(v.Indices) != len(v.Values) {
		return fmt.Errorf("sparse vector has %d indices but %d values", len(v.Indices), len(v.Values))
	}
	seen := make(map[uint32]struct{}, len(v.Indices))
	for _, i := range v.Indices {
		if _, dup := seen[i]; dup {
			return fmt.Errorf("sparse vector repeats index %d", i)
		}
		seen[i] = struct{}{}
	}
	return nil
}

// qdrantList converts a string list for the payload: TryValueMap (and
// NewValueMap, which panics) accept []any but not []string.
func qdrantList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func qdrantChunk(p map[string]*qdrant.Value) Chunk {
	str := func(k string) string { return p[k].GetStringValue() }
	list := func(k string) []string {
		var out []string
		for _, v := range p[k].GetListValue().GetValues() {
			out = append(out, v.GetStringValue())
		}
		return out
	}
	return Chunk{
		ID:     str("chunk_id"),
		Key:    str("key"),
		DocID:  str("doc_id"),
		Kind:   str("kind"),
		Title:  str("title"),
		URL:    str("url"),
		Path:   list("path"),
		Date:   str("date"),
		Source: str("source"),
		Text:   str("text"),
		Answer: str("answer"),
		Refs:   list("refs"),

		SpaceID:    str("space_id"),
		NodeToken:  str("node_token"),
		DocumentID: str("document_id"),
		Anchor:     str("anchor"),
		Version:    str("version"),
	}
}

// Delete removes chunks by Chunk.ID; unknown ids are ignored.
func (q *Qdrant) Delete(ctx context.Context, ids []string) error {
	for start := 0; start < len(ids); start += qdrantDeleteBatch {
		batch := ids[start:min(start+qdrantDeleteBatch, len(ids))]
		pids := make([]*qdrant.PointId, len(batch))
		for i, id := range batch {
			pids[i] = qdrantPointID(id)
		}
		err := q.call(ctx, "delete", func(ctx context.Context) error {
			_, err := q.client.Delete(ctx, &qdrant.DeletePoints{
				CollectionName: q.collection,
				Wait:           qdrant.PtrOf(true),
				Points:         qdrant.NewPointsSelectorIDs(pids),
			})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// scroll pages through the points passing filter.
func (q *Qdrant) scroll(ctx context.Context, op string, filter *qdrant.Filter, payload *qdrant.WithPayloadSelector, each func(*qdrant.RetrievedPoint)) error {
	var offset *qdrant.PointId
	for {
		var page []*qdrant.RetrievedPoint
		var next *qdrant.PointId
		err := q.call(ctx, op, func(ctx context.Context) error {
			var err error
			page, next, err = q.client.ScrollAndOffset(ctx, &qdrant.ScrollPoints{
				CollectionName: q.collection,
				Filter:         filter,
				Offset:         offset,
				Limit:          qdrant.PtrOf(uint32(qdrantScrollPage)),
				WithPayload:    payload,
				WithVectors:    qdrant.NewWithVectors(false),
			})
			return err
		})
		if err != nil {
			return err
		}
		for _, p := range page {
			each(p)
		}
		if next == nil {
			return nil
		}
		offset = next
	}
}

// Refs lists every stored chunk's ID, Key and Source, sorted by Key like
// the embedded index.
func (q *Qdrant) Refs(ctx context.Context) ([]ChunkRef, error) {
	var refs []ChunkRef
	foreign := 0
	err := q.scroll(ctx, "refs", nil, qdrant.NewWithPayloadInclude("chunk_id", "key", "source", "version"), func(p *qdrant.RetrievedPoint) {
		id := p.GetPayload()["chunk_id"].GetStringValue()
		if id == "" {
			foreign++
			return
		}
		refs = append(refs, ChunkRef{
			ID:      id,
			Key:     p.GetPayload()["key"].GetStringValue(),
			Source:  p.GetPayload()["source"].GetStringValue(),
			Version: p.GetPayload()["version"].GetStringValue(),
		})
	})
	if err != nil {
		return nil, err
	}
	if foreign > 0 {
		q.log.WarnContext(ctx, "qdrant collection holds points kbbot did not write; they are ignored", "collection", q.collection, "points", foreign)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Key != refs[j].Key {
			return refs[i].Key < refs[j].Key
		}
		return refs[i].ID < refs[j].ID
	})
	return refs, nil
}

// DocChunks returns one document's chunks sorted by Key, or ErrNotFound.
func (q *Qdrant) DocChunks(ctx context.Context, docID string) ([]Chunk, error) {
	chunks, err := q.collect(ctx, "doc chunks", qdrant.NewMatchKeyword("doc_id", docID))
	if err != nil {
		return nil, err
	}
	if len(chunks) == 0 {
		return nil, fmt.Errorf("qdrant doc chunks %q: %w", docID, ErrNotFound)
	}
	return chunks, nil
}

// List returns up to limit chunks of a kind (all kinds when empty), sorted by
// Key; limit 0 means all. It mirrors Embedded.List.
func (q *Qdrant) List(ctx context.Context, kind string, limit int) ([]Chunk, error) {
	var cond *qdrant.Condition
	if kind != "" {
		cond = qdrant.NewMatchKeyword("kind", kind)
	}
	chunks, err := q.collect(ctx, "list", cond)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(chunks) > limit {
		chunks = chunks[:limit]
	}
	return chunks, nil
}

func (q *Qdrant) collect(ctx context.Context, op string, cond *qdrant.Condition) ([]Chunk, error) {
	var filter *qdrant.Filter
	if cond != nil {
		filter = &qdrant.Filter{Must: []*qdrant.Condition{cond}}
	}
	var chunks []Chunk
	err := q.scroll(ctx, op, filter, qdrant.NewWithPayload(true), func(p *qdrant.RetrievedPoint) {
		chunks = append(chunks, qdrantChunk(p.GetPayload()))
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(chunks, func(i, j int) bool {
		if chunks[i].Key != chunks[j].Key {
			return chunks[i].Key < chunks[j].Key
		}
		return chunks[i].ID < chunks[j].ID
	})
	return chunks, nil
}

// Count reports how many chunks are stored.
func (q *Qdrant) Count(ctx context.Context) (int, error) {
	var n uint64
	err := q.call(ctx, "count", func(ctx context.Context) error {
		var err error
		n, err = q.client.Count(ctx, &qdrant.CountPoints{CollectionName: q.collection, Exact: qdrant.PtrOf(true)})
		return err
	})
	return int(n), err
}

// Search ranks chunks by BM25 (Qdrant applies the IDF) and, when the query
// has a dense vector, fuses that ranking with the cosine ranking by Qdrant's
// RRF. Fused hits carry no raw sparse or dense score: Qdrant does not return
// them.
func (q *Qdrant) Search(ctx context.Context, sq Query) ([]Hit, error) {
	limit := sq.Limit
	if limit <= 0 {
		limit = 10
	}
	if err := qdrantCheckSparse(sq.Sparse); err != nil {
		return nil, fmt.Errorf("qdrant search: %w", err)
	}
	hasSparse, hasDense := len(sq.Sparse.Indices) > 0, len(sq.Dense) > 0
	if hasDense && len(sq.Dense) != q.denseDim {
		return nil, fmt.Errorf("qdrant search: query vector has %d dimensions, the collection has %d", len(sq.Dense), q.denseDim)
	}
	if !hasSparse && !hasDense {
		return nil, nil
	}
	var filter *qdrant.Filter
	if sq.Kind != "" || len(sq.Spaces) > 0 {
		filter = &qdrant.Filter{}
		if sq.Kind != "" {
			filter.Must = append(filter.Must, qdrant.NewMatchKeyword("kind", sq.Kind))
		}
		if len(sq.Spaces) > 0 {
			filter.Must = append(filter.Must, qdrant.NewMatchKeywords("space_id", sq.Spaces...))
		}
	}
	req := &qdrant.QueryPoints{
		CollectionName: q.collection,
		Filter:         filter,
		WithPayload:    qdrant.NewWithPayload(true),
	}
	// maxFetch bounds the refetching below; a fused query cannot return more
	// than its prefetches reach.
	maxFetch := qdrantMaxFetch
	if !hasDense {
		req.Query = qdrant.NewQuerySparse(sq.Sparse.Indices, sq.Sparse.Values)
		req.Using = qdrant.PtrOf(qdrantSparseVector)
	} else {
		// Each prefetch must reach at least the main limit; deeper lists let a
		// chunk ranked fairly on both sides surface in the fusion. The depth
		// is part of the ranking contract: the embedded index fuses lists of
		// the same depth.
		depth := max(limit*4, 40)
		maxFetch = depth
		if hasSparse {
			req.Prefetch = append(req.Prefetch, &qdrant.PrefetchQuery{
				Query:  qdrant.NewQuerySparse(sq.Sparse.Indices, sq.Sparse.Values),
				Using:  qdrant.PtrOf(qdrantSparseVector),
				Filter: filter,
				Limit:  qdrant.PtrOf(uint64(depth)),
			})
		}
		// The cosine floor belongs on the dense prefetch: a top-level
		// threshold would apply to the small rank-based RRF score instead.
		req.Prefetch = append(req.Prefetch, &qdrant.PrefetchQuery{
			Query:          qdrant.NewQueryDense(sq.Dense),
			Using:          qdrant.PtrOf(qdrantDenseVector),
			Filter:         filter,
			Limit:          qdrant.PtrOf(uint64(depth)),
			ScoreThreshold: qdrant.PtrOf(sq.DenseThreshold),
		})
		req.Query = qdrant.NewQueryFusion(qdrant.Fusion_RRF)
	}

	// Qdrant returns tied scores in no particular order and cuts at its
	// limit, which could drop the chunk our ID tie-break wants. So fetch
	// twice the limit, and if the scores still tie at the end of what came
	// back, fetch more until the whole tie group is in hand.
	fetch := min(limit*2, maxFetch)
	for {
		req.Limit = qdrant.PtrOf(uint64(fetch))
		var points []*qdrant.ScoredPoint
		err := q.call(ctx, "search", func(ctx context.Context) error {
			var err error
			points, err = q.client.Query(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		hits := qdrantHits(points, !hasDense)
		if len(points) < fetch || fetch >= maxFetch || len(hits) <= limit ||
			qdrantLowest(points) < hits[limit-1].Score {
			if len(hits) > limit {
				hits = hits[:limit]
			}
			return hits, nil
		}
		fetch = min(fetch*4, maxFetch)
	}
}

// qdrantMaxFetch caps how many points a sparse search fetches to settle ties.
const qdrantMaxFetch = 1024

func qdrantLowest(points []*qdrant.ScoredPoint) float64 {
	low := math.Inf(1)
	for _, p := range points {
		low = math.Min(low, float64(p.GetScore()))
	}
	return low
}

// qdrantHits converts and orders search results: score descending, ties by
// chunk ID, as the embedded index does.
func qdrantHits(points []*qdrant.ScoredPoint, sparseOnly bool) []Hit {
	hits := make([]Hit, 0, len(points))
	for _, p := range points {
		h := Hit{Chunk: qdrantChunk(p.GetPayload()), Score: float64(p.GetScore())}
		if sparseOnly {
			if h.Score <= 0 {
				continue
			}
			h.SparseScore = h.Score
		}
		hits = append(hits, h)
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].Score != hits[j].Score {
			return hits[i].Score > hits[j].Score
		}
		return hits[i].Chunk.ID < hits[j].Chunk.ID
	})
	return hits
}

// Rebuild drops the collection and creates it empty with the configured
// vectors.
func (q *Qdrant) Rebuild(ctx context.Context) error {
	return q.open(ctx, true)
}

// Close closes the connections to Qdrant.
func (q *Qdrant) Close() error {
	return q.client.Close()
}
