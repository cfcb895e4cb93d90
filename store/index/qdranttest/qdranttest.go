// Package qdranttest runs an in-process stand-in for Qdrant's gRPC API, so
// the store's Qdrant adapter, and kbbot as a whole through QDRANT_URL, can be
// tested without a Qdrant server. It listens on real loopback TCP, which lets
// a subprocess connect to it as well.
//
// It implements only the RPCs kbbot uses: HealthCheck; Collections
// CollectionExists, Get, Create and Delete; Points CreateFieldIndex, Upsert,
// Delete (by ids or filter), Scroll, Count and Query. Everything else answers
// Unimplemented, and so do filter conditions and query shapes it does not
// understand, rather than silently ignoring them.
//
// Query is evaluated naively but honestly over the stored points: sparse dot
// product with Qdrant's IDF modifier idf = ln(1 + (N − n + 0.5)/(n + 0.5)),
// dense cosine, and Reciprocal Rank Fusion 1/(k + rank) with zero-based ranks
// and Qdrant's default k = 2. This proves the adapter's requests and the round
// trip; ranking fidelity to real Qdrant is only proven by the QDRANT_URL suite.
//
// Tests can look inside: the collections created and their configs, the
// payload indexes, the stored points, the RPCs received, and they can make the
// next calls of a method fail with a chosen gRPC code.
package qdranttest

import (
	"context"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultRRFK is the k Qdrant uses for Fusion_RRF (DEFAULT_RRF_K in
// qdrant/qdrant lib/segment/src/common/reciprocal_rank_fusion.rs).
const DefaultRRFK = 2

// Server is a running stand-in. It is safe for concurrent use.
type Server struct {
	st  *state
	srv *grpc.Server
	lis net.Listener
}

// Start starts a stand-in on 127.0.0.1 with a free port and stops it when the
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("qdranttest: listen: %v", err)
	}
	st := &state{
		collections: map[string]*collection{},
		failures:    map[string][]codes.Code{},
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(st.intercept))
	qdrant.RegisterQdrantServer(srv, healthService{})
	qdrant.RegisterCollectionsServer(srv, collectionsService{st: st})
	qdrant.RegisterPointsServer(srv, pointsService{st: st})
	go func() { _ = srv.Serve(lis) }()
	s := &Server{st: st, srv: srv, lis: lis}
	tb.Cleanup(s.Close)
	return s
}

// URL is the address to give kbbot as QDRANT_URL, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return "http://" + s.lis.Addr().String() }

// Close stops the server; open client connections see Unavailable.
func (s *Server) Close() { s.srv.Stop() }

// FailNext makes the next n calls of method (e.g. "Points/Upsert") fail with
// code before they reach the handler. Calls that fail are still logged.
func (s *Server) FailNext(method string, code codes.Code, n int) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for range n {
		s.st.failures[method] = append(s.st.failures[method], code)
	}
}

// Calls reports how many calls of method (e.g. "Points/Query") arrived.
func (s *Server) Calls(method string) int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	n := 0
	for _, m := range s.st.calls {
		if m == method {
			n++
		}
	}
	return n
}

// CallLog returns every method received, in order, e.g. "Collections/Create".
func (s *Server) CallLog() []string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return slices.Clone(s.st.calls)
}

// CallCounts returns the number of calls per method.
func (s *Server) CallCounts() map[string]int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	counts := map[string]int{}
	for _, m := range s.st.calls {
		counts[m]++
	}
	return counts
}

// Collections returns the names of the existing collections, sorted.
func (s *Server) Collections() []string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	names := make([]string, 0, len(s.st.collections))
	for name := range s.st.collections {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// CollectionConfig returns a copy of the request that created the collection.
func (s *Server) CollectionConfig(name string) (*qdrant.CreateCollection, bool) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, ok := s.st.collections[name]
	if !ok {
		return nil, false
	}
	return proto.Clone(c.config).(*qdrant.CreateCollection), true
}

// PayloadIndexes returns the payload indexes of a collection by field name.
func (s *Server) PayloadIndexes(name string) map[string]qdrant.FieldType {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, ok := s.st.collections[name]
	if !ok {
		return nil
	}
	out := make(map[string]qdrant.FieldType, len(c.indexes))
	for k, v := range c.indexes {
		out[k] = v
	}
	return out
}

