package rag

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	gmtext "github.com/yuin/goldmark/text"
	"go.yaml.in/yaml/v3"

	"kbbot/store/index"
)

// SourceDoc is one document found in a knowledge file, before chunking.
type SourceDoc struct {
	Kind   string // index.KindQA or index.KindPassage
	Title  string // for a Q&A item, its question
	URL    string
	Date   string
	Path   []string // heading path inside the source
	Text   string   // body; for a Q&A item, the answer
	Refs   []int    // indexes of the documents (in the same file) this one cites
	Tags   []string
	Source string

	// Where in Feishu the document was read (index.Chunk has the same
	// fields): empty for local files.
	SpaceID, NodeToken, DocumentID string
	Anchor                         string // block id of the section's heading
	Version                        string // the source's version, e.g. its edit time
}

// ParseError names the file and line a knowledge file could not be read at.
type ParseError struct {
	File string
	Line int // 1-based; 0 when the whole file is at fault
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ParseFile reads one knowledge file by its extension: .md/.markdown with
// optional YAML front matter, .txt as either a WaytoAGI Q&A page or plain text.
func ParseFile(name string, data []byte) ([]SourceDoc, error) {
	if !utf8.Valid(data) {
		return nil, &ParseError{File: name, Msg: "not UTF-8 text"}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	switch strings.ToLower(filepath.Ext(name)) {
	case ".md", ".markdown":
		return parseMarkdown(name, text)
	case ".txt":
		if looksLikeQAPage(text) {
			return parseQAPage(name, text)
		}
		return parsePlain(name, text)
	}
	return nil, &ParseError{File: name, Msg: fmt.Sprintf("unsupported file type %q (kbbot reads .md, .markdown and .txt)", filepath.Ext(name))}
}

// Markers of the WaytoAGI Q&A page layout.
const (
	qaAnswerMarker = "回答"
	qaRefsMarker   = "参考资料"
	qaOthersMarker = "其他人在问"
	qaNoticePrefix = "内容由 AI 大模型生成"
)

var (
	dateLine     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	headingMark  = regexp.MustCompile(`\[(title|heading[1-6])\]`)
	noticeSuffix = regexp.MustCompile(`内容由\s*AI\s*大模型生成[^\n]*$`)
)

func looksLikeQAPage(text string) bool {
	lines := strings.Split(text, "\n")
	hasAnswer, hasOthers := false, false
	for _, l := range lines {
		switch strings.TrimSpace(l) {
		case qaAnswerMarker:
			hasAnswer = true
		case qaOthersMarker:
			hasOthers = true
		}
	}
	return hasAnswer && hasOthers
}

// parseQAPage reads a WaytoAGI knowledge-base answer page: a question, its
// answer (the AI notice removed), the 参考资料 excerpts (title line, blank,
// excerpt), and the 其他人在问 items (question, answer, date lines).
func parseQAPage(name, text string) ([]SourceDoc, error) {
	lines := strings.Split(text, "\n")
	find := func(marker string, from int) int {
		for i := from; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) == marker {
				return i
			}
		}
		return -1
	}
	ans := find(qaAnswerMarker, 0)
	refs := find(qaRefsMarker, ans+1)
	others := find(qaOthersMarker, ans+1)
	if refs < 0 {
		refs = others
	}
	// The question is the last non-empty line before 回答 that is not part of
	// the breadcrumb header.
	question := ""
	for i := ans - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.Contains(l, "首页/") && !strings.Contains(l, "直达") {
			question = l
			break
		}
	}
	if question == "" {
		return nil, &ParseError{File: name, Line: ans + 1, Msg: "Q&A page has no question before " + qaAnswerMarker}
	}
	var answer []string
	for _, l := range lines[ans+1 : refs] {
		if strings.HasPrefix(strings.TrimSpace(l), qaNoticePrefix) {
			continue
		}
		answer = append(answer, l)
	}
	body := strings.TrimSpace(noticeSuffix.ReplaceAllString(strings.TrimSpace(strings.Join(answer, "\n")), ""))
	if body == "" {
		return nil, &ParseError{File: name, Line: ans + 2, Msg: "Q&A page has an empty answer"}
	}
	main := SourceDoc{Kind: index.KindQA, Title: question, Text: body, Source: name}
	docs := []SourceDoc{main}

	// 参考资料: blocks separated by blank lines, alternating title and excerpt.
	if refs >= 0 && refs != others {
		end := others
		if end < 0 {
			end = len(lines)
		}
		var blocks []string
		var cur []string
		for _, l := range lines[refs+1 : end] {
			if strings.TrimSpace(l) == "" {
				if len(cur) > 0 {
					blocks = append(blocks, strings.Join(cur, "\n"))
					cur = nil
				}
				continue
			}
			cur = append(cur, strings.TrimSpace(l))
		}
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n"))
		}
		if len(blocks)%2 != 0 {
			return nil, &ParseError{File: name, Line: refs + 1, Msg: fmt.Sprintf("参考资料 should alternate title and excerpt, found %d blocks", len(blocks))}
		}
		for i := 0; i < len(blocks); i += 2 {
			path, excerpt := splitHeadingPath(blocks[i+1])
			docs = append(docs, SourceDoc{Kind: index.KindPassage, Title: blocks[i], Path: path, Text: excerpt, Source: name})
			docs[0].Refs = append(docs[0].Refs, len(docs)-1)
		}
	}

	// 其他人在问: each item is its question line(s), its answer line, a date.
	if others >= 0 {
		var item []string
		start := others + 2
		for i := others + 1; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			if l == "" {
				continue
			}
			if !dateLine.MatchString(l) {
				if len(item) == 0 {
					start = i + 1
				}
				item = append(item, l)
				continue
			}
			if len(item) < 2 {
				return nil, &ParseError{File: name, Line: start, Msg: "其他人在问 item needs a question line and an answer line before its date"}
			}
			docs = append(docs, SourceDoc{
				Kind:   index.KindQA,
				Title:  strings.Join(item[:len(item)-1], " "),
				Text:   item[len(item)-1],
				Date:   l,
				Source: name,
			})
			item = nil
		}
		if len(item) > 0 {
			return nil, &ParseError{File: name, Line: start, Msg: "其他人在问 item has no date line (YYYY-MM-DD)"}
		}
	}
	return docs, nil
}

