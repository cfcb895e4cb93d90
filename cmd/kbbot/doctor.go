package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	larkcore "github.com/larksuite/oapi-sdk-go/v3/core"
	openai "github.com/sashabaranov/go-openai"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kbbot/bot/openapi"
	"kbbot/config"
	"kbbot/rag"
	"kbbot/store"
	"kbbot/store/index"
	"kbbot/store/retry"
)

// Time each check may take. Providers of models get longer: a cold model
// can take seconds to answer even one token.
const (
	doctorTimeout    = 5 * time.Second
	doctorAPITimeout = 15 * time.Second
)

// Statuses of a doctor line.
const (
	statusOK   = "ok"
	statusFail = "FAIL"
	statusSkip = "skip"
)

// finding is one line of the report, with the fix printed under a failure
// (or a skip that serve would refuse).
type finding struct {
	status, detail, fix string
}

func passed(format string, args ...any) finding {
	return finding{status: statusOK, detail: fmt.Sprintf(format, args...)}
}

func failed(detail, fix string) finding { return finding{status: statusFail, detail: detail, fix: fix} }

func skipped(detail, fix string) finding {
	return finding{status: statusSkip, detail: detail, fix: fix}
}

// doctorCheck is one dependency: run reports one or more lines for it.
type doctorCheck struct {
	name    string
	timeout time.Duration
	run     func(ctx context.Context) []finding
}

// doctorRun holds what the checks share.
type doctorRun struct {
	a  *app
	ws bool // long-connection mode: no encrypt key or verification token needed
	// appOK: the app's credentials and bot info passed, so the checks of
	// its scopes and knowledge mean something.
	appOK bool
	// embedProbe embeds one string, once: the knowledge store needs the
	// dimension to check a Qdrant collection, and the embeddings check
	// reports it.
	embedProbe func() ([]float32, error)
}

// doctor checks the configuration and every dependency for real, printing
// one line per check and the fix under each failure. It fails when any check
// does, so scripts and container probes can rely on its exit status.
func (a *app) doctor(ctx context.Context, args []string) error {
	flags := flag.NewFlagSet("doctor", flag.ContinueOnError)
	flags.SetOutput(a.stderr)
	ws := flags.Bool("ws", false, "check for the long connection: no encrypt key or verification token needed")
	if err := flags.Parse(args); err != nil {
		return errUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintln(a.stderr, "usage: kbbot doctor [--ws]")
		return errUsage
	}
	d := &doctorRun{a: a, ws: *ws || a.cfg.FeishuMode == "ws"}
	d.embedProbe = sync.OnceValues(func() ([]float32, error) {
		ctx, cancel := context.WithTimeout(ctx, doctorAPITimeout)
		defer cancel()
		client := rag.NewOpenAIClient(a.cfg.OpenAIAPIKey, a.cfg.OpenAIBaseURL)
		vecs, err := rag.NewEmbedder(client, a.cfg.OpenAIEmbeddingModel, a.cfg.OpenAIEmbeddingDim).Embed(ctx, []string{"kbbot doctor"})
		if err != nil {
			return nil, withDeadline(err, doctorAPITimeout)
		}
		if len(vecs[0]) == 0 {
			return nil, fmt.Errorf("embeddings %s: the model returned an empty vector", a.cfg.OpenAIEmbeddingModel)
		}
		return vecs[0], nil
	})
	checks := []doctorCheck{
		{"configuration", doctorTimeout, d.configuration},
		{"feishu app", doctorTimeout, d.feishuApp},
		{"feishu scopes", doctorTimeout, d.feishuScopes},
		{"feishu knowledge", doctorAPITimeout, d.feishuKnowledge},
		{"redis", doctorTimeout, d.redis},
		{"knowledge store", doctorTimeout, d.knowledgeStore},
		{"llm", doctorAPITimeout, d.llm},
		{"embeddings", doctorAPITimeout, d.embeddings},
	}
	nfailed := 0
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		findings := c.run(cctx)
		timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		anyFailed := false
		for _, f := range findings {
			if f.status == statusFail {
				anyFailed = true
				if timedOut && !strings.Contains(f.detail, "no answer within") {
					f.detail += fmt.Sprintf(" (no answer within %s)", c.timeout)
				}
			}
			printFinding(a.stdout, c.name, f)
		}
		if anyFailed {
			nfailed++
		}
	}
	if nfailed > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", nfailed)
	}
	return nil
}

