package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kbbot/bot"
	"kbbot/bot/openapi"
	"kbbot/bot/wiki"
	"kbbot/config"
	"kbbot/store"
	"kbbot/store/queue"
	"kbbot/store/ratelimit"
	"kbbot/store/state"
)

// Shutdown budget: stop taking requests, let queued answers finish, then
// close the admin listener. deploy/k8s's terminationGracePeriodSeconds must
// exceed the sum plus the preStop pause (TestGracePeriodCoversShutdown).
const (
	httpShutdownTimeout  = 10 * time.Second
	drainTimeout         = 30 * time.Second
	adminShutdownTimeout = time.Second
)

// stateParts are the stores the bot keeps its state in: Redis when
// REDIS_URL is set (durable, shared by replicas), else in process (one
// replica only). closeFn releases what they hold.
type stateParts struct {
	state   bot.State
	queue   bot.Queue
	limiter bot.Limiter
	leases  wiki.Leaser // one sync at a time across the replicas
	closeFn func() error
}

func (a *app) openStateParts(ctx context.Context, prefix string) (stateParts, error) {
	qopt := queue.Options{Workers: a.cfg.Workers, Capacity: max(16*a.cfg.Workers, 64),
		MaxAttempts: a.cfg.QueueAttempts, Visibility: a.cfg.QueueVisibility, Shards: a.cfg.QueueShards,
		MaxPending: a.cfg.QueueMaxPending, NoWorkers: a.cfg.Role == "events", Retention: a.cfg.Retention, Log: a.log}
	if a.cfg.RedisURL == "" {
		a.log.Info("state in process memory; set REDIS_URL to share it between replicas and keep it across restarts")
		st := state.NewMemory()
		st.Retention = a.cfg.Retention
		return stateParts{state: st, queue: queue.NewMemory(st, qopt), limiter: ratelimit.NewMemory(), leases: st,
			closeFn: func() error { return nil }}, nil
	}
	rdb, err := store.OpenRedis(ctx, a.cfg.RedisURL, prefix)
	if err != nil {
		return stateParts{}, err
	}
	st := state.NewRedis(rdb)
	st.Retention = a.cfg.Retention
	return stateParts{state: st, queue: queue.NewRedis(rdb, st, qopt), limiter: ratelimit.NewRedis(rdb), leases: st,
		closeFn: rdb.Close}, nil
}

func (a *app) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	ws := fs.Bool("ws", false, "receive events over Feishu's long connection instead of the webhook")
	role := fs.String("role", a.cfg.Role, "all, events (take and queue events, answer none) or answers (answer the queue, take no events); KBBOT_ROLE")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *ws {
		a.cfg.FeishuMode = "ws"
	}
	a.cfg.Role = *role
	if err := a.cfg.Validate(); err != nil {
		return fmt.Errorf("serve:\n%w", err)
	}
	return a.runServe(ctx)
}