// Sparse is a stored sparse vector.
type Sparse struct {
	Indices []uint32
	Values  []float32
}

// Point is a copy of a stored point.
type Point struct {
	ID      string // canonical UUID, or a decimal number for numeric ids
	Payload map[string]*qdrant.Value
	Dense   map[string][]float32
	Sparse  map[string]Sparse
}

// Points returns copies of a collection's points, sorted by id.
func (s *Server) Points(name string) []Point {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, ok := s.st.collections[name]
	if !ok {
		return nil
	}
	var out []Point
	for _, p := range c.sorted() {
		cp := Point{
			ID:      p.key.String(),
			Payload: clonePayload(p.payload),
			Dense:   map[string][]float32{},
			Sparse:  map[string]Sparse{},
		}
		for n, v := range p.dense {
			cp.Dense[n] = slices.Clone(v)
		}
		for n, v := range p.sparse {
			cp.Sparse[n] = Sparse{Indices: slices.Clone(v.Indices), Values: slices.Clone(v.Values)}
		}
		out = append(out, cp)
	}
	return out
}

// state is shared by the three service types: one struct cannot embed both
// UnimplementedCollectionsServer and UnimplementedPointsServer, since both
// have Get and Delete.
type state struct {
	mu          sync.Mutex
	collections map[string]*collection
	calls       []string
	failures    map[string][]codes.Code
}

func (st *state) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	method := strings.TrimPrefix(strings.TrimPrefix(info.FullMethod, "/"), "qdrant.")
	st.mu.Lock()
	st.calls = append(st.calls, method)
	var fail *codes.Code
	if queue := st.failures[method]; len(queue) > 0 {
		code := queue[0]
		fail = &code
		st.failures[method] = queue[1:]
	}
	st.mu.Unlock()
	if fail != nil {
		return nil, status.Errorf(*fail, "qdranttest: injected %s failure for %s", *fail, method)
	}
	return next(ctx, req)
}

// collection must be used with state.mu held.
func (st *state) collection(name string) (*collection, error) {
	c, ok := st.collections[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
	}
	return c, nil
}

type collection struct {
	config  *qdrant.CreateCollection
	indexes map[string]qdrant.FieldType
	points  map[pointKey]*point
}

type point struct {
	key     pointKey
	payload map[string]*qdrant.Value
	dense   map[string][]float32
	sparse  map[string]Sparse
}

// pointKey orders ids the way Qdrant scrolls them: numbers first, then UUIDs.
type pointKey struct {
	isUUID bool
	num    uint64
	uuid   string
}

func (k pointKey) String() string {
	if k.isUUID {
		return k.uuid
	}
	return strconv.FormatUint(k.num, 10)
}

func (k pointKey) less(o pointKey) bool {
	if k.isUUID != o.isUUID {
		return !k.isUUID
	}
	if k.isUUID {
		return k.uuid < o.uuid
	}
	return k.num < o.num
}

func (k pointKey) id() *qdrant.PointId {
	if k.isUUID {
		return qdrant.NewIDUUID(k.uuid)
	}
	return qdrant.NewIDNum(k.num)
}

func keyOf(id *qdrant.PointId) (pointKey, error) {
	switch v := id.GetPointIdOptions().(type) {
	case *qdrant.PointId_Num:
		return pointKey{num: v.Num}, nil
	case *qdrant.PointId_Uuid:
		u, err := uuid.Parse(v.Uuid)
		if err != nil {
			return pointKey{}, status.Errorf(codes.InvalidArgument, "Wrong input: invalid point id %q", v.Uuid)
		}
		return pointKey{isUUID: true, uuid: u.String()}, nil
	default:
		return pointKey{}, status.Error(codes.InvalidArgument, "Wrong input: point id is missing")
	}
}

func (c *collection) sorted() []*point {
	pts := make([]*point, 0, len(c.points))
	for _, p := range c.points {
		pts = append(pts, p)
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].key.less(pts[j].key) })
	return pts
}

// denseParams returns the configured dense vectors by name ("" for the
// unnamed default vector).
func (c *collection) denseParams() map[string]*qdrant.VectorParams {
	vc := c.config.GetVectorsConfig()
	if p := vc.GetParams(); p != nil {
		return map[string]*qdrant.VectorParams{"": p}
	}
	return vc.GetParamsMap().GetMap()
}

