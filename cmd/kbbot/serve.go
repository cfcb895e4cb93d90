package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kbbot/bot"
	"kbbot/bot/openapi"
	"kbbot/store"
	"kbbot/store/queue"
	"kbbot/store/ratelimit"
	"kbbot/store/state"
)

// Shutdown budget: stop taking requests, then let queued answers finish.
const (
	httpShutdownTimeout = 10 * time.Second
	drainTimeout        = 30 * time.Second
)

// serveOptions are what callers other than the command line (the load
// tool) change about serve.
type serveOptions struct {
	redisPrefix string // "" is store.DefaultRedisPrefix
}

// stateParts are the stores the bot keeps its state in: Redis when
// REDIS_URL is set (durable, shared by replicas), else in process (one
// replica only). closeFn releases what they hold.
type stateParts struct {
	state   bot.State
	queue   bot.Queue
	limiter bot.Limiter
	closeFn func() error
}

func (a *app) openStateParts(ctx context.Context, prefix string) (stateParts, error) {
	qopt := queue.Options{Workers: a.cfg.Workers, Capacity: max(16*a.cfg.Workers, 64),
		MaxAttempts: a.cfg.QueueAttempts, Visibility: a.cfg.QueueVisibility, Shards: a.cfg.QueueShards,
		MaxPending: a.cfg.QueueMaxPending, Log: a.log}
	if a.cfg.RedisURL == "" {
		a.log.Info("state in process memory; set REDIS_URL to share it between replicas and keep it across restarts")
		st := state.NewMemory()
		return stateParts{state: st, queue: queue.NewMemory(st, qopt), limiter: ratelimit.NewMemory(),
			closeFn: func() error { return nil }}, nil
	}
	rdb, err := store.OpenRedis(ctx, a.cfg.RedisURL, prefix)
	if err != nil {
		return stateParts{}, err
	}
	st := state.NewRedis(rdb)
	return stateParts{state: st, queue: queue.NewRedis(rdb, st, qopt), limiter: ratelimit.NewRedis(rdb),
		closeFn: rdb.Close}, nil
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
	parts, err := a.openStateParts(ctx, o.redisPrefix)
	if err != nil {
		return fmt.Errorf("serve: state store: %w", err)
	}
	defer parts.closeFn()

	// A registry of our own, not the global default: tests run several bots
	// in one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	client := openapi.NewLarkClient(a.cfg.FeishuAppID, a.cfg.FeishuAppSecret, a.cfg.FeishuBaseURL, a.log)
	b, err := bot.New(bot.Config{
		Metrics:           bot.NewMetrics(reg),
		VerificationToken: a.cfg.FeishuVerificationToken,
		EncryptKey:        a.cfg.FeishuEncryptKey,
		PublicURL:         a.cfg.PublicURL,
		DocBaseURL:        a.cfg.DocBaseURL,
		Workers:           a.cfg.Workers,
		HistoryTurns:      a.cfg.HistoryTurns,
		HistoryTTL:        a.cfg.HistoryTTL,
		MaxAge:            a.cfg.QueueMaxAge,
		Ready:             eng.Ready,
		LongConnection:    a.cfg.FeishuMode == "ws",
		Queue:             parts.queue,
		Limiter:           parts.limiter,
		RateUser:          bot.Rate(a.cfg.RateUser),
		RateChat:          bot.Rate(a.cfg.RateChat),
	}, client, eng, parts.state, a.log)
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
