// Package openapi is kbbot's client of the Feishu Open API, built on the
// official SDK: sending and replying to messages, patching them, CardKit
// card entities (create, stream text, update, settings), the bot's own
// info, and reading wiki spaces and docx documents (wiki.go). Every call is retried on 5xx, network errors and rate limits
// (waiting what Feishu asks for), and a non-zero API code comes back as an
// *Error. Idempotency uuids for sends and card operations are made here
// too (UUID).
package openapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"kbbot/store/retry"

	lark "github.com/larksuite/oapi-sdk-go/v3"
	larkcore "github.com/larksuite/oapi-sdk-go/v3/core"
	larkcardkit "github.com/larksuite/oapi-sdk-go/v3/service/cardkit/v1"
	larkim "github.com/larksuite/oapi-sdk-go/v3/service/im/v1"
	"golang.org/x/time/rate"
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
		lark.WithLogger(SDKLogger{Log: log.With("component", "lark-client")}),
		lark.WithLogLevel(larkcore.LogLevelInfo),
	)
}

// Client makes kbbot's Open API calls.
type Client struct {
	lark *lark.Client
	log  *slog.Logger
	// Retry is how a failed call is tried again; its Attempts is the
	// default for every call (a streaming text update tries once).
	Retry retry.Policy
	// textUpdates paces streaming text updates across all of the app's
	// cards: CardKit allows 50/s per API per app
	// (https://open.feishu.cn/document/cardkit-v1/card-element/content),
	// and many answers may stream at once. Over the limit an update is
	// skipped and the next one carries its text.
	textUpdates *rate.Limiter
	// pace spaces out the wiki and docx calls under Feishu's per-app
	// limits (wiki.go, SetPace).
	pace pacer
}

// New wraps an SDK client (see NewLarkClient). p says how calls are
// retried.
func New(c *lark.Client, log *slog.Logger, p retry.Policy) *Client {
	if log == nil {
		log = slog.Default()
	}
	return &Client{lark: c, log: log, Retry: p, textUpdates: rate.NewLimiter(40, 10)}
}

// AllowTextUpdate takes a token for one streaming text update; false means
// skip this one, the app is at its pace.
func (f *Client) AllowTextUpdate() bool { return f.textUpdates.Allow() }

// Feishu error codes that mean "slow down" rather than "wrong request".
// 99991400 is the app's frequency limit, answered with HTTP 429 on most
// APIs but with HTTP 400 on some (the docx read APIs say so on their pages),
// so the code, not the status, decides
// (https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control).
// 230020 is a chat's message frequency limit (send and reply pages).
var rateLimitCodes = map[int]bool{
	99991400: true,
	230020:   true,
}

// transientCodes are answers that say "not now" about a request that is
// right: 200810, CardKit's "the card is being interacted with" (a user
// clicking on it; https://open.feishu.cn/document/cardkit-v1/card/settings
// and the other card update pages), is tried again after a backoff.
var transientCodes = map[int]bool{200810: true}

// CodeSequence is CardKit's "sequence not strictly increasing"
// (https://open.feishu.cn/document/cardkit-v1/card/update and its
// siblings).
const CodeSequence = 300317

// Error is a non-zero code in an Open API answer.
type Error struct {
	Op     string
	Status int
	Code   int
	Msg    string
	// RetryAfter is what a rate-limited answer asked to wait, if anything.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: HTTP %d, code %d: %s", e.Op, e.Status, e.Code, e.Msg)
}

