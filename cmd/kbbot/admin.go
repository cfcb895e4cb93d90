package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
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
	mux.HandleFunc("GET /debug/pprof/profile", profileHandler)
	mux.HandleFunc("GET /debug/pprof/trace", traceHandler)
	mux.HandleFunc("GET /debug/pprof/{name}", namedProfileHandler)
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

// Profiles, on the admin listener only: what a load investigation needs
// (CPU profile, execution trace, heap, goroutines, blocking, mutexes),
// written here rather than by importing net/http/pprof, which registers
// its handlers on the process-wide default mux as a side effect.

// seconds is the ?seconds= of a profile request: 1 to 25 (the admin
// server's write timeout is 30 s), default 10.
func seconds(r *http.Request) time.Duration {
	n, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || n < 1 {
		n = 10
	}
	return time.Duration(min(n, 25)) * time.Second
}

func profileHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		http.Error(w, "a CPU profile is already running", http.StatusConflict)
		return
	}
	select {
	case <-time.After(seconds(r)):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}

func traceHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := trace.Start(w); err != nil {
		http.Error(w, "a trace is already running", http.StatusConflict)
		return
	}
	select {
	case <-time.After(seconds(r)):
	case <-r.Context().Done():
	}
	trace.Stop()
}

// namedProfileHandler serves heap, goroutine, allocs, block, mutex and
// threadcreate. Block and mutex profiles are empty unless their rates are
// set, which this turns on for the process when first asked.
func namedProfileHandler(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	switch name {
	case "block":
		runtime.SetBlockProfileRate(int(time.Millisecond / 10))
	case "mutex":
		runtime.SetMutexProfileFraction(10)
	}
	p := pprof.Lookup(name)
	if p == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_ = p.WriteTo(w, 0)
}
