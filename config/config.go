// Package config reads kbbot's environment into one typed, validated struct.
// Every option lives in the table in Vars, with its default; main passes the
// result down, nothing reads the environment anywhere else.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kbbot/bot/kblink"
)

// Config is every setting kbbot reads from its environment.
type Config struct {
	Addr      string // KBBOT_ADDR: the webhook, source pages and health checks
	AdminAddr string // KBBOT_ADMIN_ADDR: /metrics and health checks; "off" turns it off
	PublicURL string // KBBOT_PUBLIC_URL: base for /kb/{doc_id} links in cards
	DataDir   string // KBBOT_DATA_DIR: embedded index and in-process state
	SeedsDir  string // KBBOT_SEEDS_DIR: ingested automatically when the index is empty
	Workers   int    // KBBOT_WORKERS: answering goroutines
	Insecure  bool   // KBBOT_INSECURE_DEV: allow serve without an encrypt key
	Role      string // KBBOT_ROLE: all | events | answers
	Tokenizer string // KBBOT_TOKENIZER: bigram | unigram+bigram

	// DevLoopback is set when insecure development mode left KBBOT_ADDR
	// unset: serve then listens on 127.0.0.1:8080 only, not on every
	// interface, since nothing authenticates its webhook.
	DevLoopback bool

	LinkSecret string        // KBBOT_LINK_SECRET: signs the /kb links cards give out
	LinkTTL    time.Duration // KBBOT_LINK_TTL: how long such a link works

	FeishuAppID             string // FEISHU_APP_ID
	FeishuAppSecret         string // FEISHU_APP_SECRET
	FeishuVerificationToken string // FEISHU_VERIFICATION_TOKEN
	FeishuEncryptKey        string // FEISHU_ENCRYPT_KEY
	FeishuBaseURL           string // FEISHU_BASE_URL
	FeishuMode              string // FEISHU_MODE: webhook | ws

	RedisURL    string // REDIS_URL: empty means in-process state
	RedisPrefix string // KBBOT_REDIS_PREFIX: namespaces every key kbbot writes

	WikiSpaces   []string      // FEISHU_WIKI_SPACES: wiki space ids, or "all"
	WikiRoots    []string      // FEISHU_WIKI_ROOTS: node tokens whose subtrees alone are synced
	FeishuDocs   []string      // FEISHU_DOCS: single documents by URL or token
	DocBaseURL   string        // FEISHU_DOC_BASE_URL: the tenant's document domain, for links
	SyncInterval time.Duration // KBBOT_SYNC_INTERVAL: 0 turns the background sync off
	Admins       []string      // KBBOT_ADMINS: open_ids allowed to run /sync

	QdrantURL        string // QDRANT_URL: empty means the embedded index
	QdrantAPIKey     string // QDRANT_API_KEY
	QdrantCollection string // QDRANT_COLLECTION

	OpenAIAPIKey         string        // OPENAI_API_KEY: empty means extractive answers
	OpenAIBaseURL        string        // OPENAI_BASE_URL
	OpenAIModel          string        // OPENAI_MODEL
	OpenAIEmbeddingModel string        // OPENAI_EMBEDDING_MODEL: empty means lexical retrieval only
	OpenAIEmbeddingDim   int           // OPENAI_EMBEDDING_DIM
	LLMTimeout           time.Duration // OPENAI_TIMEOUT
	LLMIdle              time.Duration // OPENAI_IDLE_TIMEOUT: longest silence inside a streamed answer
	OpenAIMaxTokens      int           // OPENAI_MAX_TOKENS: cap on one answer; 0 leaves it to the provider
	OutOfKB              string        // KBBOT_OUT_OF_KB: general | refuse, for questions the knowledge base does not cover

	HistoryTurns int           // KBBOT_HISTORY_TURNS: turns kept per chat
	HistoryTTL   time.Duration // KBBOT_HISTORY_TTL
	Retention    time.Duration // KBBOT_RETENTION: how long feedback records and given-up work are kept

	QueueVisibility time.Duration // KBBOT_QUEUE_VISIBILITY: lease on queued work (Redis)
	QueueAttempts   int           // KBBOT_QUEUE_ATTEMPTS: tries before an item is given up
	QueueShards     int           // KBBOT_QUEUE_SHARDS: streams chats hash into (Redis)
	QueueMaxPending int           // KBBOT_QUEUE_MAX_PENDING: questions not yet answered, across the deployment, before busy cards
	QueueMaxAge     time.Duration // KBBOT_QUEUE_MAX_AGE: longest a question may wait before a "too long" card
	RateUser        Rate          // KBBOT_RATE_USER: questions per asker
	RateChat        Rate          // KBBOT_RATE_CHAT: questions per chat

	LogLevel  string // LOG_LEVEL: debug | info | warn | error
	LogFormat string // LOG_FORMAT: text | json
}

