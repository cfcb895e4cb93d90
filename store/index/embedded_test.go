package index

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A snapshot another process wrote that cannot be read must not empty the
// index being served.
func TestEmbeddedKeepsServingOnABadSnapshot(t *testing.T) {
	dir := t.TempDir()
	e, err := OpenEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e.Now = func() time.Time { return now }
	ctx := context.Background()
	if err := e.Upsert(ctx, []Chunk{{ID: "a", Key: "k", DocID: "d", Text: "x", Sparse: SparseVector{Indices: []uint32{1}, Values: []float32{1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, snapshotName), []byte("not a gob"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Hour)
	os.Chtimes(filepath.Join(dir, snapshotName), later, later)
	now = now.Add(2 * time.Second)
	if n, _ := e.Count(ctx); n != 1 {
		t.Errorf("count after a bad snapshot = %d, want the old 1", n)
	}
	if _, err := OpenEmbedded(dir); err == nil {
		t.Error("opening a bad snapshot did not fail")
	}
}
