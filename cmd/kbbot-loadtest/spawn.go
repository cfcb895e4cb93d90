package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/rag/llmfake"
)

// readyWait bounds the child's start-up, stopWait its shutdown.
const (
	readyWait = 30 * time.Second
	stopWait  = 30 * time.Second
)

// child is `kbbot serve` running as a child process against a fake Open API
// (and a fake LLM), with everything to clean up after it.
type child struct {
	url     string   // webhook
	metrics []string // /metrics candidates: the admin listener first
	fake    *feishufake.Server
	llm     *llmfake.Server // nil without -llm-ttft

	cmd     *exec.Cmd
	done    chan struct{} // closed when the child has exited
	waitErr error
	// answers is the second child of a -split run: it answers what the
	// first (KBBOT_ROLE=events) queues. With -answer-later, later starts
	// it.
	answers *child
	later   func() error
	cleanup []func()
}

// spawn starts the child and waits until it is ready.
func spawn(ctx context.Context, o options, getenv func(string) string, stderr io.Writer) (c *child, err error) {
	c = &child{done: make(chan struct{})}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	bin := o.bin
	if bin == "" {
		dir, err := os.MkdirTemp("", "kbbot-loadtest-bin-")
		if err != nil {
			return c, err
		}
		c.cleanup = append(c.cleanup, func() { os.RemoveAll(dir) })
		if bin, err = buildKbbot(ctx, dir, stderr); err != nil {
			return c, err
		}
	}
	seeds, err := seedsDir(getenv)
	if err != nil {
		return c, err
	}
	data, err := os.MkdirTemp("", "kbbot-loadtest-data-")
	if err != nil {
		return c, err
	}
	c.cleanup = append(c.cleanup, func() { os.RemoveAll(data) })
	ports, err := freeAddrs(2)
	if err != nil {
		return c, err
	}
	addr, admin := ports[0], ports[1]
	c.url = "http://" + addr + "/feishu/events"
	c.metrics = []string{"http://" + admin + "/metrics", "http://" + addr + "/metrics"}

	var linkSecret [32]byte
	_, _ = rand.Read(linkSecret[:])
	c.fake = feishufake.New("ou_loadtest_bot")
	c.fake.Lean = true // so the fake does not steal CPU from the bot
	c.cleanup = append(c.cleanup, c.fake.Close)
	env := append(os.Environ(),
		"KBBOT_ADDR="+addr,
		"KBBOT_ADMIN_ADDR="+admin, // serve's /metrics is there, not on KBBOT_ADDR
		"KBBOT_DATA_DIR="+data,
		"KBBOT_SEEDS_DIR="+seeds,
		"FEISHU_MODE=webhook",
		fmt.Sprintf("FEISHU_APP_ID=cli_loadtest_%d", time.Now().UnixNano()),
		"FEISHU_APP_SECRET=loadtest-secret",
		"KBBOT_LINK_SECRET="+hex.EncodeToString(linkSecret[:]), // serve refuses to start without one
		"FEISHU_BASE_URL="+c.fake.URL,
		"FEISHU_ENCRYPT_KEY="+o.encryptKey,
		"FEISHU_VERIFICATION_TOKEN="+o.token,
		"REDIS_URL="+o.redisURL,
		"QDRANT_URL=", "OPENAI_API_KEY=", "OPENAI_EMBEDDING_MODEL=",
		"LOG_LEVEL=warn", // per-message logs would swamp the report; warnings still show
		// The load sends many questions per user; the abuse limits would turn
		// most of them into "slow down" cards and hide what is measured.
		"KBBOT_RATE_USER=off", "KBBOT_RATE_CHAT=off",
	)
	if o.llmTTFT > 0 {
		c.llm = fakeLLM(o.llmTTFT)
		c.cleanup = append(c.cleanup, c.llm.Close)
		env = append(env, "OPENAI_API_KEY=loadtest", "OPENAI_BASE_URL="+c.llm.URL, "OPENAI_MODEL=fake")
	}

	// Keys of their own, so a run never touches a real bot's (or an
	// earlier run's) on a shared Redis.
	env = append(env, fmt.Sprintf("KBBOT_REDIS_PREFIX=kbbot-loadtest:%x:", time.Now().UnixNano()))
	role := "all"
	if o.split {
		role = "events"
	}
	if o.later {
		// The whole run waits in the queue until answering starts; at the
		// default cap most of it would get busy cards instead.
		env = append(env, fmt.Sprintf("KBBOT_QUEUE_MAX_PENDING=%d", o.rate*int(o.duration.Seconds()+1)+1000))
	}
	if err := c.start(ctx, bin, append(env, "KBBOT_ROLE="+role), addr, admin, role, o.redisURL != "", stderr); err != nil {
		return c, err
	}
	if !o.split {
		return c, nil
	}
	// The answering replica: the same Redis, keys, data and fakes, its own
	// listeners.
	more, err := freeAddrs(2)
	if err != nil {
		return c, err
	}
	c.answers = &child{done: make(chan struct{})}
	env = append(env, "KBBOT_ROLE=answers", "KBBOT_ADDR="+more[0], "KBBOT_ADMIN_ADDR="+more[1])
	startAnswers := func() error { return c.answers.start(ctx, bin, env, more[0], more[1], "answers", true, stderr) }
	if o.later {
		c.later = startAnswers
		return c, nil
	}
	return c, startAnswers()
}

