package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/config"
	"kbbot/rag/llmfake"
)

// Limits that keep a load test a test: it only targets this machine, and
// stops by itself.
const (
	maxLoadRate     = 5000
	maxLoadDuration = 10 * time.Minute
	maxInFlight     = 2000
)

var loadQuestions = []string{
	"模型训练的底层原理是什么？",
	"大语言模型的参数是怎么得到的？",
	"扩散模型是怎么生成图片的？",
	"训练 Llama2 70B 需要多少 GPU？",
	"怎么向机器人提问？",
	"如何开始一个新话题？",
	"What does the bot do when there is no answer?",
	"多模态模型的原理",
}

type loadOpts struct {
	url, encryptKey, token, redisURL string
	rate                             int
	duration, settle                 time.Duration
	dups                             float64
	chats                            int
	self, spawn                      bool
	llmTTFT                          time.Duration
	llmURL                           string // set when a fake LLM runs
}

func (a *app) loadtest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var o loadOpts
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080/feishu/events", "webhook URL of the bot under test (loopback only)")
	fs.IntVar(&o.rate, "rate", 500, "events per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	fs.Float64Var(&o.dups, "dups", 0.1, "fraction of events that are redeliveries of earlier ones")
	fs.StringVar(&o.encryptKey, "encrypt-key", a.cfg.FeishuEncryptKey, "FEISHU_ENCRYPT_KEY of the bot (empty: plain, unsigned events)")
	fs.StringVar(&o.token, "token", a.cfg.FeishuVerificationToken, "FEISHU_VERIFICATION_TOKEN of the bot")
	fs.BoolVar(&o.self, "self", false, "start a fake Feishu Open API and an in-process bot, and check every message got exactly one reply")
	fs.BoolVar(&o.spawn, "spawn", false, "like -self, but run the bot as a separate `kbbot serve` process, so the load generator does not share its scheduler")
	fs.DurationVar(&o.llmTTFT, "llm-ttft", 0, "with -self or -spawn: answer through a fake LLM with this time to first token, and report event → first card and the bot's latency on top of the LLM")
	fs.StringVar(&o.redisURL, "redis", "", "with -self or -spawn: keep the bot's state in this Redis (default: in process)")
	fs.IntVar(&o.chats, "chats", 200, "distinct direct chats the messages come from")
	fs.DurationVar(&o.settle, "settle", 60*time.Second, "with -self: how long to wait for the replies after sending")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	switch {
	case o.rate < 1 || o.rate > maxLoadRate:
		return fmt.Errorf("loadtest: -rate must be 1..%d", maxLoadRate)
	case o.duration <= 0 || o.duration > maxLoadDuration:
		return fmt.Errorf("loadtest: -duration must be positive and at most %v", maxLoadDuration)
	case o.dups < 0 || o.dups >= 1:
		return errors.New("loadtest: -dups must be in [0, 1)")
	case o.chats < 1:
		return errors.New("loadtest: -chats must be at least 1")
	case o.redisURL != "" && !o.self && !o.spawn:
		return errors.New("loadtest: -redis only applies with -self or -spawn")
	case o.self && o.spawn:
		return errors.New("loadtest: choose one of -self and -spawn")
	case o.llmTTFT < 0 || o.llmTTFT > time.Minute || (o.llmTTFT > 0 && !o.self && !o.spawn):
		return errors.New("loadtest: -llm-ttft must be at most 1m, with -self or -spawn")
	}
	if o.llmTTFT > 0 {
		llm := startFakeLLM(o.llmTTFT)
		defer llm.Close()
		o.llmURL = llm.URL + "/v1"
	}

	if o.redisURL != "" {
		if err := loopbackOnly("-redis", o.redisURL); err != nil {
			return err
		}
	}
	var fake *feishufake.Server
	if o.self || o.spawn {
		if o.encryptKey == "" {
			o.encryptKey = "loadtest-encrypt-key"
		}
		if o.token == "" {
			o.token = "loadtest-verification-token"
		}
		var stop func() error
		var err error
		if o.spawn {
			fake, stop, err = a.startSpawned(ctx, &o)
		} else {
			fake, stop, err = a.startSelf(ctx, &o)
		}
		if err != nil {
			return err
		}
		defer func() {
			if err := stop(); err != nil {
				a.log.Warn("in-process bot stopped with an error", "error", err)
			}
		}()
	}
	if err := loopbackOnly("-url", o.url); err != nil {
		return err
	}
	if !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://") {
		return fmt.Errorf("loadtest: -url %q is not an http URL", o.url)
	}
	res := runLoad(ctx, o)
	res.print(a.stdout, o)
	if o.self || o.spawn {
		printServerAck(ctx, a.stdout, strings.TrimSuffix(o.url, "/feishu/events")+"/metrics")
	}
	if fake == nil {
		fmt.Fprintln(a.stdout, "replies: not checked (use -self to run against the fake Open API)")
		return res.err()
	}
	rep := checkReplies(ctx, fake, res.unique, o.settle)
	rep.print(a.stdout)
	if o.llmTTFT > 0 {
		printCardLatency(a.stdout, fake, res.sentAt, o.llmTTFT)
	}
	return errors.Join(res.err(), rep.err())
}

