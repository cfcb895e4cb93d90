package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/bot/wiki"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store/index"
	"kbbot/store/retry"
)

// The same knowledge retrieves as well from a Feishu wiki as from files:
// the seeds' documents, served as a fake wiki (a docx per document, its
// heading path as headings, its paragraphs as text blocks), synced, give
// the evaluation set the recall@3 they give ingested from files.
func TestWikiRetrievesLikeFiles(t *testing.T) {
	ctx := context.Background()
	f, err := os.Open("../../rag/testdata/eval.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := rag.ReadEvalCases(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	newEngine := func() *rag.Engine {
		idx, err := index.OpenEmbedded(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		eng, err := rag.New(rag.Options{Index: idx})
		if err != nil {
			t.Fatal(err)
		}
		return eng
	}

	files := newEngine()
	if _, err := files.Ingest(ctx, []string{"../../seeds"}, nil); err != nil {
		t.Fatal(err)
	}
	fromFiles, err := files.Evaluate(ctx, cases)
	if err != nil {
		t.Fatal(err)
	}

	fake := feishufake.New("ou_kbbot")
	defer fake.Close()
	const space = "7034502641455497244"
	fake.AddSpace(space, "seeds")
	seeds, _ := filepath.Glob("../../seeds/*")
	docs := 0
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := rag.ParseFile(name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range parsed {
			var body []feishufake.Block
			for level, h := range d.Path {
				body = append(body, feishufake.Heading(min(level+1, 9), feishufake.Run(h)))
			}
			for _, para := range strings.Split(d.Text, "\n") {
				if para = strings.TrimSpace(para); para != "" {
					body = append(body, feishufake.Text(feishufake.Run(para)))
				}
			}
			fake.AddDocx(space, "", d.Title, body...)
			docs++
		}
	}
	for _, op := range []string{feishufake.OpWikiNodes, feishufake.OpDocxBlocks, feishufake.OpWikiSpace} {
		fake.RateLimit(op, 0, 0)
	}
	log := testkit.Logger(t)
	api := openapi.New(openapi.NewLarkClient("cli_wiki_eval", "secret", fake.URL, log), log, retry.Policy{Attempts: 3})
	for _, a := range []string{openapi.APIListSpaces, openapi.APIGetSpace, openapi.APIListNodes, openapi.APIGetNode, openapi.APIGetDocument, openapi.APIListBlocks} {
		api.SetPace(a, rate.Inf, 1)
	}
	synced := newEngine()
	rep, err := wiki.New(api, synced, wiki.Config{Spaces: []string{space}, BaseURL: "https://example.feishu.cn"}, log).Run(ctx)
	if err != nil || rep.Read != docs {
		t.Fatalf("sync: %v, %+v; want %d documents read", err, rep, docs)
	}
	fromWiki, err := synced.Evaluate(ctx, cases)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("files: recall@1 %.3f recall@3 %.3f MRR %.3f; wiki: recall@1 %.3f recall@3 %.3f MRR %.3f (%d documents)",
		fromFiles.Recall1, fromFiles.Recall3, fromFiles.MRR, fromWiki.Recall1, fromWiki.Recall3, fromWiki.MRR, docs)
	if fromWiki.Recall3 < fromFiles.Recall3 {
		t.Errorf("recall@3 from the wiki %.3f, from files %.3f; misses: %v", fromWiki.Recall3, fromFiles.Recall3, fromWiki.Misses)
	}
}