// start runs `bin serve` with env and waits until it is ready.
func (c *child) start(ctx context.Context, bin string, env []string, addr, admin, role string, redis bool, stderr io.Writer) error {
	c.cmd = exec.Command(bin, "serve")
	c.cmd.Env = env
	c.cmd.Stdout, c.cmd.Stderr = stderr, stderr
	state := "in process"
	if redis {
		state = "in Redis"
	}
	fmt.Fprintf(stderr, "kbbot-loadtest: starting `%s serve` (role %s) as a child process on %s (state %s)…\n", bin, role, addr, state)
	if err := c.cmd.Start(); err != nil {
		close(c.done)
		return fmt.Errorf("start the bot: %w", err)
	}
	go func() { c.waitErr = c.cmd.Wait(); close(c.done) }()
	return c.waitReady(ctx, []string{"http://" + admin + "/readyz", "http://" + addr + "/readyz"})
}

// fakeLLM waits ttft, then streams 20 parts 20 ms apart: the model's own
// latency, so what the load tool measures beyond it is the bot's.
func fakeLLM(ttft time.Duration) *llmfake.Server {
	parts := make([]string, 20)
	for i := range parts {
		parts[i] = fmt.Sprintf("第%d段。", i)
	}
	return llmfake.New(llmfake.Key("loadtest"), llmfake.Default(llmfake.Reply(parts...).After(ttft).Every(20*time.Millisecond)))
}

// waitReady polls the child's readiness until one of urls answers 200.
func (c *child) waitReady(ctx context.Context, urls []string) error {
	deadline := time.Now().Add(readyWait)
	for {
		for _, u := range urls {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("the child bot exited at start-up: %v", c.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the child bot did not become ready within %v", readyWait)
		}
	}
}

// stop ends the child as an orchestrator would (SIGTERM, then SIGKILL) and
// removes what spawn made. It returns how the child exited.
func (c *child) stop() error {
	var err error
	if c.answers != nil {
		err = c.answers.stop()
	}
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(stopWait):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}
		err = errors.Join(err, c.waitErr)
	}
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
	c.cleanup = nil
	return err
}

// freeAddrs asks the kernel for n distinct free loopback addresses. The
// child binds them; the window for another process to take one is tiny,
// and shows up as a start-up failure.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // all held until all are chosen, so they differ
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// buildKbbot builds ./cmd/kbbot of the module around the working directory
// into dir.
func buildKbbot(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kbbot")
	fmt.Fprintf(stderr, "kbbot-loadtest: no -bin given: building %s (go build ./cmd/kbbot in %s)…\n", bin, root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kbbot")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/kbbot: %w", err)
	}
	return bin, nil
}

// moduleRoot walks up from the working directory to the go.mod of module
// kbbot.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			module := ""
			for sc.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					module = strings.Trim(strings.TrimSpace(m), `"`)
					break
				}
			}
			f.Close()
			if module != "kbbot" {
				return "", fmt.Errorf("%s is module %q, not kbbot: run from the kbbot repository or pass -bin", dir, module)
			}
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the kbbot repository or pass -bin")
		}
		dir = parent
	}
}

// seedsDir is the knowledge the child ingests: KBBOT_SEEDS_DIR, or the
// module's seeds/.
func seedsDir(getenv func(string) string) (string, error) {
	if d := getenv("KBBOT_SEEDS_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if root, err := moduleRoot(); err == nil {
		return filepath.Join(root, "seeds"), nil
	}
	return filepath.Abs("seeds")
}
