package rag

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"kbbot/store/index"
)

func TestParseQAPageSeed(t *testing.T) {
	data, err := os.ReadFile("../seeds/waytoagi_model_training.txt")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := ParseFile("seeds/waytoagi_model_training.txt", data)
	if err != nil {
		t.Fatal(err)
	}
	main := docs[0]
	if main.Kind != index.KindQA || main.Title != "模型训练的底层原理" {
		t.Fatalf("main Q&A = %q (%s)", main.Title, main.Kind)
	}
	if strings.Contains(main.Text, "内容由 AI 大模型生成") || !strings.HasPrefix(main.Text, "模型训练的底层原理如下") || !strings.Contains(main.Text, "格式塔") {
		t.Errorf("main answer not clean: %q…", clip(main.Text, 80))
	}
	var refs, others []SourceDoc
	for _, d := range docs[1:] {
		if d.Kind == index.KindPassage {
			refs = append(refs, d)
		} else {
			others = append(others, d)
		}
	}
	if len(refs) != 3 || len(main.Refs) != 3 {
		t.Fatalf("references = %d (main cites %d), want 3", len(refs), len(main.Refs))
	}
	wantRefs := []struct {
		title string
		path  []string
	}{
		{"Ranger:【AI 大模型】非技术背景,一文读懂大模型(长文)", []string{"Ranger:【AI大模型】非技术背景,一文读懂大模型(长文)", "三、理解模型如何运作", "2.多模态的原理"}},
		{"学习笔记:【这就是 ChatGPT】了解原理让大语言模型 AI 成为你的打工人", nil},
		{"文章:Andrej Karpathy 亲授:大语言模型入门", []string{"文章:Andrej Karpathy亲授:大语言模型入门", "第一部分:大型语言模型(LLMs)"}},
	}
	for i, w := range wantRefs {
		if refs[i].Title != w.title {
			t.Errorf("ref %d title = %q, want %q", i, refs[i].Title, w.title)
		}
		if strings.Join(refs[i].Path, "|") != strings.Join(w.path, "|") {
			t.Errorf("ref %d path = %q, want %q", i, refs[i].Path, w.path)
		}
		if strings.HasPrefix(refs[i].Text, "[") || len(refs[i].Text) < 100 {
			t.Errorf("ref %d text = %q", i, clip(refs[i].Text, 40))
		}
	}
	if len(others) != 20 {
		t.Fatalf("其他人在问 items = %d, want 20", len(others))
	}
	first, last := others[0], others[19]
	if first.Title != "AI搜索的底层逻辑是怎样的" || first.Date != "2024-10-16" || !strings.HasPrefix(first.Text, "AI 搜索的底层逻辑主要是") {
		t.Errorf("first item = %q %q %q", first.Title, first.Date, clip(first.Text, 20))
	}
	if last.Title != "RAG技术实现的原理步骤" || last.Date != "2024-09-17" {
		t.Errorf("last item = %q %q", last.Title, last.Date)
	}
	for _, o := range others {
		if o.Date == "" || o.Text == "" || o.Title == "" {
			t.Errorf("incomplete item %+v", o)
		}
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name, file, data string
		wantLine         int
		wantMsg          string
	}{
		{"unknown type", "a.pdf", "x", 0, "unsupported file type"},
		{"not utf8", "a.txt", "\xff\xfe", 0, "not UTF-8"},
		{"unclosed front matter", "a.md", "---\ntitle: x\nbody", 1, "never closed"},
		{"bad yaml", "a.md", "---\ntitle: x\ntags: [a, b\n---\nbody", 2, "front matter"},
		{"unknown field", "a.md", "---\ntitle: x\nauthor: y\n---\nbody", 3, "author"},
		{"qa item without date", "a.txt", "Q\n\n回答\n\nA\n\n其他人在问\nq1\na1\n", 8, "no date"},
		{"empty", "a.txt", "  \n", 0, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(tt.file, []byte(tt.data))
			pe, ok := err.(*ParseError)
			if !ok {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.File != tt.file || pe.Line != tt.wantLine || !strings.Contains(pe.Error(), tt.wantMsg) {
				t.Errorf("err = %q (line %d), want line %d containing %q", pe.Error(), pe.Line, tt.wantLine, tt.wantMsg)
			}
		})
	}
}

