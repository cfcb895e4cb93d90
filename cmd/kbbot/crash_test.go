package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"
	"kbbot/rag/llmfake"
	"kbbot/store/redistest"
)

// These tests run the real binary as separate processes, so a replica can
// die the way production ones do: kill -9, mid-answer.

const crashWait = 60 * time.Second // bound on every wait below

// buildKbbot builds this command into a temporary directory.
func buildKbbot(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; cannot build kbbot")
	}
	bin := filepath.Join(t.TempDir(), "kbbot")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startSlowLLM is a provider that streams its answer in small sleeps
// (~300 ms in all). Each replica gets its own, so the test knows who is
// asking.
func startSlowLLM(t *testing.T) *llmfake.Server {
	return llmfake.Start(t, llmfake.Key("crash-key"), llmfake.Default(
		llmfake.Reply("扩散模型", "先给图片加噪，", "再学习去噪", " [1]。").After(75*time.Millisecond).Every(75*time.Millisecond)))
}

// questions is what each chat request to llm asked.
func questions(llm *llmfake.Server) []string {
	var qs []string
	for _, r := range llm.Chats() {
		qs = append(qs, r.Question())
	}
	return qs
}

// process is one `kbbot serve` child.
type process struct {
	t      *testing.T
	name   string
	url    string
	admin  string // the admin listener: /metrics
	cmd    *exec.Cmd
	stderr *testkit.Logs
	done   chan struct{}
}

// startProcess runs bin serve with env and waits for /readyz.
func startProcess(t *testing.T, bin, name string, env map[string]string) *process {
	t.Helper()
	// The child binds these; another process taking one meanwhile fails
	// loudly below.
	addr, admin := freeAddr(t), freeAddr(t)
	p := &process{t: t, name: name, url: "http://" + addr, admin: "http://" + admin, stderr: &testkit.Logs{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KBBOT_ADDR=" + addr, "KBBOT_ADMIN_ADDR=" + admin}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) stderr:\n%s", p.name, p.cmd.Process.Pid, p.stderr.String())
		}
	})
	deadline := time.Now().Add(crashWait)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited at start-up:\n%s", name, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v:\n%s", name, crashWait, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr is a loopback address with a port nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(crashWait):
		p.t.Errorf("%s (pid %d) still running %v after SIGKILL", p.name, p.cmd.Process.Pid, crashWait)
	}
}

// stop ends the process as an orchestrator would: SIGTERM, then SIGKILL.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		p.kill()
	}
}

// crashEnv is the configuration both replicas share.
func crashEnv(t *testing.T, fake *feishufake.Server, redisURL string) map[string]string {
	seeds, err := filepath.Abs("../../seeds")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"KBBOT_PUBLIC_URL":          e2ePublic,
		"KBBOT_SEEDS_DIR":           seeds,
		"KBBOT_WORKERS":             "2",
		"KBBOT_QUEUE_VISIBILITY":    "2s",
		"FEISHU_APP_ID":             fmt.Sprintf("cli_crash_%d_%d", time.Now().UnixNano(), e2eSeq.Add(1)),
		"FEISHU_APP_SECRET":         "crash-secret",
		"KBBOT_LINK_SECRET":         e2eLinkKey,
		"FEISHU_VERIFICATION_TOKEN": e2eToken,
		"FEISHU_ENCRYPT_KEY":        e2eKey,
		"FEISHU_BASE_URL":           fake.URL,
		"REDIS_URL":                 redisURL,
		"OPENAI_API_KEY":            "crash-key",
		"LOG_LEVEL":                 "debug",
	}
}

