package bot

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	larkevent "github.com/larksuite/oapi-sdk-go/v3/event"
	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher"
	"golang.org/x/time/rate"
)

// webhook adapts net/http to the SDK's EventDispatcher. It replaces
// httpserverext, which drops the request context and writes the status
// before the JSON Content-Type. It also does what the SDK leaves out: it
// checks the signature before decrypting, refuses old and future
// timestamps, checks the event's verification token, and answers every bad
// request alike with a 400 (the SDK makes every failure a 500, which
// Feishu would retry).
type webhook struct {
	disp       *dispatcher.EventDispatcher
	token      string
	encryptKey string
	log        *slog.Logger
	metrics    *Metrics
	now        func() time.Time // the clock timestamps are judged by
	rejects    *rejectLog
}

// The request-age window. Feishu redelivers an event it got no 200 for "以
// 15秒、5分钟、1小时、6小时 的间隔", at most 4 times (推送周期和频次,
// https://open.feishu.cn/document/server-docs/event-subscription-guide/overview).
// Read as intervals between attempts, the last retry comes 15 s + 5 min +
// 1 h + 6 h ≈ 7 h 5 min after the first one (read as offsets from the
// first, 6 h). The docs do not say whether a redelivery is signed afresh
// with a new X-Lark-Request-Timestamp or repeats the first attempt's
// headers, so the window is right in every case:
//
//   - the past side, 7 h 30 min, still admits the last retry carrying the
//     first attempt's timestamp, with room for delivery time and skew;
//   - the future side is clock skew only;
//   - the de-duplication claims taken when an event is first recorded
//     (dedupTTL, 8 h) outlive the window, maxRequestAge + maxClockSkew.
//
// So a replayed request is stopped by the claim while its timestamp is in
// the window, and by the timestamp once it is not. Card callbacks are
// never redelivered ("不提供补推机制",
// https://open.feishu.cn/document/event-subscription-guide/callback-subscription/receive-and-handle-callbacks)
// and get the same window.
const (
	maxRequestAge = 7*time.Hour + 30*time.Minute
	maxClockSkew  = 5 * time.Minute
)

// The one answer to every rejected request but an oversized one: the same
// status and bytes whatever was wrong, so the answer tells a sender
// holding a captured ciphertext nothing (no padding or parsing oracle).
// The log and kbbot_webhook_rejected_total have the reason.
const (
	rejectStatus = http.StatusBadRequest
	rejectBody   = `{"msg":"bad request"}`
)

// Why a request was rejected: the reason label and the log's.
const (
	reasonTooLarge  = "body_too_large"
	reasonRead      = "unreadable_body"
	reasonSignature = "bad_signature"
	reasonTimestamp = "bad_timestamp" // missing or unparseable
	reasonStale     = "timestamp_outside_window"
	reasonJSON      = "malformed_json"
	reasonPlain     = "not_encrypted" // an encrypt key is configured
	reasonNoKey     = "encrypted_without_key"
	reasonBase64    = "bad_base64"
	reasonDecrypt   = "undecryptable"
	reasonUnsigned  = "unsigned_event"
	reasonToken     = "wrong_token"
)

// The rejection log: one line per reason per rejectLogEvery at most.
const (
	rejectLogEvery   = 10 * time.Second
	maxRejectReasons = 16 // more than there are reasons; bounds the map
)