func (c *collection) sparseParams() map[string]*qdrant.SparseVectorParams {
	return c.config.GetSparseVectorsConfig().GetMap()
}

func (c *collection) parsePoint(ps *qdrant.PointStruct) (*point, error) {
	key, err := keyOf(ps.GetId())
	if err != nil {
		return nil, err
	}
	p := &point{
		key:     key,
		payload: clonePayload(ps.GetPayload()),
		dense:   map[string][]float32{},
		sparse:  map[string]Sparse{},
	}
	vectors := map[string]*qdrant.Vector{}
	switch v := ps.GetVectors().GetVectorsOptions().(type) {
	case nil:
	case *qdrant.Vectors_Vector:
		vectors[""] = v.Vector
	case *qdrant.Vectors_Vectors:
		vectors = v.Vectors.GetVectors()
	default:
		return nil, status.Errorf(codes.Unimplemented, "qdranttest: vectors of type %T", v)
	}
	dense, sparse := c.denseParams(), c.sparseParams()
	for name, vec := range vectors {
		switch {
		case vec.GetDense() != nil:
			params, ok := dense[name]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", name)
			}
			data := vec.GetDense().GetData()
			if uint64(len(data)) != params.GetSize() {
				return nil, status.Errorf(codes.InvalidArgument,
					"Wrong input: Vector dimension error: expected dim: %d, got %d", params.GetSize(), len(data))
			}
			p.dense[name] = slices.Clone(data)
		case vec.GetSparse() != nil:
			if _, ok := sparse[name]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", name)
			}
			sv := vec.GetSparse()
			if len(sv.GetIndices()) != len(sv.GetValues()) {
				return nil, status.Error(codes.InvalidArgument, "Wrong input: sparse indices and values must have the same length")
			}
			seen := map[uint32]bool{}
			for _, i := range sv.GetIndices() {
				if seen[i] {
					return nil, status.Error(codes.InvalidArgument, "Wrong input: sparse indices must be unique")
				}
				seen[i] = true
			}
			p.sparse[name] = Sparse{Indices: slices.Clone(sv.GetIndices()), Values: slices.Clone(sv.GetValues())}
		default:
			return nil, status.Errorf(codes.Unimplemented, "qdranttest: vector %q is neither dense nor sparse", name)
		}
	}
	return p, nil
}

type healthService struct {
	qdrant.UnimplementedQdrantServer
}

func (healthService) HealthCheck(context.Context, *qdrant.HealthCheckRequest) (*qdrant.HealthCheckReply, error) {
	return &qdrant.HealthCheckReply{Title: "qdranttest", Version: "1.17.0"}, nil
}

type collectionsService struct {
	qdrant.UnimplementedCollectionsServer
	st *state
}

func (s collectionsService) CollectionExists(_ context.Context, r *qdrant.CollectionExistsRequest) (*qdrant.CollectionExistsResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	_, ok := s.st.collections[r.GetCollectionName()]
	return &qdrant.CollectionExistsResponse{Result: &qdrant.CollectionExists{Exists: ok}}, nil
}

func (s collectionsService) Get(_ context.Context, r *qdrant.GetCollectionInfoRequest) (*qdrant.GetCollectionInfoResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	params := &qdrant.CollectionParams{ShardNumber: 1}
	if vc := c.config.GetVectorsConfig(); vc != nil {
		params.VectorsConfig = proto.Clone(vc).(*qdrant.VectorsConfig)
	}
	if sc := c.config.GetSparseVectorsConfig(); sc != nil {
		params.SparseVectorsConfig = proto.Clone(sc).(*qdrant.SparseVectorConfig)
	}
	schema := map[string]*qdrant.PayloadSchemaInfo{}
	for field, ft := range c.indexes {
		schema[field] = &qdrant.PayloadSchemaInfo{DataType: schemaType(ft)}
	}
	n := uint64(len(c.points))
	return &qdrant.GetCollectionInfoResponse{Result: &qdrant.CollectionInfo{
		Status:        qdrant.CollectionStatus_Green,
		SegmentsCount: 1,
		Config:        &qdrant.CollectionConfig{Params: params},
		PayloadSchema: schema,
		PointsCount:   &n,
	}}, nil
}

