package bot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	larkevent "github.com/larksuite/oapi-sdk-go/v3/event"

	"kbbot/bot/feishufake"
	"kbbot/bot/openapi"
	"kbbot/store/state"
)

// panicCounter is a slog handler that counts records carrying a "panic"
// attribute (the bot logs every recovered panic that way) and drops the
// rest, so fuzzing is not slowed by logs.
type panicCounter struct{ n *atomic.Int64 }

func (p panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (p panicCounter) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "panic" {
			p.n.Add(1)
			return false
		}
		return true
	})
	return nil
}
func (p panicCounter) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p panicCounter) WithGroup(string) slog.Handler      { return p }

// Fuzz modes: how the input becomes a request.
const (
	fuzzRaw          = iota // body and signature as given
	fuzzSigned              // body as given, signed correctly
	fuzzEncrypted           // body encrypted with the bot's key, signed correctly
	fuzzEncryptedSig        // body encrypted, signature as given
	fuzzModes
)

// fuzzSigner encrypts with an IV derived from the plaintext, so a failing
// input reproduces exactly.
func fuzzSigner(plain []byte) feishufake.Signer {
	sum := sha256.Sum256(plain)
	return feishufake.Signer{EncryptKey: testEncrypt, Token: testToken, Rand: bytes.NewReader(sum[:])}
}