// printFinding writes one line of the report, and its fix. Both go
// through config.RedactText: fixes name base URLs, and errors quote request
// URLs, either of which may carry user:password@ or ?api-key=.
func printFinding(w io.Writer, name string, f finding) {
	fmt.Fprintf(w, "%-6s%-17s%s\n", f.status, name, config.RedactText(oneLine(f.detail)))
	if f.fix != "" {
		fmt.Fprintf(w, "      fix: %s\n", config.RedactText(oneLine(f.fix)))
	}
}

// oneLine keeps a joined or multi-line error on its report line.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// withDeadline says plainly that a call timed out; a bare "context deadline
// exceeded" reads like a bug.
func withDeadline(err error, d time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (no answer within %s)", err, d)
	}
	return err
}

// configuration reports what serve would refuse to start with. Load has
// already accepted every value by the time doctor runs.
func (d *doctorRun) configuration(context.Context) []finding {
	c := d.a.cfg
	if d.ws {
		c.FeishuMode = "ws"
	}
	if err := c.ValidateServe(); err != nil {
		var out []finding
		for _, e := range unjoin(err) {
			// ValidateServe writes "VAR: problem; how to fix it".
			problem, fix, _ := strings.Cut(e.Error(), "; ")
			out = append(out, failed(problem, fix))
		}
		return out
	}
	if c.FeishuMode == "ws" {
		return []finding{passed("long-connection mode: app credentials and link secret set (no encrypt key or verification token needed)")}
	}
	if c.FeishuEncryptKey == "" {
		return []finding{passed("webhook mode with KBBOT_INSECURE_DEV=true: requests are neither signed nor encrypted; development only")}
	}
	return []finding{passed("webhook mode: app credentials, encrypt key, verification token and link secret set")}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// feishuApp fetches a tenant token and the bot's info through the SDK.
func (d *doctorRun) feishuApp(ctx context.Context) []finding {
	c := d.a.cfg
	if c.FeishuAppID == "" || c.FeishuAppSecret == "" {
		return []finding{skipped("FEISHU_APP_ID or FEISHU_APP_SECRET not set",
			"serve needs both to reply; copy them from the app's Credentials page on the Feishu Open Platform")}
	}
	baseFix := fmt.Sprintf("check FEISHU_BASE_URL (%s; https://open.larksuite.com for Lark) and that this host can reach it", c.FeishuBaseURL)
	client := openapi.NewLarkClient(c.FeishuAppID, c.FeishuAppSecret, c.FeishuBaseURL, d.a.log)
	// Ask for the token directly: the SDK's process-wide token cache would
	// otherwise hide a secret that stopped working.
	resp, err := client.GetTenantAccessTokenBySelfBuiltApp(ctx, &larkcore.SelfBuiltTenantAccessTokenReq{
		AppID: c.FeishuAppID, AppSecret: c.FeishuAppSecret,
	})
	switch {
	case err != nil:
		return []finding{failed("tenant token: "+err.Error(), baseFix)}
	case resp.StatusCode == http.StatusNotFound:
		return []finding{failed(fmt.Sprintf("tenant token: HTTP 404 from %s", c.FeishuBaseURL), baseFix)}
	case !resp.Success():
		return []finding{failed(fmt.Sprintf("tenant token refused: code %d: %s", resp.Code, resp.Msg),
			"check FEISHU_APP_ID / FEISHU_APP_SECRET on the app's Credentials page")}
	case resp.TenantAccessToken == "":
		return []finding{failed(fmt.Sprintf("tenant token: HTTP %d answer without a token", resp.StatusCode), baseFix)}
	}
	openID, err := openapi.CheckApp(ctx, client)
	if err != nil {
		return []finding{failed("tenant token fetched, but bot info failed: "+err.Error(),
			"enable the Bot capability (Features > Bot) for the app and publish a new version of it")}
	}
	d.appOK = true
	return []finding{passed("tenant token fetched, bot open_id %s", openID)}
}

// apiClient is the Open API client doctor's checks share: one attempt per
// call, no waiting, so a failure shows at once.
func (d *doctorRun) apiClient() *openapi.Client {
	c := d.a.cfg
	return openapi.New(openapi.NewLarkClient(c.FeishuAppID, c.FeishuAppSecret, c.FeishuBaseURL, d.a.log), d.a.log, retry.Policy{Attempts: 1})
}

// scopeFix names what to grant for a call refused for its scope
// (99991672 says which scopes would do).
func scopeFix(err error, what string) string {
	if scopes := openapi.MissingScopes(err); len(scopes) > 0 {
		return fmt.Sprintf("grant the app one of the scopes %s (Permissions & Scopes on the Feishu Open Platform), then publish a new version: %s needs it", strings.Join(scopes, ", "), what)
	}
	return ""
}

// feishuScopes proves, with a harmless real call each, the scopes the bot
// needs beyond the bot info. Streaming needs cardkit:card:write (creating,
// updating and streaming a card entity; without it every CardKit call
// answers 99991672 and every LLM answer falls back to one late card); the
// probe creates a card entity, which is never sent and expires after 14
// days (https://open.feishu.cn/document/cardkit-v1/card/create).
func (d *doctorRun) feishuScopes(ctx context.Context) []finding {
	if !d.appOK {
		return []finding{skipped("the app check above did not pass", "")}
	}
	probe := []byte(`{"schema":"2.0","config":{"update_multi":true},"body":{"elements":[{"tag":"markdown","content":"kbbot doctor"}]}}`)
	_, err := d.apiClient().CreateCard(ctx, d.a.log, probe)
	if err != nil {
		fix := scopeFix(err, "streaming answers (CardKit)")
		if fix == "" {
			fix = "check the app's permissions; streaming answers need cardkit:card:write"
		}
		return []finding{failed("creating a CardKit card entity failed: "+err.Error(), fix)}
	}
	return []finding{passed("cardkit:card:write: a card entity was created (never sent)")}
}

// feishuKnowledge checks that the app can list each configured wiki space
// and read one document of it, and names what is missing: the scope, or
// the step that adds the app to the space.
func (d *doctorRun) feishuKnowledge(ctx context.Context) []finding {
	c := d.a.cfg
	if !c.SyncEnabled() {
		return []finding{skipped("no Feishu source configured (FEISHU_WIKI_SPACES, FEISHU_WIKI_ROOTS, FEISHU_DOCS)", "")}
	}
	if !d.appOK {
		return []finding{failed("the app check above did not pass", "the sync reads the wiki as the app: fix the app first")}
	}
	api := d.apiClient()
	const addApp = "add the app to the space: create a group with the bot, then in the space's 知识库设置 > 成员设置 add that group as a member (https://open.feishu.cn/document/server-docs/docs/wiki-v2/wiki-qa)"
	fail := func(what string, err error, scopeWhat string) finding {
		fix := scopeFix(err, scopeWhat)
		switch {
		case fix != "":
		case openapi.IsNoAccess(err):
			fix = addApp
		case openapi.IsNotFound(err):
			fix = "check the id: no such space, node or document"
		default:
			fix = "check FEISHU_BASE_URL and the app's credentials"
		}
		return failed(what+": "+err.Error(), fix)
	}
	var spaces []string
	for _, id := range c.WikiSpaces {
		if id != "all" {
			spaces = append(spaces, id)
			continue
		}
		list, _, err := api.ListSpaces(ctx, "")
		if err != nil {
			return []finding{fail("listing the wiki spaces", err, "listing the wiki spaces")}
		}
		if len(list) == 0 {
			// An app that is a member of no space gets an empty list, no
			// error (https://open.feishu.cn/document/server-docs/docs/wiki-v2/space/list).
			return []finding{failed("FEISHU_WIKI_SPACES=all, but the app can read no wiki space", addApp)}
		}
		for _, sp := range list {
			spaces = append(spaces, sp.ID)
		}
	}
	var out []finding
	for _, id := range spaces {
		sp, err := api.GetSpace(ctx, id)
		if err != nil {
			out = append(out, fail("wiki space "+id, err, "reading a wiki space"))
			continue
		}
		nodes, _, err := api.ListNodes(ctx, id, "", "")
		if err != nil {
			out = append(out, fail("listing the nodes of "+sp.Name, err, "listing wiki nodes"))
			continue
		}
		var doc *openapi.Node
		for i := range nodes {
			if nodes[i].ObjType == "docx" && nodes[i].NodeType != "shortcut" {
				doc = &nodes[i]
				break
			}
		}
		if doc == nil {
			out = append(out, passed("wiki space %s (%s): listed; no docx document on its first page to try reading", sp.Name, id))
			continue
		}
		if _, _, err := api.ListBlocks(ctx, doc.ObjToken, ""); err != nil {
			out = append(out, fail(fmt.Sprintf("reading %q in %s", doc.Title, sp.Name), err, "reading docx documents"))
			continue
		}
		out = append(out, passed("wiki space %s (%s): listed, and %q read", sp.Name, id, doc.Title))
	}
	if len(spaces) == 0 {
		out = append(out, skipped("no wiki space configured (FEISHU_WIKI_ROOTS or FEISHU_DOCS only): `kbbot sync` checks those", ""))
	}
	return out
}

// redis connects and pings. The URL is never printed: it may hold a password.
func (d *doctorRun) redis(ctx context.Context) []finding {
	raw := d.a.cfg.RedisURL
	if raw == "" {
		return []finding{skipped("REDIS_URL not set: state is kept in process, so run a single replica only", "")}
	}
	opts, err := store.ParseRedisURL(raw)
	if err != nil {
		return []finding{failed(err.Error(), "REDIS_URL must look like redis://[:password@]host:6379/0 (rediss:// for TLS)")}
	}
	rdb, err := store.OpenRedis(ctx, raw, "")
	if err == nil {
		err = rdb.Ping(ctx)
		rdb.Close()
	}
	if err != nil {
		fix := "start Redis or correct REDIS_URL (redis://host:6379/0)"
		if msg := err.Error(); strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "invalid password") {
			fix = "check the user and password in REDIS_URL (redis://[user]:password@host:6379/0)"
		}
		return []finding{failed(err.Error(), fix)}
	}
	return []finding{passed("PING answered by %s", strings.Join(opts.Addrs, ","))}
}

