// Package kblink makes and checks the signed, expiring links to kbbot's
// source pages: {base}/kb/{doc_id}?exp=UNIX&sig=HEX, where sig is
// HMAC-SHA256(secret, doc_id + "\n" + exp) in hex. A link works until exp
// for whoever holds it; rotating the secret ends every link at once.
package kblink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// MinSecretLen is the shortest secret accepted: 32 bytes, the size of the
// HMAC-SHA256 key. `openssl rand -hex 32` makes a good one (64 characters).
const MinSecretLen = 32

// Why Check refused a link.
var (
	ErrInvalid = errors.New("link signature missing or wrong")
	ErrExpired = errors.New("link expired")
)

// Signer makes links for one secret, lifetime and base URL.
type Signer struct {
	secret []byte
	ttl    time.Duration
	base   string
	now    func() time.Time
}

// New returns a Signer. base is the public URL pages are served under (no
// trailing slash); now is the clock, nil for time.Now.
func New(secret []byte, ttl time.Duration, base string, now func() time.Time) *Signer {
	if now == nil {
		now = time.Now
	}
	return &Signer{secret: secret, ttl: ttl, base: base, now: now}
}

// RandomSecret is a fresh secret, for insecure development mode: links made
// with it stop working when the process ends.
func RandomSecret() []byte {
	b := make([]byte, MinSecretLen)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return []byte(hex.EncodeToString(b))
}

// URL is the link to docID's page, valid for at least the lifetime.
func (s *Signer) URL(docID string) string {
	exp := strconv.FormatInt(s.expiry().Unix(), 10)
	return s.base + "/kb/" + url.PathEscape(docID) + "?exp=" + exp + "&sig=" + Sig(s.secret, docID, exp)
}

// expiry is now plus the lifetime, rounded up to a step of at most an
// hour. Rounding gives every card rendered within the step the same links,
// so a retried send repeats the same content under the same idempotency
// uuid: Feishu's docs ask for a new uuid when the content changes
// (https://open.feishu.cn/document/server-docs/im-v1/message/reply) but do
// not say what a repeat with other content does.
func (s *Signer) expiry() time.Time {
	step := min(time.Hour, s.ttl)
	t := s.now().Add(s.ttl)
	if step <= 0 {
		return t
	}
	e := t.Truncate(step)
	if e.Before(t) {
		e = e.Add(step)
	}
	return e
}

// Check says whether exp and sig, as they came in the link's query, are a
// valid, unexpired signature of docID.
func (s *Signer) Check(docID, exp, sig string) error {
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrInvalid
	}
	if !hmac.Equal(got, mac(s.secret, docID, exp)) { // constant time
		return ErrInvalid
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil { // signed by us, so not reachable without the secret
		return ErrInvalid
	}
	if !s.now().Before(time.Unix(unix, 0)) {
		return ErrExpired
	}
	return nil
}

// Sig is the hex signature of docID with the expiry exp (decimal Unix
// seconds, exactly as the link carries it).
func Sig(secret []byte, docID, exp string) string {
	return hex.EncodeToString(mac(secret, docID, exp))
}

func mac(secret []byte, docID, exp string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(docID + "\n" + exp))
	return h.Sum(nil)
}
