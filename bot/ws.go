package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"kbbot/bot/openapi"

	larkws "github.com/larksuite/oapi-sdk-go/v3/ws"
)

// RunLongConnection receives events and card callbacks over Feishu's long
// connection (the SDK's WebSocket client) instead of the webhook, for apps
// without a public URL. Call it after Start; it returns nil when ctx is
// cancelled, or the error that made it give up: one the SDK does not retry
// (bad credentials, the app's connection limit, reconnects exhausted), or a
// 4xx from the endpoint before the first connection, which means domain is
// not a Feishu that offers long connections. Other failures are retried by
// the SDK for as long as ctx lasts. When it returns, no handler is running,
// so Shutdown may follow.
func (b *Bot) RunLongConnection(ctx context.Context, appID, appSecret, domain string) error {
	if !b.started {
		return errors.New("RunLongConnection: call Start first")
	}
	if b.cfg.AnswersOnly {
		return errors.New("RunLongConnection: an answers-only replica takes no events")
	}
	log := b.log.With("component", "lark-ws")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex
		connected bool
		fatal     error
	)
	cli := larkws.NewClient(appID, appSecret,
		larkws.WithEventHandler(b.disp),
		larkws.WithDomain(domain),
		larkws.WithAutoReconnect(true),
		larkws.WithLogger(openapi.SDKLogger{Log: log}),
		// The SDK logs these at Info, which sdkLogger demotes to Debug.
		larkws.WithOnReady(func() {
			mu.Lock()
			connected = true
			mu.Unlock()
			log.Info("long connection established")
		}),
		larkws.WithOnReconnecting(func() { log.Warn("long connection lost; reconnecting") }),
		larkws.WithOnReconnected(func() { log.Info("long connection re-established") }),
		larkws.WithOnError(func(err error) {
			log.Warn("long connection error", "error", err)
			mu.Lock()
			defer mu.Unlock()
			if se, ok := errors.AsType[*larkws.ServerError](err); ok && !connected && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests {
				// The SDK would retry this every few minutes, forever,
				// while serve looks healthy and receives nothing.
				fatal = err
				cancel()
			}
		}),
	)
	err := cli.Start(ctx)
	mu.Lock()
	defer mu.Unlock()
	switch {
	case fatal != nil:
		err = fmt.Errorf("%w (is %s a Feishu/Lark Open Platform address?)", fatal, domain)
	case ctx.Err() != nil:
		return nil // asked to stop; whatever ended the run is moot
	case err == nil:
		err = errors.New("stopped without an error")
	}
	return fmt.Errorf("Feishu long connection: %w", err)
}

// guard runs one handler of the dispatcher within Feishu's ack deadline,
// with a panic turned into an error (the frame or request is answered 500;
// the SDK would log a long-connection panic without the stack and send no
// answer at all). On the long connection it also times the handler as the
// ack stage; the webhook times its whole request itself (webhook.go), so
// it marks its context and is not timed twice.
func (b *Bot) guard(ctx context.Context, kind string, h func(context.Context) error) (err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer func() {
		cancel()
		if v := recover(); v != nil {
			b.log.Error("panic in an event handler", "type", kind, "panic", v, "stack", stack())
			err = fmt.Errorf("panic handling %s: %v", kind, v)
		}
		if !viaWebhook(ctx) {
			b.cfg.Metrics.observe(stageAck, time.Since(start))
		}
	}()
	return h(ctx)
}

type webhookKey struct{}

// viaWebhook reports whether ctx is a webhook request's.
func viaWebhook(ctx context.Context) bool { return ctx.Value(webhookKey{}) != nil }