// Rate is "N questions per Per"; the zero Rate means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

func (r Rate) String() string {
	if r.N == 0 {
		return "off"
	}
	return fmt.Sprintf("%d/%v", r.N, r.Per)
}

// Var describes one environment variable, for the README table and for
// redacting secrets when the configuration is printed.
type Var struct {
	Name    string
	Default string
	Secret  bool
	Help    string
	set     func(c *Config, v string) error
}

// Vars is the table of every variable kbbot reads.
func Vars() []Var {
	str := func(dst func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *dst(c) = v; return nil }
	}
	return []Var{
		{"KBBOT_ADDR", ":8080", false, "address `serve` listens on for Feishu (the webhook), the /kb source pages and /healthz, /readyz; with KBBOT_INSECURE_DEV=true and this unset, 127.0.0.1:8080", str(func(c *Config) *string { return &c.Addr })},
		{"KBBOT_ADMIN_ADDR", DefaultAdminAddr, false, "address of the admin listener: /metrics, /healthz, /readyz; keep it off the public network; off turns it off", str(func(c *Config) *string { return &c.AdminAddr })},
		{"KBBOT_PUBLIC_URL", "http://localhost:8080", false, "public base URL of the bot; cards link sources without a URL to {this}/kb/{doc_id}", str(func(c *Config) *string { return &c.PublicURL })},
		{"KBBOT_DATA_DIR", "./data", false, "where the embedded index and in-process state are kept", str(func(c *Config) *string { return &c.DataDir })},
		{"KBBOT_SEEDS_DIR", "seeds", false, "knowledge ingested automatically when the index is empty", str(func(c *Config) *string { return &c.SeedsDir })},
		{"KBBOT_WORKERS", "0", false, "answers in progress at once per replica; 0 = auto: 32 with an LLM (answers wait on it), 8 without (extractive answers use the CPU, and more would crowd out the webhook)", intVar(func(c *Config) *int { return &c.Workers })},
		{"KBBOT_ROLE", "all", false, "what serve does: all (take events and answer them), events (take events, acknowledge and queue them; answer none), answers (answer what is queued; no webhook): with Redis, intake and answering scale apart", str(func(c *Config) *string { return &c.Role })},
		{"KBBOT_INSECURE_DEV", "false", false, "allow `serve` without FEISHU_ENCRYPT_KEY (requests are then unauthenticated) and without KBBOT_LINK_SECRET; listens on 127.0.0.1 unless KBBOT_ADDR says otherwise; development only", boolVar(func(c *Config) *bool { return &c.Insecure })},
		{"KBBOT_LINK_SECRET", "", true, "secret (at least 32 bytes) that signs the expiring /kb/{doc_id} links on cards; make one with `openssl rand -hex 32`; required by `serve` unless KBBOT_INSECURE_DEV=true; changing it ends every link given out", str(func(c *Config) *string { return &c.LinkSecret })},
		{"KBBOT_LINK_TTL", "720h", false, "how long a /kb link on a card works (rounded up to the hour)", durVar(func(c *Config) *time.Duration { return &c.LinkTTL })},
		{"KBBOT_TOKENIZER", "bigram", false, "lexical tokenizer: bigram (the measured best) or unigram+bigram; changing it needs `kbbot ingest --rebuild`", str(func(c *Config) *string { return &c.Tokenizer })},
		{"FEISHU_APP_ID", "", false, "app ID of the Feishu/Lark app (cli_…)", str(func(c *Config) *string { return &c.FeishuAppID })},
		{"FEISHU_APP_SECRET", "", true, "app secret", str(func(c *Config) *string { return &c.FeishuAppSecret })},
		{"FEISHU_VERIFICATION_TOKEN", "", true, "event subscription verification token; checked on every event", str(func(c *Config) *string { return &c.FeishuVerificationToken })},
		{"FEISHU_ENCRYPT_KEY", "", true, "event encrypt key; signatures and decryption depend on it", str(func(c *Config) *string { return &c.FeishuEncryptKey })},
		{"FEISHU_BASE_URL", "https://open.feishu.cn", false, "Open API base; https://open.larksuite.com for Lark", str(func(c *Config) *string { return &c.FeishuBaseURL })},
		{"FEISHU_MODE", "webhook", false, "webhook (HTTP events) or ws (long connection)", str(func(c *Config) *string { return &c.FeishuMode })},
		{"FEISHU_WIKI_SPACES", "", false, "wiki space ids to sync (comma-separated), or all for every space the app can read", listVar(func(c *Config) *[]string { return &c.WikiSpaces })},
		{"FEISHU_WIKI_ROOTS", "", false, "node tokens whose subtrees alone are synced (comma-separated); empty: the whole spaces", listVar(func(c *Config) *[]string { return &c.WikiRoots })},
		{"FEISHU_DOCS", "", false, "single documents to sync, by URL (…/docx/ID, …/wiki/TOKEN) or token (comma-separated)", listVar(func(c *Config) *[]string { return &c.FeishuDocs })},
		{"FEISHU_DOC_BASE_URL", "", false, "the tenant's document domain, e.g. https://example.feishu.cn: the base of links to synced documents", str(func(c *Config) *string { return &c.DocBaseURL })},
		{"KBBOT_SYNC_INTERVAL", "1h", false, "how often serve syncs the Feishu sources (at start, then every interval); 0 turns it off", durOrOffVar(func(c *Config) *time.Duration { return &c.SyncInterval })},
		{"KBBOT_ADMINS", "", false, "open_ids (comma-separated) who may DM /sync to start a sync", listVar(func(c *Config) *[]string { return &c.Admins })},
		{"REDIS_URL", "", true, "redis://[:pass@]host:6379/0, redis-sentinel://h1:26379,h2:26379/master[/db], redis-cluster://h1:6379,h2:6379; empty keeps state in process", str(func(c *Config) *string { return &c.RedisURL })},
		{"KBBOT_REDIS_PREFIX", "kbbot:", false, "prefix of every Redis key kbbot writes, so several deployments (or a load test) can share one Redis; the same on every replica of one deployment", str(func(c *Config) *string { return &c.RedisPrefix })},
		{"QDRANT_URL", "", false, "Qdrant gRPC address, e.g. http://localhost:6334 (https for TLS); empty uses the embedded index", str(func(c *Config) *string { return &c.QdrantURL })},
		{"QDRANT_API_KEY", "", true, "Qdrant API key", str(func(c *Config) *string { return &c.QdrantAPIKey })},
		{"QDRANT_COLLECTION", "kbbot", false, "Qdrant collection (or alias)", str(func(c *Config) *string { return &c.QdrantCollection })},
		{"OPENAI_API_KEY", "", true, "key of an OpenAI-compatible LLM; empty answers extractively", str(func(c *Config) *string { return &c.OpenAIAPIKey })},
		{"OPENAI_BASE_URL", "https://api.openai.com/v1", false, "base URL of the OpenAI-compatible API", str(func(c *Config) *string { return &c.OpenAIBaseURL })},
		{"OPENAI_MODEL", "gpt-4o-mini", false, "chat model", str(func(c *Config) *string { return &c.OpenAIModel })},
		{"OPENAI_EMBEDDING_MODEL", "", false, "embedding model; when set, dense vectors are fused with lexical retrieval", str(func(c *Config) *string { return &c.OpenAIEmbeddingModel })},
		{"OPENAI_EMBEDDING_DIM", "0", false, "embedding dimension (0: the model's default, found by one call)", intVar(func(c *Config) *int { return &c.OpenAIEmbeddingDim })},
		{"OPENAI_TIMEOUT", "60s", false, "timeout of one LLM call", durVar(func(c *Config) *time.Duration { return &c.LLMTimeout })},
		{"OPENAI_IDLE_TIMEOUT", "20s", false, "longest wait for the next piece of a streamed answer; a stalled stream ends the card with what was said and a retry button", durVar(func(c *Config) *time.Duration { return &c.LLMIdle })},
		{"OPENAI_MAX_TOKENS", "1024", false, "most tokens one answer may take (sent as max_tokens, or max_completion_tokens to models that refuse it); 0 leaves it to the provider", intVar(func(c *Config) *int { return &c.OpenAIMaxTokens })},
		{"KBBOT_OUT_OF_KB", "general", false, "with an LLM, a question the knowledge base does not cover gets: general (say so, then the model's general answer, marked as not from the knowledge base, citing nothing) or refuse (say so only)", str(func(c *Config) *string { return &c.OutOfKB })},
		{"KBBOT_HISTORY_TURNS", "6", false, "conversation turns kept per chat and sent to the LLM", intVar(func(c *Config) *int { return &c.HistoryTurns })},
		{"KBBOT_HISTORY_TTL", "24h", false, "how long a quiet chat's context is kept", durVar(func(c *Config) *time.Duration { return &c.HistoryTTL })},
		{"KBBOT_RETENTION", "720h", false, "how long feedback records and, with Redis, work items given up (the dead-letter stream) are kept; older ones are dropped as new ones arrive", durVar(func(c *Config) *time.Duration { return &c.Retention })},
		{"KBBOT_QUEUE_VISIBILITY", "30s", false, "with Redis: how long a crashed replica's queued questions wait before another replica takes them over (its lease, renewed while it works)", durVar(func(c *Config) *time.Duration { return &c.QueueVisibility })},
		{"KBBOT_QUEUE_ATTEMPTS", "5", false, "tries (failures and crashes) before a queued question is given up, moved to the dead-letter stream and answered with an error card", intVar(func(c *Config) *int { return &c.QueueAttempts })},
		{"KBBOT_QUEUE_SHARDS", "512", false, "with Redis: streams the chats hash into; one question per shard is answered at a time across all replicas, so this caps answers in progress and sets how often a chat waits behind another's; every replica must use the same value", intVar(func(c *Config) *int { return &c.QueueShards })},
		{"KBBOT_QUEUE_MAX_PENDING", "10000", false, "questions recorded but not yet answered, across all replicas, beyond which new ones get a busy card (with Redis; the in-process queue holds 16 per worker)", intVar(func(c *Config) *int { return &c.QueueMaxPending })},
		{"KBBOT_QUEUE_MAX_AGE", "10m", false, "longest a question may wait in the queue; an older one gets a \"took too long, please ask again\" card instead of a stale answer", durVar(func(c *Config) *time.Duration { return &c.QueueMaxAge })},
		{"KBBOT_RATE_USER", "10/1m", false, "questions one person may ask, as N/duration; 0 or off: no limit", rateVar(func(c *Config) *Rate { return &c.RateUser })},
		{"KBBOT_RATE_CHAT", "30/1m", false, "questions one chat may ask, as N/duration; 0 or off: no limit", rateVar(func(c *Config) *Rate { return &c.RateChat })},
		{"LOG_LEVEL", "info", false, "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
		{"LOG_FORMAT", "text", false, "text or json", str(func(c *Config) *string { return &c.LogFormat })},
	}
}

