package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/qdrant/go-client/qdrant"

	"kbbot/rag/llmfake"
	"kbbot/store/index/qdranttest"
)

// runCLI runs kbbot in-process with env as its whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	return out.String(), errb.String(), err
}

type askJSON struct {
	Answer     string `json:"answer"`
	References []struct {
		Title   string  `json:"title"`
		URL     string  `json:"url"`
		Snippet string  `json:"snippet"`
		Score   float64 `json:"score"`
	} `json:"references"`
	FollowUps []string `json:"follow_ups"`
	Mode      string   `json:"mode"`
}

func TestAskOnEmbeddedDefaults(t *testing.T) {
	seeds, _ := filepath.Abs("../../seeds")
	env := map[string]string{"KBBOT_DATA_DIR": t.TempDir(), "KBBOT_SEEDS_DIR": seeds}
	out, _, err := runCLI(t, env, "ask", "模型训练的底层原理是什么？")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "参考资料") || !strings.Contains(out, "[1] Ranger") || !strings.Contains(out, "其他人在问") {
		t.Errorf("answer lacks references or follow-ups:\n%s", out)
	}
	// Without KBBOT_LINK_SECRET no link would open: the doc id, no link.
	if !strings.Contains(out, "(doc_id ") || strings.Contains(out, "/kb/") {
		t.Errorf("sources without a URL, no link secret: want doc ids, no /kb links:\n%s", out)
	}
	env["KBBOT_LINK_SECRET"] = "ask-test-link-secret-of-32-bytes!"
	env["KBBOT_PUBLIC_URL"] = "https://kb.test"
	out, _, err = runCLI(t, env, "ask", "模型训练的底层原理是什么？")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\(https://kb\.test/kb/[0-9a-f]+\?exp=\d+&sig=[0-9a-f]{64}\)`).MatchString(out) || strings.Contains(out, "(doc_id ") {
		t.Errorf("sources without a URL, with a link secret: want signed /kb links:\n%s", out)
	}
	out, _, err = runCLI(t, env, "ask", "--json", "RAG 是怎么实现的？")
	if err != nil {
		t.Fatal(err)
	}
	var a askJSON
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&a); err != nil || dec.More() {
		t.Fatalf("--json must print exactly one object: %v\n%s", err, out)
	}
	if a.Mode != "extractive" || len(a.References) == 0 || len(a.FollowUps) < 3 {
		t.Errorf("--json = %+v", a)
	}
}

// TestQdrantRoundTripThroughCLI runs `kbbot ingest` and `kbbot ask --json`
// against the in-process Qdrant stand-in through the official client. It
// proves the requests and the round trip (collection schema, payloads,
// idempotent re-ingest, references built from Qdrant's results); it does not
// prove Qdrant's own ranking, which only the QDRANT_URL suite in store/index does.
func TestQdrantRoundTripThroughCLI(t *testing.T) {
	srv := qdranttest.Start(t)
	seeds, _ := filepath.Abs("../../seeds")
	env := map[string]string{
		"QDRANT_URL":        srv.URL(),
		"QDRANT_COLLECTION": "kb_cli",
		"KBBOT_DATA_DIR":    t.TempDir(),
		"KBBOT_SEEDS_DIR":   seeds,
	}
	out, stderr, err := runCLI(t, env, "ingest", seeds)
	if err != nil {
		t.Fatalf("ingest: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "added 34") {
		t.Errorf("ingest summary: %s", out)
	}
	cfg, ok := srv.CollectionConfig("kb_cli")
	if !ok {
		t.Fatal("collection not created")
	}
	bm25 := cfg.GetSparseVectorsConfig().GetMap()["bm25"]
	if bm25 == nil || bm25.GetModifier() != qdrant.Modifier_Idf {
		t.Errorf("sparse vector config = %v, want bm25 with the IDF modifier", cfg.GetSparseVectorsConfig())
	}
	points := srv.Points("kb_cli")
	if len(points) != 34 {
		t.Fatalf("points = %d, want 34", len(points))
	}
	for _, p := range points {
		for _, f := range []string{"title", "doc_id", "text", "url", "kind", "chunk_id"} {
			if _, ok := p.Payload[f]; !ok {
				t.Fatalf("point %s lacks payload %q: %v", p.ID, f, p.Payload)
			}
		}
		if len(p.Sparse["bm25"].Indices) == 0 {
			t.Fatalf("point %s has no sparse vector", p.ID)
		}
	}

	upserts := srv.Calls("Points/Upsert")
	out, _, err = runCLI(t, env, "ingest", seeds)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Calls("Points/Upsert"); got != upserts || !strings.Contains(out, "unchanged 34") {
		t.Errorf("re-ingest of unchanged seeds wrote: upserts %d → %d, %s", upserts, got, out)
	}

	queries := srv.Calls("Points/Query")
	out, _, err = runCLI(t, env, "ask", "--json", "检索增强生成在工程上分哪几步实现？")
	if err != nil {
		t.Fatal(err)
	}
	var a askJSON
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatal(err)
	}
	if srv.Calls("Points/Query") <= queries {
		t.Error("ask did not query Qdrant")
	}
	titles := map[string]bool{}
	for _, p := range points {
		titles[p.Payload["title"].GetStringValue()] = true
	}
	if len(a.References) == 0 {
		t.Fatalf("no references: %+v", a)
	}
	for _, r := range a.References {
		title, _, _ := strings.Cut(r.Title, " › ") // the section is appended to a passage's title
		if !titles[title] || r.Score <= 0 {
			t.Errorf("reference %q (score %v) did not come from Qdrant's points", r.Title, r.Score)
		}
	}
	if r := a.References[0].Title; r != "RAG技术实现的原理步骤" && r != "AI搜索的底层逻辑是怎样的" {
		t.Errorf("top reference = %q", r)
	}
}

