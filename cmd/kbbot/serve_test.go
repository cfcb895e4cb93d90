package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/rag/llmfake"
	"kbbot/store/redistest"
)

const (
	e2eToken   = "e2e-verification-token"
	e2eKey     = "e2e-encrypt-key"
	e2eLinkKey = "e2e-link-secret-of-at-least-32-bytes"
	e2eBotID   = "ou_e2e_bot"
	e2ePublic  = "https://kb.test"
	e2eTimeout = 20 * time.Second
)

var e2eSeq atomic.Int64

// e2eEnv is a complete serve configuration against fake, with the
// repository's seeds in a fresh embedded index.
func e2eEnv(t *testing.T, fake *feishufake.Server) map[string]string {
	t.Helper()
	seeds, err := filepath.Abs("../../seeds")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"KBBOT_ADDR":                "127.0.0.1:0",
		"KBBOT_ADMIN_ADDR":          "127.0.0.1:0",
		"KBBOT_PUBLIC_URL":          e2ePublic,
		"KBBOT_DATA_DIR":            t.TempDir(),
		"KBBOT_SEEDS_DIR":           seeds,
		"KBBOT_WORKERS":             "2",
		"FEISHU_APP_ID":             fmt.Sprintf("cli_e2e_%d_%d", time.Now().UnixNano(), e2eSeq.Add(1)),
		"FEISHU_APP_SECRET":         "e2e-secret",
		"KBBOT_LINK_SECRET":         e2eLinkKey,
		"FEISHU_VERIFICATION_TOKEN": e2eToken,
		"FEISHU_ENCRYPT_KEY":        e2eKey,
		"FEISHU_BASE_URL":           fake.URL,
		"LOG_LEVEL":                 "debug",
	}
}

type runningServe struct {
	url    string
	addr   string
	admin  string // the admin listener's URL; "" when KBBOT_ADMIN_ADDR=off
	stderr *testkit.Logs
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop cancels serve and returns what it returned.
func (r *runningServe) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(e2eTimeout):
			r.err = fmt.Errorf("serve did not stop within %v", e2eTimeout)
		}
	})
	return r.err
}

// startServe runs `kbbot serve` in process and waits until it listens.
func startServe(t *testing.T, env map[string]string, args ...string) *runningServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningServe{stderr: &testkit.Logs{}, cancel: cancel, done: make(chan error, 1)}
	addrc, adminc := make(chan string, 1), make(chan string, 1)
	a := &app{getenv: func(k string) string { return env[k] }, stdout: io.Discard, stderr: r.stderr,
		onListen: func(addr string) { addrc <- addr }, onAdminListen: func(addr string) { adminc <- addr }}
	go func() { r.done <- runApp(ctx, a, append([]string{"serve"}, args...)) }()
	select {
	case r.addr = <-addrc:
	case err := <-r.done:
		cancel()
		t.Fatalf("serve exited before listening: %v\n%s", err, r.stderr.String())
	case <-time.After(e2eTimeout):
		cancel()
		t.Fatalf("serve did not listen within %v\n%s", e2eTimeout, r.stderr.String())
	}
	r.url = "http://" + r.addr
	select {
	case admin := <-adminc: // serve tells it before addr
		r.admin = "http://" + admin
	default:
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("serve's log:\n%s", r.stderr.String())
		}
	})
	return r
}

