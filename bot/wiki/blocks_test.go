package wiki

import (
	"flag"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kbbot/bot/feishufake"
	"kbbot/deploy/testkit"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// run, text and h shorten the builders.
var (
	run  = feishufake.Run
	text = func(s string) feishufake.Block { return feishufake.Text(run(s)) }
	h    = func(level int, s string) feishufake.Block { return feishufake.Heading(level, run(s)) }
)

// one is a section with no heading above it.
func one(text string) []Section { return []Section{{Path: nil, Text: text}} }

func TestSections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    []feishufake.Block
		want    []Section
		skipped []string
	}{
		{name: "paragraphs; bold and italic plain",
			body: []feishufake.Block{feishufake.Text(run("Hello "), feishufake.Bold("bold"), run(" and "), feishufake.Italic("italic")), text("Second")},
			want: one("Hello bold and italic\n\nSecond")},
		{name: "link with its URL decoded",
			body: []feishufake.Block{feishufake.Text(run("see "), feishufake.Link("the guide", "https://example.com/docs/a b?x=1&y=中文"))},
			want: one("see [the guide](https://example.com/docs/a%20b?x=1&y=中文)")},
		{name: "a link Feishu did not encode comes through as it is",
			body: []feishufake.Block{feishufake.Text(&larkdocx.TextElement{TextRun: &larkdocx.TextRun{Content: ptr("search"),
				TextElementStyle: &larkdocx.TextElementStyle{Link: &larkdocx.Link{Url: ptr("https://example.com/s?q=a+b")}}}})},
			want: one("[search](https://example.com/s?q=a+b)")},
		{name: "a heading keeps a link's text only",
			body: []feishufake.Block{feishufake.Heading(2, feishufake.Link("API", "https://example.com/api")), text("x")},
			want: []Section{{[]string{"API"}, "d_1", "x"}}},
		{name: "inline code",
			body: []feishufake.Block{feishufake.Text(run("run "), feishufake.InlineCode("go test ./..."), run(" or "), feishufake.InlineCode("a`b"))},
			want: one("run `go test ./...` or ``a`b``")},
		{name: "mentions",
			body: []feishufake.Block{feishufake.Text(run("ask "), feishufake.MentionUser("ou_123"), run("about "),
				feishufake.MentionDoc("Runbook", "https://x.feishu.cn/docx/doxA"), run(" and "), feishufake.MentionDoc("", "https://x.feishu.cn/wiki/wikB"))},
			want:    one("ask about Runbook and https://x.feishu.cn/wiki/wikB"),
			skipped: []string{"mention_user (a user id, no text): 1"}},
		{name: "headings make paths",
			body: []feishufake.Block{h(1, "A"), text("a"), h(2, "B"), text("b"), h(3, "C"), text("c"), h(2, "D"), text("d"), h(1, "E"), text("e")},
			want: []Section{{[]string{"A"}, "d_1", "a"}, {[]string{"A", "B"}, "d_3", "b"}, {[]string{"A", "B", "C"}, "d_5", "c"},
				{[]string{"A", "D"}, "d_7", "d"}, {[]string{"E"}, "d_9", "e"}}},
		{name: "heading levels skip",
			body: []feishufake.Block{h(1, "A"), h(3, "C"), text("c"), h(2, "B"), text("b"), h(9, "Deep"), text("z")},
			want: []Section{{[]string{"A", "C"}, "d_2", "c"}, {[]string{"A", "B"}, "d_4", "b"}, {[]string{"A", "B", "Deep"}, "d_6", "z"}}},
		{name: "text before the first heading",
			body: []feishufake.Block{text("intro"), h(2, "Setup"), text("steps")},
			want: []Section{{nil, "", "intro"}, {[]string{"Setup"}, "d_2", "steps"}}},
		{name: "an empty heading opens nothing",
			body:    []feishufake.Block{h(1, "A"), text("a"), feishufake.Heading(2), text("still a")},
			want:    []Section{{[]string{"A"}, "d_1", "a\n\nstill a"}},
			skipped: []string{"empty heading: 1"}},
		{name: "bullets nest by children",
			body: []feishufake.Block{feishufake.Bullet(run("a")).With(feishufake.Bullet(run("a1")).With(feishufake.Bullet(run("a1x")))), feishufake.Bullet(run("b")), text("after")},
			want: one("- a\n  - a1\n    - a1x\n- b\n\nafter")},
		{name: "ordered numbers",
			body: []feishufake.Block{feishufake.OrderedFrom("1", run("one")), feishufake.Ordered(run("two")), feishufake.OrderedFrom("5", run("five")),
				feishufake.OrderedFrom("", run("six")).With(feishufake.OrderedFrom("1", run("x")), feishufake.Ordered(run("y"))),
				text("break"), feishufake.Ordered(run("again")), feishufake.OrderedFrom("1", run("restart"))},
			want: one("1. one\n2. two\n5. five\n6. six\n   1. x\n   2. y\n\nbreak\n\n1. again\n1. restart")},
		{name: "todo",
			body: []feishufake.Block{feishufake.Todo(false, run("write")), feishufake.Todo(true, run("read"))},
			want: one("- [ ] write\n- [x] read")},
		{name: "code with its language",
			body: []feishufake.Block{feishufake.Code(22, "fmt.Println(1)\n"), feishufake.Code(1, "plain"), feishufake.Code(39, "```go\nx\n```")},
			want: one("```go\nfmt.Println(1)\n```\n\n```\nplain\n```\n\n````markdown\n```go\nx\n```\n````")},
		{name: "quotes",
			body: []feishufake.Block{feishufake.Quote(run("said")), feishufake.QuoteContainer(text("a"), text("b"))},
			want: one("> said\n\n> a\n>\n> b")},
		{name: "a list inside a callout",
			body: []feishufake.Block{feishufake.Callout(text("Note"), feishufake.Bullet(run("x")), feishufake.Bullet(run("y")))},
			want: one("> Note\n>\n> - x\n> - y")},
		{name: "divider",
			body: []feishufake.Block{text("a"), feishufake.Divider(), text("b")},
			want: one("a\n\n---\n\nb")},
		{name: "images",
			body:    []feishufake.Block{feishufake.Image("Architecture overview"), feishufake.Image("")},
			want:    one("Architecture overview"),
			skipped: []string{"image without caption: 1"}},
		{name: "table, header row first",
			body: []feishufake.Block{feishufake.Table(2, feishufake.TextCells("Name", "Port", "redis", "6379")...)},
			want: one("Name | Port\nredis | 6379")},
		{name: "a table cell with two paragraphs",
			body: []feishufake.Block{feishufake.Table(2, feishufake.Cell(text("Step")), feishufake.Cell(text("Note")),
				feishufake.Cell(text("1")), feishufake.Cell(text("first line"), text("second | line")))},
			want: one("Step | Note\n1 | first line second \\| line")},
		{name: "merged cells across columns and rows",
			body: []feishufake.Block{feishufake.Table(3, feishufake.TextCells(
				"Region", "", "Owner",
				"cn", "a", "ops",
				"", "b", "sre")...).Merge(0, 1, 2).Merge(3, 2, 1)},
			want: one("Region | Owner\ncn | a | ops\nb | sre")},
		{name: "grid columns",
			body: []feishufake.Block{feishufake.Grid(feishufake.GridColumn(h(2, "Left"), text("l")), feishufake.GridColumn(text("r")))},
			want: []Section{{[]string{"Left"}, "d_3", "l\n\nr"}}},
		{name: "equations",
			body: []feishufake.Block{feishufake.Equation("E = mc^2\n"), feishufake.Text(run("where "), feishufake.InlineEquation("c"), run(" is light"))},
			want: one("$$\nE = mc^2\n$$\n\nwhere $c$ is light")},
		{name: "file by its name",
			body: []feishufake.Block{feishufake.File("design.pdf")},
			want: one("design.pdf")},
		{name: "embedded and unknown blocks are skipped",
			body: []feishufake.Block{text("kept"), feishufake.Sheet(), feishufake.Bitable(), feishufake.Iframe("https://example.com"),
				feishufake.Unknown(999), feishufake.Unknown(777), feishufake.Unknown(777), feishufake.Unknown(43)},
			want: one("kept"),
			skipped: []string{"bitable (a base table: its records are not in the document): 1", "block type 777 (unknown): 2",
				"board (a whiteboard: its content is not in the document): 1", "iframe (an embedded web page): 1",
				"sheet (an embedded spreadsheet: its cells are not in the document): 1", "undefined (a block the API does not support): 1"}},
		{name: "the children of a skipped block are still read",
			body:    []feishufake.Block{feishufake.Unknown(777).With(text("inside"))},
			want:    one("inside"),
			skipped: []string{"block type 777 (unknown): 1"}},
		{name: "a heading nested in a callout is text",
			body: []feishufake.Block{h(1, "Top"), feishufake.Callout(h(2, "Warning"), text("careful"))},
			want: []Section{{[]string{"Top"}, "d_1", "> Warning\n>\n> careful"}}},
		{name: "empty document", body: nil, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			title, got, skipped := Sections(feishufake.Document("d", "Title", tc.body...))
			if title != "Title" {
				t.Errorf("title %q", title)
			}
			if !equalSections(got, tc.want) {
				t.Errorf("sections:\n%s\nwant:\n%s", show(got), show(tc.want))
			}
			if !slices.Equal(skipped, tc.skipped) {
				t.Errorf("skipped %q, want %q", skipped, tc.skipped)
			}
		})
	}
}