// loopbackOnly refuses targets off this machine.
func loopbackOnly(flagName, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("loadtest: %s %q is not a URL", flagName, raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("loadtest: %s %q: only loopback addresses (127.0.0.1, ::1, localhost) may be load tested", flagName, raw)
}

// newLoadFake starts the lean fake Open API a load run's bot talks to, and
// the temporary data directory for that bot's embedded index.
func newLoadFake() (*feishufake.Server, string, error) {
	fake := feishufake.New("ou_loadtest_bot")
	fake.Lean = true
	dir, err := os.MkdirTemp("", "kbbot-loadtest-")
	if err != nil {
		fake.Close()
		return nil, "", err
	}
	return fake, dir, nil
}

// startSelf runs a fake Open API and the real serve command in process,
// with the embedded index in a temporary directory and no LLM, so the run
// measures the bot rather than a model provider.
func (a *app) startSelf(ctx context.Context, o *loadOpts) (*feishufake.Server, func() error, error) {
	fake, dir, err := newLoadFake()
	if err != nil {
		return nil, nil, err
	}
	sub := *a
	sub.cfg.Addr = "127.0.0.1:0"
	sub.cfg.FeishuMode = "webhook"
	sub.cfg.FeishuAppID = fmt.Sprintf("cli_loadtest_%d", time.Now().UnixNano())
	sub.cfg.FeishuAppSecret = "loadtest-secret"
	sub.cfg.FeishuBaseURL = fake.URL
	sub.cfg.FeishuEncryptKey = o.encryptKey
	sub.cfg.FeishuVerificationToken = o.token
	sub.cfg.RedisURL = o.redisURL
	sub.cfg.DataDir = dir
	sub.cfg.QdrantURL = ""
	sub.cfg.OpenAIAPIKey = ""
	if o.llmURL != "" {
		sub.cfg.OpenAIAPIKey, sub.cfg.OpenAIBaseURL, sub.cfg.OpenAIModel = "loadtest", o.llmURL, "fake"
		if a.getenv("KBBOT_WORKERS") == "" {
			sub.cfg.Workers = 32 // config's automatic choice with an LLM
		}
	}
	sub.cfg.OpenAIEmbeddingModel = ""
	// The load sends many questions per user; the abuse limits would turn
	// most of them into "slow down" cards and hide what is being measured.
	sub.cfg.RateUser, sub.cfg.RateChat = config.Rate{}, config.Rate{}
	// Per-message logs would swamp the report; warnings still show.
	sub.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	addrc := make(chan string, 1)
	sub.onListen = func(addr string) { addrc <- addr }

	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	prefix := fmt.Sprintf("kbbot-loadtest:%x:", time.Now().UnixNano()) // apart from a real bot's keys
	go func() { errc <- sub.runServe(sctx, serveOptions{redisPrefix: prefix}) }()
	stop := func() error {
		cancel()
		err := <-errc
		fake.Close()
		_ = os.RemoveAll(dir)
		return err
	}
	fmt.Fprintf(a.stderr, "loadtest: starting an in-process bot (embedded index in %s, state %s)…\n", dir, map[bool]string{true: "in Redis", false: "in process"}[o.redisURL != ""])
	select {
	case addr := <-addrc:
		o.url = "http://" + addr + "/feishu/events"
		return fake, stop, nil
	case err := <-errc:
		cancel()
		fake.Close()
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("loadtest: in-process bot: %w", err)
	case <-ctx.Done():
		_ = stop()
		return nil, nil, ctx.Err()
	}
}

// startSpawned runs a fake Open API here and `kbbot serve` as a child
// process pointed at it, then waits for the child's /readyz.
func (a *app) startSpawned(ctx context.Context, o *loadOpts) (*feishufake.Server, func() error, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("loadtest: find own binary: %w", err)
	}
	seeds, err := filepath.Abs(a.cfg.SeedsDir)
	if err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := lis.Addr().String()
	lis.Close() // the child binds it; the window for another process to take it is tiny
	fake, dir, err := newLoadFake()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "serve")
	cmd.Env = append(os.Environ(),
		"KBBOT_ADDR="+addr,
		"KBBOT_DATA_DIR="+dir,
		"KBBOT_SEEDS_DIR="+seeds,
		"FEISHU_MODE=webhook",
		fmt.Sprintf("FEISHU_APP_ID=cli_loadtest_%d", time.Now().UnixNano()),
		"FEISHU_APP_SECRET=loadtest-secret",
		"FEISHU_BASE_URL="+fake.URL,
		"FEISHU_ENCRYPT_KEY="+o.encryptKey,
		"FEISHU_VERIFICATION_TOKEN="+o.token,
		"REDIS_URL="+o.redisURL,
		"QDRANT_URL=", "OPENAI_API_KEY=", "OPENAI_EMBEDDING_MODEL=",
		"LOG_LEVEL=warn",
		"KBBOT_RATE_USER=off", "KBBOT_RATE_CHAT=off", // see startSelf
	)
	if o.llmURL != "" {
		cmd.Env = append(cmd.Env, "OPENAI_API_KEY=loadtest", "OPENAI_BASE_URL="+o.llmURL, "OPENAI_MODEL=fake")
	}
	cmd.Stdout, cmd.Stderr = a.stderr, a.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	fmt.Fprintf(a.stderr, "loadtest: starting `kbbot serve` as a child process on %s (state %s)…\n", addr, map[bool]string{true: "in Redis", false: "in process"}[o.redisURL != ""])
	if err := cmd.Start(); err != nil {
		fake.Close()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("loadtest: start bot: %w", err)
	}
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		fake.Close()
		_ = os.RemoveAll(dir)
		return err
	}
	o.url = "http://" + addr + "/feishu/events"
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return fake, stop, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = stop()
			return nil, nil, errors.New("loadtest: the child bot did not become ready within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type loadResult struct {
	sent, dupsSent, non200, transport int
	elapsed                           time.Duration
	latencies                         []time.Duration
	unique                            []string             // message ids acknowledged at least once
	sentAt                            map[string]time.Time // first send of each message
	statuses                          map[int]int
}