func (s collectionsService) Create(_ context.Context, r *qdrant.CreateCollection) (*qdrant.CollectionOperationResponse, error) {
	name := r.GetCollectionName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: collection name is empty")
	}
	for vname, p := range (&collection{config: r}).denseParams() {
		if p.GetSize() == 0 || p.GetDistance() == qdrant.Distance_UnknownDistance {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: vector %q needs a size and a distance", vname)
		}
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if _, ok := s.st.collections[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Wrong input: Collection `%s` already exists!", name)
	}
	s.st.collections[name] = &collection{
		config:  proto.Clone(r).(*qdrant.CreateCollection),
		indexes: map[string]qdrant.FieldType{},
		points:  map[pointKey]*point{},
	}
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

func (s collectionsService) Delete(_ context.Context, r *qdrant.DeleteCollection) (*qdrant.CollectionOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	_, ok := s.st.collections[r.GetCollectionName()]
	delete(s.st.collections, r.GetCollectionName())
	return &qdrant.CollectionOperationResponse{Result: ok}, nil
}

type pointsService struct {
	qdrant.UnimplementedPointsServer
	st *state
}

func done() *qdrant.PointsOperationResponse {
	return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{Status: qdrant.UpdateStatus_Completed}}
}

func (s pointsService) CreateFieldIndex(_ context.Context, r *qdrant.CreateFieldIndexCollection) (*qdrant.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if r.GetFieldName() == "" {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: field name is empty")
	}
	c.indexes[r.GetFieldName()] = r.GetFieldType()
	return done(), nil
}

func (s pointsService) Upsert(_ context.Context, r *qdrant.UpsertPoints) (*qdrant.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	// Validate the whole batch first: Qdrant rejects a bad batch as a whole.
	pts := make([]*point, 0, len(r.GetPoints()))
	for _, ps := range r.GetPoints() {
		p, err := c.parsePoint(ps)
		if err != nil {
			return nil, err
		}
		pts = append(pts, p)
	}
	for _, p := range pts {
		c.points[p.key] = p
	}
	return done(), nil
}

func (s pointsService) Delete(_ context.Context, r *qdrant.DeletePoints) (*qdrant.PointsOperationResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	switch sel := r.GetPoints().GetPointsSelectorOneOf().(type) {
	case *qdrant.PointsSelector_Points:
		for _, id := range sel.Points.GetIds() {
			key, err := keyOf(id)
			if err != nil {
				return nil, err
			}
			delete(c.points, key)
		}
	case *qdrant.PointsSelector_Filter:
		for key, p := range c.points {
			ok, err := matches(sel.Filter, p.payload)
			if err != nil {
				return nil, err
			}
			if ok {
				delete(c.points, key)
			}
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: points selector is missing")
	}
	return done(), nil
}

func (s pointsService) Count(_ context.Context, r *qdrant.CountPoints) (*qdrant.CountResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	var n uint64
	for _, p := range c.points {
		ok, err := matches(r.GetFilter(), p.payload)
		if err != nil {
			return nil, err
		}
		if ok {
			n++
		}
	}
	return &qdrant.CountResponse{Result: &qdrant.CountResult{Count: n}}, nil
}

func (s pointsService) Scroll(_ context.Context, r *qdrant.ScrollPoints) (*qdrant.ScrollResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if r.OrderBy != nil {
		return nil, status.Error(codes.Unimplemented, "qdranttest: scroll order_by")
	}
	limit := 10
	if r.Limit != nil {
		limit = int(r.GetLimit())
	}
	var start *pointKey
	if r.Offset != nil {
		k, err := keyOf(r.GetOffset())
		if err != nil {
			return nil, err
		}
		start = &k
	}
	resp := &qdrant.ScrollResponse{}
	for _, p := range c.sorted() {
		if start != nil && p.key.less(*start) {
			continue
		}
		ok, err := matches(r.GetFilter(), p.payload)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if len(resp.Result) == limit {
			resp.NextPageOffset = p.key.id()
			break
		}
		resp.Result = append(resp.Result, &qdrant.RetrievedPoint{
			Id:      p.key.id(),
			Payload: selectPayload(p.payload, r.GetWithPayload(), true),
			Vectors: selectVectors(p, r.GetWithVectors()),
		})
	}
	return resp, nil
}

func (s pointsService) Query(_ context.Context, r *qdrant.QueryPoints) (*qdrant.QueryResponse, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, err := s.st.collection(r.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if r.LookupFrom != nil || r.ShardKeySelector != nil {
		return nil, status.Error(codes.Unimplemented, "qdranttest: lookup_from and shard keys")
	}
	limit, offset := 10, 0
	if r.Limit != nil {
		limit = int(r.GetLimit())
	}
	if r.Offset != nil {
		offset = int(r.GetOffset())
	}
	var results []scored
	if len(r.GetPrefetch()) == 0 {
		results, err = c.nearest(r.GetQuery(), r.GetUsing(), []*qdrant.Filter{r.GetFilter()}, r.ScoreThreshold, limit+offset)
		if err != nil {
			return nil, err
		}
	} else {
		results, err = c.fuse(r, limit+offset)
		if err != nil {
			return nil, err
		}
	}
	resp := &qdrant.QueryResponse{}
	for i := offset; i < len(results) && i < offset+limit; i++ {
		p := results[i].p
		resp.Result = append(resp.Result, &qdrant.ScoredPoint{
			Id:      p.key.id(),
			Payload: selectPayload(p.payload, r.GetWithPayload(), false),
			Score:   float32(results[i].score),
			Vectors: selectVectors(p, r.GetWithVectors()),
		})
	}
	return resp, nil
}

type scored struct {
	p     *point
	score float64
}

func sortScored(s []scored) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].score != s[j].score {
			return s[i].score > s[j].score
		}
		return s[i].p.key.less(s[j].p.key)
	})
}

