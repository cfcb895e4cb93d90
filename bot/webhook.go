package bot

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	larkevent "github.com/larksuite/oapi-sdk-go/v3/event"
	"github.com/larksuite/oapi-sdk-go/v3/event/dispatcher"
)

// webhook adapts net/http to the SDK's EventDispatcher. It replaces
// httpserverext, which drops the request context and writes the status
// before the JSON Content-Type. It also does what the SDK leaves out: it
// checks the event's verification token, and it turns bad requests into 4xx
// answers (the SDK makes every failure a 500, which Feishu would retry).
type webhook struct {
	disp       *dispatcher.EventDispatcher
	token      string
	encryptKey string
	log        *slog.Logger
	metrics    *Metrics
}

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
			h.reject(w, r, http.StatusRequestEntityTooLarge, "body over 1 MiB")
			return
		}
		h.reject(w, r, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	plain, env, status, reason := h.verify(r.Header, body)
	if status != 0 {
		h.reject(w, r, status, reason)
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

// verify checks what the SDK does not (or answers with a 500): the body is
// JSON, it decrypts, the signature matches and the token is ours. It returns
// the plaintext event and status 0 when the request may be dispatched.
func (h *webhook) verify(hdr http.Header, body []byte) (plain []byte, env envelope, status int, reason string) {
	var outer struct {
		Encrypt *string `json:"encrypt"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		if h.encryptKey != "" && json.Valid(body) {
			return nil, env, http.StatusBadRequest, "body is not encrypted, but an encrypt key is configured"
		}
		return nil, env, http.StatusBadRequest, "malformed JSON"
	}
	plain = body
	switch {
	case h.encryptKey != "":
		if outer.Encrypt == nil || *outer.Encrypt == "" {
			return nil, env, http.StatusBadRequest, "body is not encrypted, but an encrypt key is configured"
		}
		p, err := decryptEvent(*outer.Encrypt, h.encryptKey)
		if err != nil {
			return nil, env, http.StatusBadRequest, "cannot decrypt: " + err.Error()
		}
		plain = p
	case outer.Encrypt != nil:
		return nil, env, http.StatusBadRequest, "body is encrypted, but FEISHU_ENCRYPT_KEY is not set"
	}
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, env, http.StatusBadRequest, "malformed JSON after decryption"
	}
	if env.Type == string(larkevent.ReqTypeChallenge) {
		// Feishu does not sign the challenge; the token (and, with a key,
		// the encryption) is what proves it comes from Feishu.
		if !h.tokenOK(env.Token) {
			return nil, env, http.StatusForbidden, "wrong verification token in challenge"
		}
		return plain, env, 0, ""
	}
	if h.encryptKey != "" {
		want := larkevent.Signature(hdr.Get(larkevent.EventRequestTimestamp), hdr.Get(larkevent.EventRequestNonce), h.encryptKey, string(body))
		if subtle.ConstantTimeCompare([]byte(want), []byte(hdr.Get(larkevent.EventSignature))) != 1 {
			return nil, env, http.StatusUnauthorized, "wrong signature"
		}
	}
	tok := env.Token
	if env.Header != nil {
		tok = env.Header.Token
	}
	if !h.tokenOK(tok) {
		return nil, env, http.StatusForbidden, "wrong verification token"
	}
	return plain, env, 0, ""
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

func (h *webhook) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.metrics.event("request", outcomeRejected)
	h.log.Warn("webhook request rejected", "status", status, "reason", reason, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", larkevent.DefaultContentType)
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"msg": reason})
	fmt.Fprintf(w, "%s\n", b)
}
