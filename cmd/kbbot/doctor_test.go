package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kbbot/bot/feishufake"
	"kbbot/rag/llmfake"
	"kbbot/store/index/qdranttest"
	"kbbot/store/redistest"
)

// Secrets the doctor tests configure; none may appear in the report.
const (
	doctorAppSecret  = "doctor-app-secret"
	doctorEncryptKey = "doctor-encrypt-key"
	doctorVerifyTok  = "doctor-verification-token"
	doctorOpenAIKey  = "sk-doctor-good"
	doctorLinkSecret = "doctor-link-secret-of-32-bytes-or-more"
)

// startFakeOpenAI is an OpenAI-compatible provider that knows the key
// doctorOpenAIKey, the chat model test-model, and the embedding models
// test-embed (honours the requested dimensions, default 8) and fixed-embed
// (always 8). Doctor must ask the chat model for one token only.
func startFakeOpenAI(t *testing.T) *llmfake.Server {
	t.Helper()
	s := llmfake.Start(t, llmfake.Key(doctorOpenAIKey), llmfake.Models("test-model", "test-embed", "fixed-embed"),
		llmfake.Default(llmfake.Reply("OK").Finish("length")), llmfake.EmbedDim(8),
		llmfake.Embed(func(model, input string, dim int) []float32 {
			if model == "fixed-embed" {
				dim = 8
			}
			return llmfake.HashEmbed(model, input, dim)
		}))
	t.Cleanup(func() {
		for _, r := range s.Chats() {
			if r.MaxTokens != 1 {
				t.Errorf("doctor asked for max_tokens %d, want 1", r.MaxTokens)
			}
		}
	})
	return s
}

// startFeishuFake starts the fake Open API for one test.
// doctorSpace is the wiki space the fake Feishu holds for doctor.
const doctorSpace = "7034502641455497244"

func startFeishuFake(t *testing.T) *feishufake.Server {
	t.Helper()
	fake := feishufake.New("ou_doctor_bot")
	t.Cleanup(fake.Close)
	fake.AddSpace(doctorSpace, "团队知识库")
	fake.AddDocx(doctorSpace, "", "团队手册", feishufake.Text(feishufake.Run("欢迎。")))
	return fake
}

// doctorEnv configures every dependency except Redis against fakes. The app
// id is unique because the SDK's token cache is process-wide.
func doctorEnv(t *testing.T, feishuURL, openaiURL, qdrantURL string) map[string]string {
	t.Helper()
	return map[string]string{
		"KBBOT_DATA_DIR":            t.TempDir(),
		"FEISHU_APP_ID":             fmt.Sprintf("cli_%s_%d", t.Name(), time.Now().UnixNano()),
		"FEISHU_APP_SECRET":         doctorAppSecret,
		"KBBOT_LINK_SECRET":         doctorLinkSecret,
		"FEISHU_ENCRYPT_KEY":        doctorEncryptKey,
		"FEISHU_VERIFICATION_TOKEN": doctorVerifyTok,
		"FEISHU_BASE_URL":           feishuURL,
		"QDRANT_URL":                qdrantURL,
		"QDRANT_COLLECTION":         "doctor",
		"OPENAI_API_KEY":            doctorOpenAIKey,
		"OPENAI_BASE_URL":           openaiURL,
		"OPENAI_MODEL":              "test-model",
		"OPENAI_EMBEDDING_MODEL":    "test-embed",
		"OPENAI_EMBEDDING_DIM":      "8",
	}
}

// unusedAddr is a loopback address nothing listens on.
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// doctorLine is one check's line of the report, with its fix if any.
type doctorLine struct {
	status, name, detail, fix string
}

