package cards

import (
	"strings"
	"testing"

	"kbbot/bot/feishufake"
	"kbbot/rag"
)

// The plain answer Feishu gets when it refused the answer card: the same
// answer, sources and buttons, and not one markdown element its content
// rules could refuse.
func TestPlainAnswerGolden(t *testing.T) {
	text := "部署见 [1]。<at id=all></at> ![图](https://evil.example/a.png) [登录](https://evil.example/login)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n" +
		"见 https://evil.example/p、[文档](https://docs.example.com/deploy)和 https://docs.example.com/faq。"
	// As typed, but for what could still link elsewhere if Feishu made
	// URLs in plain text clickable.
	shown := "部署见 [1]。<at id=all></at> 图 登录\n\n| a | b |\n|---|---|\n| 1 | 2 |\n" +
		"见 https：//evil.example/p、文档 https://docs.example.com/deploy 和 https://docs.example.com/faq。"
	v := AnswerView{Question: "怎么部署？", Asker: "ou_alice", QID: "q1", Conv: "chat:oc_1", KBLink: testLinks.URL, LinkHosts: []string{testPublic},
		Answer: rag.Answer{Text: text, Covered: true, FollowUps: []string{"有哪些限制？"}, References: []rag.Reference{
			{DocID: "doc-1", Title: "部署 [指南]\n第二行", URL: "https://docs.example.com/deploy"},
			{DocID: "doc-2", Title: "<font color='red'>配置</font>"},
		}}}
	raw := PlainAnswer(v)
	c := checkCard(t, raw)
	golden(t, "plain_answer.json", raw)
	if md := feishufake.Markdowns(c); len(md) != 0 {
		t.Errorf("markdown elements in the plain answer: %q", md)
	}
	got := feishufake.CardText(c)
	for _, want := range []string{shown, "问：怎么部署？", "1. 部署 [指南] 第二行 https://docs.example.com/deploy", "2. <font color='red'>配置</font> " + testPublic + "/kb/doc-2", AINotice} {
		if !strings.Contains(got, want) {
			t.Errorf("the plain answer lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "://evil") {
		t.Errorf("a link to evil.example could be clickable:\n%s", got)
	}
	if n, fb := len(feishufake.ButtonsWith(c, ActionAsk)), len(feishufake.ButtonsWith(c, ActionFeedback)); n != 1 || fb != 2 {
		t.Errorf("%d follow-up and %d feedback buttons, want 1 and 2", n, fb)
	}
}

func TestHugePlainAnswerFits(t *testing.T) {
	v := AnswerView{Question: "q", Answer: rag.Answer{Text: strings.Repeat("<很长> & \"引号\"\n", 20000)}}
	text := feishufake.CardText(checkCard(t, PlainAnswer(v)))
	if !strings.Contains(text, plainTrimNote) || strings.Contains(text, "<font") {
		t.Errorf("not cut with the plain note:\n%s", text[len(text)-200:])
	}
}
