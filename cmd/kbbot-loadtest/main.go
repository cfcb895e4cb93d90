// Command kbbot-loadtest sends signed, encrypted Feishu message events to a
// kbbot on this machine at a fixed rate, and reports how fast they were
// acknowledged. With -url it targets a running bot; with -spawn it starts
// `kbbot serve` as a child process against a fake Feishu Open API (and, with
// -llm-ttft, a fake LLM), and also checks that every message got exactly one
// reply. It is its own binary so that kbbot never links its fakes.
//
// Usage:
//
//	kbbot-loadtest -spawn [-bin PATH] [-rate N] [-duration D] [-redis URL] [-llm-ttft D]
//	kbbot-loadtest -url http://127.0.0.1:8080/feishu/events [-rate N] [-duration D]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"kbbot/bot/feishufake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "kbbot-loadtest:", err)
		os.Exit(1)
	}
}

// Limits that keep a load test a test: it only targets this machine, and
// stops by itself.
const (
	maxRate     = 5000
	maxDuration = 10 * time.Minute
	// maxEvents bounds the requests built before the clock starts (about
	// 4 KB of memory each): 5,000/s for 30 s.
	maxEvents = 150_000
)

// errNotLoopback refuses a target off this machine.
var errNotLoopback = errors.New("only loopback addresses (127.0.0.1, ::1, localhost) may be load tested")

type options struct {
	url, metricsURL string
	encryptKey      string
	token           string
	rate            int
	duration        time.Duration
	dups            float64
	chats           int
	maxInFlight     int

	spawn    bool
	split    bool // two children: KBBOT_ROLE=events takes the load, KBBOT_ROLE=answers answers it
	later    bool // with split: the answering child starts when sending ends
	bin      string
	redisURL string
	llmTTFT  time.Duration
	settle   time.Duration

	cpuProfile string // the load tool's own CPU profile, to see what sending costs
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("kbbot-loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080/feishu/events", "webhook URL of a running bot (loopback only)")
	fs.BoolVar(&o.spawn, "spawn", false, "start kbbot serve as a child process against a fake Feishu Open API, and check every message got exactly one reply")
	fs.BoolVar(&o.split, "split", false, "with -spawn and -redis: two children, one taking the events (KBBOT_ROLE=events, the -url target) and one answering them (KBBOT_ROLE=answers)")
	fs.BoolVar(&o.later, "answer-later", false, "with -split: start the answering child only when sending ends, so the acks measured are ingress alone, as with answering replicas on other machines; its queue cap is raised to hold the whole run")
	fs.StringVar(&o.bin, "bin", "", "with -spawn: the kbbot binary (default: go build ./cmd/kbbot into a temporary directory)")
	fs.StringVar(&o.metricsURL, "metrics", "", "the bot's /metrics, for its own ack histogram (default: with -spawn the child's KBBOT_ADMIN_ADDR, then KBBOT_ADDR; else -url's host)")
	fs.IntVar(&o.rate, "rate", 500, "events per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	fs.Float64Var(&o.dups, "dups", 0.1, "fraction of events that are redeliveries of earlier ones")
	fs.IntVar(&o.chats, "chats", 200, "distinct direct chats the messages come from")
	fs.IntVar(&o.maxInFlight, "max-inflight", 10000, "requests outstanding at once; the sender waits when it is reached, and the report says how often")
	fs.StringVar(&o.encryptKey, "encrypt-key", getenv("FEISHU_ENCRYPT_KEY"), "FEISHU_ENCRYPT_KEY of the bot (empty: plain, unsigned events)")
	fs.StringVar(&o.token, "token", getenv("FEISHU_VERIFICATION_TOKEN"), "FEISHU_VERIFICATION_TOKEN of the bot")
	fs.StringVar(&o.redisURL, "redis", "", "with -spawn: keep the bot's state in this Redis (loopback only; default: in process)")
	fs.DurationVar(&o.llmTTFT, "llm-ttft", 0, "with -spawn: answer through a fake LLM with this time to first token, and report event → first card and the bot's latency on top of the LLM")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load tool's own CPU profile (not the bot's) to this file")
	fs.DurationVar(&o.settle, "settle", 60*time.Second, "with -spawn: how long to wait for the replies after sending")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	urlSet := false
	fs.Visit(func(f *flag.Flag) { urlSet = urlSet || f.Name == "url" })
	switch {
	case o.rate < 1 || o.rate > maxRate:
		return o, fmt.Errorf("-rate must be 1..%d", maxRate)
	case o.duration <= 0 || o.duration > maxDuration:
		return o, fmt.Errorf("-duration must be positive and at most %v", maxDuration)
	case float64(o.rate)*o.duration.Seconds() > maxEvents:
		return o, fmt.Errorf("-rate × -duration must be at most %d events: every request is built before the clock starts", maxEvents)
	case o.dups < 0 || o.dups >= 1:
		return o, errors.New("-dups must be in [0, 1)")
	case o.chats < 1:
		return o, errors.New("-chats must be at least 1")
	case o.maxInFlight < 1:
		return o, errors.New("-max-inflight must be at least 1")
	case o.spawn && urlSet:
		return o, errors.New("choose one of -url (a running bot) and -spawn (start one)")
	case !o.spawn && (o.redisURL != "" || o.llmTTFT != 0 || o.bin != ""):
		return o, errors.New("-redis, -llm-ttft and -bin only apply with -spawn")
	case o.llmTTFT < 0 || o.llmTTFT > time.Minute:
		return o, errors.New("-llm-ttft must be at most 1m")
	case o.split && (!o.spawn || o.redisURL == ""):
		return o, errors.New("-split needs -spawn and -redis: the two children share the queue in Redis")
	case o.later && !o.split:
		return o, errors.New("-answer-later needs -split")
	}
	for name, raw := range map[string]string{"-url": o.url, "-redis": o.redisURL, "-metrics": o.metricsURL} {
		if raw == "" || (o.spawn && name == "-url") {
			continue
		}
		if err := loopbackOnly(name, raw); err != nil {
			return o, err
		}
	}
	if !o.spawn && !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://") {
		return o, fmt.Errorf("-url %q is not an http URL", o.url)
	}
	return o, nil
}

