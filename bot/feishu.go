package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	lark "github.com/larksuite/oapi-sdk-go/v3"
	larkcore "github.com/larksuite/oapi-sdk-go/v3/core"
	larkim "github.com/larksuite/oapi-sdk-go/v3/service/im/v1"
)

// NewLarkClient is the SDK client kbbot uses: the given Open API base, a
// request timeout, and the SDK's logs in slog.
func NewLarkClient(appID, appSecret, baseURL string, log *slog.Logger) *lark.Client {
	// The default transport keeps 2 idle connections per host; a busy bot
	// would open and close one per message.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return lark.NewClient(appID, appSecret,
		lark.WithOpenBaseUrl(baseURL),
		lark.WithHttpClient(&http.Client{Timeout: 20 * time.Second, Transport: tr}),
		lark.WithLogger(sdkLogger{log: log.With("component", "lark-client")}),
		lark.WithLogLevel(larkcore.LogLevelInfo),
	)
}

// feishu wraps the SDK client with what every send needs: retries with
// backoff on 5xx, network errors and rate limits (honouring Retry-After), and
// API error codes turned into Go errors.
type feishu struct {
	client   *lark.Client
	log      *slog.Logger
	attempts int
	base     time.Duration
}

// Feishu error codes that mean "slow down" rather than "wrong request".
var rateLimitCodes = map[int]bool{
	99991400: true, // app-level request frequency limit
	230020:   true, // chat-level message frequency limit
}

// apiError is a non-zero code in an Open API answer.
type apiError struct {
	Op     string
	Status int
	Code   int
	Msg    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: HTTP %d, code %d: %s", e.Op, e.Status, e.Code, e.Msg)
}

// reply answers a message; inThread keeps the answer in the message's thread.
func (f *feishu) reply(ctx context.Context, log *slog.Logger, messageID string, inThread bool, card []byte, uuid string) (string, error) {
	var id string
	err := f.retry(ctx, log, "reply", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		body := larkim.NewReplyMessageReqBodyBuilder().MsgType(larkim.MsgTypeInteractive).Content(string(card)).Uuid(uuid)
		if inThread {
			body = body.ReplyInThread(true)
		}
		resp, err := f.client.Im.V1.Message.Reply(ctx, larkim.NewReplyMessageReqBuilder().MessageId(messageID).Body(body.Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.MessageId != nil {
			id = *resp.Data.MessageId
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return id, err
}

// create posts a new message to a chat.
func (f *feishu) create(ctx context.Context, log *slog.Logger, chatID string, card []byte, uuid string) (string, error) {
	var id string
	err := f.retry(ctx, log, "create", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Im.V1.Message.Create(ctx, larkim.NewCreateMessageReqBuilder().
			ReceiveIdType("chat_id").
			Body(larkim.NewCreateMessageReqBodyBuilder().ReceiveId(chatID).MsgType(larkim.MsgTypeInteractive).Content(string(card)).Uuid(uuid).Build()).
			Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.MessageId != nil {
			id = *resp.Data.MessageId
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return id, err
}

// botOpenID asks bot/v3/info, which the SDK has no typed call for.
func (f *feishu) botOpenID(ctx context.Context) (string, error) {
	var openID string
	err := f.retry(ctx, f.log, "bot/v3/info", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Get(ctx, "/open-apis/bot/v3/info", nil, larkcore.AccessTokenTypeTenant)
		if err != nil {
			return nil, 0, "", err
		}
		var info struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
			Bot  struct {
				OpenID string `json:"open_id"`
			} `json:"bot"`
		}
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			if err := json.Unmarshal(resp.RawBody, &info); err != nil {
				return nil, 0, "", fmt.Errorf("decoding bot/v3/info (HTTP %d): %w", resp.StatusCode, err)
			}
			if info.Code == 0 && info.Bot.OpenID == "" {
				return nil, 0, "", errors.New("bot/v3/info returned no open_id; is the bot capability enabled for this app?")
			}
			openID = info.Bot.OpenID
		}
		return resp, info.Code, info.Msg, nil
	})
	return openID, err
}

// CheckApp asks bot/v3/info once, without retries, for `kbbot doctor`: it
// proves the app has the Bot capability (and, on the way, that the SDK can get
// a tenant token), and returns the bot's open_id.
func CheckApp(ctx context.Context, client *lark.Client) (botOpenID string, err error) {
	f := &feishu{client: client, log: slog.New(slog.DiscardHandler), attempts: 1, base: time.Millisecond}
	return f.botOpenID(ctx)
}

// retry runs call until it succeeds, fails for good, or attempts run out.
// call returns the raw response with the API code and message, or a
// transport error.
func (f *feishu) retry(ctx context.Context, log *slog.Logger, op string, call func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
	var last error
	for attempt := 1; ; attempt++ {
		resp, code, msg, err := call(ctx)
		wait, retryable := time.Duration(0), false
		switch {
		case err != nil:
			last = fmt.Errorf("%s: %w", op, err)
			_, badParam := errors.AsType[*larkcore.IllegalParamError](err)
			retryable = !badParam && ctx.Err() == nil
		case resp.StatusCode == http.StatusTooManyRequests || rateLimitCodes[code]:
			last = &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
			wait, retryable = retryAfter(resp.Header), true
		case resp.StatusCode >= 500:
			last = &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
			retryable = true
		case code != 0 || resp.StatusCode >= 400:
			return &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
		default:
			return nil
		}
		if !retryable || attempt >= f.attempts {
			return last
		}
		if wait <= 0 {
			// Exponential backoff with jitter: base, 2·base, 4·base … (±50%).
			d := f.base << (attempt - 1)
			wait = d/2 + rand.N(d)
		}
		wait = min(wait, 30*time.Second)
		log.Warn("Feishu call failed, retrying", "op", op, "attempt", attempt, "wait", wait, "error", last)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", last, ctx.Err())
		case <-t.C:
		}
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date) or Feishu's
// x-ogw-ratelimit-reset (seconds); 0 means "use the backoff".
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return max(time.Duration(s)*time.Second, time.Millisecond)
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), time.Millisecond)
		}
	}
	if v := h.Get("X-Ogw-Ratelimit-Reset"); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			return max(time.Duration(s)*time.Second, time.Millisecond)
		}
	}
	return 0
}

// idemUUID derives a Feishu idempotency uuid (≤ 50 chars): the same kind of
// send for the same seed is delivered at most once.
func idemUUID(kind, seed string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + seed))
	return kind + "-" + hex.EncodeToString(sum[:16])
}

// shortHash names things derived from long strings (questions in claim keys,
// turn ids).
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// sdkLogger sends the SDK's logs to slog.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Debug(ctx context.Context, args ...any) {
	l.log.DebugContext(ctx, fmt.Sprint(args...))
}
func (l sdkLogger) Info(ctx context.Context, args ...any) {
	l.log.DebugContext(ctx, fmt.Sprint(args...))
}
func (l sdkLogger) Warn(ctx context.Context, args ...any) {
	l.log.WarnContext(ctx, fmt.Sprint(args...))
}
func (l sdkLogger) Error(ctx context.Context, args ...any) {
	l.log.WarnContext(ctx, fmt.Sprint(args...))
}
