package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/deploy/testkit"
	"kbbot/rag"
	"kbbot/store"
	"kbbot/store/index"
	"kbbot/store/redistest"
	"kbbot/store/state"
)

const (
	testBotID   = "ou_kbbot"
	testToken   = "vtoken-test"
	testEncrypt = "encrypt-key-test"
	testPublic  = "https://kb.example.com"
	testLinkKey = "link-secret-test-at-least-32-bytes"
)

// fakeAnswerer answers from function fields and records what it was asked.
type fakeAnswerer struct {
	AskFn func(ctx context.Context, q string, history []rag.Turn) (rag.Answer, error)
	// StreamFn, when set, answers AskStream (a real engine's, say);
	// otherwise AskStream is Ask with the whole text given to onDelta once.
	StreamFn func(ctx context.Context, q string, history func() []rag.Turn, onDelta func(string)) (rag.Answer, error)
	LLM      bool // what HasLLM says
	DocFn    func(ctx context.Context, id string) (rag.Document, error)
	StartFn  func(ctx context.Context, n int) ([]string, error)

	mu    sync.Mutex
	calls []askCall
}

type askCall struct {
	Question string
	History  []rag.Turn
}

var _ Answerer = (*fakeAnswerer)(nil)

func (f *fakeAnswerer) Ask(ctx context.Context, q string, history []rag.Turn) (rag.Answer, error) {
	f.mu.Lock()
	f.calls = append(f.calls, askCall{q, history})
	fn := f.AskFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, q, history)
	}
	return cannedAnswer(q), nil
}

func (f *fakeAnswerer) AskStream(ctx context.Context, q string, loadHistory func() []rag.Turn, onDelta func(string)) (rag.Answer, error) {
	f.mu.Lock()
	fn := f.StreamFn
	f.mu.Unlock()
	if fn == nil {
		var history []rag.Turn
		if loadHistory != nil {
			history = loadHistory() // recorded in calls for the tests
		}
		ans, err := f.Ask(ctx, q, history)
		if err == nil && onDelta != nil {
			onDelta(ans.Text)
		}
		return ans, err
	}
	f.mu.Lock()
	f.calls = append(f.calls, askCall{q, nil})
	f.mu.Unlock()
	return fn(ctx, q, loadHistory, onDelta)
}

func (f *fakeAnswerer) HasLLM() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.LLM
}

func (f *fakeAnswerer) Document(ctx context.Context, id string) (rag.Document, error) {
	f.mu.Lock()
	fn := f.DocFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, id)
	}
	return rag.Document{}, index.ErrNotFound
}

func (f *fakeAnswerer) StarterQuestions(ctx context.Context, n int) ([]string, error) {
	f.mu.Lock()
	fn := f.StartFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, n)
	}
	return []string{"什么是知识库？", "怎么提问？"}[:min(n, 2)], nil
}

// set changes the fake's behaviour while the bot runs.
func (f *fakeAnswerer) set(change func(f *fakeAnswerer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeAnswerer) Calls() []askCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]askCall(nil), f.calls...)
}

// Asked reports whether the answerer was asked q.
func (f *fakeAnswerer) Asked(q string) bool {
	return slices.ContainsFunc(f.Calls(), func(c askCall) bool { return c.Question == q })
}

func cannedAnswer(q string) rag.Answer {
	return rag.Answer{
		Text: "关于「" + q + "」：答案在这里 [1]，另见 [2]。",
		References: []rag.Reference{
			{DocID: "doc-1", Title: "文档一", Snippet: "片段一", Score: 0.9},
			{DocID: "doc-2", Title: "Doc Two", URL: "https://example.com/doc-2", Snippet: "snippet two", Score: 0.5},
		},
		FollowUps: []string{"如何开始？", "有哪些限制？"},
		Mode:      rag.ModeExtractive,
		Covered:   true,
	}
}

type harness struct {
	t      *testing.T
	fake   *feishufake.Server
	signer feishufake.Signer
	ans    *fakeAnswerer
	st     State
	bot    *Bot
	srv    *httptest.Server
}

// idSeq keeps ids unique across harnesses, so two bots sharing a store
// (the restart test) never see each other's ids by accident.
var idSeq atomic.Int64

type harnessOpts struct {
	state      State // default: a new state.Memory
	encryptKey *string
	workers    int
	queue      int
	ans        *fakeAnswerer
	fake       *feishufake.Server // share one fake between two bots (restart tests)
	appID      string
	now        func() time.Time // the bot's clock; default a fixed 2026-11-28 10:00 UTC
	history    int              // KBBOT_HISTORY_TURNS; default 4
	// depInterval is Config.DependencyInterval (default 15s).
	depInterval time.Duration
}

var appSeq atomic.Int64

// uniqueAppID keeps tests apart in the SDK's process-global token cache.
func uniqueAppID() string { return fmt.Sprintf("cli_test_%d", appSeq.Add(1)) }

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	return startHarness(t, queueOpts{harnessOpts: o}, false)
}