// `kbbot eval` takes several files and reports the out-of-domain questions
// apart from recall.
func TestEvalReportsOutOfDomain(t *testing.T) {
	seeds, _ := filepath.Abs("../../seeds")
	env := map[string]string{"KBBOT_DATA_DIR": t.TempDir(), "KBBOT_SEEDS_DIR": seeds}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	ood := filepath.Join(dir, "ood.jsonl")
	writeFile(t, in, `{"q": "Transformer 的自注意力机制是怎么回事？", "expect": ["transformer原理"]}`+"\n")
	writeFile(t, ood, `{"q": "红烧肉怎么做", "expect": []}`+"\n"+`{"q": "How do I fix a flat bicycle tire?", "expect": []}`+"\n")
	out, _, err := runCLI(t, env, "eval", in, ood)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"questions 1  recall@1 1.000", "out-of-domain 2  with any reference 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The answer settings reach the engine: OPENAI_MAX_TOKENS caps the
// request, KBBOT_OUT_OF_KB decides what a question outside the knowledge
// base gets.
func TestAskOutOfKnowledgeBaseSettings(t *testing.T) {
	seeds, _ := filepath.Abs("../../seeds")
	for _, tc := range []struct {
		outOfKB, mode string
		requests      int
	}{
		{"", "general", 1},
		{"refuse", "llm", 0},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			llm := llmfake.Start(t, llmfake.Default(llmfake.Reply("目前知识库中暂时没有关于红烧肉的相关内容。但一般来说，先焯水。")))
			env := map[string]string{"KBBOT_DATA_DIR": t.TempDir(), "KBBOT_SEEDS_DIR": seeds, "OPENAI_API_KEY": "k", "OPENAI_BASE_URL": llm.URL,
				"OPENAI_MAX_TOKENS": "77", "KBBOT_OUT_OF_KB": tc.outOfKB}
			out, _, err := runCLI(t, env, "ask", "--json", "红烧肉怎么做")
			if err != nil {
				t.Fatal(err)
			}
			var a askJSON
			if err := json.Unmarshal([]byte(out), &a); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			chats := llm.Chats()
			if a.Mode != tc.mode || len(a.References) != 0 || len(chats) != tc.requests {
				t.Errorf("mode %s, %d references, %d requests; want %s, none, %d", a.Mode, len(a.References), len(chats), tc.mode, tc.requests)
			}
			for _, r := range chats {
				if r.MaxTokens != 77 {
					t.Errorf("max_tokens %d, want 77", r.MaxTokens)
				}
			}
		})
	}
}