func TestParseMarkdown(t *testing.T) {
	md := "---\ntitle: Bot guide\nurl: https://example.com/guide\ndate: 2024-05-01\ntags: [help, bot]\n---\nIntro line.\n\n## Commands\nUse /reset.\n\n### Reset\nClears context.\n\n```\n# not a heading\n```\n"
	docs, err := ParseFile("guide.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 {
		t.Fatalf("sections = %d, want 3: %+v", len(docs), docs)
	}
	d := docs[2]
	if d.Title != "Bot guide" || d.URL != "https://example.com/guide" || d.Date != "2024-05-01" || strings.Join(d.Tags, ",") != "help,bot" {
		t.Errorf("front matter not applied: %+v", d)
	}
	if strings.Join(d.Path, "/") != "Commands/Reset" || !strings.Contains(d.Text, "# not a heading") {
		t.Errorf("section = %q %q", d.Path, d.Text)
	}
	// Without front matter, the first H1 is the title.
	docs, err = ParseFile("x.md", []byte("# Title\n\nbody"))
	if err != nil || docs[0].Title != "Title" || docs[0].Text != "body" {
		t.Errorf("h1 title: %+v %v", docs, err)
	}
}

func TestParseMarkdownSections(t *testing.T) {
	type section struct{ path, text string } // path joined by "/"
	tests := []struct {
		name      string
		data      string
		wantTitle string
		want      []section
	}{
		{
			name:      "setext title and subsection",
			data:      "Guide\n=====\n\nIntro.\n\nSetup\n-----\nRun it.\n",
			wantTitle: "Guide",
			want:      []section{{"", "Intro."}, {"Setup", "Run it."}},
		},
		{
			name:      "multi-line setext heading is one heading",
			data:      "# T\n\nFirst line\nsecond line\n---\nbody\n",
			wantTitle: "T",
			want:      []section{{"First line second line", "body"}},
		},
		{
			// The old scanner only knew ``` fences: this line became the
			// title and vanished from the text.
			name:      "heading inside a tilde fence is text",
			data:      "~~~\n# x\n~~~\n\nafter\n",
			wantTitle: "doc",
			want:      []section{{"", "~~~\n# x\n~~~\n\nafter"}},
		},
		{
			name:      "heading inside a backtick fence is text",
			data:      "## Code\n```sh\n## not a heading\n```\n",
			wantTitle: "doc",
			want:      []section{{"Code", "```sh\n## not a heading\n```"}},
		},
		{
			// A ``` line inside a ```` fence does not close it.
			name:      "heading inside a longer backtick fence is text",
			data:      "## Code\n````md\n```\n# not a heading\n```\n````\n",
			wantTitle: "doc",
			want:      []section{{"Code", "````md\n```\n# not a heading\n```\n````"}},
		},
		{
			name:      "heading inside an indented code block is text",
			data:      "## Code\n\n    # not a heading\n\nafter\n",
			wantTitle: "doc",
			want:      []section{{"Code", "# not a heading\n\nafter"}},
		},
		{
			// Only top-level headings start sections: a heading nested in a
			// list item or a blockquote belongs to that block's text.
			name:      "heading in a list item or blockquote is text",
			data:      "## S\n- # in a list\n\n> # in a quote\n",
			wantTitle: "doc",
			want:      []section{{"S", "- # in a list\n\n> # in a quote"}},
		},
		{
			name:      "closing hashes are not part of the heading",
			data:      "## Title ##\nA.\n\n### C# ###\nB.\n\n## C#\nC.\n",
			wantTitle: "doc",
			want:      []section{{"Title", "A."}, {"Title/C#", "B."}, {"C#", "C."}},
		},
		{
			name:      "Windows line endings",
			data:      "Guide\r\n=====\r\n\r\n## A\r\nline one\r\nline two\r\n",
			wantTitle: "Guide",
			want:      []section{{"A", "line one\nline two"}},
		},
		{
			name:      "heading text keeps its Markdown",
			data:      "## Use `/reset` *now*\nbody\n",
			wantTitle: "doc",
			want:      []section{{"Use `/reset` *now*", "body"}},
		},
		{
			name:      "empty sections are skipped",
			data:      "## A\n\n## B\n### C\n\nc\n",
			wantTitle: "doc",
			want:      []section{{"B/C", "c"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := ParseFile("doc.md", []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			var got []section
			for _, d := range docs {
				if d.Title != tt.wantTitle {
					t.Errorf("title = %q, want %q", d.Title, tt.wantTitle)
				}
				got = append(got, section{strings.Join(d.Path, "/"), d.Text})
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("sections =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
