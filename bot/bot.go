// Package bot is kbbot's Feishu side: it takes events and card callbacks in
// (the webhook in webhook.go, the long connection in ws.go, one dispatcher
// for both in bot.go), decides who gets an answer (events.go, limits.go),
// records the work as queue items (job.go) and runs them: answers with the
// conversation's history (answer.go), streamed into a CardKit card when an
// LLM writes them (stream.go). The Open API client is bot/openapi, the card
// renderer bot/cards, the signer of source-page links bot/kblink; pages.go
// serves the health checks and the source pages.
// The webhook only records work and acknowledges within Feishu's 3 s;
// workers answer from the queue.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	lark "github.com/larksuite/oapi-sdk-go/v3"
	larkevent "github.com/larksuite/oapi-sdk-go/v3/event"
	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher"
	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher/callback"
	larkim "github.com/larksuite/oapi-sdk-go/v3/service/im/v1"

	"kbbot/bot/kblink"
	"kbbot/bot/openapi"
	"kbbot/bot/wiki"
	"kbbot/rag"
	"kbbot/store/queue"
	"kbbot/store/retry"
)

// Answerer is what the bot needs from the knowledge engine (*rag.Engine).
type Answerer interface {
	// AskStream answers question, calling onDelta with the answer so far as
	// it is written; HasLLM says up front whether answers can arrive that
	// way. It calls history for the conversation's earlier turns only when
	// it needs them (see rag.Engine.AskStream).
	AskStream(ctx context.Context, question string, history func() []rag.Turn, onDelta func(textSoFar string)) (rag.Answer, error)
	HasLLM() bool
	Document(ctx context.Context, docID string) (rag.Document, error)
	StarterQuestions(ctx context.Context, n int) ([]string, error)
}

// State is what the bot needs from the state store (state.Memory,
// state.Redis): conversation turns, answers by the message showing them,
// de-duplication claims, feedback.
type State interface {
	AppendTurn(ctx context.Context, conv string, turn []byte, maxTurns int, ttl time.Duration) error
	Turns(ctx context.Context, conv string) ([][]byte, error)
	ResetTurns(ctx context.Context, conv string) error
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, key string) error
	AddFeedback(ctx context.Context, vote string, record []byte) (up, down int64, err error)
	SeenChat(ctx context.Context, chat string) (first bool, err error)
	Ping(ctx context.Context) error
	// Remember keeps a small value for ttl; Recall reads it (nil when
	// absent): what each question was answered with (sent:<seed>), and
	// each answered turn by the message that shows it (answer:<id>), so a
	// reply to that message finds it.
	Remember(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Recall(ctx context.Context, key string) ([]byte, error)
}

// Config is the bot's part of kbbot's configuration. Zero values of the
// tuning fields get sensible defaults in New.
type Config struct {
	VerificationToken string // checked on every event and challenge; empty only in insecure dev mode
	EncryptKey        string // empty: events are neither signed nor encrypted (insecure dev mode)
	PublicURL         string // base of /kb/{doc_id} links for sources without a URL
	// LinkSecret signs those links (kblink); empty is a random secret, so
	// links die with the process (serve allows that in insecure dev mode
	// only). LinkTTL is how long a link works; default 720h.
	LinkSecret []byte
	LinkTTL    time.Duration
	DocBaseURL string // FEISHU_DOC_BASE_URL: the tenant's documents, which answers may link to

	Workers      int // answering goroutines
	QueueSize    int // in-process queue: answers waiting for a worker; default 16 per worker, at least 64
	HistoryTurns int // turns kept per conversation; 0 keeps none
	HistoryTTL   time.Duration

	// BotOpenID is this bot's open_id; when empty Start asks bot/v3/info.
	BotOpenID string

	// Ready, when set, is the knowledge-store check (reported by /readyz
	// and kbbot_dependency_up, not failing readiness); by default the
	// Answerer is asked for one starter question.
	Ready func(ctx context.Context) error
	// DependencyInterval is how often a background check refreshes
	// kbbot_dependency_up between probes; default 15s.
	DependencyInterval time.Duration

	// Send retries: attempts per message and the first backoff (doubling).
	SendAttempts int
	RetryBase    time.Duration
	// AnswerTimeout bounds one answer, LLM included.
	AnswerTimeout time.Duration
	// MaxAge is the longest a question may wait in the queue: one older
	// gets a "took too long, ask again" card instead of a stale answer.
	// Default 10 minutes.
	MaxAge time.Duration

	// StreamInterval is the least time between two text updates of a
	// streaming answer card (Feishu allows 10 operations/s per card);
	// default 300ms.
	StreamInterval time.Duration

	// Metrics, when set, records event counts and stage latencies.
	Metrics *Metrics

	// Queue holds work between the webhook and the workers. Nil is an
	// in-process queue of Workers and QueueSize, which a crash empties;
	// serve passes a queue.Redis when Redis is configured.
	Queue Queue
	// Limiter counts questions against RateUser (per asker) and RateChat
	// (per chat); nil means no limits.
	Limiter            Limiter
	RateUser, RateChat Rate

	// Syncer, when set, runs a knowledge sync for /sync; Admins are the
	// open_ids allowed to ask (in a direct message).
	Syncer interface {
		Now(ctx context.Context) (wiki.Report, error)
	}
	Admins []string

	// AnswersOnly makes a replica that answers queued work and takes no
	// events: Handler serves no webhook, and RunLongConnection refuses.
	AnswersOnly bool

	// LongConnection means events arrive over the SDK's WebSocket client
	// (see RunLongConnection), so Handler serves no webhook: without an
	// encrypt key it would accept unauthenticated events.
	LongConnection bool
}

