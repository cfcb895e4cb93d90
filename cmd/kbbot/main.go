// Command kbbot is a Feishu/Lark knowledge-base bot: it ingests knowledge
// from files and syncs it from Feishu wiki spaces and docs, answers
// questions from the terminal, and serves the Feishu bot. main.go reads
// the configuration and picks the command; each command lives in a file of
// its own (serve.go wires the bot: state, queue, limits, knowledge, the
// Feishu client and the sync), and everything is built here and handed
// down, nothing read from globals.
//
// Usage:
//
//	kbbot ingest [--rebuild] [PATH...]
//	kbbot sync
//	kbbot ask [--json] QUESTION
//	kbbot eval FILE.jsonl...
//	kbbot serve [--ws]
//	kbbot doctor
//	kbbot healthcheck
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"kbbot/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			// Errors may quote a URL (a request's, or a setting's).
			fmt.Fprintln(os.Stderr, "kbbot:", config.RedactText(err.Error()))
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usage = `kbbot: a Feishu knowledge-base bot

  kbbot ask [--json] QUESTION     answer one question from the knowledge base
  kbbot ingest [--rebuild] [PATH...]  ingest files or folders (default: seeds/)
  kbbot sync                      sync the Feishu wiki spaces and docs (FEISHU_WIKI_SPACES…) into the index
  kbbot eval FILE.jsonl...        retrieval quality: recall@1, recall@3, MRR; out-of-domain questions cited
  kbbot serve [--ws]              run the Feishu bot (webhook, or long connection with --ws)
  kbbot doctor                    check the configuration and every dependency
  kbbot healthcheck               GET /healthz on KBBOT_ADDR (for container health checks)

Configuration is read from the environment; see README.md.
`

// app carries what every subcommand needs. Tests build one through run with
// their own environment and writers, so the real program runs in-process.
type app struct {
	getenv func(string) string
	cfg    config.Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	// onListen and onAdminListen, when set, are told the addresses serve
	// listens on (tests use KBBOT_ADDR=127.0.0.1:0, likewise the admin one).
	onListen      func(addr string)
	onAdminListen func(addr string)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runApp(ctx, &app{getenv: getenv, stdout: stdout, stderr: stderr}, args)
}

func runApp(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stderr, usage)
		return errUsage
	}
	cfg, err := config.Load(a.getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	a.cfg = cfg
	if a.log == nil {
		a.log = newLogger(a.stderr, cfg)
	}
	cmds := map[string]func(context.Context, []string) error{
		"ask":         a.ask,
		"ingest":      a.ingest,
		"sync":        a.sync,
		"eval":        a.eval,
		"serve":       a.serve,
		"doctor":      a.doctor,
		"healthcheck": a.healthcheck,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(a.stderr, "unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
	return cmd(ctx, args[1:])
}

func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