// runLoad sends events at a constant rate (open loop: a slow server does not
// slow the schedule, until maxInFlight requests are outstanding).
func runLoad(ctx context.Context, o loadOpts) loadResult {
	signer := feishufake.Signer{EncryptKey: o.encryptKey, Token: o.token}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: maxInFlight, MaxIdleConnsPerHost: maxInFlight, IdleConnTimeout: 30 * time.Second,
	}}
	defer client.CloseIdleConnections()
	total := int(float64(o.rate) * o.duration.Seconds())
	interval := time.Second / time.Duration(o.rate)
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))

	var (
		mu     sync.Mutex
		res    = loadResult{statuses: map[int]int{}, sentAt: map[string]time.Time{}}
		acked  = map[string]bool{}
		wg     sync.WaitGroup
		sem    = make(chan struct{}, maxInFlight)
		sentMs []feishufake.Message
	)
	start := time.Now()
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		var m feishufake.Message
		if len(sentMs) > 0 && rng.Float64() < o.dups {
			m = sentMs[rng.IntN(len(sentMs))]
			if rng.IntN(2) == 0 {
				m.EventID = fmt.Sprintf("ev_%s_%d_re", run, i) // same message, another event
			}
			res.dupsSent++
		} else {
			chat := rng.IntN(o.chats)
			m = feishufake.Message{
				EventID:   fmt.Sprintf("ev_%s_%d", run, i),
				MessageID: fmt.Sprintf("om_%s_%d", run, i),
				ChatID:    fmt.Sprintf("oc_%s_%d", run, chat),
				ChatType:  "p2p",
				Sender:    fmt.Sprintf("ou_load_%d", chat),
				Text:      loadQuestions[rng.IntN(len(loadQuestions))],
			}
			sentMs = append(sentMs, m)
		}
		res.sent++
		sem <- struct{}{}
		wg.Add(1)
		go func(m feishufake.Message) {
			defer func() { <-sem; wg.Done() }()
			req, err := signer.Request(ctx, o.url, signer.MessageEvent(m))
			if err != nil {
				mu.Lock()
				res.transport++
				mu.Unlock()
				return
			}
			t0 := time.Now()
			mu.Lock()
			if _, ok := res.sentAt[m.MessageID]; !ok {
				res.sentAt[m.MessageID] = t0
			}
			mu.Unlock()
			resp, err := client.Do(req)
			lat := time.Since(t0)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.transport++
				return
			}
			res.latencies = append(res.latencies, lat)
			res.statuses[resp.StatusCode]++
			if resp.StatusCode != http.StatusOK {
				res.non200++
				return
			}
			acked[m.MessageID] = true
		}(m)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for id := range acked {
		res.unique = append(res.unique, id)
	}
	return res
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func (r loadResult) print(w io.Writer, o loadOpts) {
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	var mx time.Duration
	if len(lat) > 0 {
		mx = lat[len(lat)-1]
	}
	fmt.Fprintf(w, "target: %s\n", o.url)
	fmt.Fprintf(w, "sent: %d events (%d redeliveries) in %.2fs = %.1f events/s (asked %d/s)\n",
		r.sent, r.dupsSent, r.elapsed.Seconds(), float64(r.sent)/r.elapsed.Seconds(), o.rate)
	fmt.Fprintf(w, "ack latency: p50 %v  p99 %v  max %v\n", round(percentile(lat, 0.50)), round(percentile(lat, 0.99)), round(mx))
	var codes []string
	for c, n := range r.statuses {
		if c != http.StatusOK {
			codes = append(codes, fmt.Sprintf("%d×%d", n, c))
		}
	}
	slices.Sort(codes)
	fmt.Fprintf(w, "non-200: %d %s  transport errors: %d\n", r.non200, strings.Join(codes, " "), r.transport)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func (r loadResult) err() error {
	if r.non200 > 0 || r.transport > 0 {
		return fmt.Errorf("loadtest: %d non-200 answers, %d transport errors", r.non200, r.transport)
	}
	return nil
}

// printServerAck reads the bot's own ack histogram from /metrics: the time
// from the request reaching the bot to its response, without the load
// generator's scheduling (which shares this machine's cores). Histogram
// buckets make it an upper bound: "p99 ≤ 4ms".
func printServerAck(ctx context.Context, w io.Writer, metricsURL string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(w, "server-side ack: /metrics unavailable: %v\n", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `kbbot_stage_seconds_bucket{stage="ack",le="`)
		if !ok {
			continue
		}
		le, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		if le == "+Inf" {
			total = n
			continue
		}
		if f, err := strconv.ParseFloat(le, 64); err == nil {
			buckets = append(buckets, bucket{f, n})
		}
	}
	if total == 0 {
		return
	}
	bound := func(p float64) string {
		for _, b := range buckets {
			if b.count >= p*total {
				return "≤ " + time.Duration(b.le*float64(time.Second)).String()
			}
		}
		return "> " + time.Duration(buckets[len(buckets)-1].le*float64(time.Second)).String()
	}
	fmt.Fprintf(w, "server-side ack (bot's /metrics histogram, %d requests): p50 %s  p99 %s\n", int(total), bound(0.5), bound(0.99))
}

