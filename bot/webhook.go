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
	if status, reason := h.verify(r.Header, body); status != 0 {
		h.reject(w, r, status, reason)
		return
	}
	// The dispatcher runs our handlers synchronously; they only record work,
	// and must finish before Feishu gives up on the 200.
	ctx, cancel := context.WithTimeout(r.Context(), ackTimeout)
	defer cancel()
	resp := h.disp.Handle(ctx, &larkevent.EventReq{Header: r.Header, Body: body, RequestURI: r.RequestURI})
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", larkevent.DefaultContentType)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(resp.Body)
}

// verify checks what the SDK does not (or answers with a 500): the body is
// JSON, it decrypts, the signature matches and the token is ours. It returns
// 0 when the request may go to the dispatcher.
func (h *webhook) verify(hdr http.Header, body []byte) (status int, reason string) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		return http.StatusBadRequest, "malformed JSON"
	}
	plain := body
	_, encrypted := outer["encrypt"]
	switch {
	case h.encryptKey != "":
		var enc string
		if err := json.Unmarshal(outer["encrypt"], &enc); err != nil || enc == "" {
			return http.StatusBadRequest, "body is not encrypted, but an encrypt key is configured"
		}
		p, err := decryptEvent(enc, h.encryptKey)
		if err != nil {
			return http.StatusBadRequest, "cannot decrypt: " + err.Error()
		}
		plain = p
	case encrypted:
		return http.StatusBadRequest, "body is encrypted, but FEISHU_ENCRYPT_KEY is not set"
	}
	var env envelope
	if err := json.Unmarshal(plain, &env); err != nil {
		return http.StatusBadRequest, "malformed JSON after decryption"
	}
	if env.Type == string(larkevent.ReqTypeChallenge) {
		// Feishu does not sign the challenge; the token (and, with a key,
		// the encryption) is what proves it comes from Feishu.
		if !h.tokenOK(env.Token) {
			return http.StatusForbidden, "wrong verification token in challenge"
		}
		return 0, ""
	}
	if h.encryptKey != "" {
		want := larkevent.Signature(hdr.Get(larkevent.EventRequestTimestamp), hdr.Get(larkevent.EventRequestNonce), h.encryptKey, string(body))
		if subtle.ConstantTimeCompare([]byte(want), []byte(hdr.Get(larkevent.EventSignature))) != 1 {
			return http.StatusUnauthorized, "wrong signature"
		}
	}
	tok := env.Token
	if env.Header != nil {
		tok = env.Header.Token
	}
	if !h.tokenOK(tok) {
		return http.StatusForbidden, "wrong verification token"
	}
	return 0, ""
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
