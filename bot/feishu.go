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
	larkcardkit "github.com/larksuite/oapi-sdk-go/v3/service/cardkit/v1"
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
	// sleep waits between attempts; nil is a timer. Tests record the waits
	// instead of taking them.
	sleep func(ctx context.Context, d time.Duration) error
	// textUpdates paces streaming text updates across all of the app's
	// cards.
	textUpdates limiter
}

// Feishu error codes that mean "slow down" rather than "wrong request".
var rateLimitCodes = map[int]bool{
	99991400: true, // app-level request frequency limit
	230020:   true, // chat-level message frequency limit
}

// codeSequence is CardKit's "sequence not strictly increasing".
const codeSequence = 300317

// apiError is a non-zero code in an Open API answer.
type apiError struct {
	Op     string
	Status int
	Code   int
	Msg    string
	// RetryAfter is what a rate-limited answer asked to wait, if anything.
	RetryAfter time.Duration
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
	return f.retryN(ctx, log, op, f.attempts, call)
}

// retryN is retry with its own number of attempts.
func (f *feishu) retryN(ctx context.Context, log *slog.Logger, op string, attempts int, call func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
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
			wait, retryable = retryAfter(resp.Header), true
			last = &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg, RetryAfter: wait}
		case resp.StatusCode >= 500:
			last = &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
			retryable = true
		case code != 0 || resp.StatusCode >= 400:
			return &apiError{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
		default:
			return nil
		}
		if !retryable || attempt >= attempts {
			return last
		}
		if wait <= 0 {
			// Exponential backoff with jitter: base, 2·base, 4·base … (±50%).
			d := f.base << (attempt - 1)
			wait = d/2 + rand.N(d)
		}
		wait = min(wait, 30*time.Second)
		log.Warn("Feishu call failed, retrying", "op", op, "attempt", attempt, "wait", wait, "error", last)
		if err := f.wait(ctx, wait); err != nil {
			return fmt.Errorf("%w (gave up: %w)", last, err)
		}
	}
}

func (f *feishu) wait(ctx context.Context, d time.Duration) error {
	if f.sleep != nil {
		return f.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// patch replaces the card of a message the bot sent.
func (f *feishu) patch(ctx context.Context, log *slog.Logger, messageID string, card []byte) error {
	return f.retry(ctx, log, "patch", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Im.V1.Message.Patch(ctx, larkim.NewPatchMessageReqBuilder().MessageId(messageID).
			Body(larkim.NewPatchMessageReqBodyBuilder().Content(string(card)).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// createCard makes a CardKit card entity from card JSON 2.0 and returns
// its card_id.
func (f *feishu) createCard(ctx context.Context, log *slog.Logger, card []byte) (string, error) {
	var id string
	err := f.retry(ctx, log, "cardkit create", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Cardkit.V1.Card.Create(ctx, larkcardkit.NewCreateCardReqBuilder().
			Body(larkcardkit.NewCreateCardReqBodyBuilder().Type("card_json").Data(string(card)).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.CardId != nil {
			id = *resp.Data.CardId
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	if err == nil && id == "" {
		err = errors.New("cardkit create: the answer has no card_id")
	}
	return id, err
}

// cardOf asks which card entity a message shows.
func (f *feishu) cardOf(ctx context.Context, log *slog.Logger, messageID string) (string, error) {
	var id string
	err := f.retry(ctx, log, "cardkit id_convert", func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Cardkit.V1.Card.IdConvert(ctx, larkcardkit.NewIdConvertCardReqBuilder().
			Body(larkcardkit.NewIdConvertCardReqBodyBuilder().MessageId(messageID).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		if resp.Success() && resp.Data != nil && resp.Data.CardId != nil {
			id = *resp.Data.CardId
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
	return id, err
}

// textUpdateTimeout bounds one streaming text update: a slow one is
// superseded by the next text anyway.
const textUpdateTimeout = 5 * time.Second

// setCardText replaces the text of a card element; when the old text is a
// prefix of the new, Feishu types the rest out. One attempt only: the next
// update carries everything this one did.
func (f *feishu) setCardText(ctx context.Context, log *slog.Logger, cardID, elementID, text string, seq int, uuid string) error {
	ctx, cancel := context.WithTimeout(ctx, textUpdateTimeout)
	defer cancel()
	return f.cardOp(ctx, log, "cardkit content", 1, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Cardkit.V1.CardElement.Content(ctx, larkcardkit.NewContentCardElementReqBuilder().
			CardId(cardID).ElementId(elementID).
			Body(larkcardkit.NewContentCardElementReqBodyBuilder().Content(text).Sequence(seq).Uuid(uuid).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// updateCard replaces a card entity's whole card.
func (f *feishu) updateCard(ctx context.Context, log *slog.Logger, cardID string, card []byte, seq int, uuid string) error {
	return f.cardOp(ctx, log, "cardkit update", f.attempts, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Cardkit.V1.Card.Update(ctx, larkcardkit.NewUpdateCardReqBuilder().CardId(cardID).
			Body(larkcardkit.NewUpdateCardReqBodyBuilder().
				Card(larkcardkit.NewCardBuilder().Type("card_json").Data(string(card)).Build()).
				Sequence(seq).Uuid(uuid).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// cardSettings changes a card entity's config (settings is the JSON of
// {"config":{…}}), e.g. to end streaming.
func (f *feishu) cardSettings(ctx context.Context, log *slog.Logger, cardID, settings string, seq int, uuid string) error {
	return f.cardOp(ctx, log, "cardkit settings", f.attempts, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.client.Cardkit.V1.Card.Settings(ctx, larkcardkit.NewSettingsCardReqBuilder().CardId(cardID).
			Body(larkcardkit.NewSettingsCardReqBodyBuilder().Settings(settings).Sequence(seq).Uuid(uuid).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// cardOp runs one sequenced operation on a card entity. Every attempt
// repeats the operation's sequence and uuid, so Feishu applies it at most
// once; a retry refused for its sequence means an earlier attempt landed
// and only its answer was lost.
func (f *feishu) cardOp(ctx context.Context, log *slog.Logger, op string, attempts int, call func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
	n := 0
	return f.retryN(ctx, log, op, attempts, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		n++
		resp, code, msg, err := call(ctx)
		if err == nil && n > 1 && code == codeSequence {
			log.Info("Feishu had applied an earlier attempt", "op", op)
			return &larkcore.ApiResp{StatusCode: http.StatusOK, Header: resp.Header}, 0, "", nil
		}
		return resp, code, msg, err
	})
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
