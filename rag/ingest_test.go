package rag

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

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
	// Every sentence is distinct (numbered) and their lengths vary, so a
	// chunk that merely looks like its neighbour cannot pass for overlap,
	// and how many sentences fit the overlap changes from one boundary to
	// the next.
	numbered := func(n int, sentence func(i int) string, sep string) (string, []string) {
		var want []string
		for i := 1; i <= n; i++ {
			want = append(want, sentence(i))
		}
		return strings.Join(want, sep), want
	}
	tests := []struct {
		name string
		n    int
		sep  string
		sent func(i int) string
	}{
		{"chinese", 200, "", func(i int) string {
			return fmt.Sprintf("第%d句%s讲的是分块。", i, strings.Repeat("很", i%13))
		}},
		{"english", 150, " ", func(i int) string {
			return fmt.Sprintf("Sentence %d is %sabout chunks.", i, strings.Repeat("very ", i%9))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, want := numbered(tt.n, tt.sent, tt.sep)
			chunks := splitText(text, chunkMaxRunes, chunkOverlapRunes)
			if len(chunks) < 3 {
				t.Fatalf("chunks = %d, want at least 3", len(chunks))
			}
			var rebuilt []string // the chunks' sentences, each overlap dropped
			var prev []string
			for i, c := range chunks {
				if n := utf8.RuneCountInString(c); n > chunkMaxRunes {
					t.Errorf("chunk %d has %d runes, more than %d", i, n, chunkMaxRunes)
				}
				cur := sentences(c)
				if i == 0 {
					rebuilt, prev = cur, cur
					continue
				}
				// The chunk must open with the previous chunk's last k
				// sentences, k >= 1; distinct sentences make k unique.
				k := 0
				for j, s := range prev {
					if s == cur[0] {
						k = len(prev) - j
						break
					}
				}
				if k == 0 || k > len(cur) || strings.Join(cur[:k], "\x00") != strings.Join(prev[len(prev)-k:], "\x00") {
					t.Errorf("chunk %d does not start with the end of chunk %d:\n  starts %q\n  prev ends %q", i, i-1, clip(c, 40), prev[len(prev)-1])
					rebuilt, prev = append(rebuilt, cur...), cur
					continue
				}
				if n := utf8.RuneCountInString(strings.Join(cur[:k], "")); n > chunkOverlapRunes {
					t.Errorf("chunk %d overlaps chunk %d by %d runes, more than %d", i, i-1, n, chunkOverlapRunes)
				}
				rebuilt, prev = append(rebuilt, cur[k:]...), cur
			}
			if got := strings.Join(rebuilt, "\n"); got != strings.Join(want, "\n") {
				t.Errorf("chunks without their overlap give %d sentences, want the %d input sentences once each in order", len(rebuilt), len(want))
			}
		})
	}
	if got := sentences("Step 1. do this. Then that! 然后这样。最后？"); len(got) != 4 {
		t.Errorf("sentences = %q", got)
	}
}

// A source replaced document by document: new chunks are written before
// the old go, unchanged ones are not written again, StoredSources sees the
// version, and file ingestion never deletes what it did not write.
func TestReplaceSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	chdir(t, dir)
	idx, err := index.OpenEmbedded(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(Options{Index: idx})
	if err != nil {
		t.Fatal(err)
	}
	const src = FeishuSourcePrefix + "wiki/space/node"
	doc := func(version string, texts ...string) []SourceDoc {
		var docs []SourceDoc
		for i, text := range texts {
			docs = append(docs, SourceDoc{Kind: index.KindPassage, Title: "入职指南", Path: []string{fmt.Sprint("第", i+1, "节")},
				Text: text, Source: src, SpaceID: "space", NodeToken: "node", DocumentID: "doc", Anchor: fmt.Sprint("blk", i), Version: version})
		}
		return docs
	}
	stored := func() StoredSource {
		t.Helper()
		all, err := eng.StoredSources(ctx, FeishuSourcePrefix)
		if err != nil {
			t.Fatal(err)
		}
		return all[src]
	}
	sum, err := eng.ReplaceSource(ctx, src, doc("100", "第一天领电脑。", "第二天开会。"), nil)
	if err != nil || sum.Added != 2 || sum.Removed != 0 {
		t.Fatalf("first write: %+v, %v", sum, err)
	}
	first := stored()
	if first.Version != "100" || len(first.Chunks) != 2 {
		t.Fatalf("stored %+v, want version 100 and 2 chunks", first)
	}
	sum, err = eng.ReplaceSource(ctx, src, doc("100", "第一天领电脑。", "第二天开会。"), first.Chunks)
	if err != nil || sum.Added != 0 || sum.Unchanged != 2 || sum.Removed != 0 {
		t.Fatalf("same content: %+v, %v; want nothing written", sum, err)
	}
	sum, err = eng.ReplaceSource(ctx, src, doc("200", "第一天领电脑和工牌。"), first.Chunks)
	if err != nil || sum.Added != 1 || sum.Removed != 2 {
		t.Fatalf("edited: %+v, %v", sum, err)
	}
	if got := stored(); got.Version != "200" || len(got.Chunks) != 1 {
		t.Fatalf("after the edit: %+v", got)
	}
	hits, err := eng.RetrieveTitles(ctx, "工牌", 3)
	if err != nil || len(hits) != 1 {
		t.Fatalf("the edited text is not searchable: %v, %v", hits, err)
	}

	// Ingesting files from "." covers every file source, and only those.
	if err := os.WriteFile("note.txt", []byte("Note\nA note about plums."), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Ingest(ctx, []string{"."}, nil); err != nil {
		t.Fatal(err)
	}
	if got := stored(); len(got.Chunks) != 1 {
		t.Errorf("file ingestion removed the Feishu source's chunks: %+v", got)
	}
	if err := eng.RemoveChunks(ctx, stored().Chunks); err != nil {
		t.Fatal(err)
	}
	if got := stored(); len(got.Chunks) != 0 {
		t.Errorf("removed source still stored: %+v", got)
	}
}
