package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"kbbot/bot/kblink"
	"kbbot/rag"
	"kbbot/store/index"
)

// knowledgeIndex is the store behind the engine, plus what the CLI needs to
// manage it.
type knowledgeIndex interface {
	rag.Index
	Rebuild(ctx context.Context) error
	Close() error
}

// openIndex opens Qdrant when QDRANT_URL is set, else the embedded index.
func (a *app) openIndex(ctx context.Context, embed *rag.Embedder) (knowledgeIndex, error) {
	if a.cfg.QdrantURL == "" {
		idx, err := index.OpenEmbedded(a.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		idx.Logger = a.log
		return idx, nil
	}
	dim, err := embed.Dim(ctx)
	if err != nil {
		return nil, fmt.Errorf("size the dense vector: %w", err)
	}
	return index.NewQdrant(ctx, index.QdrantConfig{
		URL:        a.cfg.QdrantURL,
		APIKey:     a.cfg.QdrantAPIKey,
		Collection: a.cfg.QdrantCollection,
		DenseDim:   dim,
		Logger:     a.log,
		// Test binaries report no client version; the check only warns anyway.
		SkipCompatibilityCheck: true,
	})
}

// openEngine wires the knowledge store, the optional embedder and LLM into
// an engine. The caller closes the returned index.
func (a *app) openEngine(ctx context.Context) (*rag.Engine, knowledgeIndex, error) {
	var embed *rag.Embedder
	var llm *rag.LLM
	if a.cfg.OpenAIAPIKey != "" || a.cfg.OpenAIEmbeddingModel != "" {
		client := rag.NewOpenAIClient(a.cfg.OpenAIAPIKey, a.cfg.OpenAIBaseURL)
		if a.cfg.OpenAIEmbeddingModel != "" {
			embed = rag.NewEmbedder(client, a.cfg.OpenAIEmbeddingModel, a.cfg.OpenAIEmbeddingDim)
		}
		if a.cfg.OpenAIAPIKey != "" {
			llm = rag.NewLLM(client, a.cfg.OpenAIModel, a.cfg.LLMTimeout)
			llm.Idle = a.cfg.LLMIdle
			llm.MaxTokens = a.cfg.OpenAIMaxTokens
		}
	}
	idx, err := a.openIndex(ctx, embed)
	if err != nil {
		return nil, nil, err
	}
	eng, err := rag.New(rag.Options{Index: idx, Embedder: embed, LLM: llm, Logger: a.log, Tokenizer: a.cfg.Tokenizer, OutOfKB: a.cfg.OutOfKB})
	if err != nil {
		idx.Close()
		return nil, nil, err
	}
	return eng, idx, nil
}

// openSeededEngine is openEngine for commands that answer: an empty index is
// filled from the seeds folder first.
func (a *app) openSeededEngine(ctx context.Context) (*rag.Engine, knowledgeIndex, error) {
	eng, idx, err := a.openEngine(ctx)
	if err != nil {
		return nil, nil, err
	}
	seeded, err := eng.EnsureSeeded(ctx, a.cfg.SeedsDir)
	if err != nil {
		idx.Close()
		return nil, nil, err
	}
	if seeded {
		a.log.Info("knowledge index was empty; ingested seeds", "dir", a.cfg.SeedsDir)
	}
	return eng, idx, nil
}

func (a *app) ask(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ask", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	question := strings.TrimSpace(strings.Join(fs.Args(), " "))
	if question == "" {
		fmt.Fprintln(a.stderr, "usage: kbbot ask [--json] QUESTION")
		return errUsage
	}
	eng, idx, err := a.openSeededEngine(ctx)
	if err != nil {
		return err
	}
	defer idx.Close()
	ans, err := eng.Ask(ctx, question, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		if ans.References == nil {
			ans.References = []rag.Reference{}
		}
		if ans.FollowUps == nil {
			ans.FollowUps = []string{}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(struct {
			Answer     string          `json:"answer"`
			References []jsonReference `json:"references"`
			FollowUps  []string        `json:"follow_ups"`
			Mode       string          `json:"mode"`
		}{ans.Text, jsonRefs(ans.References), ans.FollowUps, ans.Mode})
	}
	printAnswer(a.stdout, ans, a.kbLinks())
	return nil
}

// kbLinks makes the signed /kb links serve would put on a card, when
// KBBOT_LINK_SECRET is configured; nil otherwise, since a link signed with
// any other secret would not open.
func (a *app) kbLinks() func(docID string) string {
	if a.cfg.LinkSecret == "" {
		return nil
	}
	return kblink.New([]byte(a.cfg.LinkSecret), a.cfg.LinkTTL, strings.TrimRight(a.cfg.PublicURL, "/"), nil).URL
}

// jsonReference is the stable --json shape of a reference.
type jsonReference struct {
	Title   string  `json:"title"`
	URL     string  `json:"url"`
	Snippet string  `json:"snippet"`
	Score   float64 `json:"score"`
}

func jsonRefs(refs []rag.Reference) []jsonReference {
	out := make([]jsonReference, len(refs))
	for i, r := range refs {
		out[i] = jsonReference{Title: r.Title, URL: r.URL, Snippet: r.Snippet, Score: r.Score}
	}
	return out
}

// printAnswer writes an answer for a person. A source without a URL of its
// own is shown with a link to its page on the bot (served by `kbbot
// serve`) when kbLink can make one, else by its doc id.
func printAnswer(w io.Writer, ans rag.Answer, kbLink func(docID string) string) {
	fmt.Fprintln(w, ans.Text)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "内容由 AI 大模型生成，请仔细甄别")
	if len(ans.References) > 0 {
		fmt.Fprintln(w, "\n参考资料")
		for i, r := range ans.References {
			loc := r.URL
			switch {
			case loc != "":
			case kbLink != nil:
				loc = kbLink(r.DocID)
			default:
				loc = "doc_id " + r.DocID
			}
			fmt.Fprintf(w, "  [%d] %s (%s)\n", i+1, r.Title, loc)
		}
	}
	if len(ans.FollowUps) > 0 {
		fmt.Fprintln(w, "\n其他人在问")
		for _, q := range ans.FollowUps {
			fmt.Fprintf(w, "  - %s\n", q)
		}
	}
}

func (a *app) ingest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	rebuild := fs.Bool("rebuild", false, "drop the index (or Qdrant collection) and ingest from scratch")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{a.cfg.SeedsDir}
	}
	eng, idx, err := a.openEngine(ctx)
	var mismatch *index.MismatchError
	if errors.As(err, &mismatch) && *rebuild {
		// The old collection no longer fits the configuration: recreate it.
		a.log.Warn("recreating the knowledge collection", "reason", mismatch.Error())
		eng, idx, err = a.openEngineRebuilt(ctx)
	}
	if err != nil {
		return err
	}
	defer idx.Close()
	if *rebuild && mismatch == nil {
		if err := idx.Rebuild(ctx); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	progress, finish := a.progressBar("ingesting")
	sum, err := eng.Ingest(ctx, paths, progress)
	finish()
	for _, ferr := range sum.Failed {
		fmt.Fprintln(a.stderr, "skipped:", ferr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "files %d (failed %d), documents %d, chunks %d: added %d, updated %d, removed %d, unchanged %d\n",
		sum.Files, len(sum.Failed), sum.Documents, sum.Chunks, sum.Added, sum.Updated, sum.Removed, sum.Unchanged)
	if len(sum.Failed) > 0 {
		return fmt.Errorf("%d file(s) could not be ingested; the rest were", len(sum.Failed))
	}
	return nil
}

// openEngineRebuilt opens the Qdrant collection after dropping it.
func (a *app) openEngineRebuilt(ctx context.Context) (*rag.Engine, knowledgeIndex, error) {
	if err := index.DropQdrantCollection(ctx, index.QdrantConfig{
		URL: a.cfg.QdrantURL, APIKey: a.cfg.QdrantAPIKey, Collection: a.cfg.QdrantCollection, SkipCompatibilityCheck: true,
	}); err != nil {
		return nil, nil, err
	}
	return a.openEngine(ctx)
}

func (a *app) eval(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(a.stderr, "usage: kbbot eval FILE.jsonl...")
		return errUsage
	}
	var cases []rag.EvalCase
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		cs, err := rag.ReadEvalCases(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		cases = append(cases, cs...)
	}
	eng, idx, err := a.openSeededEngine(ctx)
	if err != nil {
		return err
	}
	defer idx.Close()
	res, err := eng.Evaluate(ctx, cases)
	if err != nil {
		return err
	}
	for _, m := range res.Misses {
		fmt.Fprintln(a.stdout, "miss:", m)
	}
	for _, q := range res.Cited {
		fmt.Fprintln(a.stdout, "cited out of domain:", q)
	}
	if res.Cases > 0 {
		fmt.Fprintf(a.stdout, "questions %d  recall@1 %.3f  recall@3 %.3f  MRR %.3f\n", res.Cases, res.Recall1, res.Recall3, res.MRR)
	}
	if res.OutOfDomain > 0 {
		fmt.Fprintf(a.stdout, "out-of-domain %d  with any reference %d\n", res.OutOfDomain, len(res.Cited))
	}
	return nil
}

// progressBar is a progress callback that draws a bar when stderr is a
// terminal (and does nothing otherwise), and finish, to call when the work
// ends. The total may grow as the work goes on.
func (a *app) progressBar(desc string) (progress func(done, total int, item string), finish func()) {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func(int, int, string) {}, func() {}
	}
	var bar *progressbar.ProgressBar
	progress = func(done, total int, _ string) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr),
				progressbar.OptionSetDescription(desc), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		}
		if int64(total) != bar.GetMax64() {
			bar.ChangeMax(total)
		}
		bar.Set(done)
	}
	return progress, func() {
		if bar != nil {
			bar.Finish()
		}
	}
}