// runServe runs the webhook server until ctx is cancelled, then shuts down
// gracefully: no new requests, queued answers finish (within drainTimeout).
func (a *app) runServe(ctx context.Context) error {
	if err := a.cfg.ValidateServe(); err != nil {
		return fmt.Errorf("serve: refusing to start:\n%w", err)
	}
	if a.cfg.FeishuEncryptKey == "" && a.cfg.FeishuMode != "ws" {
		a.log.Warn("KBBOT_INSECURE_DEV: FEISHU_ENCRYPT_KEY is empty, so webhook requests are neither signed nor encrypted; never run like this in production")
	}
	if a.cfg.LinkSecret == "" { // ValidateServe allows it in insecure dev mode only
		a.log.Warn("KBBOT_INSECURE_DEV: KBBOT_LINK_SECRET is empty, so source-page links are signed with a random secret and stop working when this process ends; set it to the output of `openssl rand -hex 32` to keep them")
	}

	eng, idx, err := a.openSeededEngine(ctx)
	if err != nil {
		return fmt.Errorf("serve: knowledge base: %w", err)
	}
	defer idx.Close()
	parts, err := a.openStateParts(ctx, a.cfg.RedisPrefix)
	if err != nil {
		return fmt.Errorf("serve: state store: %w", err)
	}
	defer parts.closeFn()

	// A registry of our own, not the global default: tests run several bots
	// in one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	client := openapi.NewLarkClient(a.cfg.FeishuAppID, a.cfg.FeishuAppSecret, a.cfg.FeishuBaseURL, a.log)
	metrics := bot.NewMetrics(reg)
	// The knowledge sync from Feishu, when sources are configured: in the
	// background at start and every KBBOT_SYNC_INTERVAL, and on an admin's
	// /sync; a lease keeps it to one replica at a time.
	var runner *wiki.Runner
	if a.cfg.SyncEnabled() && a.cfg.Role != "events" {
		runner = &wiki.Runner{Syncer: a.newSyncer(eng, client), Leases: parts.leases, Interval: a.cfg.SyncInterval, Log: a.log, Done: metrics.SyncDone}
	}
	b, err := bot.New(bot.Config{
		Metrics:           metrics,
		VerificationToken: a.cfg.FeishuVerificationToken,
		EncryptKey:        a.cfg.FeishuEncryptKey,
		PublicURL:         a.cfg.PublicURL,
		LinkSecret:        []byte(a.cfg.LinkSecret), // empty: bot.New makes a random one
		LinkTTL:           a.cfg.LinkTTL,
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
		Admins:            a.cfg.Admins,
		AnswersOnly:       a.cfg.Role == "answers",
		Syncer:            syncer(runner),
	}, client, eng, parts.state, a.log)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("serve: %w (check FEISHU_APP_ID, FEISHU_APP_SECRET and FEISHU_BASE_URL)", err)
	}

	// The public listener: the webhook, source pages and health checks
	// only. /metrics is on the admin listener.
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		_ = b.Shutdown(context.Background())
		return fmt.Errorf("serve: KBBOT_ADDR: %w", err)
	}
	admin, adminLn, err := a.listenAdmin(reg, b)
	if err != nil {
		ln.Close()
		_ = b.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	}
	srv := a.httpServer(b.Handler())
	addr, adminAddr := ln.Addr().String(), config.AdminOff
	if adminLn != nil {
		adminAddr = adminLn.Addr().String()
	}
	if a.cfg.DevLoopback {
		a.log.Warn("KBBOT_INSECURE_DEV: listening on " + addr + " only, since KBBOT_ADDR is unset; set KBBOT_ADDR (e.g. :8080) to listen on other interfaces")
	}
	events := "webhook POST /feishu/events"
	switch {
	case a.cfg.Role == "answers":
		events = "none (answers only)"
	case a.cfg.FeishuMode == "ws":
		events = "long connection to " + config.RedactURL(a.cfg.FeishuBaseURL)
	}
	a.log.Info("serving", "addr", addr, "admin_addr", adminAddr, "role", a.cfg.Role, "events", events, "public_url", config.RedactURL(a.cfg.PublicURL), "redis", a.cfg.RedisURL != "")
	if a.onAdminListen != nil && adminLn != nil { // first: tests wait for onListen
		a.onAdminListen(adminAddr)
	}
	if a.onListen != nil {
		a.onListen(addr)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if admin != nil {
		go func() { errc <- fmt.Errorf("admin listener: %w", admin.Serve(adminLn)) }()
	}
	var lc *longConn
	if a.cfg.Role != "answers" {
		lc = a.startLongConnection(ctx, b) // nil unless FEISHU_MODE=ws
	}
	syncCtx, stopSync := context.WithCancel(ctx)
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		if runner != nil && a.cfg.SyncInterval > 0 {
			runner.Loop(syncCtx) // serving goes on meanwhile, on what is indexed
		}
	}()

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
	stopSync()
	select {
	case <-syncDone:
	case <-time.After(httpShutdownTimeout):
		a.log.Warn("the knowledge sync did not stop in time")
	}
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
	if admin != nil { // last, so /metrics can be scraped while answers drain
		actx, cancel3 := context.WithTimeout(context.Background(), adminShutdownTimeout)
		defer cancel3()
		_ = admin.Shutdown(actx)
	}
	a.log.Info("stopped")
	return serveErr
}

// syncer is runner as the bot's /sync needs it; none without a runner
// (a nil *wiki.Runner in the interface would not be nil).
func syncer(r *wiki.Runner) interface {
	Now(context.Context) (wiki.Report, error)
} {
	if r == nil {
		return nil
	}
	return r
}
