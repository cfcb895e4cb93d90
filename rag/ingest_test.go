package rag

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kbbot/store/index"
)

func TestIngestIdempotentAndReflectsChanges(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	chdir(t, dir)
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kb/a.md", "---\ntitle: Alpha\n---\n## One\nAlpha one text about apples.\n\n## Two\nAlpha two text about pears.\n")
	write("kb/b.txt", "Beta\nBeta text about bananas.")
	write("kb/sub/c.md", "# Gamma\nGamma text about grapes.")
	idx, err := index.OpenEmbedded(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(Options{Index: idx})
	if err != nil {
		t.Fatal(err)
	}
	ingest := func() Summary {
		t.Helper()
		sum, err := eng.Ingest(ctx, []string{"kb"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	count := func() int {
		n, _ := idx.Count(ctx)
		return n
	}

	sum := ingest()
	if sum.Files != 3 || sum.Documents != 4 || sum.Added != 4 || sum.Updated+sum.Removed+sum.Unchanged != 0 {
		t.Fatalf("first ingest = %+v", sum)
	}
	before, _ := os.Stat(filepath.Join(dir, "data", "index.gob"))

	sum = ingest()
	if sum.Added+sum.Updated+sum.Removed != 0 || sum.Unchanged != 4 {
		t.Fatalf("re-ingest of unchanged files wrote something: %+v", sum)
	}
	after, _ := os.Stat(filepath.Join(dir, "data", "index.gob"))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("re-ingest rewrote the index file")
	}

	// Change one section, drop the other, delete a file, break a file.
	write("kb/a.md", "---\ntitle: Alpha\n---\n## One\nAlpha one text about apricots now.\n")
	os.Remove("kb/sub/c.md")
	write("kb/b.txt", "")
	sum, err = eng.Ingest(ctx, []string{"kb"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Updated != 1 || sum.Removed != 2 || len(sum.Failed) != 1 || !strings.Contains(sum.Failed[0].Error(), "kb/b.txt") {
		t.Fatalf("after edits = %+v", sum)
	}
	if n := count(); n != 2 { // a.md's one section, and b.txt kept because it failed to parse
		t.Errorf("stored chunks = %d, want 2", n)
	}
	hits, err := eng.retrieve(ctx, "apricots", "", 5)
	if err != nil || len(hits) != 1 || hits[0].Chunk.Title != "Alpha" {
		t.Errorf("changed text not searchable: %+v %v", hits, err)
	}
	if hits, _ := eng.retrieve(ctx, "grapes", "", 5); len(hits) != 0 {
		t.Errorf("deleted file still found: %+v", hits)
	}
	if hits, _ := eng.retrieve(ctx, "bananas", "", 5); len(hits) != 1 {
		t.Errorf("a file that failed to parse lost its old chunks: %+v", hits)
	}

	// The index survives reopening.
	idx2, err := index.OpenEmbedded(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := idx2.Count(ctx); n != 2 {
		t.Errorf("reopened index has %d chunks, want 2", n)
	}
}

func TestSplitText(t *testing.T) {
	long := strings.Repeat("这是一个用来测试分块的句子。", 100)
	chunks := splitText(long, chunkMaxRunes, chunkOverlapRunes)
	if len(chunks) < 3 {
		t.Fatalf("chunks = %d", len(chunks))
	}
	for i, c := range chunks {
		if n := len([]rune(c)); n > chunkMaxRunes {
			t.Errorf("chunk %d has %d runes", i, n)
		}
		if !strings.HasSuffix(c, "。") {
			t.Errorf("chunk %d does not end on a sentence: %q", i, c[len(c)-10:])
		}
	}
	// Consecutive chunks overlap by whole sentences.
	if !strings.HasPrefix(chunks[1], "这是一个用来测试分块的句子。") {
		t.Errorf("no overlap: %q", chunks[1][:30])
	}
	if got := sentences("Step 1. do this. Then that! 然后这样。最后？"); len(got) != 4 {
		t.Errorf("sentences = %q", got)
	}
}