// Reply answers a message; inThread keeps the answer in the message's thread.
func (f *Client) Reply(ctx context.Context, log *slog.Logger, messageID string, inThread bool, card []byte, uuid string) (string, error) {
	var id string
	err := f.call(ctx, log, "reply", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		body := larkim.NewReplyMessageReqBodyBuilder().MsgType(larkim.MsgTypeInteractive).Content(string(card)).Uuid(uuid)
		if inThread {
			body = body.ReplyInThread(true)
		}
		resp, err := f.lark.Im.V1.Message.Reply(ctx, larkim.NewReplyMessageReqBuilder().MessageId(messageID).Body(body.Build()).Build())
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

// Create posts a new message to a chat.
func (f *Client) Create(ctx context.Context, log *slog.Logger, chatID string, card []byte, uuid string) (string, error) {
	var id string
	err := f.call(ctx, log, "create", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Im.V1.Message.Create(ctx, larkim.NewCreateMessageReqBuilder().
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

// BotOpenID asks bot/v3/info, which the SDK has no typed call for.
func (f *Client) BotOpenID(ctx context.Context) (string, error) {
	var openID string
	err := f.call(ctx, f.log, "bot/v3/info", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Get(ctx, "/open-apis/bot/v3/info", nil, larkcore.AccessTokenTypeTenant)
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
	return New(client, slog.New(slog.DiscardHandler), retry.Policy{Attempts: 1}).BotOpenID(ctx)
}

// call runs one Open API call under the retry policy, with attempts tries
// (0: the policy's own). fn returns the raw response with the API code and
// message, or a transport error.
func (f *Client) call(ctx context.Context, log *slog.Logger, op string, attempts int, fn func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
	p := f.Retry
	if attempts > 0 {
		p.Attempts = attempts
	}
	p.OnRetry = func(attempt int, wait time.Duration, err error) {
		log.Warn("Feishu call failed, retrying", "op", op, "attempt", attempt, "wait", wait, "error", err)
	}
	return p.Do(ctx, func(ctx context.Context, _ int) error {
		resp, code, msg, err := fn(ctx)
		switch {
		case err != nil:
			err = fmt.Errorf("%s: %w", op, err)
			if _, badParam := errors.AsType[*larkcore.IllegalParamError](err); badParam {
				return retry.Permanent(err)
			}
			return err
		case resp.StatusCode == http.StatusTooManyRequests || rateLimitCodes[code]:
			wait := retry.After(resp.Header, time.Now())
			return retry.WithWait(&Error{Op: op, Status: resp.StatusCode, Code: code, Msg: msg, RetryAfter: wait}, wait)
		case resp.StatusCode >= 500 || transientCodes[code]:
			return &Error{Op: op, Status: resp.StatusCode, Code: code, Msg: msg}
		case code != 0 || resp.StatusCode >= 400:
			return retry.Permanent(&Error{Op: op, Status: resp.StatusCode, Code: code, Msg: msg})
		}
		return nil
	})
}

// Patch replaces the card of a message the bot sent.
func (f *Client) Patch(ctx context.Context, log *slog.Logger, messageID string, card []byte) error {
	return f.call(ctx, log, "patch", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Im.V1.Message.Patch(ctx, larkim.NewPatchMessageReqBuilder().MessageId(messageID).
			Body(larkim.NewPatchMessageReqBodyBuilder().Content(string(card)).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// CreateCard makes a CardKit card entity from card JSON 2.0 and returns
// its card_id.
func (f *Client) CreateCard(ctx context.Context, log *slog.Logger, card []byte) (string, error) {
	var id string
	err := f.call(ctx, log, "cardkit create", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Cardkit.V1.Card.Create(ctx, larkcardkit.NewCreateCardReqBuilder().
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

// textUpdateTimeout bounds one streaming text update: a slow one is
// superseded by the next text anyway.
const textUpdateTimeout = 5 * time.Second

// SetCardText replaces the text of a card element; when the old text is a
// prefix of the new, Feishu types the rest out. One attempt only: the next
// update carries everything this one did.
func (f *Client) SetCardText(ctx context.Context, log *slog.Logger, cardID, elementID, text string, seq int, uuid string) error {
	ctx, cancel := context.WithTimeout(ctx, textUpdateTimeout)
	defer cancel()
	return f.cardOp(ctx, log, "cardkit content", 1, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Cardkit.V1.CardElement.Content(ctx, larkcardkit.NewContentCardElementReqBuilder().
			CardId(cardID).ElementId(elementID).
			Body(larkcardkit.NewContentCardElementReqBodyBuilder().Content(text).Sequence(seq).Uuid(uuid).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// UpdateCard replaces a card entity's whole card.
func (f *Client) UpdateCard(ctx context.Context, log *slog.Logger, cardID string, card []byte, seq int, uuid string) error {
	return f.cardOp(ctx, log, "cardkit update", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Cardkit.V1.Card.Update(ctx, larkcardkit.NewUpdateCardReqBuilder().CardId(cardID).
			Body(larkcardkit.NewUpdateCardReqBodyBuilder().
				Card(larkcardkit.NewCardBuilder().Type("card_json").Data(string(card)).Build()).
				Sequence(seq).Uuid(uuid).Build()).Build())
		if err != nil {
			return nil, 0, "", err
		}
		return resp.ApiResp, resp.Code, resp.Msg, nil
	})
}

// CardSettings changes a card entity's config (settings is the JSON of
// {"config":{…}}), e.g. to end streaming.
func (f *Client) CardSettings(ctx context.Context, log *slog.Logger, cardID, settings string, seq int, uuid string) error {
	return f.cardOp(ctx, log, "cardkit settings", 0, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		resp, err := f.lark.Cardkit.V1.Card.Settings(ctx, larkcardkit.NewSettingsCardReqBuilder().CardId(cardID).
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
func (f *Client) cardOp(ctx context.Context, log *slog.Logger, op string, attempts int, call func(context.Context) (*larkcore.ApiResp, int, string, error)) error {
	n := 0
	return f.call(ctx, log, op, attempts, func(ctx context.Context) (*larkcore.ApiResp, int, string, error) {
		n++
		resp, code, msg, err := call(ctx)
		if err == nil && n > 1 && code == CodeSequence {
			log.Info("Feishu had applied an earlier attempt", "op", op)
			return &larkcore.ApiResp{StatusCode: http.StatusOK, Header: resp.Header}, 0, "", nil
		}
		return resp, code, msg, err
	})
}

// UUID derives a Feishu idempotency uuid (≤ 50 chars): the same kind of
// send for the same seed is delivered at most once.
func UUID(kind, seed string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + seed))
	return kind + "-" + hex.EncodeToString(sum[:16])
}

// SDKLogger sends the SDK's logs to slog, its Info demoted to Debug (the
// SDK logs every connection step at Info).
type SDKLogger struct{ Log *slog.Logger }

func (l SDKLogger) Debug(ctx context.Context, args ...any) {
	l.Log.DebugContext(ctx, fmt.Sprint(args...))
}
func (l SDKLogger) Info(ctx context.Context, args ...any) {
	l.Log.DebugContext(ctx, fmt.Sprint(args...))
}
func (l SDKLogger) Warn(ctx context.Context, args ...any) {
	l.Log.WarnContext(ctx, fmt.Sprint(args...))
}
func (l SDKLogger) Error(ctx context.Context, args ...any) {
	l.Log.WarnContext(ctx, fmt.Sprint(args...))
}