func equalSections(a, b []Section) bool {
	return slices.EqualFunc(a, b, func(x, y Section) bool {
		return slices.Equal(x.Path, y.Path) && x.Anchor == y.Anchor && x.Text == y.Text
	})
}

// show renders sections for a failure message and the golden file.
func show(ss []Section) string {
	var sb strings.Builder
	for _, s := range ss {
		sb.WriteString("## " + strings.Join(s.Path, " > ") + " {#" + s.Anchor + "}\n")
		sb.WriteString(s.Text + "\n\n")
	}
	return sb.String()
}

func TestTreeNotFlatOrder(t *testing.T) {
	body := []feishufake.Block{h(1, "A"), feishufake.Bullet(run("x")).With(feishufake.Bullet(run("y"))), text("p"), h(2, "B"), text("q")}
	blocks := feishufake.Document("d", "T", body...)
	_, want, _ := Sections(blocks)
	shuffled := slices.Clone(blocks)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if shuffled[0] == blocks[0] {
		t.Fatal("the shuffle left the root first; pick another seed")
	}
	_, got, skipped := Sections(shuffled)
	if !equalSections(got, want) || len(skipped) != 0 {
		t.Errorf("shuffled blocks:\n%s\nwant:\n%s\nskipped %q", show(got), show(want), skipped)
	}
}

