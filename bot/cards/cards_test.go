package cards

import (
	"bytes"
	"encoding/json"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"kbbot/bot/feishufake"
	"kbbot/bot/kblink"
	"kbbot/deploy/testkit"
	"kbbot/rag"
)

// testPublic is KBBOT_PUBLIC_URL in these tests; testLinks signs their
// /kb links with a fixed secret and clock, so the golden files hold.
const testPublic = "https://kb.example.com"

var testLinks = kblink.New([]byte("cards-test-link-secret-32-bytes!"), 720*time.Hour, testPublic,
	func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) })

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("%s: card is not JSON: %v", name, err)
	}
	pretty.WriteByte('\n')
	testkit.Golden(t, filepath.Join("testdata", name), pretty.Bytes(), *update)
}

func TestCardsGolden(t *testing.T) {
	ans := rag.Answer{
		Text: "知识库助手根据资料回答问题 [1]。配置见第二篇 [2]。\n\n- 第一点\n- 第二点",
		References: []rag.Reference{
			{DocID: "doc-1", Title: "入门 [指南]", Snippet: "…"},
			{DocID: "doc-2", Title: "配置 (高级)", URL: "https://example.com/a b(1)"},
			{DocID: "doc-3", Title: "", URL: "javascript:alert(1)"},
		},
		FollowUps: []string{"如何开始？", "有哪些限制？"},
		Mode:      rag.ModeLLM,
		Covered:   true,
	}
	conv := "chat:oc_1"
	for name, card := range map[string][]byte{
		"answer.json":       Answer(AnswerView{Question: "知识库助手是什么？", Answer: ans, QID: "q1", Conv: conv, KBLink: testLinks.URL}),
		"answer_click.json": Answer(AnswerView{Question: "如何开始？", Asker: "ou_alice", Answer: rag.Answer{Text: "没有相关资料。"}, QID: "q2", Conv: conv, KBLink: testLinks.URL}),
		"error.json":        Error("知识库助手是什么？", conv),
		"busy.json":         Busy("知识库助手是什么？", conv),
		"help.json":         Help(conv),
		"unsupported.json":  Unsupported("image"),
		"reset.json":        Reset(),
		"welcome.json":      Welcome([]string{"什么是知识库？", "怎么提问？"}, conv),
	} {
		t.Run(name, func(t *testing.T) {
			checkCard(t, card)
			golden(t, name, card)
		})
	}
}

// checkCard checks what Feishu requires of every card kbbot sends.
func checkCard(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c["schema"] != "2.0" {
		t.Errorf("schema %v", c["schema"])
	}
	if cfg, _ := c["config"].(map[string]any); cfg["update_multi"] != true {
		t.Error("update_multi is not true")
	}
	for _, b := range feishufake.Buttons(c) {
		if b["action"] == nil {
			t.Errorf("button value without an action: %v", b)
		}
	}
	if n := sentLen(raw); n > feishufake.MaxCardBytes {
		t.Errorf("card is %d bytes as content, over 30 KB", n)
	}
	return c
}

// sentLen is how many bytes card takes inside a request body as the SDK
// marshals it: a JSON string, with encoding/json's HTML escaping.
func sentLen(card []byte) int {
	b, err := json.Marshal(string(card))
	if err != nil {
		panic(err)
	}
	return len(b) - 2
}