// Dedup windows. Feishu redelivers an unacknowledged event after 15 s, 5 min,
// 1 h and 6 h, so event and message claims must outlive about 7.2 h, and
// the webhook's timestamp window (maxRequestAge + maxClockSkew, webhook.go).
const (
	dedupTTL    = 8 * time.Hour
	clickTTL    = 10 * time.Minute
	voteTTL     = 30 * 24 * time.Hour
	maxBodySize = 1 << 20
	ackTimeout  = 2500 * time.Millisecond // Feishu wants the 200 within 3 s
)

// Bot is the Feishu side of kbbot. Build it with New, call Start, mount
// Handler, and Shutdown when the HTTP server has stopped.
type Bot struct {
	cfg   Config
	ans   Answerer
	st    State
	log   *slog.Logger
	feish *openapi.Client
	disp  *dispatcher.EventDispatcher
	links *kblink.Signer // signs and checks /kb links, on the clock Now

	work    Queue // answers: cfg.Queue
	started bool  // Start has started the queues
	// notices carries busy cards (and welcomes) when the in-process work
	// queue is full. A busy card costs one send and no answering, so this
	// lane drains much faster than work; it only overflows in a flood, and
	// then the webhook answers 500 and Feishu redelivers later.
	notices *queue.Memory

	// jobHook, when set (by tests, before Start), sees every item a worker
	// runs, before it runs.
	jobHook func(it item)

	// Now is the clock, for turn timestamps, feedback records and links.
	Now func() time.Time
	// webhookNow, when set (by tests, before Handler), is the clock the
	// webhook judges request timestamps by; nil is time.Now.
	webhookNow func() time.Time

	botOpenID string

	depDown  [2]atomic.Bool     // state, knowledge: down at the last check
	stopDeps context.CancelFunc // called by Shutdown: ends watchDependencies
	depsDone chan struct{}
	// linkHosts are where links in answers may point besides their
	// sources: the bot's own pages and the tenant's documents.
	linkHosts []string
}