// Load builds a Config from getenv (os.Getenv in main, a map in tests),
// applying defaults and validating. The error names every bad variable and
// how to fix it.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	for _, v := range Vars() {
		val := strings.TrimSpace(getenv(v.Name))
		if val == "" {
			val = v.Default
		}
		if err := v.set(&c, val); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", v.Name, printable(v, val), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if c.Insecure && strings.TrimSpace(getenv("KBBOT_ADDR")) == "" {
		c.Addr, c.DevLoopback = DevAddr, true
	}
	if c.Workers == 0 {
		// Measured with the load tool at 500 events/s: 32 extractive
		// answerers pushed the ack p99 from ~8 to ~20 ms, while 8
		// LLM-bound ones capped a replica at ~10 answers/s.
		c.Workers = 8
		if c.OpenAIAPIKey != "" {
			c.Workers = 32
		}
	}
	return c, c.Validate()
}

// DefaultAdminAddr keeps /metrics on the loopback interface unless
// KBBOT_ADMIN_ADDR says otherwise; DevAddr is KBBOT_ADDR's default in
// insecure development mode.
const (
	DefaultAdminAddr = "127.0.0.1:9090"
	DevAddr          = "127.0.0.1:8080"
)

// AdminOff is the KBBOT_ADMIN_ADDR that turns the admin listener off.
const AdminOff = "off"