// knowledgeStore opens the index serve would use and counts its chunks. For
// Qdrant that also checks the collection's vectors (and creates a missing
// collection, as serve would).
func (d *doctorRun) knowledgeStore(ctx context.Context) []finding {
	c := d.a.cfg
	empty := fmt.Sprintf("run `kbbot ingest` (serve ingests %s when it finds the index empty)", c.SeedsDir)
	if c.QdrantURL == "" {
		where := "embedded index in " + c.DataDir + " (QDRANT_URL not set)"
		if _, err := os.Stat(c.DataDir); errors.Is(err, os.ErrNotExist) {
			return []finding{passed("%s does not exist yet: %s", where, empty)}
		}
		idx, err := index.OpenEmbedded(c.DataDir)
		if err != nil {
			return []finding{failed(err.Error(),
				"KBBOT_DATA_DIR must be a readable, writable directory; if its index is damaged, run `kbbot ingest --rebuild`")}
		}
		defer idx.Close()
		n, err := idx.Count(ctx)
		if err != nil {
			return []finding{failed(err.Error(), "run `kbbot ingest --rebuild`")}
		}
		if n == 0 {
			return []finding{passed("%s is empty: %s", where, empty)}
		}
		return []finding{passed("%s: %d chunks", where, n)}
	}

	// The same dense size openIndex would ask for.
	dim := 0
	if c.OpenAIEmbeddingModel != "" {
		dim = c.OpenAIEmbeddingDim
		if dim == 0 {
			vec, err := d.embedProbe()
			if err != nil {
				return []finding{failed("cannot check the collection's vectors: the embedding call that sizes them failed (see embeddings below)",
					"fix the embeddings check, or set OPENAI_EMBEDDING_DIM")}
			}
			dim = len(vec)
		}
	}
	qfix := "check QDRANT_URL (gRPC port 6334) and QDRANT_API_KEY"
	q, err := index.NewQdrant(ctx, index.QdrantConfig{
		URL:                    c.QdrantURL,
		APIKey:                 c.QdrantAPIKey,
		Collection:             c.QdrantCollection,
		DenseDim:               dim,
		Logger:                 d.a.log,
		SkipCompatibilityCheck: true,
	})
	if mismatch, ok := errors.AsType[*index.MismatchError](err); ok {
		return []finding{failed(
			fmt.Sprintf("collection %q does not match the configuration: %s", mismatch.Collection, strings.Join(mismatch.Diffs, "; ")),
			"run `kbbot ingest --rebuild` to recreate it and ingest again, or set QDRANT_COLLECTION to a new collection")}
	}
	if err != nil {
		if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
			qfix = "check QDRANT_API_KEY"
		}
		return []finding{failed(err.Error(), qfix)}
	}
	defer q.Close()
	n, err := q.Count(ctx)
	if err != nil {
		return []finding{failed(err.Error(), qfix)}
	}
	vectors := "bm25 only"
	if dim > 0 {
		vectors = fmt.Sprintf("dense %d + bm25", dim)
	}
	where := fmt.Sprintf("qdrant collection %q (%s)", c.QdrantCollection, vectors)
	if n == 0 {
		return []finding{passed("%s is empty: %s", where, empty)}
	}
	return []finding{passed("%s: %d chunks", where, n)}
}