// An answer full of the characters encoding/json escapes as \u003c (six
// bytes each in the request) must still fit, finished or streamed.
func TestHTMLHeavyAnswerFitsAsSent(t *testing.T) {
	text := strings.Repeat("if a<b && c>d then <x> & <y>; ", 4000)
	v := AnswerView{Question: "<q> & <q>", Answer: rag.Answer{Text: text, Covered: true,
		References: []rag.Reference{{DocID: "d&1", Title: "<标题> & <title>"}}}, QID: "q", Conv: "chat:oc_1", KBLink: testLinks.URL, LinkHosts: []string{testPublic}}
	c := checkCard(t, Answer(v))
	if !strings.Contains(feishufake.CardText(c), "已截断") {
		t.Error("the answer was not cut")
	}

	// The streamed text goes into the thinking card's answer element.
	var thinking map[string]any
	if err := json.Unmarshal(Thinking(v), &thinking); err != nil {
		t.Fatal(err)
	}
	feishufake.WalkCard(thinking, func(x any) {
		if m, ok := x.(map[string]any); ok && m["element_id"] == AnswerElement {
			m["content"] = FitText(text, StreamBudget(v))
		}
	})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(thinking); err != nil {
		t.Fatal(err)
	}
	if n := sentLen(bytes.TrimSpace(buf.Bytes())); n > feishufake.MaxCardBytes {
		t.Errorf("streamed card is %d bytes as sent, over 30 KB", n)
	}
}

func TestHugeAnswerFitsInACard(t *testing.T) {
	var sb strings.Builder
	for i := 0; sb.Len() < 300_000; i++ {
		sb.WriteString("这是一段很长的回答，包含 \"引号\"、反斜杠 \\ 和 <标签> [1]。\n")
	}
	ans := rag.Answer{References: []rag.Reference{{DocID: "doc-1", Title: "文档一"}}, Covered: true}
	ans.Text = sb.String()
	long := strings.Repeat("很长的标题", 100)
	ans.References = append(ans.References, rag.Reference{DocID: "d3", Title: long, URL: "https://example.com/" + strings.Repeat("x", 5000)})
	ans.FollowUps = nil
	for range 20 {
		ans.FollowUps = append(ans.FollowUps, strings.Repeat("追问", 200))
	}
	raw := Answer(AnswerView{Question: strings.Repeat("问题", 1000), Answer: ans, QID: "q", Conv: "chat:oc_1", KBLink: testLinks.URL})
	if len(raw) >= MaxCardBytes {
		t.Fatalf("card is %d bytes, want under 30 KB", len(raw))
	}
	c := checkCard(t, raw)
	text := feishufake.CardText(c)
	if !strings.Contains(text, "已截断") || !strings.Contains(text, "这是一段很长的回答") {
		t.Error("the answer was not trimmed gracefully")
	}
	if n := len(feishufake.ButtonsWith(c, ActionAsk)); n != maxFollowUps {
		t.Errorf("%d follow-up buttons, want %d", n, maxFollowUps)
	}
	for _, b := range feishufake.ButtonsWith(c, ActionAsk) {
		if q := b["q"].(string); utf8.RuneCountInString(q) > MaxQuestion || !strings.HasSuffix(q, "…") {
			t.Errorf("follow-up question not trimmed with an ellipsis: %d runes", utf8.RuneCountInString(q))
		}
	}
	if !strings.Contains(text, testPublic+"/kb/d3") {
		t.Error("an over-long URL should fall back to the /kb page")
	}
}

func TestFitTextKeepsShortTextAndBreaksNaturally(t *testing.T) {
	if got := FitText("短回答", 100); got != "短回答" {
		t.Errorf("short text changed: %q", got)
	}
	text := strings.Repeat("第一段。", 50) + "\n\n" + strings.Repeat("第二段。", 50)
	got := FitText(text, quotedCost(text)-20)
	if !strings.HasSuffix(got, "。"+trimNote) {
		t.Errorf("not cut at a break: %q", got)
	}
	if !utf8.ValidString(got) {
		t.Error("cut inside a rune")
	}
}

func TestStreamCardsGolden(t *testing.T) {
	v := AnswerView{Question: "知识库助手是什么？", Asker: "ou_alice", Conv: "chat:oc_1", QID: "q1", KBLink: testLinks.URL,
		Answer: rag.Answer{Text: "知识库助手根据资料回答问题 [1]，并且", Mode: rag.ModeLLM, Covered: true,
			References: []rag.Reference{{DocID: "doc-1", Title: "入门指南"}}}}
	thinking := Thinking(v)
	if c := checkCard(t, thinking); c["config"].(map[string]any)["streaming_mode"] != true {
		t.Error("the thinking card does not stream")
	}
	golden(t, "thinking.json", thinking)
	golden(t, "partial.json", checkedCard(t, Partial(v, true)))
	if ref := string(Ref("7355372766134157313")); ref != `{"type":"card","data":{"card_id":"7355372766134157313"}}` {
		t.Errorf("card reference %s", ref)
	}
}