// maxQueueShards bounds KBBOT_QUEUE_SHARDS: every replica scans every
// shard each second.
const maxQueueShards = 4096

// Validate checks values that parse but make no sense together.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, a...)))
	}
	if c.Workers < 1 {
		bad("KBBOT_WORKERS", "must be at least 1, got %d", c.Workers)
	}
	if c.HistoryTurns < 0 {
		bad("KBBOT_HISTORY_TURNS", "must not be negative, got %d", c.HistoryTurns)
	}
	switch c.Role {
	case "all":
	case "events", "answers":
		if c.RedisURL == "" {
			bad("KBBOT_ROLE", "%s needs REDIS_URL: the replicas of the other role share the queue through Redis", c.Role)
		}
	default:
		bad("KBBOT_ROLE", "must be all, events or answers, got %q", c.Role)
	}
	if c.FeishuMode != "webhook" && c.FeishuMode != "ws" {
		bad("FEISHU_MODE", "must be webhook or ws, got %q", c.FeishuMode)
	}
	for _, u := range []struct{ name, val string }{
		{"KBBOT_PUBLIC_URL", c.PublicURL}, {"FEISHU_BASE_URL", c.FeishuBaseURL}, {"OPENAI_BASE_URL", c.OpenAIBaseURL},
	} {
		if p, err := url.Parse(u.val); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(u.name, "must be an http(s) URL such as https://example.com, got %q", RedactURL(u.val))
		}
	}
	if c.LinkSecret != "" && len(c.LinkSecret) < kblink.MinSecretLen {
		bad("KBBOT_LINK_SECRET", "must be at least %d bytes, got %d; make one with `openssl rand -hex 32`", kblink.MinSecretLen, len(c.LinkSecret))
	}
	if c.AdminAddr != AdminOff {
		if _, port, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("KBBOT_ADMIN_ADDR", "must be host:port such as 127.0.0.1:9090, or off, got %q", c.AdminAddr)
		} else if c.AdminAddr == c.Addr && port != "0" { // port 0: each gets its own
			bad("KBBOT_ADMIN_ADDR", "must differ from KBBOT_ADDR (%s): /metrics stays off the public listener", c.Addr)
		}
	}
	if c.RedisURL != "" {
		if p, err := url.Parse(c.RedisURL); err != nil || !strings.HasPrefix(p.Scheme, "redis") {
			// Never echo the URL: it may carry the password.
			scheme := "no scheme"
			if p != nil && p.Scheme != "" {
				scheme = "scheme " + strconv.Quote(p.Scheme)
			}
			bad("REDIS_URL", "must look like redis://host:6379/0 (or rediss://, redis-sentinel://, redis-cluster://), got %s", scheme)
		}
	}
	if c.QueueVisibility < time.Second {
		bad("KBBOT_QUEUE_VISIBILITY", "must be at least 1s, got %v", c.QueueVisibility)
	}
	if c.QueueAttempts < 1 {
		bad("KBBOT_QUEUE_ATTEMPTS", "must be at least 1, got %d", c.QueueAttempts)
	}
	if c.QueueMaxPending < 1 {
		bad("KBBOT_QUEUE_MAX_PENDING", "must be at least 1, got %d", c.QueueMaxPending)
	}
	if c.QueueShards < 1 || c.QueueShards > maxQueueShards {
		bad("KBBOT_QUEUE_SHARDS", "must be between 1 and %d, got %d", maxQueueShards, c.QueueShards)
	}
	if c.DocBaseURL != "" {
		if p, err := url.Parse(c.DocBaseURL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || strings.Trim(p.Path, "/") != "" {
			bad("FEISHU_DOC_BASE_URL", "must be the tenant's document domain such as https://example.feishu.cn, got %q", RedactURL(c.DocBaseURL))
		}
	}
	if c.SyncEnabled() && c.DocBaseURL == "" {
		bad("FEISHU_DOC_BASE_URL", "required with FEISHU_WIKI_SPACES, FEISHU_WIKI_ROOTS or FEISHU_DOCS: references link to the documents there; copy the domain from any document's address, e.g. https://example.feishu.cn")
	}
	for _, sp := range c.WikiSpaces {
		if sp == "all" && len(c.WikiSpaces) > 1 {
			bad("FEISHU_WIKI_SPACES", "all stands alone; got %q", strings.Join(c.WikiSpaces, ","))
			break
		}
	}
	if c.OutOfKB != "general" && c.OutOfKB != "refuse" {
		bad("KBBOT_OUT_OF_KB", "must be general or refuse, got %q", c.OutOfKB)
	}
	if c.OpenAIMaxTokens < 0 {
		bad("OPENAI_MAX_TOKENS", "must not be negative (0 leaves the limit to the provider), got %d", c.OpenAIMaxTokens)
	}
	if c.OpenAIEmbeddingDim < 0 {
		bad("OPENAI_EMBEDDING_DIM", "must not be negative, got %d", c.OpenAIEmbeddingDim)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "must be text or json, got %q", c.LogFormat)
	}
	return errors.Join(errs...)
}