// llm asks the chat model for one token.
func (d *doctorRun) llm(ctx context.Context) []finding {
	c := d.a.cfg
	if c.OpenAIAPIKey == "" {
		return []finding{skipped("OPENAI_API_KEY not set: answers are extractive (quoted from the knowledge base)", "")}
	}
	client := rag.NewOpenAIClient(c.OpenAIAPIKey, c.OpenAIBaseURL)
	req := openai.ChatCompletionRequest{
		Model:     c.OpenAIModel,
		Messages:  []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Reply with OK."}},
		MaxTokens: 1,
	}
	start := time.Now()
	_, err := client.CreateChatCompletion(ctx, req)
	if maxTokensRefused(err) {
		// Reasoning models take only max_completion_tokens, and need room
		// to think before they say anything.
		req.MaxTokens, req.MaxCompletionTokens = 0, 16
		_, err = client.CreateChatCompletion(ctx, req)
	}
	if err != nil {
		return []finding{failed(err.Error(), openAIFix(err, "OPENAI_MODEL", c.OpenAIModel, c.OpenAIBaseURL))}
	}
	return []finding{passed("model %s answered in %s", c.OpenAIModel, time.Since(start).Round(time.Millisecond))}
}

func maxTokensRefused(err error) bool {
	if errors.Is(err, openai.ErrReasoningModelMaxTokensDeprecated) {
		return true
	}
	apiErr, ok := errors.AsType[*openai.APIError](err)
	return ok && apiErr.HTTPStatusCode == http.StatusBadRequest &&
		((apiErr.Param != nil && *apiErr.Param == "max_tokens") || strings.Contains(apiErr.Message, "max_tokens"))
}