func postEvent(t *testing.T, url string, signer feishufake.Signer, event []byte) (int, string) {
	t.Helper()
	req, err := signer.Request(context.Background(), url+"/feishu/events", event)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReply waits for the delivered reply to messageID.
func waitReply(t *testing.T, fake *feishufake.Server, messageID string) feishufake.Request {
	t.Helper()
	deadline := time.Now().Add(e2eTimeout)
	for time.Now().Before(deadline) {
		for _, r := range fake.Sent() {
			if r.Op == feishufake.OpReply && r.MessageID == messageID {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no reply to %s within %v", messageID, e2eTimeout)
	return feishufake.Request{}
}

// cardStrings is every string in a decoded card.
func cardStrings(v any) []string {
	var out []string
	feishufake.WalkCard(v, func(v any) {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	})
	return out
}

var mdLink = regexp.MustCompile(`\]\((https?://[^)\s]+)\)`)

func TestServeAnswersDirectMessage(t *testing.T) {
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	srv := startServe(t, e2eEnv(t, fake))
	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}

	status, body := postEvent(t, srv.url, signer, signer.Challenge("e2e-challenge"))
	if status != 200 || !strings.Contains(body, `"challenge":"e2e-challenge"`) {
		t.Fatalf("encrypted challenge: %d %s", status, body)
	}

	m := feishufake.Message{EventID: "ev_e2e_1", MessageID: "om_e2e_1", ChatID: "oc_e2e_1", ChatType: "p2p", Sender: "ou_alice", Text: "扩散模型怎么生成图片？"}
	if status, body := postEvent(t, srv.url, signer, signer.MessageEvent(m)); status != 200 {
		t.Fatalf("event: %d %s", status, body)
	}
	r := waitReply(t, fake, m.MessageID)
	text := strings.Join(cardStrings(r.Card), "\n")
	if !strings.Contains(text, "参考资料") || !strings.Contains(text, "其他人在问") || !strings.Contains(text, "内容由 AI 大模型生成") {
		t.Errorf("answer card lacks sections:\n%s", text)
	}
	links := mdLink.FindAllStringSubmatch(text, -1)
	if len(links) == 0 {
		t.Fatalf("no source links in the card:\n%s", text)
	}
	asks := 0
	for _, s := range cardStrings(r.Card) {
		if s == "ask" {
			asks++
		}
	}
	if asks == 0 {
		t.Error("no follow-up buttons")
	}

	// Sources without a URL of their own link to this server's page, with
	// a signature (KBBOT_LINK_SECRET) that the page checks.
	kbLinks := 0
	for _, l := range links {
		if rest, ok := strings.CutPrefix(l[1], e2ePublic+"/kb/"); ok {
			kbLinks++
			id, query, _ := strings.Cut(rest, "?")
			if !strings.Contains(query, "exp=") || !strings.Contains(query, "sig=") {
				t.Errorf("unsigned source link %s", l[1])
			}
			if status, page := get(t, srv.url+"/kb/"+rest); status != 200 || !strings.Contains(page, "<h1>") {
				t.Errorf("/kb/%s: %d", rest, status)
			}
			if status, _ := get(t, srv.url+"/kb/"+id); status != 403 {
				t.Errorf("/kb/%s without its signature: %d, want 403", id, status)
			}
		}
	}
	if kbLinks == 0 {
		t.Errorf("no /kb links in the card:\n%s", text)
	}
	if status, _ := get(t, srv.url+"/kb/no-such-doc"); status != 403 {
		t.Errorf("unknown doc without a link: %d, want 403", status)
	}
	// The health checks answer on both listeners.
	for _, base := range []string{srv.url, srv.admin} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if status, body := get(t, base+path); status != 200 {
				t.Errorf("%s%s: %d %s", base, path, status, body)
			}
		}
	}

	// kbbot healthcheck finds the server from KBBOT_ADDR's port.
	hc := &app{getenv: func(k string) string {
		if k == "KBBOT_ADDR" {
			return srv.addr
		}
		return ""
	}, stdout: io.Discard, stderr: io.Discard}
	if err := runApp(context.Background(), hc, []string{"healthcheck"}); err != nil {
		t.Errorf("healthcheck: %v", err)
	}

	// Each redelivery is acknowledged, none answered again.
	for range 2 {
		postEvent(t, srv.url, signer, signer.MessageEvent(m))
	}

	// The handful of events shows up in /metrics: per-stage histograms and
	// counts by outcome.
	// /metrics is on the admin listener only; the public one serves the
	// webhook, source pages and health checks, nothing else.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/"} {
		if status, _ := get(t, srv.url+path); status != 404 {
			t.Errorf("public %s: %d, want 404", path, status)
		}
	}
	status, metrics := get(t, srv.admin+"/metrics")
	if status != 200 {
		t.Fatalf("admin /metrics: %d", status)
	}
	for _, want := range []string{
		`kbbot_stage_seconds_count{stage="ack"}`,
		`kbbot_stage_seconds_count{stage="retrieval"} 1`,
		`kbbot_stage_seconds_count{stage="feishu_send"} 1`,
		`kbbot_stage_seconds_count{stage="answer_total"} 1`,
		`kbbot_events_total{outcome="answered",type="message"} 1`,
		`kbbot_events_total{outcome="deduplicated",type="message"} 2`,
		`kbbot_queue_depth{queue="answers"}`,
		`kbbot_dependency_up{dependency="knowledge"} 1`,
		`kbbot_dependency_up{dependency="state"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := srv.stop(); err != nil { // drains the workers
		t.Fatalf("serve: %v", err)
	}
	if n := fake.Replies(m.MessageID); n != 1 {
		t.Errorf("%d replies, want 1", n)
	}
	if !strings.Contains(srv.stderr.String(), "event_id=ev_e2e_1") {
		t.Error("the log does not follow the event by id")
	}
	if err := runApp(context.Background(), hc, []string{"healthcheck"}); err == nil {
		t.Error("healthcheck passed with the server stopped")
	}
}

func TestServeRefusesWithoutEncryptKey(t *testing.T) {
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	env := e2eEnv(t, fake)
	delete(env, "FEISHU_ENCRYPT_KEY")
	a := &app{getenv: func(k string) string { return env[k] }, stdout: io.Discard, stderr: io.Discard}
	err := runApp(context.Background(), a, []string{"serve"})
	if err == nil || !strings.Contains(err.Error(), "FEISHU_ENCRYPT_KEY") || !strings.Contains(err.Error(), "KBBOT_INSECURE_DEV") {
		t.Fatalf("serve without an encrypt key: %v, want a refusal naming FEISHU_ENCRYPT_KEY and KBBOT_INSECURE_DEV", err)
	}

	env["KBBOT_INSECURE_DEV"] = "true"
	srv := startServe(t, env)
	plain := feishufake.Signer{Token: e2eToken}
	if status, body := postEvent(t, srv.url, plain, plain.Challenge("plain")); status != 200 || !strings.Contains(body, `"plain"`) {
		t.Errorf("plain challenge in insecure mode: %d %s", status, body)
	}

	// The long connection needs no encrypt key (frames come over the app's
	// own authenticated connection): serve --ws gets past validation and
	// stops with the SDK's fatal error, since this fake has no ws endpoint.
	delete(env, "KBBOT_INSECURE_DEV")
	delete(env, "FEISHU_VERIFICATION_TOKEN")
	env["KBBOT_ADDR"] = "127.0.0.1:0"
	a = &app{getenv: func(k string) string { return env[k] }, stdout: io.Discard, stderr: io.Discard}
	if err := runApp(context.Background(), a, []string{"serve", "--ws"}); err == nil || !strings.Contains(err.Error(), "/callback/ws/endpoint") {
		t.Errorf("serve --ws against an Open API without a ws endpoint: %v", err)
	}
}

// startLLM is a provider that answers every question with one cited
// answer, streamed or whole as asked.
func startLLM(t *testing.T) *llmfake.Server {
	return llmfake.Start(t, llmfake.Key("e2e-key"), llmfake.Default(llmfake.Reply("扩散模型先给图片加噪，", "再学习去噪 [1]。")))
}

// requestFor is the messages of the last chat request to llm whose final
// message asks question.
func requestFor(llm *llmfake.Server, question string) []llmfake.Message {
	chats := llm.Chats()
	for i := len(chats) - 1; i >= 0; i-- {
		if strings.Contains(chats[i].Question(), question) {
			return chats[i].Messages
		}
	}
	return nil
}

// hasUserTurn reports whether msgs carry question as an earlier user turn.
func hasUserTurn(msgs []llmfake.Message, question string) bool {
	for _, m := range msgs[:max(len(msgs)-1, 0)] {
		if m.Role == "user" && m.Content == question {
			return true
		}
	}
	return false
}

func TestServeHistoryReachesLLMAndSurvivesRestart(t *testing.T) {
	redisURL, _ := redistest.StartServer(t)
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	llm := startLLM(t)
	env := e2eEnv(t, fake)
	env["REDIS_URL"] = redisURL
	env["OPENAI_API_KEY"] = "e2e-key"
	env["OPENAI_BASE_URL"] = llm.URL
	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}
	ask := func(srv *runningServe, n int, q string) {
		t.Helper()
		m := feishufake.Message{EventID: fmt.Sprintf("ev_h_%d", n), MessageID: fmt.Sprintf("om_h_%d", n), ChatID: "oc_history", Sender: "ou_alice", Text: q}
		if status, body := postEvent(t, srv.url, signer, signer.MessageEvent(m)); status != 200 {
			t.Fatalf("event: %d %s", status, body)
		}
		waitReply(t, fake, m.MessageID)
	}
	const q1, q2, q3 = "扩散模型怎么生成图片？", "能再详细说说吗？", "还有别的吗？"

	srv := startServe(t, env)
	ask(srv, 1, q1)
	// Stopping drains the worker, so the first turn is stored before the
	// second question is read.
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	srv = startServe(t, env) // a restart: new process state, same Redis
	ask(srv, 2, q2)
	msgs := requestFor(llm, q2)
	if msgs == nil {
		t.Fatalf("the LLM was not asked %q", q2)
	}
	if !hasUserTurn(msgs, q1) {
		t.Errorf("the LLM request for the second question lacks the first one as history: %+v", msgs)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	srv = startServe(t, env)
	ask(srv, 3, q3)
	if msgs := requestFor(llm, q3); !hasUserTurn(msgs, q1) || !hasUserTurn(msgs, q2) {
		t.Errorf("third question's history lacks earlier turns: %+v", msgs)
	}
}