// loopbackOnly refuses targets off this machine.
func loopbackOnly(flagName, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q is not a URL", flagName, raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s %q: %w", flagName, raw, errNotLoopback)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	_, err = load(ctx, o, getenv, stdout, stderr)
	return err
}

// summary is what one run measured, for tests.
type summary struct {
	sent      sendResult
	serverAck *ackHistogram // nil when /metrics could not be read
	replies   *replyReport  // with -spawn
	cards     *cardLatency  // with -llm-ttft
}

// load runs the test o describes and prints its report to stdout.
func load(ctx context.Context, o options, getenv func(string) string, stdout, stderr io.Writer) (sum summary, err error) {
	metrics := []string{strings.TrimSuffix(o.url, "/feishu/events") + "/metrics"}
	var c *child
	if o.spawn {
		if o.encryptKey == "" {
			o.encryptKey = "loadtest-encrypt-key"
		}
		if o.token == "" {
			o.token = "loadtest-verification-token"
		}
		c, err = spawn(ctx, o, getenv, stderr)
		if err != nil {
			return sum, err
		}
		defer func() {
			if serr := c.stop(); serr != nil {
				fmt.Fprintf(stderr, "kbbot-loadtest: the child bot stopped with an error: %v\n", serr)
			}
		}()
		o.url, metrics = c.url, c.metrics
	}
	if o.metricsURL != "" {
		metrics = []string{o.metricsURL}
	}

	sum.sent = send(ctx, sendOptions{
		url: o.url, signer: feishufake.Signer{EncryptKey: o.encryptKey, Token: o.token},
		rate: o.rate, duration: o.duration, dups: o.dups, chats: o.chats, maxInFlight: o.maxInFlight,
	})
	sum.sent.print(stdout, o.url)
	sum.serverAck = readServerAck(ctx, stdout, metrics)
	if c != nil && c.later != nil {
		if err := c.later(); err != nil {
			return sum, err
		}
	}
	if c == nil {
		fmt.Fprintln(stdout, "replies: not checked (use -spawn to run against the fake Open API)")
		return sum, sum.sent.err()
	}
	rep := checkReplies(ctx, c.fake, sum.sent.unique, o.settle)
	rep.print(stdout)
	sum.replies = &rep
	if o.llmTTFT > 0 {
		cl := measureCards(c.fake, sum.sent.dueAt, o.llmTTFT)
		cl.print(stdout)
		sum.cards = &cl
	}
	return sum, errors.Join(sum.sent.err(), rep.err())
}