// embeddings embeds one string and checks the dimension.
func (d *doctorRun) embeddings(context.Context) []finding {
	c := d.a.cfg
	if c.OpenAIEmbeddingModel == "" {
		return []finding{skipped("OPENAI_EMBEDDING_MODEL not set: retrieval is lexical (BM25) only", "")}
	}
	vec, err := d.embedProbe()
	if err != nil {
		return []finding{failed(err.Error(), openAIFix(err, "OPENAI_EMBEDDING_MODEL", c.OpenAIEmbeddingModel, c.OpenAIBaseURL))}
	}
	got, want := len(vec), c.OpenAIEmbeddingDim
	if want > 0 && got != want {
		return []finding{failed(
			fmt.Sprintf("model %s returned %d-dimensional vectors, but OPENAI_EMBEDDING_DIM=%d", c.OpenAIEmbeddingModel, got, want),
			fmt.Sprintf("set OPENAI_EMBEDDING_DIM=%d (or 0 for the model's default; this provider ignores the requested size), then run `kbbot ingest --rebuild`", got))}
	}
	if want == 0 {
		return []finding{passed("model %s: %d dimensions (the model's default)", c.OpenAIEmbeddingModel, got)}
	}
	return []finding{passed("model %s: %d dimensions", c.OpenAIEmbeddingModel, got)}
}

// openAIFix turns an OpenAI-compatible API failure into what to change.
func openAIFix(err error, modelVar, model, baseURL string) string {
	code := 0
	if apiErr, ok := errors.AsType[*openai.APIError](err); ok {
		code = apiErr.HTTPStatusCode
	} else if reqErr, ok := errors.AsType[*openai.RequestError](err); ok {
		code = reqErr.HTTPStatusCode
	}
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "check OPENAI_API_KEY: the provider refused it (a wrong key, or a key for another provider than OPENAI_BASE_URL)"
	case code == http.StatusNotFound:
		return fmt.Sprintf("check %s (%s) and OPENAI_BASE_URL (%s, usually ending in /v1): the model or the endpoint does not exist there", modelVar, model, baseURL)
	case code == http.StatusTooManyRequests:
		return "the key works but is rate-limited or out of quota; check the account's limits and billing"
	case code >= 500:
		return "the provider failed; try again later or check its status page"
	case code >= 400:
		return fmt.Sprintf("the provider rejected the request; check %s (%s)", modelVar, model)
	}
	return fmt.Sprintf("check OPENAI_BASE_URL (%s) and that this host can reach it", baseURL)
}
