package index

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// rrfK is the rank constant of reciprocal-rank fusion, score = Σ 1/(k+rank)
// with the top result at rank 0. It is Qdrant's DEFAULT_RRF_K, so both
// backends fuse the same way.
const rrfK = 2

// prefetchDepth is how deep each list goes before fusion; the Qdrant adapter
// prefetches the same depth.
func prefetchDepth(limit int) int { return max(limit*4, 40) }

// Embedded is the in-process knowledge index used when QDRANT_URL is unset:
// an inverted index over the sparse vectors (a query touches only the
// postings of its own terms) and a flat list of dense vectors, persisted as
// one snapshot file under the data directory.
type Embedded struct {
	path string

	mu       sync.RWMutex
	slots    []*Chunk // nil where a chunk was deleted
	free     []int32
	byID     map[string]int32
	postings map[uint32][]posting
	live     int
	sparseN  int       // chunks with a sparse vector: Qdrant's N for IDF
	modTime  time.Time // of the snapshot we last read or wrote
	checked  time.Time // last time we looked for a newer snapshot

	accPool sync.Pool
	// Now is the clock, replaceable in tests.
	Now func() time.Time
	// Logger reports snapshots written by another process that could not
	// be read.
	Logger *slog.Logger
}

type posting struct {
	slot   int32
	weight float32
}

const snapshotName = "index.gob"

// OpenEmbedded opens (or creates) the index kept in dir.
func OpenEmbedded(dir string) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded index: %w", err)
	}
	e := &Embedded{path: filepath.Join(dir, snapshotName), Now: time.Now, Logger: slog.New(slog.DiscardHandler)}
	e.reset()
	if err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Embedded) reset() {
	e.slots, e.free, e.live, e.sparseN = nil, nil, 0, 0
	e.byID = map[string]int32{}
	e.postings = map[uint32][]posting{}
}

