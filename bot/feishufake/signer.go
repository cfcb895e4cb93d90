package feishufake

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Signer makes webhook requests the way Feishu does: the event JSON carries
// the verification token, is AES-256-CBC encrypted with SHA-256(EncryptKey)
// and signed with SHA-256(timestamp + nonce + EncryptKey + body). With an
// empty EncryptKey the body is sent in plain text and unsigned, as Feishu
// does for apps without encryption.
type Signer struct {
	EncryptKey string
	Token      string
	Now        func() time.Time // nil: time.Now
	// Rand supplies IVs and nonces; nil: crypto/rand. Fuzz seeds set a
	// deterministic one so a failing input reproduces.
	Rand io.Reader
}

func (s Signer) random(b []byte) error {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	_, err := io.ReadFull(r, b)
	return err
}

// Encrypt wraps plain as {"encrypt":"base64(IV ‖ CBC(plain, PKCS#7))"}.
func (s Signer) Encrypt(plain []byte) ([]byte, error) {
	key := sha256.Sum256([]byte(s.EncryptKey))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, aes.BlockSize+len(plain)+pad)
	iv := buf[:aes.BlockSize]
	if err := s.random(iv); err != nil {
		return nil, err
	}
	copy(buf[aes.BlockSize:], plain)
	copy(buf[aes.BlockSize+len(plain):], bytes.Repeat([]byte{byte(pad)}, pad))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf[aes.BlockSize:], buf[aes.BlockSize:])
	return json.Marshal(map[string]string{"encrypt": base64.StdEncoding.EncodeToString(buf)})
}

// Sign is the X-Lark-Signature of body.
func (s Signer) Sign(timestamp, nonce string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(timestamp + nonce + s.EncryptKey))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Body is the request body Feishu would send for event: encrypted when
// there is a key.
func (s Signer) Body(event []byte) ([]byte, error) {
	if s.EncryptKey == "" {
		return event, nil
	}
	return s.Encrypt(event)
}

// Request is a complete webhook POST of event to url, encrypted and signed.
func (s Signer) Request(ctx context.Context, url string, event []byte) (*http.Request, error) {
	body, err := s.Body(event)
	if err != nil {
		return nil, err
	}
	return s.SignedRequest(ctx, url, body)
}

// SignedRequest posts body as is (already encrypted, or deliberately broken)
// with signature headers computed over it.
func (s Signer) SignedRequest(ctx context.Context, url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	var nb [8]byte
	_ = s.random(nb[:])
	nonce := hex.EncodeToString(nb[:])
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Lark-Request-Timestamp", ts)
	req.Header.Set("X-Lark-Request-Nonce", nonce)
	if s.EncryptKey != "" {
		req.Header.Set("X-Lark-Signature", s.Sign(ts, nonce, body))
	}
	return req, nil
}