func withEnv(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// question is one message the test sends and tracks.
type sentQuestion struct {
	msg feishufake.Message
	to  string // replica name
}

func crashQuestion(run string, i, chats int) feishufake.Message {
	chat := i % chats
	return feishufake.Message{
		EventID:   fmt.Sprintf("ev_%s_%d", run, i),
		MessageID: fmt.Sprintf("om_%s_%d", run, i),
		ChatID:    fmt.Sprintf("oc_%s_%d", run, chat),
		ChatType:  "p2p",
		Sender:    fmt.Sprintf("ou_%s_%d", run, chat),
		Text:      fmt.Sprintf("扩散模型怎么生成图片？（第 %d 问）", i),
	}
}

// waitAnswered waits until every question has a reply, no LLM is answering
// and nothing is left in the queue (B's /metrics reports its depth), so a
// late duplicate would have shown up.
func waitAnswered(t *testing.T, fake *feishufake.Server, llms []*llmfake.Server, metricsURL string, qs []sentQuestion) {
	t.Helper()
	deadline := time.Now().Add(crashWait)
	for {
		counts := fake.ReplyCounts()
		var missing []string
		for _, q := range qs {
			if counts[q.msg.MessageID] == 0 {
				missing = append(missing, q.msg.MessageID+" (sent to "+q.to+": "+whyUnanswered(fake, q.msg.MessageID)+")")
			}
		}
		busy := 0
		for _, llm := range llms {
			busy += llm.InFlight()
		}
		if len(missing) == 0 && busy == 0 && queueDepth(metricsURL) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d of %d questions unanswered (%s), queue depth %d", crashWait, len(missing), len(qs), strings.Join(missing, ", "), queueDepth(metricsURL))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// whyUnanswered says what the user sees for a question without a settled
// reply.
func whyUnanswered(fake *feishufake.Server, messageID string) string {
	for _, r := range fake.Requests() {
		if r.Op != feishufake.OpReply || !r.Delivered || r.MessageID != messageID {
			continue
		}
		if _, streaming, ok := fake.Card(r.CardID); ok && streaming {
			return "its reply " + r.SentID + " shows card " + r.CardID + ", still streaming: an answer run again after a crash must finish the card the first run showed"
		}
		return "its reply " + r.SentID + " has not settled"
	}
	return "no reply"
}

var depthLine = regexp.MustCompile(`(?m)^kbbot_queue_depth\{queue="answers"\} (\S+)$`)

// queueDepth is the queue depth a replica last measured, or -1.
func queueDepth(metricsURL string) int {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	m := depthLine.FindSubmatch(body)
	if m == nil {
		return -1
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return int(f)
}

// checkExactlyOnce: every question one reply; each chat's replies in the
// order of its questions.
func checkExactlyOnce(t *testing.T, fake *feishufake.Server, qs []sentQuestion) {
	t.Helper()
	counts := fake.ReplyCounts()
	for _, q := range qs {
		if n := counts[q.msg.MessageID]; n != 1 {
			t.Errorf("%s (sent to %s) has %d replies, want 1", q.msg.MessageID, q.to, n)
		}
	}
	byChat := map[string][]string{}
	for _, q := range qs {
		byChat[q.msg.ChatID] = append(byChat[q.msg.ChatID], q.msg.MessageID)
	}
	var order []string
	for _, r := range fake.Sent() {
		if r.Op == feishufake.OpReply {
			order = append(order, r.MessageID)
		}
	}
	for chat, want := range byChat {
		var got []string
		for _, id := range order {
			if slices.Contains(want, id) {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("chat %s: replies in order %v, want %v", chat, got, want)
		}
	}
}

// Two replicas share one Redis; one is killed with SIGKILL while it is
// answering. Every question acknowledged with a 200 is answered exactly
// once, and each chat's answers keep its questions' order.
func TestCrashedReplicaLosesNothing(t *testing.T) {
	bin := buildKbbot(t)
	redisURL, _ := redistest.StartServer(t, "--appendfsync", "always")
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	llmA, llmB := startSlowLLM(t), startSlowLLM(t)
	env := crashEnv(t, fake, redisURL)
	a := startProcess(t, bin, "replica A", withEnv(env, "KBBOT_DATA_DIR", t.TempDir(), "OPENAI_BASE_URL", llmA.URL))
	b := startProcess(t, bin, "replica B", withEnv(env, "KBBOT_DATA_DIR", t.TempDir(), "OPENAI_BASE_URL", llmB.URL))
	if a.cmd.Process.Pid == b.cmd.Process.Pid {
		t.Fatal("the replicas share a process")
	}
	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}
	send := func(p *process, m feishufake.Message) {
		t.Helper()
		if status, body := postEvent(t, p.url, signer, signer.MessageEvent(m)); status != http.StatusOK {
			t.Fatalf("%s answered %d %s to %s", p.name, status, body, m.MessageID)
		}
	}

	const chats, phase1, phase2 = 6, 18, 12
	var qs []sentQuestion
	killed := false
	var askedAtKill []string
	killA := func() {
		askedAtKill = questions(llmA)
		inflight := llmA.InFlight()
		a.kill()
		killed = true
		t.Logf("killed replica A (pid %d) with %d LLM requests of its own in flight", a.cmd.Process.Pid, inflight)
	}
	// Phase 1: alternate between the replicas; once A has had a few
	// questions, kill it while it is waiting for the LLM. Sends are sequential, so no webhook
	// request is in flight at the kill: each question was acknowledged
	// (200) or not yet sent.
	for i := range phase1 {
		to := a
		if i%2 == 1 || killed {
			to = b
		}
		m := crashQuestion("crash", i, chats)
		send(to, m)
		qs = append(qs, sentQuestion{m, to.name})
		time.Sleep(20 * time.Millisecond) // a steady trickle, like real traffic
		if !killed && i >= 6 && llmA.InFlight() >= 1 {
			killA()
		}
	}
	if !killed {
		deadline := time.Now().Add(crashWait)
		for llmA.InFlight() < 1 {
			if time.Now().After(deadline) {
				t.Fatal("replica A never started answering")
			}
			time.Sleep(time.Millisecond)
		}
		killA()
	}
	// Phase 2: the survivor alone, with more questions in the same chats.
	for i := phase1; i < phase1+phase2; i++ {
		m := crashQuestion("crash", i, chats)
		send(b, m)
		qs = append(qs, sentQuestion{m, b.name})
	}

	waitAnswered(t, fake, []*llmfake.Server{llmA, llmB}, b.admin+"/metrics", qs)
	checkExactlyOnce(t, fake, qs)

	// The questions A died answering were asked again by B.
	askedByB := questions(llmB)
	retaken := 0
	for _, q := range askedAtKill {
		if slices.Contains(askedByB, q) {
			retaken++
		}
	}
	if retaken == 0 {
		t.Error("replica B asked none of the questions replica A was answering when it died")
	}
	t.Logf("%d questions, %d asked by A before the kill, %d of those asked again by B", len(qs), len(askedAtKill), retaken)
}

// Redis restarts while questions arrive and are answered. Every question
// acknowledged with a 200 is answered exactly once; one refused while Redis
// was down (Feishu would redeliver it) is answered at most once.
func TestRedisRestartLosesNothingAcknowledged(t *testing.T) {
	bin := buildKbbot(t)
	redisURL, restart := redistest.StartServer(t, "--appendfsync", "always")
	fake := feishufake.New(e2eBotID)
	defer fake.Close()
	llmA, llmB := startSlowLLM(t), startSlowLLM(t)
	// A long visibility timeout: the lease must outlive the restart.
	env := withEnv(crashEnv(t, fake, redisURL), "KBBOT_QUEUE_VISIBILITY", "20s")
	a := startProcess(t, bin, "replica A", withEnv(env, "KBBOT_DATA_DIR", t.TempDir(), "OPENAI_BASE_URL", llmA.URL))
	b := startProcess(t, bin, "replica B", withEnv(env, "KBBOT_DATA_DIR", t.TempDir(), "OPENAI_BASE_URL", llmB.URL))
	signer := feishufake.Signer{EncryptKey: e2eKey, Token: e2eToken}

	var acked, refused []sentQuestion
	post := func(i int) {
		p := a
		if i%2 == 1 {
			p = b
		}
		m := crashQuestion("restart", i, 5)
		req, err := signer.Request(context.Background(), p.url+"/feishu/events", signer.MessageEvent(m))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			acked = append(acked, sentQuestion{m, p.name})
		} else {
			refused = append(refused, sentQuestion{m, p.name})
		}
	}
	const n = 30
	restarted := make(chan struct{})
	for i := range n {
		if i == n/2 {
			// Mid-traffic, with answers running: restart Redis while the
			// next questions arrive.
			for deadline := time.Now().Add(crashWait); llmA.InFlight()+llmB.InFlight() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no answer started")
				}
			}
			go func() { restart(); close(restarted) }()
		}
		post(i)
		time.Sleep(15 * time.Millisecond)
	}
	select {
	case <-restarted:
	case <-time.After(crashWait):
		t.Fatalf("Redis did not restart within %v", crashWait)
	}
	for i := n; i < n+6; i++ { // and after it is back
		post(i)
	}
	if len(acked) == 0 {
		t.Fatal("no question was acknowledged")
	}
	waitAnswered(t, fake, []*llmfake.Server{llmA, llmB}, b.admin+"/metrics", acked)
	checkExactlyOnce(t, fake, acked)
	counts := fake.ReplyCounts()
	for _, q := range refused {
		if n := counts[q.msg.MessageID]; n > 1 {
			t.Errorf("%s, refused while Redis was down, has %d replies", q.msg.MessageID, n)
		}
	}
	t.Logf("%d acknowledged, %d refused while Redis restarted", len(acked), len(refused))
}