// splitHeadingPath separates "[title]T[heading2]H2[heading3]H3body…" into
// the path [T, H2, H3] and the body. The page runs the last heading into the
// body without a separator, so that heading is cut at the first sentence
// punctuation or 30 characters, and the body keeps the full text (losing
// nothing a search might need).
func splitHeadingPath(excerpt string) ([]string, string) {
	locs := headingMark.FindAllStringIndex(excerpt, -1)
	if len(locs) == 0 || locs[0][0] != 0 {
		return nil, excerpt
	}
	var path []string
	for i, loc := range locs {
		end := len(excerpt)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		seg := strings.TrimSpace(excerpt[loc[1]:end])
		if i+1 < len(locs) {
			path = append(path, seg)
			continue
		}
		path = append(path, headingPrefix(seg))
		return path, seg
	}
	return path, ""
}

func headingPrefix(s string) string {
	var b strings.Builder
	n := 0
	prev := rune(0)
	for _, r := range s {
		if strings.ContainsRune("。！？，,!?；;", r) || (r == '.' && !(prev >= '0' && prev <= '9')) || n >= 30 ||
			// Body text that starts in lowercase Latin right after a Chinese heading.
			(r >= 'a' && r <= 'z' && unicode.Is(unicode.Han, prev)) {
			break
		}
		b.WriteRune(r)
		prev = r
		n++
		if strings.ContainsRune(")）】」", r) {
			break
		}
	}
	return strings.TrimSpace(b.String())
}

// frontMatter is the YAML header of a Markdown knowledge file.
type frontMatter struct {
	Title string   `yaml:"title"`
	URL   string   `yaml:"url"`
	Date  string   `yaml:"date"`
	Tags  []string `yaml:"tags"`
}