// startFakeLLM is an OpenAI-compatible chat endpoint on 127.0.0.1 that waits
// ttft, then streams 20 tokens 20 ms apart: the model's own latency, so what
// the load tool measures beyond it is the bot's.
func startFakeLLM(ttft time.Duration) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(ttft):
		case <-r.Context().Done():
			return
		}
		llmfake.Begin(w)
		for i := range 20 {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			llmfake.Chunk(w, fmt.Sprintf("第%d段。", i), i == 19)
		}
		llmfake.End(w)
	}))
}

// printCardLatency reports, from the fake Open API's records, how long after
// its event each message's first card appeared, and — for answers that
// streamed — how long its first text took beyond the model's own time to
// first token.
func printCardLatency(w io.Writer, fake *feishufake.Server, sentAt map[string]time.Time, ttft time.Duration) {
	firstCard := map[string]feishufake.Request{}
	firstText := map[string]time.Time{}
	for _, r := range fake.Requests() {
		switch {
		case r.Op == feishufake.OpReply && r.Status == http.StatusOK:
			if _, ok := firstCard[r.MessageID]; !ok {
				firstCard[r.MessageID] = r
			}
		case r.Op == feishufake.OpCardContent && r.Status == http.StatusOK:
			if _, ok := firstText[r.CardID]; !ok {
				firstText[r.CardID] = r.At
			}
		}
	}
	var card, over []time.Duration
	for id, r := range firstCard {
		t0, ok := sentAt[id]
		if !ok {
			continue
		}
		card = append(card, r.At.Sub(t0))
		if t, ok := firstText[r.CardID]; ok && r.CardID != "" {
			over = append(over, t.Sub(t0)-ttft)
		}
	}
	slices.Sort(card)
	slices.Sort(over)
	fmt.Fprintf(w, "first visible card after the event: p50 %v  p90 %v  (%d messages)\n", round(percentile(card, 0.5)), round(percentile(card, 0.9)), len(card))
	fmt.Fprintf(w, "first streamed text, beyond the LLM's own %v to first token: p50 %v  p90 %v  (%d streamed answers)\n", ttft, round(percentile(over, 0.5)), round(percentile(over, 0.9)), len(over))
}