func checkedCard(t *testing.T, raw []byte) []byte {
	t.Helper()
	checkCard(t, raw)
	return raw
}

func TestLimitCardGolden(t *testing.T) {
	golden(t, "limited.json", Limit(LimitView{Max: 10, PerSeconds: 60, RetryAfterSec: 42}, "知识库助手是什么？", "chat:oc_1"))
	chat := feishufake.CardText(checkCard(t, Limit(LimitView{Chat: true, Max: 30, PerSeconds: 3600, RetryAfterSec: 1800}, "q", "chat:oc_1")))
	if !strings.Contains(chat, "这个会话里的提问有点多：每小时最多回答 30 个问题。请 30 分钟后再问") {
		t.Errorf("chat limit card says %s", chat)
	}
}

// An answer from the model's general knowledge says so under the text and
// lists no sources, even were it handed some.
func TestGeneralAnswerCard(t *testing.T) {
	ans := rag.Answer{Text: "目前知识库中暂时没有关于红烧肉做法的相关内容。但一般来说，先焯水，再炒糖色、慢炖。", FollowUps: []string{"如何开始？"}, Mode: rag.ModeGeneral}
	card := Answer(AnswerView{Question: "红烧肉怎么做？", Answer: ans, QID: "q3", Conv: "chat:oc_1"})
	checkCard(t, card)
	golden(t, "answer_general.json", card)
	ans.References = []rag.Reference{{DocID: "doc-1", Title: "无关的资料"}}
	text := feishufake.CardText(checkCard(t, Answer(AnswerView{Question: "红烧肉怎么做？", Answer: ans, QID: "q3", Conv: "chat:oc_1"})))
	if !strings.Contains(text, GeneralNotice) || !strings.Contains(text, AINotice) || strings.Contains(text, "参考资料") || strings.Contains(text, "无关的资料") {
		t.Errorf("general answer card:\n%s", text)
	}
	if strings.Contains(feishufake.CardText(checkCard(t, Answer(AnswerView{Question: "q", Answer: rag.Answer{Text: "t", Mode: rag.ModeLLM}}))), GeneralNotice) {
		t.Error("an answer from the knowledge base carries the general notice")
	}
}

// A source without a URL of its own links to the page KBLink names, whole;
// without KBLink it is listed unlinked. Sources with a URL keep theirs.
func TestReferenceLinks(t *testing.T) {
	ans := rag.Answer{Text: "答案 [1][2]", Covered: true, References: []rag.Reference{
		{DocID: "doc (1)", Title: "本地文档"},
		{DocID: "doc-2", Title: "飞书文档", URL: "https://example.feishu.cn/docx/abc"},
	}}
	link := func(id string) string { return "https://kb.example.com/kb/" + id + "?exp=1&sig=ab" }
	text := feishufake.CardText(checkCard(t, Answer(AnswerView{Question: "q", Answer: ans, Conv: "chat:oc_1", KBLink: link})))
	for _, want := range []string{"[本地文档](https://kb.example.com/kb/doc%20%281%29?exp=1&sig=ab)", "[飞书文档](https://example.feishu.cn/docx/abc)"} {
		if !strings.Contains(text, want) {
			t.Errorf("card lacks %s:\n%s", want, text)
		}
	}
	text = feishufake.CardText(checkCard(t, Answer(AnswerView{Question: "q", Answer: ans, Conv: "chat:oc_1"})))
	if !strings.Contains(text, "1. 本地文档\n") || strings.Contains(text, "/kb/") || !strings.Contains(text, "[飞书文档](https://example.feishu.cn/docx/abc)") {
		t.Errorf("without KBLink:\n%s", text)
	}
}