// parseMarkdown reads optional front matter, then splits the body into one
// document per section so each chunk knows its heading path.
func parseMarkdown(name, text string) ([]SourceDoc, error) {
	var fm frontMatter
	if strings.HasPrefix(text, "---\n") {
		end := strings.Index(text[4:], "\n---")
		if end < 0 {
			return nil, &ParseError{File: name, Line: 1, Msg: "front matter opened with --- is never closed"}
		}
		header := text[4 : 4+end]
		dec := yaml.NewDecoder(strings.NewReader(header))
		dec.KnownFields(true)
		if err := dec.Decode(&fm); err != nil && err.Error() != "EOF" {
			return nil, &ParseError{File: name, Line: yamlLine(err) + 1, Msg: "front matter: " + yamlMsg(err)}
		}
		text = strings.TrimPrefix(text[4+end+4:], "\n")
	}
	title := fm.Title
	type section struct {
		path []string
		body string
	}
	var sections []section
	var heads []string // heading stack by level
	cur := section{}
	// A section's body is the source between headings, not text rebuilt
	// from the AST: the chunker and the LLM read Markdown as it was written.
	pos := 0
	for _, h := range markdownHeadings([]byte(text)) {
		cur.body += text[pos:h.start]
		pos = h.end
		// An empty "#" still ends a section but names nothing, so it is
		// never the title.
		if h.level == 1 && title == "" && len(heads) == 0 && h.text != "" {
			title = h.text
			continue
		}
		if strings.TrimSpace(cur.body) != "" {
			sections = append(sections, cur)
		}
		for len(heads) < h.level {
			heads = append(heads, "")
		}
		heads = append(heads[:h.level-1], h.text)
		var path []string
		for _, h := range heads {
			if h != "" {
				path = append(path, h)
			}
		}
		cur = section{path: path}
	}
	cur.body += text[pos:]
	if strings.TrimSpace(cur.body) != "" {
		sections = append(sections, cur)
	}
	if title == "" {
		title = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	var docs []SourceDoc
	for _, s := range sections {
		docs = append(docs, SourceDoc{
			Kind: index.KindPassage, Title: title, URL: fm.URL, Date: fm.Date, Tags: fm.Tags,
			Path: s.path, Text: strings.TrimSpace(s.body), Source: name,
		})
	}
	if len(docs) == 0 {
		return nil, &ParseError{File: name, Msg: "no text after the front matter"}
	}
	return docs, nil
}

// mdHeading is a heading that starts a section of a Markdown body.
type mdHeading struct {
	level int
	text  string // as written, Markdown and all, as heading paths always showed it
	// start and end span the heading's whole lines (a setext heading's
	// underline included), so cutting them out leaves the rest intact.
	start, end int
}

// markdownHeadings finds the headings, ATX and setext, among the top-level
// blocks of src. A CommonMark parser, not a line scanner, decides what is a
// heading, so "# x" inside any code block stays text. Headings nested in a
// list item or a blockquote are not section breaks: they belong to that
// block, which stays whole in its section.
func markdownHeadings(src []byte) []mdHeading {
	doc := goldmark.DefaultParser().Parse(gmtext.NewReader(src))
	var out []mdHeading
	for n := doc.FirstChild(); n != nil; n = n.NextSibling() {
		h, ok := n.(*ast.Heading)
		if !ok || h.Pos() < 0 {
			continue
		}
		lines := h.Lines()
		var parts []string
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			parts = append(parts, strings.TrimSpace(string(seg.Value(src))))
		}
		start, end := lineStart(src, h.Pos()), lineEnd(src, h.Pos())
		// goldmark keeps no record of which syntax a heading used. An ATX
		// heading is its one line; a setext heading is its text lines and
		// the underline after them.
		if !isATXLine(src[start:end]) && lines.Len() > 0 {
			end = lineEnd(src, lineEnd(src, lines.At(lines.Len()-1).Start))
		}
		out = append(out, mdHeading{level: h.Level, text: strings.Join(parts, " "), start: start, end: end})
	}
	return out
}

// isATXLine reports whether line opens with an ATX heading marker: up to
// three spaces, one to six #s, then a space, a tab or the line's end. A
// setext heading's first line never does, or it would be an ATX heading.
func isATXLine(line []byte) bool {
	i := 0
	for i < 3 && i < len(line) && line[i] == ' ' {
		i++
	}
	n := 0
	for i < len(line) && line[i] == '#' {
		i++
		n++
	}
	return n >= 1 && n <= 6 && (i == len(line) || line[i] == ' ' || line[i] == '\t' || line[i] == '\n')
}

// lineStart is the offset of the first byte of the line holding src[i].
func lineStart(src []byte, i int) int {
	return bytes.LastIndexByte(src[:i], '\n') + 1
}

// lineEnd is the offset just past the newline ending the line holding
// src[i], or len(src) on the last line.
func lineEnd(src []byte, i int) int {
	if j := bytes.IndexByte(src[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(src)
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 1
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

func yamlMsg(err error) string {
	return regexp.MustCompile(`^yaml: (line \d+: )?`).ReplaceAllString(err.Error(), "")
}

// parsePlain reads a .txt file as one document titled by its first line.
func parsePlain(name, text string) ([]SourceDoc, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, &ParseError{File: name, Msg: "empty file"}
	}
	title, body, _ := strings.Cut(text, "\n")
	title = strings.TrimSpace(title)
	if strings.TrimSpace(body) == "" || utf8.RuneCountInString(title) > 80 {
		body = text
		title = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	return []SourceDoc{{Kind: index.KindPassage, Title: title, Text: strings.TrimSpace(body), Source: name}}, nil
}