// envelope is the part of a (decrypted) event or callback the adapter checks.
type envelope struct {
	Type      string `json:"type"`
	Token     string `json:"token"` // url_verification and schema 1.0
	Challenge string `json:"challenge"`
	Header    *struct {
		EventID   string `json:"event_id"`
		EventType string `json:"event_type"`
		Token     string `json:"token"`
	} `json:"header"`
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { h.metrics.observe(stageAck, time.Since(start)) }()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			// The one answer of its own: the size is the sender's to know.
			h.reject(w, r, http.StatusRequestEntityTooLarge, reasonTooLarge, "body over 1 MiB")
			return
		}
		h.reject(w, r, rejectStatus, reasonRead, err.Error())
		return
	}
	plain, env, reason, detail := h.verify(r.Header, body)
	if reason != "" {
		h.reject(w, r, rejectStatus, reason, detail)
		return
	}
	if env.Type == string(larkevent.ReqTypeChallenge) {
		writeJSON(w, http.StatusOK, map[string]string{"challenge": env.Challenge})
		return
	}
	// The request is verified and decrypted: the dispatcher only routes it
	// (Do, not Handle, which would decrypt and verify all over again and
	// format the whole body for a debug log on every request). Our handlers
	// run synchronously; they only record work, and must finish before
	// Feishu gives up on the 200.
	resp, err := h.disp.Do(context.WithValue(r.Context(), webhookKey{}, true), plain)
	var unhandled *dispatcher.NotFoundEventHandlerErr
	switch {
	case errors.As(err, &unhandled):
		// An event type we did not subscribe to: acknowledge, or Feishu retries it.
		h.log.Debug("event without a handler acknowledged", "event_type", envelopeType(env))
		writeJSON(w, http.StatusOK, map[string]string{"msg": "success"})
	case err != nil:
		// Nothing was recorded; a 500 makes Feishu redeliver later.
		h.log.Error("event not recorded; Feishu will redeliver", "event_type", envelopeType(env), "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"msg": "event not recorded, please retry"}) // detail in our log only
	case resp != nil:
		writeJSON(w, http.StatusOK, resp) // a card callback's toast / card
	default:
		writeJSON(w, http.StatusOK, map[string]string{"msg": "success"})
	}
}

