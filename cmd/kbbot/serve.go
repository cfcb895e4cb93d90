package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kbbot/bot"
	"kbbot/store"
)

// Shutdown budget: stop taking requests, then let queued answers finish.
const (
	httpShutdownTimeout = 10 * time.Second
	drainTimeout        = 30 * time.Second
)

// botState is the state store as serve owns it: what the bot uses, plus
// Close.
type botState interface {
	bot.State
	io.Closer
}

// serveOptions are what callers other than the command line (the load
// tool) change about serve.
type serveOptions struct {
	redisPrefix string // "" is store.DefaultRedisPrefix
}

// openState connects to Redis when REDIS_URL is set, else keeps state in
// process (one replica only).
func (a *app) openState(ctx context.Context, prefix string) (botState, error) {
	if a.cfg.RedisURL == "" {
		a.log.Info("state in process memory; set REDIS_URL to share it between replicas and keep it across restarts")
		return store.NewMemoryState(), nil
	}
	st, err := store.NewRedisState(ctx, a.cfg.RedisURL, prefix)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (a *app) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	ws := fs.Bool("ws", false, "receive events over Feishu's long connection instead of the webhook")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *ws {
		a.cfg.FeishuMode = "ws"
	}
	return a.runServe(ctx, serveOptions{})
}

// runServe runs the webhook server until ctx is cancelled, then shuts down
// gracefully: no new requests, queued answers finish (within drainTimeout).
func (a *app) runServe(ctx context.Context, o serveOptions) error {
	if err := a.cfg.ValidateServe(); err != nil {
		return fmt.Errorf("serve: refusing to start:\n%w", err)
	}
	if a.cfg.FeishuEncryptKey == "" && a.cfg.FeishuMode != "ws" {
		a.log.Warn("KBBOT_INSECURE_DEV: FEISHU_ENCRYPT_KEY is empty, so webhook requests are neither signed nor encrypted; never run like this in production")
	}

	eng, idx, err := a.openSeededEngine(ctx)
	if err != nil {
		return fmt.Errorf("serve: knowledge base: %w", err)
	}
	defer idx.Close()
	st, err := a.openState(ctx, o.redisPrefix)
	if err != nil {
		return fmt.Errorf("serve: state store: %w", err)
	}
	defer st.Close()
	// Questions wait between the webhook and the workers, and are counted
	// for the rate limits, in Redis when there is one (durable, shared by
	// the replicas), else in process.
	qopt := store.QueueOptions{Workers: a.cfg.Workers, Capacity: max(16*a.cfg.Workers, 64),
		MaxAttempts: a.cfg.QueueAttempts, Visibility: a.cfg.QueueVisibility, Shards: a.cfg.QueueShards, Log: a.log}
	var queue bot.Queue = store.NewMemoryQueue(qopt)
	var limiter bot.Limiter = store.NewMemoryLimiter()
	if rs, ok := st.(*store.RedisState); ok {
		queue, limiter = store.NewRedisQueue(rs, qopt), store.NewRedisLimiter(rs)
	}

	// A registry of our own, not the global default: tests run several bots
	// in one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	client := bot.NewLarkClient(a.cfg.FeishuAppID, a.cfg.FeishuAppSecret, a.cfg.FeishuBaseURL, a.log)
	b, err := bot.New(bot.Config{
		Metrics:           bot.NewMetrics(reg),
		VerificationToken: a.cfg.FeishuVerificationToken,
		EncryptKey:        a.cfg.FeishuEncryptKey,
		PublicURL:         a.cfg.PublicURL,
		Workers:           a.cfg.Workers,
		HistoryTurns:      a.cfg.HistoryTurns,
		HistoryTTL:        a.cfg.HistoryTTL,
		Ready:             eng.Ready,
		LongConnection:    a.cfg.FeishuMode == "ws",
		Queue:             queue,
		Limiter:           limiter,
		RateUser:          bot.Rate(a.cfg.RateUser),
		RateChat:          bot.Rate(a.cfg.RateChat),
	}, client, eng, st, a.log)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("serve: %w (check FEISHU_APP_ID, FEISHU_APP_SECRET and FEISHU_BASE_URL)", err)
	}

	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		_ = b.Shutdown(context.Background())
		return fmt.Errorf("serve: KBBOT_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", b.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	addr := ln.Addr().String()
	events := "webhook POST /feishu/events"
	if a.cfg.FeishuMode == "ws" {
		events = "long connection to " + a.cfg.FeishuBaseURL
	}
	a.log.Info("serving", "addr", addr, "events", events, "public_url", a.cfg.PublicURL, "redis", a.cfg.RedisURL != "")
	if a.onListen != nil {
		a.onListen(addr)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	lc := a.startLongConnection(ctx, b) // nil unless FEISHU_MODE=ws

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case err := <-lc.failed():
		serveErr = fmt.Errorf("serve: %w; check FEISHU_APP_ID, FEISHU_APP_SECRET and FEISHU_BASE_URL, and that the app receives events through the long connection", err)
	case <-ctx.Done():
		a.log.Info("shutting down")
	}
	lc.stop() // no more events, so no more work queued
	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		a.log.Warn("HTTP shutdown did not finish in time", "error", err)
	}
	dctx, cancel2 := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel2()
	if err := b.Shutdown(dctx); err != nil {
		a.log.Warn("answers still running at shutdown were cancelled", "error", err)
	}
	a.log.Info("stopped")
	return serveErr
}
