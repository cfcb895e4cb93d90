package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kbbot/bot"
	"kbbot/config"
)

// listenAdmin opens the admin listener on KBBOT_ADMIN_ADDR: /metrics and the
// health checks, kept off the public listener, which only Feishu and the
// readers of source pages need. It returns nils when KBBOT_ADMIN_ADDR is off.
func (a *app) listenAdmin(reg *prometheus.Registry, b *bot.Bot) (*http.Server, net.Listener, error) {
	if a.cfg.AdminAddr == config.AdminOff {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", a.cfg.AdminAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("KBBOT_ADMIN_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", b.HealthHandler())
	return a.httpServer(mux), ln, nil
}

// httpServer is an http.Server with kbbot's timeouts and error log.
func (a *app) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}
