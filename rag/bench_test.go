package rag

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"kbbot/store/index"
)

// syntheticChunks builds n chunks by recombining the seed page's sentences,
// so term statistics look like the real corpus (common terms such as 模型
// appear in most chunks, which is the worst case for an inverted index).
func syntheticChunks(tb testing.TB, n int) []index.Chunk {
	tb.Helper()
	data, err := os.ReadFile("../seeds/waytoagi_model_training.txt")
	if err != nil {
		tb.Fatal(err)
	}
	pool := sentences(string(data))
	rng := rand.New(rand.NewPCG(1, 2))
	tok, _ := NewTokenizer(TokBigram)
	docs := make([]SourceDoc, 0, n)
	for i := range n {
		var b strings.Builder
		for range 3 + rng.IntN(6) {
			b.WriteString(pool[rng.IntN(len(pool))])
		}
		fmt.Fprintf(&b, " doc%d", i)
		docs = append(docs, SourceDoc{Kind: index.KindPassage, Title: fmt.Sprintf("synthetic %d", i), Text: b.String(), Source: fmt.Sprintf("synthetic/%d.txt", i/100)})
	}
	return buildChunks(docs, tok, "bench")
}

func benchQueries(tb testing.TB) []string {
	f, err := os.Open("testdata/eval.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cases, err := ReadEvalCases(f)
	if err != nil {
		tb.Fatal(err)
	}
	qs := make([]string, len(cases))
	for i, c := range cases {
		qs[i] = c.Q
	}
	return qs
}

// BenchmarkEmbeddedIngest measures chunk throughput of tokenising, building
// vectors and upserting into the embedded index (one persisted snapshot).
func BenchmarkEmbeddedIngest(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			data, _ := os.ReadFile("../seeds/waytoagi_model_training.txt")
			pool := sentences(string(data))
			rng := rand.New(rand.NewPCG(1, 2))
			docs := make([]SourceDoc, n)
			for i := range docs {
				var sb strings.Builder
				for range 3 + rng.IntN(6) {
					sb.WriteString(pool[rng.IntN(len(pool))])
				}
				docs[i] = SourceDoc{Kind: index.KindPassage, Title: fmt.Sprint(i), Text: sb.String(), Source: "s.txt"}
			}
			tok, _ := NewTokenizer(TokBigram)
			b.ResetTimer()
			for range b.N {
				idx, err := index.OpenEmbedded(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				chunks := buildChunks(docs, tok, "bench")
				if err := idx.Upsert(context.Background(), chunks); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "chunks/s")
		})
	}
}

// BenchmarkEmbeddedQuery measures lexical query latency (tokenise, search,
// top 12) and reports its p50 and p99 over the evaluation questions.
func BenchmarkEmbeddedQuery(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("chunks=%d", n), func(b *testing.B) {
			idx, err := index.OpenEmbedded(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if err := idx.Upsert(context.Background(), syntheticChunks(b, n)); err != nil {
				b.Fatal(err)
			}
			eng, _ := New(Options{Index: idx})
			qs := benchQueries(b)
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := eng.retrieve(ctx, qs[i%len(qs)], "", candidates); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkAskSeeds measures one extractive answer over the shipped seeds:
// FAQ check, retrieval, follow-ups and composition.
func BenchmarkAskSeeds(b *testing.B) {
	qs := benchQueries(b)
	eng := seededEngine(b, Options{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := eng.Ask(ctx, qs[i%len(qs)], nil); err != nil {
			b.Fatal(err)
		}
	}
}