// fuse evaluates each prefetch and combines the ranked lists by RRF.
func (c *collection) fuse(r *qdrant.QueryPoints, need int) ([]scored, error) {
	k := DefaultRRFK
	switch q := r.GetQuery().GetVariant().(type) {
	case *qdrant.Query_Fusion:
		if q.Fusion != qdrant.Fusion_RRF {
			return nil, status.Errorf(codes.Unimplemented, "qdranttest: fusion %s", q.Fusion)
		}
	case *qdrant.Query_Rrf:
		if len(q.Rrf.GetWeights()) > 0 {
			return nil, status.Error(codes.Unimplemented, "qdranttest: weighted RRF")
		}
		if q.Rrf.K != nil {
			k = int(q.Rrf.GetK())
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "qdranttest: query %T over prefetches", q)
	}
	fused := map[pointKey]*scored{}
	for _, pf := range r.GetPrefetch() {
		if len(pf.GetPrefetch()) > 0 {
			return nil, status.Error(codes.Unimplemented, "qdranttest: nested prefetch")
		}
		plimit := 10
		if pf.Limit != nil {
			plimit = int(pf.GetLimit())
		}
		if plimit < need {
			return nil, status.Errorf(codes.InvalidArgument,
				"Wrong input: prefetch limit %d is below the query's limit+offset %d", plimit, need)
		}
		// The top-level filter applies to the prefetches too.
		list, err := c.nearest(pf.GetQuery(), pf.GetUsing(), []*qdrant.Filter{r.GetFilter(), pf.GetFilter()}, pf.ScoreThreshold, plimit)
		if err != nil {
			return nil, err
		}
		for rank, s := range list {
			f, ok := fused[s.p.key]
			if !ok {
				f = &scored{p: s.p}
				fused[s.p.key] = f
			}
			f.score += 1 / float64(rank+k)
		}
	}
	out := make([]scored, 0, len(fused))
	for _, f := range fused {
		if r.ScoreThreshold != nil && f.score < float64(r.GetScoreThreshold()) {
			continue
		}
		out = append(out, *f)
	}
	sortScored(out)
	return out, nil
}

