package feishufake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestCheckMarkdown(t *testing.T) {
	fiveTables := strings.Repeat("| a | b |\n|---|---|\n| 1 | 2 |\n\n", 5)
	for _, tc := range []struct {
		name, md string
		atAll    bool
		want     string // in the refusal's msg; "" accepts
	}{
		{"plain", "**答案** [1]，见 [文档](https://kb.example.com/kb/d1)。", false, ""},
		{"kbbot notes", "<font color='grey'>内容由 AI 大模型生成</font>", false, ""},
		{"a mention", "<at id=ou_alice></at> 问：", false, ""},
		{"uploaded image", "![图](img_v2_abc)", false, ""},
		{"remote image", "看 ![x](https://evil.example/a.png)", false, "ErrCode: 200570"},
		{"image key that is a path", "![x](a.png)", false, "ErrCode: 200570"},
		{"image in code", "`![x](https://evil.example/a.png)`\n```\n![x](b.png)\n```", false, ""},
		{"four tables", strings.Repeat("| a |\n|---|\n\n", 4), false, ""},
		{"five tables", fiveTables, false, "ErrCode: 11310"},
		{"one table with rows of dashes", "| a |\n|---|\n|---|\n|-|\n|---|\n|---|", false, ""},
		{"five tables, two in a fence", strings.Repeat("| a |\n|---|\n\n", 3) + "```\n| a |\n|---|\n\n| a |\n|---|\n```", false, ""},
		{"at all", "<at id=all></at> 通知", false, "@all"},
		{"at all quoted", `<at id="all"></at>`, false, "@all"},
		{"at all allowed", "<at id=all></at>", true, ""},
		{"at all in code", "`<at id=all></at>`", false, ""},
		{"javascript link", "[x](javascript:alert(1))", false, "scheme"},
		{"relative link", "[x](/kb/d1)", false, "scheme"},
		{"a tag with ftp", "<a href='ftp://x.example/f'>f</a>", false, "scheme"},
		{"link tag", "<link url='https://x.example'>x</link>", false, ""},
		{"tel link", "[电话](tel://10086)", false, ""},
		{"bare URL then Chinese", "见 https://x.example/a中文", false, "followed by Chinese"},
		{"bare URL then space", "见 https://x.example/a 中文", false, ""},
		{"link then Chinese", "见 [a](https://x.example/a)中文", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkMarkdown(tc.md, tc.atAll)
			switch {
			case tc.want == "" && r != nil:
				t.Errorf("refused: %d %s", r.code, r.msg)
			case tc.want != "" && r == nil:
				t.Errorf("accepted, want a refusal with %q", tc.want)
			case tc.want != "" && (r.code != CodeCardContent || !strings.Contains(r.msg, tc.want)):
				t.Errorf("refused with %d %q, want %d and %q", r.code, r.msg, CodeCardContent, tc.want)
			}
		})
	}
}

func TestMarkdownLinks(t *testing.T) {
	md := "[a](https://a.example/x) ![i](img_1) <a href='https://b.example'>b</a> see https://c.example/p. " +
		"`https://code.example` ```x``` www.d.example\n```\nhttps://fence.example\n```"
	got := strings.Join(MarkdownLinks(md), " ")
	if want := "https://a.example/x https://b.example https://c.example/p www.d.example"; got != want {
		t.Errorf("links %q, want %q", got, want)
	}
	if imgs := MarkdownImages(md); len(imgs) != 1 || imgs[0] != "img_1" {
		t.Errorf("images %q", imgs)
	}
}

// The refusals reach the client as Feishu sends them: HTTP 400 and a code,
// on every call that carries card content.
func TestContentRefusedOnEveryCall(t *testing.T) {
	s := New("ou_bot")
	t.Cleanup(s.Close)
	card := func(md string) string {
		b, _ := json.Marshal(map[string]any{"schema": "2.0", "config": map[string]any{"update_multi": true, "streaming_mode": true},
			"body": map[string]any{"elements": []any{map[string]any{"tag": "markdown", "element_id": "answer", "content": md}}}})
		return string(b)
	}
	call := func(method, path string, body any) (int, int) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer t-cli_x")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Code int `json:"code"`
			Data struct {
				CardID string `json:"card_id"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if out.Data.CardID != "" {
			return resp.StatusCode, -1
		}
		return resp.StatusCode, out.Code
	}
	hostile := card("![x](https://evil.example/a.png)")
	huge := card(strings.Repeat("<&>", 6000)) // 18 KB of text, 108 KB as sent
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
	}{
		{"reply", "POST", "/open-apis/im/v1/messages/om_1/reply", map[string]any{"msg_type": "interactive", "content": hostile}, CodeCardContent},
		{"create", "POST", "/open-apis/im/v1/messages?receive_id_type=chat_id", map[string]any{"receive_id": "oc_1", "msg_type": "interactive", "content": hostile}, CodeCardContent},
		{"patch", "PATCH", "/open-apis/im/v1/messages/om_1", map[string]any{"content": hostile}, CodeCardContent},
		{"reply too large", "POST", "/open-apis/im/v1/messages/om_1/reply", map[string]any{"msg_type": "interactive", "content": huge}, CodeMessageTooLarge},
		{"card create", "POST", "/open-apis/cardkit/v1/cards", map[string]any{"type": "card_json", "data": hostile}, CodeCardContent},
		{"card create too large", "POST", "/open-apis/cardkit/v1/cards", map[string]any{"type": "card_json", "data": huge}, CodeCardTooLarge},
	} {
		if status, code := call(tc.method, tc.path, tc.body); status != http.StatusBadRequest || code != tc.code {
			t.Errorf("%s: HTTP %d code %d, want 400 and %d", tc.name, status, code, tc.code)
		}
	}

	if status, code := call("POST", "/open-apis/cardkit/v1/cards", map[string]any{"type": "card_json", "data": card("正在思考")}); status != 200 || code != -1 {
		t.Fatalf("creating a clean card: HTTP %d code %d", status, code)
	}
	id := "card_fake_1"
	for _, tc := range []struct {
		name string
		path string
		body any
		code int
	}{
		{"text with an image", "/elements/answer/content", map[string]any{"content": "![x](https://evil.example/a.png)", "sequence": 1}, CodeCardContent},
		{"text too large", "/elements/answer/content", map[string]any{"content": strings.Repeat("<&>", 6000), "sequence": 2}, CodeCardTooLarge},
		{"clean text", "/elements/answer/content", map[string]any{"content": "答案", "sequence": 3}, 0},
		{"update with @all", "", map[string]any{"card": map[string]any{"type": "card_json", "data": card("<at id=all></at>")}, "sequence": 4}, CodeCardContent},
		{"update too large", "", map[string]any{"card": map[string]any{"type": "card_json", "data": huge}, "sequence": 5}, CodeCardTooLarge},
	} {
		status, code := call("PUT", "/open-apis/cardkit/v1/cards/"+id+tc.path, tc.body)
		if code != tc.code || (code != 0 && status != http.StatusBadRequest) {
			t.Errorf("%s: HTTP %d code %d, want %d", tc.name, status, code, tc.code)
		}
	}
	if c, _, _ := s.Card(id); !strings.Contains(CardText(c), "答案") || strings.Contains(CardText(c), "evil") {
		t.Errorf("the card after refused and accepted updates:\n%s", CardText(c))
	}
}