// FuzzWebhookDecode drives the webhook's decoding (signature, timestamp,
// JSON, decryption, token) with arbitrary bodies and headers. Properties:
// it never panics; with an encrypt key set it never answers 200 unless the
// signature verifies and the timestamp is within hours of the clock (the
// url_verification challenge, which must decrypt and carry the token, is
// the one exception); and input that is not JSON, does not decrypt, is not
// signed or is signed at the wrong time gets the one common rejection,
// byte for byte, not a 5xx Feishu would retry.
func FuzzWebhookDecode(f *testing.F) {
	// Each input gets a fresh bot, built but not started: events that pass
	// are queued and never answered, and no de-duplication state carries
	// over, so an input's coverage is its own (flaky coverage makes the
	// fuzzer minimise for ever). No Open API call is made; the base URL is
	// unreachable.
	var panics atomic.Int64
	log := slog.New(panicCounter{&panics})
	client := openapi.NewLarkClient(uniqueAppID(), "secret", "http://127.0.0.1:1", log)
	const ts, nonce = "1764324000", "fuzz-nonce"
	// The webhook's clock stands at the seeds' timestamp, so they are fresh.
	clock := time.Unix(1764324000, 0)
	newHandler := func(t testing.TB) http.Handler {
		b, err := New(Config{VerificationToken: testToken, EncryptKey: testEncrypt, PublicURL: testPublic, BotOpenID: testBotID, Workers: 1},
			client, &fakeAnswerer{}, state.NewMemory(), log)
		if err != nil {
			t.Fatal(err)
		}
		b.webhookNow = func() time.Time { return clock }
		return b.Handler()
	}

	seed := fuzzSigner(nil)
	event := seed.MessageEvent(feishufake.Message{EventID: "ev_fuzz", MessageID: "om_fuzz", ChatID: "oc_fuzz", Text: "你好"})
	click := seed.CardActionEvent(feishufake.CardAction{EventID: "ev_fuzz_click", Operator: "ou_fuzz", MessageID: "om_fuzz", ChatID: "oc_fuzz",
		Value: map[string]any{"action": "feedback", "vote": "up", "qid": "q"}})
	challenge := seed.Challenge("fuzz-challenge")
	signedEvent, _ := fuzzSigner(event).Encrypt(event)
	encChallenge, _ := fuzzSigner(challenge).Encrypt(challenge)
	f.Add(signedEvent, ts, nonce, seed.Sign(ts, nonce, signedEvent), byte(fuzzRaw)) // as Feishu sends it
	f.Add(signedEvent, ts, nonce, "0123abcd", byte(fuzzRaw))                        // wrong signature
	f.Add(encChallenge, ts, nonce, "", byte(fuzzRaw))                               // challenges are unsigned
	f.Add(event, ts, nonce, "", byte(fuzzEncrypted))
	f.Add(click, ts, nonce, "", byte(fuzzEncrypted))
	f.Add(challenge, "", "", "", byte(fuzzEncryptedSig))
	f.Add(event, ts, nonce, "", byte(fuzzSigned))               // plain text although a key is set
	f.Add([]byte("}a{"), ts, nonce, "", byte(fuzzEncryptedSig)) // decrypts to "}" before "{": the SDK's EventDecrypt panics on it
	for _, garbage := range []string{"", "not json", "{}", "null", "[]", `{"encrypt":""}`, `{"encrypt":"!!!"}`, `{"encrypt":"AAAAAAAAAAAAAAAAAAAAAA=="}`, `{"encrypt":5}`} {
		f.Add([]byte(garbage), ts, nonce, "", byte(fuzzRaw))
	}
	// Signed at the wrong time: 8 h 1 min before the clock, 10 min after
	// it, in milliseconds (the right time), not at all.
	for _, when := range []string{"1764295140", "1764324600", "1764324000000", "", "soon"} {
		f.Add(event, when, nonce, "", byte(fuzzEncrypted))
	}

	f.Fuzz(func(t *testing.T, body []byte, ts, nonce, sig string, mode byte) {
		raw := body
		switch mode % fuzzModes {
		case fuzzEncrypted, fuzzEncryptedSig:
			var err error
			if raw, err = fuzzSigner(body).Encrypt(body); err != nil {
				t.Fatal(err)
			}
		}
		if m := mode % fuzzModes; m == fuzzSigned || m == fuzzEncrypted {
			sig = seed.Sign(ts, nonce, raw)
		}
		req := httptest.NewRequest(http.MethodPost, "/feishu/events", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(larkevent.EventRequestTimestamp, ts)
		req.Header.Set(larkevent.EventRequestNonce, nonce)
		req.Header.Set(larkevent.EventSignature, sig)
		rec := httptest.NewRecorder()
		before := panics.Load()
		newHandler(t).ServeHTTP(rec, req)
		if panics.Load() != before {
			t.Fatalf("the webhook panicked on body %q", raw)
		}
		status := rec.Code

		signed := sig != "" && sig == seed.Sign(ts, nonce, raw)
		fresh := signedNear(ts, clock, 8*time.Hour, 6*time.Minute)
		malformed, isChallenge := decodeLikeFeishu(raw)
		if status == http.StatusOK && !isChallenge && !(signed && fresh) {
			t.Fatalf("200 for a request with a wrong signature or timestamp (%q): body %q", ts, raw)
		}
		if malformed || (!isChallenge && !(signed && fresh)) {
			if status != rejectStatus || rec.Body.String() != rejectBody {
				t.Fatalf("%d %q for malformed, unsigned or stale input, want the common rejection: body %q", status, rec.Body.String(), raw)
			}
		}
		if status >= 400 && status < 500 && (status != rejectStatus || rec.Body.String() != rejectBody) {
			t.Fatalf("a rejection unlike the others: %d %q", status, rec.Body.String())
		}
	})
}

// signedNear reports whether ts is a Unix time (seconds, or milliseconds)
// at most back before now and at most ahead after it: bounds a little
// wider than the webhook's window, written down independently of it.
func signedNear(ts string, now time.Time, back, ahead time.Duration) bool {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	for _, at := range []time.Time{time.Unix(n, 0), time.UnixMilli(n)} {
		if age := now.Sub(at); age <= back && age >= -ahead {
			return true
		}
	}
	return false
}

// decodeLikeFeishu says whether raw is malformed (not a JSON object with an
// "encrypt" string that decrypts to JSON under the test key), and whether
// it is a url_verification challenge carrying the right token.
func decodeLikeFeishu(raw []byte) (malformed, challenge bool) {
	var outer struct {
		Encrypt *string `json:"encrypt"`
	}
	if json.Unmarshal(raw, &outer) != nil || outer.Encrypt == nil || *outer.Encrypt == "" {
		return true, false
	}
	var plain []byte
	var err error
	func() {
		defer func() {
			if recover() != nil {
				err = errDecrypt
			}
		}()
		plain, err = larkevent.EventDecrypt(*outer.Encrypt, testEncrypt)
	}()
	if err != nil {
		return true, false
	}
	var env struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(plain, &env) != nil {
		return true, false
	}
	return false, env.Type == "url_verification" && env.Token == testToken
}

var errDecrypt = errors.New("the SDK's decryption panicked")