// nearest scores every point that passes all filters against a nearest query.
func (c *collection) nearest(q *qdrant.Query, using string, filters []*qdrant.Filter, threshold *float32, limit int) ([]scored, error) {
	nq, ok := q.GetVariant().(*qdrant.Query_Nearest)
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "qdranttest: query %T (only nearest and fusion)", q.GetVariant())
	}
	var score func(p *point) (float64, bool)
	switch v := nq.Nearest.GetVariant().(type) {
	case *qdrant.VectorInput_Dense:
		params, ok := c.denseParams()[using]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", using)
		}
		qv := v.Dense.GetData()
		if uint64(len(qv)) != params.GetSize() {
			return nil, status.Errorf(codes.InvalidArgument,
				"Wrong input: Vector dimension error: expected dim: %d, got %d", params.GetSize(), len(qv))
		}
		if params.GetDistance() != qdrant.Distance_Cosine {
			return nil, status.Errorf(codes.Unimplemented, "qdranttest: distance %s", params.GetDistance())
		}
		score = func(p *point) (float64, bool) {
			dv, ok := p.dense[using]
			if !ok {
				return 0, false
			}
			return cosine(qv, dv), true
		}
	case *qdrant.VectorInput_Sparse:
		if using == "" {
			return nil, status.Error(codes.InvalidArgument, "Wrong input: Sparse vector must have a name")
		}
		params, ok := c.sparseParams()[using]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "Wrong input: Not existing vector name error: %s", using)
		}
		if len(v.Sparse.GetIndices()) != len(v.Sparse.GetValues()) {
			return nil, status.Error(codes.InvalidArgument, "Wrong input: sparse indices and values must have the same length")
		}
		weight := c.idf(using, v.Sparse.GetIndices(), params.GetModifier() == qdrant.Modifier_Idf)
		query := map[uint32]float64{}
		for i, idx := range v.Sparse.GetIndices() {
			query[idx] = float64(v.Sparse.GetValues()[i])
		}
		score = func(p *point) (float64, bool) {
			sv, ok := p.sparse[using]
			if !ok {
				return 0, false
			}
			var sum float64
			overlap := false
			for i, idx := range sv.Indices {
				if qv, ok := query[idx]; ok {
					overlap = true
					sum += weight[idx] * qv * float64(sv.Values[i])
				}
			}
			// A sparse search only ever sees points sharing a term with the query.
			return sum, overlap
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "qdranttest: nearest input %T", v)
	}
	var out []scored
	for _, p := range c.points {
		pass := true
		for _, f := range filters {
			ok, err := matches(f, p.payload)
			if err != nil {
				return nil, err
			}
			pass = pass && ok
		}
		if !pass {
			continue
		}
		s, ok := score(p)
		if !ok || (threshold != nil && s < float64(*threshold)) {
			continue
		}
		out = append(out, scored{p: p, score: s})
	}
	sortScored(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// idf weighs each query term. Like Qdrant, the statistics cover every point
// holding the named sparse vector, whatever the query's filter.
func (c *collection) idf(using string, terms []uint32, enabled bool) map[uint32]float64 {
	w := map[uint32]float64{}
	for _, t := range terms {
		w[t] = 1
	}
	if !enabled {
		return w
	}
	var n float64
	df := map[uint32]float64{}
	for _, p := range c.points {
		sv, ok := p.sparse[using]
		if !ok {
			continue
		}
		n++
		for _, idx := range sv.Indices {
			if _, want := w[idx]; want {
				df[idx]++
			}
		}
	}
	for _, t := range terms {
		w[t] = math.Log(1 + (n-df[t]+0.5)/(df[t]+0.5))
	}
	return w
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / (math.Sqrt(na) * math.Sqrt(nb))
}

// matches evaluates the filter subset kbbot uses: keyword matches, nested
// filters, must / should / must_not.
func matches(f *qdrant.Filter, payload map[string]*qdrant.Value) (bool, error) {
	if f == nil {
		return true, nil
	}
	if f.MinShould != nil {
		return false, status.Error(codes.Unimplemented, "qdranttest: min_should")
	}
	for _, c := range f.GetMust() {
		ok, err := matchCondition(c, payload)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, c := range f.GetMustNot() {
		ok, err := matchCondition(c, payload)
		if err != nil || ok {
			return false, err
		}
	}
	if len(f.GetShould()) == 0 {
		return true, nil
	}
	for _, c := range f.GetShould() {
		ok, err := matchCondition(c, payload)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func matchCondition(c *qdrant.Condition, payload map[string]*qdrant.Value) (bool, error) {
	switch cond := c.GetConditionOneOf().(type) {
	case *qdrant.Condition_Filter:
		return matches(cond.Filter, payload)
	case *qdrant.Condition_Field:
		fc := cond.Field
		if fc.GetMatch() == nil {
			return false, status.Errorf(codes.Unimplemented, "qdranttest: field condition on %q without match", fc.GetKey())
		}
		var want []string
		switch m := fc.GetMatch().GetMatchValue().(type) {
		case *qdrant.Match_Keyword:
			want = []string{m.Keyword}
		case *qdrant.Match_Keywords:
			want = m.Keywords.GetStrings()
		default:
			return false, status.Errorf(codes.Unimplemented, "qdranttest: match %T", m)
		}
		// A keyword condition matches a string or any string in a list.
		for _, have := range payloadStrings(payload[fc.GetKey()]) {
			if slices.Contains(want, have) {
				return true, nil
			}
		}
		return false, nil
	default:
		return false, status.Errorf(codes.Unimplemented, "qdranttest: condition %T", cond)
	}
}

func payloadStrings(v *qdrant.Value) []string {
	if s, ok := v.GetKind().(*qdrant.Value_StringValue); ok {
		return []string{s.StringValue}
	}
	var out []string
	for _, item := range v.GetListValue().GetValues() {
		if s, ok := item.GetKind().(*qdrant.Value_StringValue); ok {
			out = append(out, s.StringValue)
		}
	}
	return out
}

func clonePayload(p map[string]*qdrant.Value) map[string]*qdrant.Value {
	out := make(map[string]*qdrant.Value, len(p))
	for k, v := range p {
		out[k] = proto.Clone(v).(*qdrant.Value)
	}
	return out
}

// selectPayload applies a with_payload selector; def is the answer when the
// request leaves it unset.
func selectPayload(p map[string]*qdrant.Value, sel *qdrant.WithPayloadSelector, def bool) map[string]*qdrant.Value {
	switch s := sel.GetSelectorOptions().(type) {
	case *qdrant.WithPayloadSelector_Enable:
		if s.Enable {
			return clonePayload(p)
		}
		return nil
	case *qdrant.WithPayloadSelector_Include:
		out := map[string]*qdrant.Value{}
		for _, f := range s.Include.GetFields() {
			if v, ok := p[f]; ok {
				out[f] = proto.Clone(v).(*qdrant.Value)
			}
		}
		return out
	case *qdrant.WithPayloadSelector_Exclude:
		out := clonePayload(p)
		for _, f := range s.Exclude.GetFields() {
			delete(out, f)
		}
		return out
	default:
		if def {
			return clonePayload(p)
		}
		return nil
	}
}

func selectVectors(p *point, sel *qdrant.WithVectorsSelector) *qdrant.VectorsOutput {
	var names []string
	switch s := sel.GetSelectorOptions().(type) {
	case *qdrant.WithVectorsSelector_Enable:
		if !s.Enable {
			return nil
		}
		for n := range p.dense {
			names = append(names, n)
		}
		for n := range p.sparse {
			names = append(names, n)
		}
	case *qdrant.WithVectorsSelector_Include:
		names = s.Include.GetNames()
	default:
		return nil
	}
	out := map[string]*qdrant.VectorOutput{}
	for _, n := range names {
		if d, ok := p.dense[n]; ok {
			out[n] = &qdrant.VectorOutput{Vector: &qdrant.VectorOutput_Dense{Dense: &qdrant.DenseVector{Data: slices.Clone(d)}}}
		}
		if sv, ok := p.sparse[n]; ok {
			out[n] = &qdrant.VectorOutput{Vector: &qdrant.VectorOutput_Sparse{Sparse: &qdrant.SparseVector{
				Indices: slices.Clone(sv.Indices), Values: slices.Clone(sv.Values)}}}
		}
	}
	return &qdrant.VectorsOutput{VectorsOptions: &qdrant.VectorsOutput_Vectors{Vectors: &qdrant.NamedVectorsOutput{Vectors: out}}}
}

func schemaType(ft qdrant.FieldType) qdrant.PayloadSchemaType {
	switch ft {
	case qdrant.FieldType_FieldTypeKeyword:
		return qdrant.PayloadSchemaType_Keyword
	case qdrant.FieldType_FieldTypeInteger:
		return qdrant.PayloadSchemaType_Integer
	case qdrant.FieldType_FieldTypeFloat:
		return qdrant.PayloadSchemaType_Float
	case qdrant.FieldType_FieldTypeText:
		return qdrant.PayloadSchemaType_Text
	case qdrant.FieldType_FieldTypeBool:
		return qdrant.PayloadSchemaType_Bool
	default:
		// Good enough for a stand-in: kbbot only creates keyword indexes.
		return qdrant.PayloadSchemaType_UnknownType
	}
}