func TestBrokenTrees(t *testing.T) {
	blocks := feishufake.Document("d", "T", text("a"), text("b"))
	// A block no one lists as a child, and a child that is not there.
	stray := *blocks[1]
	stray.BlockId = ptr("d_stray")
	stray.Text = &larkdocx.Text{Elements: []*larkdocx.TextElement{run("stray")}}
	root := *blocks[0]
	root.Children = append(slices.Clone(root.Children), "d_missing", "d_1")
	_, got, skipped := Sections([]*larkdocx.Block{&root, blocks[1], blocks[2], &stray})
	if !equalSections(got, one("a\n\nb")) {
		t.Errorf("sections:\n%s", show(got))
	}
	want := []string{"block listed twice among children: 1", "block not among any block's children: 1", "missing block (a child id not in the list): 1"}
	if !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
	// No page block at all: the blocks without a parent are the top.
	_, got, _ = Sections(blocks[1:])
	if !equalSections(got, one("a\n\nb")) {
		t.Errorf("without a page block:\n%s", show(got))
	}
}

func ptr[T any](v T) *T { return &v }

// TestGoldenRunbook converts a realistic document; run with -update to
// rewrite testdata/runbook.md after an intended change.
func TestGoldenRunbook(t *testing.T) {
	link, code := feishufake.Link, feishufake.InlineCode
	body := []feishufake.Block{
		feishufake.Text(run("本文说明 kbbot 的发布与回滚流程。值班同学请先阅读"), feishufake.MentionDoc("值班说明", "https://example.feishu.cn/wiki/wikOnCall"), run("。")),
		feishufake.Callout(feishufake.Text(feishufake.Bold("注意："), run("发布窗口为每周二、周四 14:00–17:00。"))),
		h(1, "发布"),
		h(2, "前置条件"),
		feishufake.Bullet(run("预发环境验证通过")),
		feishufake.Bullet(run("变更单已审批")).With(feishufake.Bullet(run("紧急变更需值班负责人确认"))),
		feishufake.Todo(true, run("更新 CHANGELOG")),
		feishufake.Todo(false, run("通知 #kbbot-release 群")),
		h(2, "步骤"),
		feishufake.OrderedFrom("1", run("打标签："), code("git tag v1.4.0")),
		feishufake.Ordered(run("等待 CI 构建镜像，见"), link("流水线", "https://ci.example.com/kbbot?branch=main")),
		feishufake.Ordered(run("灰度 10% 流量并观察监控")),
		feishufake.Code(60, "kubectl -n prod set image deploy/kbbot kbbot=registry.example.com/kbbot:v1.4.0\nkubectl -n prod rollout status deploy/kbbot\n"),
		feishufake.Image("发布流程图"),
		h(3, "检查项"),
		feishufake.Table(3, feishufake.TextCells("指标", "阈值", "面板", "错误率", "< 1%", "kbbot-overview", "P99 延迟", "< 2s", "")...),
		h(1, "回滚"),
		feishufake.Quote(run("回滚优先于排查：先止血，再定位。")),
		feishufake.Text(run("执行 "), code("kubectl rollout undo deploy/kbbot -n prod"), run("，然后在群里同步。")),
		feishufake.Divider(),
		feishufake.Grid(
			feishufake.GridColumn(h(2, "联系人"), feishufake.Bullet(run("发布负责人：")), feishufake.Bullet(feishufake.MentionUser("ou_abc"))),
			feishufake.GridColumn(feishufake.Sheet()),
		),
		feishufake.Image(""),
	}
	title, sections, skipped := Sections(feishufake.Document("doxRunbook", "kbbot 发布手册", body...))
	got := "# " + title + "\n\n" + show(sections) + "skipped:\n" + strings.Join(skipped, "\n") + "\n"
	testkit.Golden(t, filepath.Join("testdata", "runbook.md"), []byte(got), *update)
}