// SyncEnabled reports whether Feishu sources are configured.
func (c Config) SyncEnabled() bool {
	return len(c.WikiSpaces)+len(c.WikiRoots)+len(c.FeishuDocs) > 0
}

// ValidateSync checks what `sync` needs on top of Validate: app
// credentials and something to sync.
func (c Config) ValidateSync() error {
	var errs []error
	if c.FeishuAppID == "" || c.FeishuAppSecret == "" {
		errs = append(errs, errors.New("FEISHU_APP_ID and FEISHU_APP_SECRET: required to read the wiki; copy them from the app's Credentials page on the Feishu Open Platform"))
	}
	if !c.SyncEnabled() {
		errs = append(errs, errors.New("FEISHU_WIKI_SPACES, FEISHU_WIKI_ROOTS or FEISHU_DOCS: set at least one; nothing is configured to sync"))
	}
	return errors.Join(errs...)
}

// ValidateServe checks what `serve` needs on top of Validate: Feishu
// credentials, and an encrypt key and a link secret unless insecure
// development mode is on.
func (c Config) ValidateServe() error {
	var errs []error
	if c.FeishuAppID == "" || c.FeishuAppSecret == "" {
		errs = append(errs, errors.New("FEISHU_APP_ID and FEISHU_APP_SECRET: required to reply; copy them from the app's Credentials page on the Feishu Open Platform"))
	}
	if c.FeishuMode == "webhook" && c.FeishuEncryptKey == "" && !c.Insecure {
		errs = append(errs, errors.New("FEISHU_ENCRYPT_KEY: required, because without it Feishu events are neither signed nor encrypted and anyone could post to the webhook; set it from Events & Callbacks > Encryption Strategy, or set KBBOT_INSECURE_DEV=true for local development"))
	}
	if c.FeishuMode == "webhook" && c.FeishuVerificationToken == "" && !c.Insecure {
		errs = append(errs, errors.New("FEISHU_VERIFICATION_TOKEN: required to check each event's token; copy it from Events & Callbacks > Encryption Strategy"))
	}
	if c.LinkSecret == "" && !c.Insecure {
		// Long-connection mode too: cards link to /kb pages either way.
		errs = append(errs, errors.New("KBBOT_LINK_SECRET: required to sign the expiring links cards give to source pages (/kb/...); set it to the output of `openssl rand -hex 32`, or set KBBOT_INSECURE_DEV=true for local development (a random secret, so links stop working at every restart)"))
	}
	return errors.Join(errs...)
}