// New wires a bot. client must be an SDK client for this app (see
// openapi.NewLarkClient); it is used for every Open API call.
func New(cfg Config, client *lark.Client, ans Answerer, st State, log *slog.Logger) (*Bot, error) {
	if client == nil || ans == nil || st == nil {
		return nil, errors.New("bot.New: client, answerer and state are required")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.QueueSize < 1 {
		cfg.QueueSize = max(16*cfg.Workers, 64)
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = 24 * time.Hour
	}
	if cfg.SendAttempts < 1 {
		cfg.SendAttempts = 5
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 300 * time.Millisecond
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 3 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 10 * time.Minute
	}
	if cfg.Queue == nil {
		cfg.Queue = queue.NewMemory(st, queue.Options{Workers: cfg.Workers, Capacity: cfg.QueueSize, Log: log})
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if len(cfg.LinkSecret) == 0 {
		cfg.LinkSecret = kblink.RandomSecret()
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 720 * time.Hour
	}
	b := &Bot{
		cfg:       cfg,
		ans:       ans,
		st:        st,
		log:       log,
		feish:     openapi.New(client, log, retry.Policy{Attempts: cfg.SendAttempts, Base: cfg.RetryBase}),
		Now:       time.Now,
		botOpenID: cfg.BotOpenID,
		work:      cfg.Queue,
		notices:   queue.NewMemory(nil, queue.Options{Workers: 2, Capacity: 4096, MaxAttempts: 1, Log: log}),
		linkHosts: hostsOf(cfg.PublicURL, cfg.DocBaseURL),
	}
	b.links = kblink.New(cfg.LinkSecret, cfg.LinkTTL, cfg.PublicURL, func() time.Time { return b.Now() })
	b.disp = b.newDispatcher()
	return b, nil
}

// newDispatcher routes plaintext events and callbacks to the bot's handlers,
// each run through guard. The webhook (Handler) and the long connection
// (RunLongConnection) share the one dispatcher, so an event type is
// registered once, here. The webhook verifies, decrypts and checks the
// token before calling it (the SDK's Do does none of that: the dispatcher
// is a router only); long-connection frames need none of it.
func (b *Bot) newDispatcher() *dispatcher.EventDispatcher {
	guard := b.guard
	d := dispatcher.NewEventDispatcher("", "")
	d.InitConfig(larkevent.WithLogger(openapi.SDKLogger{Log: b.log.With("component", "lark-dispatcher")}))
	d.OnP2MessageReceiveV1(func(ctx context.Context, e *larkim.P2MessageReceiveV1) error {
		return guard(ctx, evMessage, func(ctx context.Context) error { return b.onMessage(ctx, e) })
	})
	d.OnP2ChatAccessEventBotP2pChatEnteredV1(func(ctx context.Context, e *larkim.P2ChatAccessEventBotP2pChatEnteredV1) error {
		return guard(ctx, evWelcome, func(ctx context.Context) error { return b.onP2PChatEntered(ctx, e) })
	})
	d.OnP2CardActionTrigger(func(ctx context.Context, e *callback.CardActionTriggerEvent) (resp *callback.CardActionTriggerResponse, err error) {
		err = guard(ctx, evClick, func(ctx context.Context) error {
			resp, err = b.onCardAction(ctx, e)
			return err
		})
		return resp, err
	})
	// Reading a message fires these too. They need no work, but an
	// unregistered type is logged as an error by the SDK and, on the long
	// connection, answered with a 500 that Feishu redelivers.
	d.OnP2MessageReadV1(func(context.Context, *larkim.P2MessageReadV1) error { return nil })
	return d
}

// Start learns the bot's own open_id (unless configured) and starts the
// workers. It fails when bot/v3/info keeps failing: without the open_id
// group @-mentions cannot be recognised.
func (b *Bot) Start(ctx context.Context) error {
	if b.botOpenID == "" {
		id, err := b.feish.BotOpenID(ctx)
		if err != nil {
			return fmt.Errorf("learning the bot's open_id from bot/v3/info: %w", err)
		}
		b.botOpenID = id
	}
	b.log.Info("bot started", "bot_open_id", b.botOpenID, "workers", b.cfg.Workers, "queue", b.cfg.QueueSize)
	err := b.cfg.Queue.Start(ctx, queue.Handlers{Handle: b.runJob, Dead: b.deadJob,
		Depth: func(n int, oldest time.Duration) { b.cfg.Metrics.queueDepth("answers", n, oldest) }})
	if err != nil {
		return fmt.Errorf("starting the work queue: %w", err)
	}
	if err := b.notices.Start(ctx, queue.Handlers{Handle: b.runJob}); err != nil {
		return fmt.Errorf("starting the notice queue: %w", err)
	}
	var deps context.Context
	deps, b.stopDeps = context.WithCancel(context.Background())
	b.depsDone = make(chan struct{})
	go b.watchDependencies(deps, b.depsDone)
	b.started = true
	return nil
}

// Shutdown stops taking work and waits for running answers to finish, until
// ctx is done; then it cancels what is still running and returns ctx's error.
// With Redis, unfinished items stay pending and another replica takes them
// over; the in-process queue first runs what waits, since nothing else would.
// Call it after the HTTP server has stopped delivering events.
func (b *Bot) Shutdown(ctx context.Context) error {
	if !b.started {
		return nil
	}
	b.stopDeps()
	err := errors.Join(b.work.Stop(ctx), b.notices.Stop(ctx))
	select {
	case <-b.depsDone:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	return err
}

// Handler serves what the public listener offers: the webhook, the health
// checks and the source pages. Metrics belong on the admin listener, with
// HealthHandler.
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	if !b.cfg.LongConnection && !b.cfg.AnswersOnly {
		now := b.webhookNow
		if now == nil {
			now = time.Now
		}
		mux.Handle("POST /feishu/events", &webhook{disp: b.disp, token: b.cfg.VerificationToken, encryptKey: b.cfg.EncryptKey,
			log: b.log, metrics: b.cfg.Metrics, now: now, rejects: newRejectLog(b.log)})
	}
	mux.HandleFunc("GET /healthz", b.healthz)
	mux.HandleFunc("GET /readyz", b.readyz)
	// Everything under /kb/, even a 404 or 405 from the mux, gets kbHeaders.
	kb := http.NewServeMux()
	kb.HandleFunc("GET /kb/{doc_id}", b.kbPage)
	mux.Handle("/kb/", kbHeaders(kb))
	return recoverHandler(b.log, mux)
}

// HealthHandler serves /healthz and /readyz alone, for the admin listener.
func (b *Bot) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", b.healthz)
	mux.HandleFunc("GET /readyz", b.readyz)
	return recoverHandler(b.log, mux)
}

// BotOpenID is the open_id the bot answers @-mentions of.
func (b *Bot) BotOpenID() string { return b.botOpenID }

func recoverHandler(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in HTTP handler", "path", r.URL.Path, "panic", v, "stack", stack())
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func stack() string { return string(debug.Stack()) }

// hostsOf is the hosts of the given base URLs, skipping empty ones.
func hostsOf(urls ...string) []string {
	var out []string
	for _, u := range urls {
		if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
			out = append(out, strings.ToLower(p.Hostname()))
		}
	}
	return out
}
