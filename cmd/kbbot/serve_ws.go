package main

import (
	"context"
	"log/slog"
	"time"

	"kbbot/bot"
)

// longConn is the Feishu long connection `serve --ws` (FEISHU_MODE=ws) runs
// next to the HTTP servers, which then serve only health checks and source
// pages (and, on the admin listener, metrics). It is nil in webhook mode,
// and then does nothing.
type longConn struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    chan error // the error that ended the connection; nil on stop
	log    *slog.Logger
}

// startLongConnection connects b to Feishu over the SDK's WebSocket client
// when FEISHU_MODE is ws; the endpoint is asked for at FEISHU_BASE_URL, like
// the Open API.
func (a *app) startLongConnection(ctx context.Context, b *bot.Bot) *longConn {
	if a.cfg.FeishuMode != "ws" {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	lc := &longConn{cancel: cancel, done: make(chan struct{}), err: make(chan error, 1), log: a.log}
	go func() {
		defer close(lc.done)
		if err := b.RunLongConnection(ctx, a.cfg.FeishuAppID, a.cfg.FeishuAppSecret, a.cfg.FeishuBaseURL); err != nil {
			lc.err <- err
		}
	}()
	return lc
}

// failed delivers the error that ended the connection: the SDK only gives
// up on errors reconnecting cannot fix (credentials, the app's connection
// limit). A nil longConn never fails.
func (lc *longConn) failed() <-chan error {
	if lc == nil {
		return nil
	}
	return lc.err
}

// stop closes the connection and waits until no event handler is running,
// so the answer queues can be drained after it.
func (lc *longConn) stop() {
	if lc == nil {
		return
	}
	lc.cancel()
	select {
	case <-lc.done:
	case <-time.After(httpShutdownTimeout):
		lc.log.Warn("the Feishu long connection did not close in time")
	}
}
