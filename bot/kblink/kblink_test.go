package kblink

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	t0         = time.Date(2026, 11, 28, 10, 20, 0, 0, time.UTC)
)

// parse splits a link into its doc id (unescaped), exp and sig.
func parse(t *testing.T, link string) (id, exp, sig string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(u.Path, "/kb/")
	if !ok {
		t.Fatalf("link %q is not under /kb/", link)
	}
	return id, u.Query().Get("exp"), u.Query().Get("sig")
}

func TestLinkRoundTrip(t *testing.T) {
	now := t0
	s := New(testSecret, 720*time.Hour, "https://kb.example.com", func() time.Time { return now })
	link := s.URL("doc 1/ü")
	if !strings.HasPrefix(link, "https://kb.example.com/kb/doc%201%2F%C3%BC?exp=") {
		t.Errorf("link %q", link)
	}
	id, exp, sig := parse(t, link)
	if id != "doc 1/ü" {
		t.Fatalf("id %q", id)
	}
	if err := s.Check(id, exp, sig); err != nil {
		t.Fatalf("fresh link: %v", err)
	}
	// It lasts the whole lifetime, and at most an hour more (the rounding).
	now = t0.Add(720*time.Hour - time.Second)
	if err := s.Check(id, exp, sig); err != nil {
		t.Errorf("link refused before its lifetime ended: %v", err)
	}
	now = t0.Add(721 * time.Hour)
	if err := s.Check(id, exp, sig); !errors.Is(err, ErrExpired) {
		t.Errorf("link an hour past its lifetime: %v, want ErrExpired", err)
	}
}

func TestLinksWithinAStepAreEqual(t *testing.T) {
	now := t0
	s := New(testSecret, 720*time.Hour, "", func() time.Time { return now })
	a := s.URL("d")
	now = now.Add(30 * time.Minute)
	if b := s.URL("d"); b != a {
		t.Errorf("links half an hour apart differ: %s, %s", a, b)
	}
}

func TestCheckRefusesForgeries(t *testing.T) {
	s := New(testSecret, time.Hour, "", func() time.Time { return t0 })
	_, exp, sig := parse(t, s.URL("doc-1"))
	later := "9999999999"
	other := New([]byte("another secret of at least 32 bytes"), time.Hour, "", func() time.Time { return t0 })
	_, _, otherSig := parse(t, other.URL("doc-1"))
	for name, c := range map[string][3]string{
		"other document":   {"doc-2", exp, sig},
		"later expiry":     {"doc-1", later, sig},
		"signed elsewhere": {"doc-1", exp, otherSig},
		"no signature":     {"doc-1", exp, ""},
		"no expiry":        {"doc-1", "", sig},
		"not hex":          {"doc-1", exp, strings.Repeat("zz", 32)},
		"truncated":        {"doc-1", exp, sig[:62]},
		"forged expiry":    {"doc-1", later, Sig([]byte("guessed"), "doc-1", later)},
	} {
		if err := s.Check(c[0], c[1], c[2]); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestRandomSecret(t *testing.T) {
	a, b := RandomSecret(), RandomSecret()
	if len(a) < MinSecretLen || string(a) == string(b) {
		t.Errorf("random secrets %q, %q", a, b)
	}
}