type replyReport struct {
	unique, once, none, many, busy, errs int
	waited                               time.Duration
}

// checkReplies waits (up to settle) until every acknowledged message has a
// reply, then looks for messages with none or more than one.
func checkReplies(ctx context.Context, fake *feishufake.Server, unique []string, settle time.Duration) replyReport {
	start := time.Now()
	deadline := start.Add(settle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		counts := fake.ReplyCounts()
		missing := 0
		for _, id := range unique {
			if counts[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A duplicate would be sent about as fast as the first reply; give any
	// straggler a moment to show up before counting.
	time.Sleep(500 * time.Millisecond)
	rep := replyReport{unique: len(unique), waited: time.Since(start)}
	counts := fake.ReplyCounts()
	for _, id := range unique {
		switch n := counts[id]; {
		case n == 0:
			rep.none++
		case n == 1:
			rep.once++
		default:
			rep.many++
		}
	}
	for _, r := range fake.Sent() {
		switch {
		case strings.HasPrefix(r.UUID, "busy-"):
			rep.busy++
		case strings.HasPrefix(r.UUID, "error-"):
			rep.errs++
		}
	}
	return rep
}

func (r replyReport) print(w io.Writer) {
	fmt.Fprintf(w, "replies: %d unique messages: %d answered exactly once, %d with no reply, %d with more than one (busy cards %d, error cards %d; settled in %.1fs)\n",
		r.unique, r.once, r.none, r.many, r.busy, r.errs, r.waited.Seconds())
}

func (r replyReport) err() error {
	if r.none > 0 || r.many > 0 {
		return fmt.Errorf("loadtest: %d messages without a reply, %d with more than one", r.none, r.many)
	}
	return nil
}