func envelopeType(env envelope) string {
	if env.Header != nil {
		return env.Header.EventType
	}
	return env.Type
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"msg":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", larkevent.DefaultContentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// verify checks what the SDK does not (or answers with a 500) and returns
// the plaintext event, or why the request must be rejected.
//
// With an encrypt key, a request carrying X-Lark-Signature is checked
// before anything is decrypted: the signature is over the raw body
// ("无需解密和解析事件即可完成安全校验",
// https://open.feishu.cn/document/server-docs/event-subscription-guide/event-subscription-configure-/encrypt-key-encryption-configuration-case),
// so forged bodies are never decrypted. The URL-verification challenge is
// not covered by the signature (same page: "不包括请求网址校验"); a request
// without one is decrypted, and only a challenge with our token passes.
// Assumed, not documented: a challenge that does carry a signature header
// carries a correct one. Were it false, saving the request URL in the
// console would fail at once, visibly, with bad_signature in our log.
func (h *webhook) verify(hdr http.Header, body []byte) (plain []byte, env envelope, reason, detail string) {
	signed := false
	if sig := hdr.Get(larkevent.EventSignature); h.encryptKey != "" && sig != "" {
		if reason, detail := h.checkSignature(hdr, sig, body); reason != "" {
			return nil, env, reason, detail
		}
		signed = true
	}
	var outer struct {
		Encrypt *string `json:"encrypt"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		if h.encryptKey != "" && json.Valid(body) {
			return nil, env, reasonPlain, "body is not encrypted, but an encrypt key is configured"
		}
		return nil, env, reasonJSON, "body is not a JSON object"
	}
	plain = body
	switch {
	case h.encryptKey != "":
		if outer.Encrypt == nil || *outer.Encrypt == "" {
			return nil, env, reasonPlain, "body is not encrypted, but an encrypt key is configured"
		}
		if _, err := base64.StdEncoding.DecodeString(*outer.Encrypt); err != nil {
			return nil, env, reasonBase64, err.Error()
		}
		p, err := decryptEvent(*outer.Encrypt, h.encryptKey)
		if err != nil {
			return nil, env, reasonDecrypt, err.Error()
		}
		plain = p
	case outer.Encrypt != nil:
		return nil, env, reasonNoKey, "body is encrypted, but FEISHU_ENCRYPT_KEY is not set"
	}
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, env, reasonDecrypt, "decrypted body is not JSON"
	}
	if env.Type == string(larkevent.ReqTypeChallenge) {
		// Feishu does not sign the challenge; the token (and, with a key,
		// the encryption) is what proves it comes from Feishu.
		if !h.tokenOK(env.Token) {
			return nil, env, reasonToken, "wrong verification token in challenge"
		}
		return plain, env, "", ""
	}
	if h.encryptKey != "" && !signed {
		return nil, env, reasonUnsigned, "event without X-Lark-Signature"
	}
	tok := env.Token
	if env.Header != nil {
		tok = env.Header.Token
	}
	if !h.tokenOK(tok) {
		return nil, env, reasonToken, "wrong verification token"
	}
	return plain, env, "", ""
}

// checkSignature checks X-Lark-Signature, then that the signed timestamp
// is inside the window (maxRequestAge). The timestamp is taken to be Unix
// seconds, as the SDK's signer and every Feishu sample we know send it;
// the docs do not name its unit, so a value too large for seconds is read
// as milliseconds instead of rejecting every event.
func (h *webhook) checkSignature(hdr http.Header, sig string, body []byte) (reason, detail string) {
	ts := hdr.Get(larkevent.EventRequestTimestamp)
	want := larkevent.Signature(ts, hdr.Get(larkevent.EventRequestNonce), h.encryptKey, string(body))
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return reasonSignature, "X-Lark-Signature does not match the body"
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n <= 0 {
		return reasonTimestamp, fmt.Sprintf("X-Lark-Request-Timestamp %q is not a Unix time", ts)
	}
	at := time.Unix(n, 0)
	if n >= 1e12 { // seconds reach 1e12 in the year 33658
		at = time.UnixMilli(n)
	}
	if age := h.now().Sub(at); age > maxRequestAge || age < -maxClockSkew {
		return reasonStale, fmt.Sprintf("signed %v ago; the window is %v back and %v ahead", age.Round(time.Second), maxRequestAge, maxClockSkew)
	}
	return "", ""
}

// decryptEvent is the SDK's EventDecrypt, minus its panic: it slices from
// the first "{" to the last "}" of the plaintext, which panics when a forged
// ciphertext decrypts to text with "}" before "{". Anyone can send that
// without the key, so it must be a 400, not a 500 and a stack trace.
func decryptEvent(enc, key string) (plain []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			plain, err = nil, fmt.Errorf("decrypted text is not JSON (%v)", v)
		}
	}()
	return larkevent.EventDecrypt(enc, key)
}

func (h *webhook) tokenOK(got string) bool {
	if h.token == "" { // insecure dev mode without a token: config.ValidateServe allowed it
		return true
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.token)) == 1
}

func (h *webhook) reject(w http.ResponseWriter, r *http.Request, status int, reason, detail string) {
	h.metrics.event("request", outcomeRejected)
	h.metrics.rejected(reason)
	h.rejects.warn(reason, "webhook request rejected", "status", status, "reason", reason, "detail", detail, "remote", r.RemoteAddr)
	body := rejectBody
	if status == http.StatusRequestEntityTooLarge {
		body = `{"msg":"request too large"}`
	}
	w.Header().Set("Content-Type", larkevent.DefaultContentType)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// rejectLog writes at most one line per reason every rejectLogEvery, with
// how many it held back since: anyone can send bad requests, and they must
// not flood the log (kbbot_webhook_rejected_total counts them all).
type rejectLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	reasons map[string]*reasonLog
}

type reasonLog struct {
	every      rate.Sometimes
	suppressed atomic.Int64
}

func newRejectLog(log *slog.Logger) *rejectLog {
	return &rejectLog{log: log, reasons: map[string]*reasonLog{}}
}

func (l *rejectLog) warn(reason, msg string, args ...any) {
	l.mu.Lock()
	rl := l.reasons[reason]
	if rl == nil && len(l.reasons) < maxRejectReasons {
		rl = &reasonLog{every: rate.Sometimes{Interval: rejectLogEvery}}
		l.reasons[reason] = rl
	}
	l.mu.Unlock()
	if rl == nil {
		return // reasons are our constants; this only guards the map
	}
	logged := false
	rl.every.Do(func() {
		logged = true
		l.log.Warn(msg, append(args, "suppressed_since_last", rl.suppressed.Swap(0))...)
	})
	if !logged {
		rl.suppressed.Add(1)
	}
}
