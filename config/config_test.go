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
	if err := c.ValidateServe(); err != nil {
		t.Errorf("long connection needs no encrypt key: %v", err)
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