func parseDoctor(t *testing.T, out string) []doctorLine {
	t.Helper()
	var lines []doctorLine
	for l := range strings.Lines(out) {
		l = strings.TrimRight(l, "\n")
		if fix, ok := strings.CutPrefix(l, "      fix: "); ok {
			if len(lines) == 0 {
				t.Fatalf("fix before any check:\n%s", out)
			}
			lines[len(lines)-1].fix = fix
			continue
		}
		if len(l) < 24 {
			t.Fatalf("malformed line %q in:\n%s", l, out)
		}
		lines = append(lines, doctorLine{
			status: strings.TrimSpace(l[:6]), name: strings.TrimSpace(l[6:23]), detail: l[23:],
		})
	}
	return lines
}

func assertNoSecrets(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{doctorAppSecret, doctorEncryptKey, doctorVerifyTok, doctorOpenAIKey, doctorLinkSecret} {
		if strings.Contains(out, s) {
			t.Errorf("the report shows the secret %q:\n%s", s, out)
		}
	}
}

func TestDoctorAllGreen(t *testing.T) {
	fake := startFeishuFake(t)
	env := doctorEnv(t, fake.URL, startFakeOpenAI(t).URL, qdranttest.Start(t).URL())
	env["REDIS_URL"] = redistest.URL(t)
	env["FEISHU_WIKI_SPACES"] = doctorSpace
	env["FEISHU_DOC_BASE_URL"] = "https://example.feishu.cn"

	out, stderr, err := runCLI(t, env, "doctor")
	if err != nil {
		t.Fatalf("doctor: %v\n%s\nstderr:\n%s", err, out, stderr)
	}
	lines := parseDoctor(t, out)
	var names []string
	for _, l := range lines {
		names = append(names, l.name)
		if l.status != "ok" || l.fix != "" {
			t.Errorf("not ok: %+v", l)
		}
	}
	want := []string{"configuration", "feishu app", "feishu scopes", "feishu knowledge", "redis", "knowledge store", "llm", "embeddings"}
	if !slices.Equal(names, want) {
		t.Errorf("checks %q, want %q", names, want)
	}
	for _, s := range []string{
		"bot open_id ou_doctor_bot",
		"cardkit:card:write",
		`listed, and "团队手册" read`,
		"PING answered by",
		`qdrant collection "doctor" (dense 8 + bm25) is empty: run ` + "`kbbot ingest`",
		"model test-model answered in",
		"model test-embed: 8 dimensions",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	if fake.Calls(feishufake.OpBotInfo) != 1 {
		t.Errorf("bot/v3/info called %d times, want 1", fake.Calls(feishufake.OpBotInfo))
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("report:\n%s", out)
	}
	assertNoSecrets(t, out+stderr)
}

// TestDoctorSkipsWhatIsNotConfigured: with only the Feishu app configured, in
// long-connection mode, optional dependencies are skipped, and the embedded
// index is reported without being created.
func TestDoctorSkipsWhatIsNotConfigured(t *testing.T) {
	fake := startFeishuFake(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{
		"KBBOT_DATA_DIR":    dataDir,
		"FEISHU_APP_ID":     fmt.Sprintf("cli_%s_%d", t.Name(), time.Now().UnixNano()),
		"FEISHU_APP_SECRET": doctorAppSecret,
		"KBBOT_LINK_SECRET": doctorLinkSecret,
		"FEISHU_BASE_URL":   fake.URL,
	}
	out, stderr, err := runCLI(t, env, "doctor", "--ws")
	if err != nil {
		t.Fatalf("doctor --ws: %v\n%s\nstderr:\n%s", err, out, stderr)
	}
	var got []string
	for _, l := range parseDoctor(t, out) {
		got = append(got, l.status+" "+l.name)
	}
	want := []string{"ok configuration", "ok feishu app", "ok feishu scopes", "skip feishu knowledge", "skip redis", "ok knowledge store", "skip llm", "skip embeddings"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q\n%s", got, want, out)
	}
	for _, s := range []string{"long-connection mode", "REDIS_URL not set", "does not exist yet", "OPENAI_API_KEY not set", "OPENAI_EMBEDDING_MODEL not set"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("doctor created %s (stat: %v)", dataDir, err)
	}

	// With an ingested embedded index, the chunks are counted.
	seeds, _ := filepath.Abs("../../seeds")
	if _, stderr, err := runCLI(t, env, "ingest", seeds); err != nil {
		t.Fatalf("ingest: %v\n%s", err, stderr)
	}
	out, _, err = runCLI(t, env, "doctor", "--ws")
	if err != nil || !strings.Contains(out, "(QDRANT_URL not set): 34 chunks") {
		t.Errorf("after ingest: %v\n%s", err, out)
	}
}

func TestDoctorFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, env map[string]string, fake *feishufake.Server)
		// fails maps each check that must FAIL to a piece of its fix; every
		// other check must not fail.
		fails map[string]string
	}{
		{
			name: "wrong app secret",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				// A token endpoint that knows the right secret, and answers
				// a wrong one the way Feishu does.
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/open-apis/auth/v3/tenant_access_token/internal" {
						t.Errorf("after a refused token, doctor called %s %s", r.Method, r.URL.Path)
						http.NotFound(w, r)
						return
					}
					var in struct {
						AppSecret string `json:"app_secret"`
					}
					json.NewDecoder(r.Body).Decode(&in)
					w.Header().Set("Content-Type", "application/json")
					if in.AppSecret != doctorAppSecret {
						w.Write([]byte(`{"code":10014,"msg":"app secret invalid"}`))
						return
					}
					w.Write([]byte(`{"code":0,"msg":"ok","tenant_access_token":"t-x","expire":7200}`))
				}))
				t.Cleanup(srv.Close)
				env["FEISHU_BASE_URL"] = srv.URL
				env["FEISHU_APP_SECRET"] = "wrong"
			},
			fails: map[string]string{"feishu app": "check FEISHU_APP_ID / FEISHU_APP_SECRET on the app's Credentials page"},
		},
		{
			name: "bot capability off",
			setup: func(t *testing.T, env map[string]string, fake *feishufake.Server) {
				fake.Fail(feishufake.Fault{Op: feishufake.OpBotInfo, Times: 1, Status: http.StatusBadRequest, Code: 230002})
			},
			fails: map[string]string{"feishu app": "enable the Bot capability"},
		},
		{
			name: "missing encrypt key",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				delete(env, "FEISHU_ENCRYPT_KEY")
			},
			fails: map[string]string{"configuration": "Encryption Strategy"},
		},
		{
			name: "missing link secret",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				delete(env, "KBBOT_LINK_SECRET")
			},
			fails: map[string]string{"configuration": "openssl rand -hex 32"},
		},
		{
			name: "redis stopped",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				env["REDIS_URL"] = "redis://" + unusedAddr(t) + "/0"
			},
			fails: map[string]string{"redis": "start Redis or correct REDIS_URL (redis://host:6379/0)"},
		},
		{
			name: "qdrant unreachable",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				env["QDRANT_URL"] = "http://" + unusedAddr(t)
			},
			fails: map[string]string{"knowledge store": "check QDRANT_URL (gRPC port 6334) and QDRANT_API_KEY"},
		},
		{
			name: "qdrant collection of another dimension",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				// The first doctor creates the collection with 8 dimensions.
				if out, _, err := runCLI(t, env, "doctor"); err != nil {
					t.Fatalf("first doctor: %v\n%s", err, out)
				}
				env["OPENAI_EMBEDDING_DIM"] = "16"
			},
			fails: map[string]string{"knowledge store": "kbbot ingest --rebuild"},
		},
		{
			name: "llm key refused",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				env["OPENAI_API_KEY"] = "sk-doctor-bad"
			},
			fails: map[string]string{"llm": "check OPENAI_API_KEY", "embeddings": "check OPENAI_API_KEY"},
		},
		{
			name: "llm model unknown",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				env["OPENAI_MODEL"] = "no-such-model"
			},
			fails: map[string]string{"llm": "check OPENAI_MODEL (no-such-model) and OPENAI_BASE_URL"},
		},
		{
			name: "no CardKit scope",
			setup: func(t *testing.T, env map[string]string, fake *feishufake.Server) {
				fake.MissingScope("cardkit:card:write")
			},
			fails: map[string]string{"feishu scopes": "cardkit:card:write"},
		},
		{
			name: "wiki space not shared with the app",
			setup: func(t *testing.T, env map[string]string, fake *feishufake.Server) {
				env["FEISHU_WIKI_SPACES"], env["FEISHU_DOC_BASE_URL"] = doctorSpace, "https://example.feishu.cn"
				fake.UnshareSpace(doctorSpace)
			},
			fails: map[string]string{"feishu knowledge": "add the app to the space"},
		},
		{
			name: "no docx scope",
			setup: func(t *testing.T, env map[string]string, fake *feishufake.Server) {
				env["FEISHU_WIKI_SPACES"], env["FEISHU_DOC_BASE_URL"] = doctorSpace, "https://example.feishu.cn"
				fake.MissingScope("docx:document:readonly")
			},
			fails: map[string]string{"feishu knowledge": "docx:document:readonly"},
		},
		{
			name: "embedding dimension differs",
			setup: func(t *testing.T, env map[string]string, _ *feishufake.Server) {
				env["OPENAI_EMBEDDING_MODEL"] = "fixed-embed"
				env["OPENAI_EMBEDDING_DIM"] = "16"
			},
			fails: map[string]string{"embeddings": "set OPENAI_EMBEDDING_DIM=8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFeishuFake(t)
			env := doctorEnv(t, fake.URL, startFakeOpenAI(t).URL, qdranttest.Start(t).URL())
			tt.setup(t, env, fake)
			out, stderr, err := runCLI(t, env, "doctor")
			if err == nil || !strings.Contains(err.Error(), "check(s) failed") {
				t.Errorf("doctor returned %v, want a failure", err)
			}
			got := map[string]string{}
			for _, l := range parseDoctor(t, out) {
				if l.status == "FAIL" {
					got[l.name] += l.fix
				}
			}
			for name, fix := range tt.fails {
				if f, ok := got[name]; !ok {
					t.Errorf("check %q did not fail", name)
				} else if !strings.Contains(f, fix) {
					t.Errorf("check %q: fix %q lacks %q", name, f, fix)
				}
			}
			for name := range got {
				if _, ok := tt.fails[name]; !ok {
					t.Errorf("check %q failed too", name)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("report:\n%s\nstderr:\n%s", out, stderr)
			}
			assertNoSecrets(t, out+stderr)
		})
	}
}

// URLs with credentials and query strings are printed redacted: doctor
// prints base URLs in its fixes and errors that quote request URLs.
func TestDoctorRedactsURLs(t *testing.T) {
	env := doctorEnv(t, "http://app:hunter2@"+unusedAddr(t)+"/?token=sk-feishu-query", "http://admin:hunter2@"+unusedAddr(t)+"/v1?api-key=sk-query-secret", "")
	delete(env, "OPENAI_EMBEDDING_MODEL")
	out, stderr, err := runCLI(t, env, "doctor")
	if err == nil {
		t.Fatalf("doctor passed against unreachable services:\n%s", out)
	}
	for _, secret := range []string{"hunter2", "sk-query-secret", "sk-feishu-query"} {
		if strings.Contains(out, secret) || strings.Contains(stderr, secret) {
			t.Errorf("doctor printed %q:\n%s\nstderr:\n%s", secret, out, stderr)
		}
	}
	for _, want := range []string{"admin:REDACTED@", "api-key=REDACTED"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks the redacted URL (%s):\n%s", want, out)
		}
	}
}