// startHarness builds and starts a bot on a fake Open API. shutdownMayLag
// accepts a shutdown that ran out of time (tests whose answers never end).
func startHarness(t *testing.T, o queueOpts, shutdownMayLag bool) *harness {
	t.Helper()
	h := &harness{t: t}
	key := testEncrypt
	if o.encryptKey != nil {
		key = *o.encryptKey
	}
	h.signer = feishufake.Signer{EncryptKey: key, Token: testToken}
	h.fake = o.fake
	if h.fake == nil {
		h.fake = feishufake.New(testBotID)
		t.Cleanup(h.fake.Close)
	}
	h.ans = o.ans
	if h.ans == nil {
		h.ans = &fakeAnswerer{}
	}
	h.st = o.state
	if h.st == nil {
		h.st = state.NewMemory()
	}
	if o.workers == 0 {
		o.workers = 2
	}
	if o.appID == "" {
		o.appID = uniqueAppID()
	}
	log := testkit.Logger(t)
	cfg := Config{
		VerificationToken: testToken, EncryptKey: key, PublicURL: testPublic, LinkSecret: []byte(testLinkKey),
		Workers: o.workers, QueueSize: o.queue, HistoryTurns: 4, HistoryTTL: time.Hour,
		RetryBase: time.Millisecond, SendAttempts: 5,
		Limiter: o.limiter, RateUser: o.rateUser, RateChat: o.rateChat,
		Metrics:            NewMetrics(prometheus.NewRegistry()),
		DependencyInterval: o.depInterval,
	}
	if o.history > 0 {
		cfg.HistoryTurns = o.history
	}
	if o.newQueue != nil {
		cfg.Queue = o.newQueue(t, log, h.st)
	}
	b, err := New(cfg, openapi.NewLarkClient(o.appID, "secret", h.fake.URL, log), h.ans, h.st, log)
	if err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }
	if o.now != nil {
		b.Now = o.now
	}
	b.jobHook = o.hook
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.bot = b
	h.srv = httptest.NewServer(b.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !(shutdownMayLag && errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func (h *harness) id(prefix string) string {
	return fmt.Sprintf("%s_%s_%d", prefix, strings.ReplaceAll(h.t.Name(), "/", "_"), idSeq.Add(1))
}

// post sends an event as Feishu would (encrypted and signed) and returns
// the status and body.
func (h *harness) post(event []byte) (int, string) {
	h.t.Helper()
	req, err := h.signer.Request(context.Background(), h.srv.URL+"/feishu/events", event)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}

func (h *harness) do(req *http.Request) (int, string) {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// dm is a direct message event.
func (h *harness) dm(text string) feishufake.Message {
	return feishufake.Message{EventID: h.id("ev"), MessageID: h.id("om"), ChatID: "oc_dm_" + h.t.Name(), ChatType: "p2p", Sender: "ou_alice", Text: text}
}

func (h *harness) mustPost(event []byte) {
	h.t.Helper()
	if status, body := h.post(event); status != http.StatusOK {
		h.t.Fatalf("webhook answered %d %s, want 200", status, body)
	}
}

// replyTo waits for the one delivered reply to messageID and returns it.
func (h *harness) replyTo(messageID string) feishufake.Request {
	h.t.Helper()
	testkit.Eventually(h.t, "a reply to "+messageID, func() bool { return h.fake.Replies(messageID) > 0 })
	for _, r := range h.fake.Sent() {
		if r.Op == feishufake.OpReply && r.MessageID == messageID {
			return r
		}
	}
	h.t.Fatal("reply counted but not recorded")
	return feishufake.Request{}
}

// sentinel proves earlier events produced no reply: with one worker the
// queue is FIFO, so once a later message is answered, anything queued
// before it was handled too.
func (h *harness) sentinel() {
	h.t.Helper()
	m := h.dm("sentinel question")
	h.mustPost(h.signer.MessageEvent(m))
	h.replyTo(m.MessageID)
}

// waitTurns waits until conv has n stored turns: the worker stores a turn
// just after sending its card.
func (h *harness) waitTurns(conv string, n int) {
	h.t.Helper()
	testkit.Eventually(h.t, fmt.Sprintf("%d turns in %s", n, conv), func() bool {
		turns, err := h.st.Turns(context.Background(), conv)
		return err == nil && len(turns) == n
	})
}

// events is how many events of typ had outcome, by the bot's metrics.
func (h *harness) events(typ, outcome string) int {
	return int(testutil.ToFloat64(h.bot.cfg.Metrics.events.WithLabelValues(typ, outcome)))
}

// createRequests counts the new-message requests the bot made to chat,
// whether or not Feishu delivered them (a repeated uuid is not delivered).
func createRequests(fake *feishufake.Server, chat string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpCreate && r.ReceiveID == chat {
			n++
		}
	}
	return n
}

// replyRequests counts the reply requests sent to messageID, delivered or
// not: what the bot tried to send, which a uuid the fake drops would hide.
func replyRequests(fake *feishufake.Server, messageID string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Op == feishufake.OpReply && r.MessageID == messageID {
			n++
		}
	}
	return n
}

// redisReplica is one bot process's connection to the test Redis and the
// state it keeps there.
type redisReplica struct {
	conn *store.Redis
	st   *state.Redis
}

// openRedisReplica connects to the test Redis under prefix, as one more
// replica would.
func openRedisReplica(t *testing.T, url, prefix string) redisReplica {
	t.Helper()
	conn := redistest.Open(t, url, prefix)
	return redisReplica{conn: conn, st: state.NewRedis(conn)}
}

// states runs fn against the in-process state and against Redis.
func states(t *testing.T, fn func(t *testing.T, st State)) {
	t.Run("memory", func(t *testing.T) { fn(t, state.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		fn(t, openRedisReplica(t, redistest.URL(t), redistest.Prefix(t)).st)
	})
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return m
}
