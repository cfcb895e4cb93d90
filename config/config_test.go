package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.DataDir != "./data" || c.Workers != 8 || c.FeishuMode != "webhook" || c.LLMTimeout != time.Minute || c.Tokenizer != "bigram" {
		t.Errorf("defaults = %+v", c)
	}
	if c.QdrantURL != "" || c.RedisURL != "" || c.OpenAIAPIKey != "" {
		t.Error("optional services must default to off")
	}
}

func TestWorkersFollowTheAnswerMode(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want int
	}{
		{nil, 8},
		{map[string]string{"OPENAI_API_KEY": "sk"}, 32},
		{map[string]string{"OPENAI_API_KEY": "sk", "KBBOT_WORKERS": "4"}, 4},
	} {
		c, err := Load(env(tt.env))
		if err != nil || c.Workers != tt.want {
			t.Errorf("%v: workers %d (%v), want %d", tt.env, c.Workers, err, tt.want)
		}
	}
}

func TestLoadErrorsNameTheVariableAndFix(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"not a number", map[string]string{"KBBOT_WORKERS": "many"}, []string{"KBBOT_WORKERS", "whole number"}},
		{"bad duration", map[string]string{"KBBOT_HISTORY_TTL": "forever"}, []string{"KBBOT_HISTORY_TTL", "30s or 24h"}},
		{"bad mode", map[string]string{"FEISHU_MODE": "poll"}, []string{"FEISHU_MODE", "webhook or ws"}},
		{"bad url", map[string]string{"OPENAI_BASE_URL": "api.example.com"}, []string{"OPENAI_BASE_URL", "http(s) URL"}},
		{"bad redis", map[string]string{"REDIS_URL": "localhost:6379"}, []string{"REDIS_URL", "redis://host:6379/0"}},
		{"bad redis keeps its password secret", map[string]string{"REDIS_URL": "tcp://:s3cret@db:6379/0"}, []string{"REDIS_URL", `scheme "tcp"`}},
		{"two at once", map[string]string{"LOG_LEVEL": "loud", "LOG_FORMAT": "xml"}, []string{"LOG_LEVEL", "LOG_FORMAT"}},
		{"no shards", map[string]string{"KBBOT_QUEUE_SHARDS": "0"}, []string{"KBBOT_QUEUE_SHARDS", "between 1 and 4096"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks a password: %q", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestValidateServe(t *testing.T) {
	c, _ := Load(env(map[string]string{"FEISHU_APP_ID": "cli_x", "FEISHU_APP_SECRET": "s"}))
	err := c.ValidateServe()
	if err == nil || !strings.Contains(err.Error(), "FEISHU_ENCRYPT_KEY") || !strings.Contains(err.Error(), "KBBOT_INSECURE_DEV") {
		t.Errorf("webhook without an encrypt key: %v", err)
	}
	c.Insecure = true
	if err := c.ValidateServe(); err != nil {
		t.Errorf("insecure dev mode: %v", err)
	}
	c.Insecure, c.FeishuMode = false, "ws"
	err = c.ValidateServe()
	if err == nil || strings.Contains(err.Error(), "FEISHU_ENCRYPT_KEY") || !strings.Contains(err.Error(), "KBBOT_LINK_SECRET") {
		t.Errorf("long connection: %v, want only the link secret missing (cards link to /kb pages in either mode)", err)
	}
	c.LinkSecret = strings.Repeat("s", 32)
	if err := c.ValidateServe(); err != nil {
		t.Errorf("long connection with a link secret: %v", err)
	}
}

func TestLinkSecret(t *testing.T) {
	base := map[string]string{"FEISHU_APP_ID": "cli_x", "FEISHU_APP_SECRET": "s", "FEISHU_ENCRYPT_KEY": "k", "FEISHU_VERIFICATION_TOKEN": "v"}
	c, err := Load(env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.LinkTTL != 720*time.Hour {
		t.Errorf("KBBOT_LINK_TTL default %v, want 720h", c.LinkTTL)
	}
	if err := c.ValidateServe(); err == nil || !strings.Contains(err.Error(), "KBBOT_LINK_SECRET") || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("serve without a link secret: %v, want a refusal saying how to make one", err)
	}
	c.Insecure = true
	if err := c.ValidateServe(); err != nil {
		t.Errorf("insecure dev mode without a link secret: %v", err)
	}

	short := map[string]string{"KBBOT_LINK_SECRET": "too-short-a-secret"}
	if _, err := Load(env(short)); err == nil || !strings.Contains(err.Error(), "KBBOT_LINK_SECRET") || !strings.Contains(err.Error(), "32 bytes") || strings.Contains(err.Error(), "too-short") {
		t.Errorf("short secret: %v, want a length error that does not print the secret", err)
	}
}

func TestAddresses(t *testing.T) {
	for _, tt := range []struct {
		env             map[string]string
		addr, admin     string
		loopbackDefault bool
	}{
		{nil, ":8080", "127.0.0.1:9090", false},
		{map[string]string{"KBBOT_INSECURE_DEV": "true"}, "127.0.0.1:8080", "127.0.0.1:9090", true},
		{map[string]string{"KBBOT_INSECURE_DEV": "true", "KBBOT_ADDR": ":8081"}, ":8081", "127.0.0.1:9090", false},
		{map[string]string{"KBBOT_ADMIN_ADDR": "off"}, ":8080", "off", false},
		{map[string]string{"KBBOT_ADMIN_ADDR": ":9091"}, ":8080", ":9091", false},
	} {
		c, err := Load(env(tt.env))
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		if c.Addr != tt.addr || c.AdminAddr != tt.admin || c.DevLoopback != tt.loopbackDefault {
			t.Errorf("%v: addr %q admin %q loopback default %v, want %q %q %v", tt.env, c.Addr, c.AdminAddr, c.DevLoopback, tt.addr, tt.admin, tt.loopbackDefault)
		}
	}
	for _, bad := range []map[string]string{{"KBBOT_ADMIN_ADDR": "9090"}, {"KBBOT_ADMIN_ADDR": ":8080"}} {
		if _, err := Load(env(bad)); err == nil || !strings.Contains(err.Error(), "KBBOT_ADMIN_ADDR") {
			t.Errorf("%v: %v, want an error naming KBBOT_ADMIN_ADDR", bad, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/v1":                                 "https://api.example.com/v1",
		"https://user:hunter2@api.example.com/v1?api-key=sk1":        "https://user:REDACTED@api.example.com/v1?api-key=REDACTED",
		"https://tok3n@api.example.com/":                             "https://REDACTED@api.example.com/",
		"https://api.example.com/v1?a=1&b=sk1#frag":                  "https://api.example.com/v1?a=REDACTED&b=REDACTED",
		"redis://:hunter2@redis:6379/0":                              "redis://:REDACTED@redis:6379/0",
		"redis-sentinel://:hunter2@h1:26379,h2:26379/mymaster?x=sk1": "redis-sentinel://:REDACTED@h1:26379,h2:26379/mymaster?x=REDACTED",
		"redis-cluster://:hunter2@h1:6379,[bad/x?k=sk1":              "redis-cluster://REDACTED@h1:6379,[bad/x?REDACTED",
		"api.example.com/v1?key=sk1":                                 "api.example.com/v1?REDACTED",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`Post "https://u:hunter2@llm.example/v1/chat/completions?api-key=sk1": dial tcp: refused`: `Post "https://u:REDACTED@llm.example/v1/chat/completions?api-key=REDACTED": dial tcp: refused`,
		`check X (http://a:hunter2@h/v1?k=sk1) and Y (http://h/?t=sk2; or not)`:                   `check X (http://a:REDACTED@h/v1?k=REDACTED) and Y (http://h/?t=REDACTED; or not)`,
		`no URL here: a:b@c`: `no URL here: a:b@c`,
	} {
		if got := RedactText(in); got != want {
			t.Errorf("RedactText(%q) = %q, want %q", in, got, want)
		}
	}
}

// A URL with a password and a query string is printed redacted, both in a
// configuration error and in the settings dump.
func TestPrintedURLsAreRedacted(t *testing.T) {
	const bad = "ftp://admin:hunter2@llm.example/v1?api-key=sk-secret1"
	_, err := Load(env(map[string]string{"OPENAI_BASE_URL": bad}))
	if err == nil || !strings.Contains(err.Error(), "OPENAI_BASE_URL") || !strings.Contains(err.Error(), "llm.example") {
		t.Fatalf("error %v, want one naming OPENAI_BASE_URL and its host", err)
	}
	const good = "https://admin:hunter2@llm.example/v1?api-key=sk-secret1"
	lines := strings.Join(Redacted(env(map[string]string{"OPENAI_BASE_URL": good})), "\n")
	for _, printed := range []string{err.Error(), lines} {
		if strings.Contains(printed, "hunter2") || strings.Contains(printed, "sk-secret1") {
			t.Errorf("a credential is printed: %s", printed)
		}
	}
	if !strings.Contains(lines, "OPENAI_BASE_URL=https://admin:REDACTED@llm.example/v1?api-key=REDACTED") {
		t.Errorf("settings dump:\n%s", lines)
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	lines := strings.Join(Redacted(env(map[string]string{"FEISHU_APP_SECRET": "hunter2", "OPENAI_API_KEY": "sk-1", "FEISHU_APP_ID": "cli_x"})), "\n")
	if strings.Contains(lines, "hunter2") || strings.Contains(lines, "sk-1") || !strings.Contains(lines, "FEISHU_APP_ID=cli_x") {
		t.Errorf("redacted:\n%s", lines)
	}
}

func TestAnswerBoundsAndRetention(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.OutOfKB != "general" || c.OpenAIMaxTokens != 1024 || c.Retention != 30*24*time.Hour {
		t.Errorf("defaults: out of kb %q, max tokens %d, retention %v", c.OutOfKB, c.OpenAIMaxTokens, c.Retention)
	}
	c, err = Load(env(map[string]string{"KBBOT_OUT_OF_KB": "refuse", "OPENAI_MAX_TOKENS": "0", "KBBOT_RETENTION": "168h"}))
	if err != nil || c.OutOfKB != "refuse" || c.OpenAIMaxTokens != 0 || c.Retention != 7*24*time.Hour {
		t.Errorf("set: %+v, %v", c, err)
	}
	for name, want := range map[string]map[string]string{
		"KBBOT_OUT_OF_KB":   {"KBBOT_OUT_OF_KB": "maybe"},
		"OPENAI_MAX_TOKENS": {"OPENAI_MAX_TOKENS": "-1"},
		"KBBOT_RETENTION":   {"KBBOT_RETENTION": "0"},
	} {
		if _, err := Load(env(want)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one naming %s", want, err, name)
		}
	}
}
