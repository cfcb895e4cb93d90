package bot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kbbot/bot/cards"
	"kbbot/bot/feishufake"
)

// signedAt is a webhook request of body signed as Feishu would, but with
// the timestamp header ts (which may be anything, or empty).
func (h *harness) signedAt(ts string, body []byte) *http.Request {
	h.t.Helper()
	const nonce = "test-nonce"
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/feishu/events", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Lark-Request-Timestamp", ts)
	req.Header.Set("X-Lark-Request-Nonce", nonce)
	req.Header.Set("X-Lark-Signature", h.signer.Sign(ts, nonce, body))
	return req
}

// flipCiphertext flips one byte of the first ciphertext block (past the
// IV) of an encrypted body: the plaintext's opening "{" is garbled.
func flipCiphertext(t *testing.T, body []byte) []byte {
	t.Helper()
	var outer struct {
		Encrypt string `json:"encrypt"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(outer.Encrypt)
	if err != nil {
		t.Fatal(err)
	}
	raw[16] ^= 0x01
	out, _ := json.Marshal(map[string]string{"encrypt": base64.StdEncoding.EncodeToString(raw)})
	return out
}

func (h *harness) rejected(reason string) int {
	return int(testutil.ToFloat64(h.bot.cfg.Metrics.reject.WithLabelValues(reason)))
}

// Every rejected request gets the same status and bytes, whatever was
// wrong, so the answer is no oracle for someone holding a captured
// ciphertext; nothing rejected is queued or answered.
func TestRejectedRequestsGetOneAnswer(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	ctx := context.Background()
	url := h.srv.URL + "/feishu/events"
	now := strconv.FormatInt(time.Now().Unix(), 10)
	// A fixed IV, so the flipped ciphertext below garbles the same way on
	// every run.
	fixed := feishufake.Signer{EncryptKey: testEncrypt, Token: testToken, Rand: zeros{}}
	var sent []string
	event := func(what string) []byte {
		m := h.dm(what)
		sent = append(sent, m.MessageID)
		return h.signer.MessageEvent(m)
	}
	encrypted := func(what string) []byte {
		b, err := fixed.Body(event(what))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	signed := func(body []byte) *http.Request { return h.signedAt(now, body) }
	withSig := func(req *http.Request, sig string) *http.Request { req.Header.Set("X-Lark-Signature", sig); return req }
	flipped := flipCiphertext(t, encrypted("flipped byte"))
	unsigned, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(encrypted("unsigned")))
	other, _ := (feishufake.Signer{EncryptKey: "another key"}).SignedRequest(ctx, url, encrypted("signed with another key"))

	cases := []struct {
		name, reason string
		req          *http.Request
	}{
		{"wrong signature", reasonSignature, other},
		{"flipped ciphertext byte, re-signed", reasonDecrypt, signed(flipped)},
		{"flipped ciphertext byte, original signature", reasonSignature, withSig(signed(flipped), signed(encrypted("x")).Header.Get("X-Lark-Signature"))},
		{"bad base64", reasonBase64, signed([]byte(`{"encrypt":"!!not base64!!"}`))},
		{"malformed JSON", reasonJSON, signed([]byte(`{"encrypt": `))},
		{"not encrypted", reasonPlain, signed(event("plain text"))},
		{"wrong token", reasonToken, signed(must(feishufake.Signer{EncryptKey: testEncrypt}.Body((feishufake.Signer{Token: "stolen"}).MessageEvent(h.dm("stolen token")))))},
		{"no signature", reasonUnsigned, unsigned},
		{"no timestamp", reasonTimestamp, h.signedAt("", encrypted("no timestamp"))},
		{"unparseable timestamp", reasonTimestamp, h.signedAt("yesterday", encrypted("bad timestamp"))},
		{"8 h old", reasonStale, h.signedAt(strconv.FormatInt(time.Now().Add(-8*time.Hour).Unix(), 10), encrypted("8 h old"))},
		{"10 min ahead", reasonStale, h.signedAt(strconv.FormatInt(time.Now().Add(10*time.Minute).Unix(), 10), encrypted("10 min ahead"))},
	}
	var first *http.Response
	var firstBody []byte
	for _, c := range cases {
		before := h.rejected(c.reason)
		resp, err := http.DefaultClient.Do(c.req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != rejectStatus || body.String() != rejectBody {
			t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, body.String(), rejectStatus, rejectBody)
		}
		if first == nil {
			first, firstBody = resp, body.Bytes()
		} else if resp.Header.Get("Content-Type") != first.Header.Get("Content-Type") || resp.Header.Get("Content-Length") != first.Header.Get("Content-Length") || !bytes.Equal(body.Bytes(), firstBody) {
			t.Errorf("%s: answer differs from the first rejection's", c.name)
		}
		// The reason is the metric's (never the answer's): it proves the
		// case tests what it says it does.
		if h.rejected(c.reason) != before+1 {
			t.Errorf("%s: not counted as %s", c.name, c.reason)
		}
	}

	// Over 1 MiB keeps its own status: the size is no secret.
	huge := append([]byte(`{"encrypt":"`), bytes.Repeat([]byte("A"), maxBodySize+10)...)
	huge = append(huge, `"}`...)
	if status, _ := h.do(signed(huge)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: status %d, want 413", status)
	}

	if n := h.events(evMessage, outcomeReceived); n != 0 {
		t.Errorf("%d rejected messages reached the handler", n)
	}
	// Still serving: a good event is answered, and none of the bad ones was.
	h.sentinel()
	for _, id := range sent {
		if n := h.fake.Replies(id); n != 0 {
			t.Errorf("rejected message %s got %d replies", id, n)
		}
	}
	if n := len(h.ans.Calls()); n != 1 {
		t.Errorf("answerer asked %d times, want 1 (the sentinel)", n)
	}
}

// zeros reads as endless zero bytes: a fixed IV.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// The timestamp window: correctly signed requests 8 h old or 10 min ahead
// are rejected and nothing is sent; the last redelivery of an event that
// kept its first timestamp (≈ 7 h 5 min) and a little clock skew pass.
func TestTimestampWindow(t *testing.T) {
	h := newHarness(t, harnessOpts{workers: 1})
	at := func(d time.Duration) feishufake.Signer {
		s := h.signer
		s.Now = func() time.Time { return time.Now().Add(d) }
		return s
	}
	var rejected []string
	for _, d := range []time.Duration{-8 * time.Hour, 10 * time.Minute} {
		m := h.dm("signed " + d.String())
		rejected = append(rejected, m.MessageID)
		req, err := at(d).Request(context.Background(), h.srv.URL+"/feishu/events", h.signer.MessageEvent(m))
		if err != nil {
			t.Fatal(err)
		}
		if status, body := h.do(req); status != rejectStatus || body != rejectBody {
			t.Errorf("signed %v from now: %d %s, want the common rejection", d, status, body)
		}
	}
	for _, d := range []time.Duration{-(15*time.Second + 5*time.Minute + time.Hour + 6*time.Hour), 4 * time.Minute} {
		m := h.dm("signed " + d.String())
		req, err := at(d).Request(context.Background(), h.srv.URL+"/feishu/events", h.signer.MessageEvent(m))
		if err != nil {
			t.Fatal(err)
		}
		if status, body := h.do(req); status != 200 {
			t.Fatalf("signed %v from now: %d %s, want 200", d, status, body)
		}
		h.replyTo(m.MessageID)
	}
	h.sentinel()
	for _, id := range rejected {
		if n := h.fake.Replies(id); n != 0 {
			t.Errorf("message %s outside the window got %d replies", id, n)
		}
	}
}

// The window and the claims fit together: Feishu's last redelivery fits in
// the window even if it kept the first attempt's timestamp, and a claim
// outlives the window, so a replay meets either the claim or the clock.
func TestReplayWindowInsideClaims(t *testing.T) {
	lastRetry := 15*time.Second + 5*time.Minute + time.Hour + 6*time.Hour
	if maxRequestAge <= lastRetry+maxClockSkew {
		t.Errorf("maxRequestAge %v does not admit the last redelivery (%v after the first) with %v of skew", maxRequestAge, lastRetry, maxClockSkew)
	}
	if dedupTTL <= maxRequestAge+maxClockSkew {
		t.Errorf("dedupTTL %v does not outlive the timestamp window (%v + %v): a replay could pass between them", dedupTTL, maxRequestAge, maxClockSkew)
	}
}

// A reset button's callback is claimed like other clicks: replayed (same
// event id), it does nothing, so a turn added since survives.
func TestReplayedResetClickDoesNothing(t *testing.T) {
	states(t, func(t *testing.T, st State) {
		h := newHarness(t, harnessOpts{state: st})
		ctx := context.Background()
		chat := h.id("oc_reset")
		conv := convKey(chat, "")
		turn := func(q string) {
			t.Helper()
			b, _ := json.Marshal(map[string]string{"id": h.id("q"), "question": q}) // only counted here
			if err := h.st.AppendTurn(ctx, conv, b, 4, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		turns := func() int {
			t.Helper()
			ts, err := h.st.Turns(ctx, conv)
			if err != nil {
				t.Fatal(err)
			}
			return len(ts)
		}
		turn("之前的问题")
		click := h.signer.CardActionEvent(feishufake.CardAction{EventID: h.id("ev_reset"), Operator: "ou_alice", MessageID: h.id("om_card"), ChatID: chat,
			Value: map[string]any{"action": cards.ActionReset, "conv": conv}})
		if status, body := h.post(click); status != 200 || decodeJSON(t, body)["toast"] == nil {
			t.Fatalf("reset click: %d %s", status, body)
		}
		if n := turns(); n != 0 {
			t.Fatalf("%d turns after the reset, want 0", n)
		}
		turn("新话题的问题")
		if status, body := h.post(click); status != 200 || decodeJSON(t, body)["toast"] == nil {
			t.Fatalf("replayed reset click: %d %s", status, body)
		}
		if n := turns(); n != 1 {
			t.Errorf("%d turns after the replayed click, want 1: the replay reset the conversation again", n)
		}
	})
}