// load replaces the in-memory index with the snapshot on disk, if any.
func (e *Embedded) load() error {
	f, err := os.Open(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	dec := gob.NewDecoder(bufio.NewReader(f))
	var n int
	if err := dec.Decode(&n); err != nil {
		return fmt.Errorf("embedded index %s is unreadable (written by another version? delete it and run `kbbot ingest`): %w", e.path, err)
	}
	// Build the new index aside and swap it in only once it is whole, so a
	// bad file leaves the index being served as it was.
	fresh := &Embedded{}
	fresh.reset()
	for range n {
		c := new(Chunk)
		if err := dec.Decode(c); err != nil {
			return fmt.Errorf("embedded index %s is unreadable (written by another version? delete it and run `kbbot ingest`): %w", e.path, err)
		}
		fresh.insert(c)
	}
	e.slots, e.free, e.byID, e.postings, e.live, e.sparseN = fresh.slots, fresh.free, fresh.byID, fresh.postings, fresh.live, fresh.sparseN
	e.modTime = st.ModTime()
	return nil
}

// refresh picks up a snapshot written by another process (`kbbot ingest`
// while `serve` runs), checking the file at most once a second.
func (e *Embedded) refresh() {
	now := e.Now()
	e.mu.RLock()
	due := now.Sub(e.checked) >= time.Second
	e.mu.RUnlock()
	if !due {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.checked = now
	st, err := os.Stat(e.path)
	if err != nil || st.ModTime().Equal(e.modTime) {
		return
	}
	if err := e.load(); err != nil {
		// Keep serving the index we have; say why the new one was refused.
		e.Logger.Error("refusing a new index snapshot; serving the previous one", "error", err)
		e.modTime = st.ModTime() // and don't retry the same file every second
	}
}

func (e *Embedded) save() error {
	tmp, err := os.CreateTemp(filepath.Dir(e.path), ".index-*.tmp")
	if err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	defer os.Remove(tmp.Name())
	// One gob value per chunk through a buffer: encoding the whole index as
	// one slice made gob grow a single buffer the size of the file.
	w := bufio.NewWriterSize(tmp, 1<<20)
	enc := gob.NewEncoder(w)
	err = enc.Encode(e.live)
	for _, c := range e.slots {
		if c != nil && err == nil {
			err = enc.Encode(c)
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync() // the rename must not publish a file the disk has not got
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("embedded index: write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("embedded index: write: %w", err)
	}
	if err := os.Rename(tmp.Name(), e.path); err != nil {
		return fmt.Errorf("embedded index: %w", err)
	}
	if st, err := os.Stat(e.path); err == nil {
		e.modTime = st.ModTime()
	}
	return nil
}

func (e *Embedded) insert(c *Chunk) {
	if old, ok := e.byID[c.ID]; ok {
		e.remove(old)
	}
	if len(c.Dense) > 0 {
		c.Dense = normalized(c.Dense)
	}
	var slot int32
	if n := len(e.free); n > 0 {
		slot = e.free[n-1]
		e.free = e.free[:n-1]
		e.slots[slot] = c
	} else {
		slot = int32(len(e.slots))
		e.slots = append(e.slots, c)
	}
	e.byID[c.ID] = slot
	for i, idx := range c.Sparse.Indices {
		e.postings[idx] = append(e.postings[idx], posting{slot: slot, weight: c.Sparse.Values[i]})
	}
	e.live++
	if len(c.Sparse.Indices) > 0 {
		e.sparseN++
	}
}

func (e *Embedded) remove(slot int32) {
	c := e.slots[slot]
	for _, idx := range c.Sparse.Indices {
		ps := e.postings[idx]
		for i := range ps {
			if ps[i].slot == slot {
				ps[i] = ps[len(ps)-1]
				ps = ps[:len(ps)-1]
				break
			}
		}
		if len(ps) == 0 {
			delete(e.postings, idx)
		} else {
			e.postings[idx] = ps
		}
	}
	delete(e.byID, c.ID)
	e.slots[slot] = nil
	e.free = append(e.free, slot)
	e.live--
	if len(c.Sparse.Indices) > 0 {
		e.sparseN--
	}
}

// Upsert inserts chunks or overwrites them by ID, then persists the index.
func (e *Embedded) Upsert(ctx context.Context, chunks []Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range chunks {
		c := chunks[i]
		c.Dense = append([]float32(nil), c.Dense...)
		e.insert(&c)
	}
	return e.save()
}

// Delete removes chunks by ID; unknown ids are ignored.
func (e *Embedded) Delete(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if slot, ok := e.byID[id]; ok {
			e.remove(slot)
		}
	}
	return e.save()
}

// Refs lists every stored chunk's identity, for ingestion to diff against.
func (e *Embedded) Refs(ctx context.Context) ([]ChunkRef, error) {
	e.refresh()
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]ChunkRef, 0, e.live)
	for _, c := range e.slots {
		if c != nil {
			out = append(out, ChunkRef{ID: c.ID, Key: c.Key, Source: c.Source, Version: c.Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// DocChunks returns one document's chunks in order.
func (e *Embedded) DocChunks(ctx context.Context, docID string) ([]Chunk, error) {
	return e.collect(func(c *Chunk) bool { return c.DocID == docID }, 0, true)
}

// List returns up to limit chunks of a kind (all kinds when empty), ordered
// by Key; limit 0 means all.
func (e *Embedded) List(ctx context.Context, kind string, limit int) ([]Chunk, error) {
	return e.collect(func(c *Chunk) bool { return kind == "" || c.Kind == kind }, limit, false)
}

func (e *Embedded) collect(match func(*Chunk) bool, limit int, mustExist bool) ([]Chunk, error) {
	e.refresh()
	e.mu.RLock()
	var out []Chunk
	for _, c := range e.slots {
		if c != nil && match(c) {
			out = append(out, *c)
		}
	}
	e.mu.RUnlock()
	if mustExist && len(out) == 0 {
		return nil, ErrNotFound
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Count reports how many chunks are stored.
func (e *Embedded) Count(ctx context.Context) (int, error) {
	e.refresh()
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.live, nil
}

// Rebuild empties the index.
func (e *Embedded) Rebuild(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reset()
	return e.save()
}

// Close releases nothing: every change is already on disk.
func (e *Embedded) Close() error { return nil }

// Search ranks chunks by BM25 (IDF computed here, as Qdrant's IDF modifier
// does) and, when the query has a dense vector, fuses that with a cosine
// ranking by reciprocal-rank fusion.
func (e *Embedded) Search(ctx context.Context, q Query) ([]Hit, error) {
	e.refresh()
	limit := q.Limit
	if limit <= 0 {
		limit = 10
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(q.Dense) == 0 {
		return e.searchSparse(q, limit), nil
	}
	depth := prefetchDepth(limit)
	return fuse(limit, e.searchSparse(q, depth), e.searchDense(q, depth)), nil
}

type accumulator struct {
	score   []float32
	touched []int32
}

func (e *Embedded) searchSparse(q Query, limit int) []Hit {
	acc, _ := e.accPool.Get().(*accumulator)
	if acc == nil {
		acc = &accumulator{}
	}
	if len(acc.score) < len(e.slots) {
		acc.score = make([]float32, len(e.slots))
	}
	n := float64(e.sparseN)
	for i, idx := range q.Sparse.Indices {
		ps := e.postings[idx]
		if len(ps) == 0 {
			continue
		}
		df := float64(len(ps))
		idf := float32(math.Log(1 + (n-df+0.5)/(df+0.5)))
		w := idf * q.Sparse.Values[i]
		for _, p := range ps {
			if acc.score[p.slot] == 0 {
				acc.touched = append(acc.touched, p.slot)
			}
			acc.score[p.slot] += w * p.weight
		}
	}
	top := make(hitHeap, 0, limit+1)
	for _, slot := range acc.touched {
		s := acc.score[slot]
		acc.score[slot] = 0
		c := e.slots[slot]
		if s <= 0 || !q.admits(c) {
			continue
		}
		top.offer(scored{slot: slot, score: float64(s), id: c.ID}, limit)
	}
	acc.touched = acc.touched[:0]
	e.accPool.Put(acc)
	return e.hits(top, func(h *Hit, s float64) { h.SparseScore = s })
}

func (e *Embedded) searchDense(q Query, limit int) []Hit {
	qv := normalized(q.Dense)
	top := make(hitHeap, 0, limit+1)
	for slot, c := range e.slots {
		if c == nil || len(c.Dense) != len(qv) || !q.admits(c) {
			continue
		}
		var dot float32
		for i := range qv {
			dot += qv[i] * c.Dense[i]
		}
		if dot < q.DenseThreshold {
			continue
		}
		top.offer(scored{slot: int32(slot), score: float64(dot), id: c.ID}, limit)
	}
	return e.hits(top, func(h *Hit, s float64) { h.DenseScore = s })
}

func (e *Embedded) hits(top hitHeap, set func(*Hit, float64)) []Hit {
	sort.Sort(sort.Reverse(top))
	out := make([]Hit, len(top))
	for i, s := range top {
		out[i] = Hit{Chunk: *e.slots[s.slot], Score: s.score}
		set(&out[i], s.score)
	}
	return out
}

// fuse merges ranked lists by reciprocal-rank fusion, keeping each list's raw
// score on the hit.
func fuse(limit int, lists ...[]Hit) []Hit {
	byID := map[string]*Hit{}
	var order []string
	for _, list := range lists {
		for rank, h := range list {
			f, ok := byID[h.Chunk.ID]
			if !ok {
				cp := h
				cp.Score = 0
				f = &cp
				byID[h.Chunk.ID] = f
				order = append(order, h.Chunk.ID)
			}
			f.Score += 1 / float64(rrfK+rank)
			if h.SparseScore != 0 {
				f.SparseScore = h.SparseScore
			}
			if h.DenseScore != 0 {
				f.DenseScore = h.DenseScore
			}
		}
	}
	out := make([]Hit, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].Chunk.ID < out[j].Chunk.ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func normalized(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if sum == 0 {
		return out
	}
	inv := float32(1 / math.Sqrt(sum))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// scored is a candidate in a bounded min-heap of the best results so far.
type scored struct {
	slot  int32
	score float64
	id    string
}

type hitHeap []scored

func (h hitHeap) Len() int { return len(h) }

// Less orders worst first: lower score, then larger id (ties go to the
// smaller id, deterministically).
func (h hitHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score < h[j].score
	}
	return h[i].id > h[j].id
}
func (h hitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)   { *h = append(*h, x.(scored)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h *hitHeap) offer(s scored, limit int) {
	if h.Len() < limit {
		heap.Push(h, s)
		return
	}
	worst := (*h)[0]
	if s.score > worst.score || (s.score == worst.score && s.id < worst.id) {
		(*h)[0] = s
		heap.Fix(h, 0)
	}
}