// Redacted returns the settings as name=value lines with secrets masked, for
// `kbbot doctor` and start-up logs.
func Redacted(getenv func(string) string) []string {
	var out []string
	for _, v := range Vars() {
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		} else {
			val = printable(v, val)
		}
		out = append(out, v.Name+"="+val)
	}
	return out
}

// printable is a variable's value as it may be printed: a secret's masked,
// and credentials and query strings cut from any URL in it.
func printable(v Var, val string) string {
	if v.Secret {
		return "***"
	}
	return RedactText(val)
}

func intVar(dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("must be a whole number")
		}
		*dst(c) = n
		return nil
	}
}

func boolVar(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		*dst(c) = b
		return nil
	}
}

// rateVar parses "N/duration" (10/1m, 100/1h), or 0 or off for no limit.
func rateVar(dst func(*Config) *Rate) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "0" || strings.EqualFold(v, "off") {
			*dst(c) = Rate{}
			return nil
		}
		n, per, ok := strings.Cut(v, "/")
		count, err := strconv.Atoi(strings.TrimSpace(n))
		d, derr := time.ParseDuration(strings.TrimSpace(per))
		if !ok || err != nil || count < 1 || derr != nil || d <= 0 {
			return errors.New("must be N/duration such as 10/1m, or off")
		}
		*dst(c) = Rate{N: count, Per: d}
		return nil
	}
}

// listVar parses a comma-separated list; blanks are dropped.
func listVar(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*dst(c) = out
		return nil
	}
}

// durOrOffVar is durVar that also takes 0 or off for "never".
func durOrOffVar(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "0" || strings.EqualFold(v, "off") {
			*dst(c) = 0
			return nil
		}
		return durVar(dst)(c, v)
	}
}

func durVar(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("must be a positive duration such as 30s or 24h")
		}
		*dst(c) = d
		return nil
	}
}
