package rag

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

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

var mdHeading = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*#*\s*$`)

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
		body []string
	}
	var sections []section
	var heads []string // heading stack by level
	cur := section{}
	inFence := false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if m := mdHeading.FindStringSubmatch(line); m != nil && !inFence {
			level := len(m[1])
			if level == 1 && title == "" && len(heads) == 0 {
				title = m[2]
				continue
			}
			if len(strings.TrimSpace(strings.Join(cur.body, ""))) > 0 {
				sections = append(sections, cur)
			}
			for len(heads) < level {
				heads = append(heads, "")
			}
			heads = append(heads[:level-1], m[2])
			var path []string
			for _, h := range heads {
				if h != "" {
					path = append(path, h)
				}
			}
			cur = section{path: path}
			continue
		}
		cur.body = append(cur.body, line)
	}
	if len(strings.TrimSpace(strings.Join(cur.body, ""))) > 0 {
		sections = append(sections, cur)
	}
	if title == "" {
		title = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	var docs []SourceDoc
	for _, s := range sections {
		docs = append(docs, SourceDoc{
			Kind: index.KindPassage, Title: title, URL: fm.URL, Date: fm.Date, Tags: fm.Tags,
			Path: s.path, Text: strings.TrimSpace(strings.Join(s.body, "\n")), Source: name,
		})
	}
	if len(docs) == 0 {
		return nil, &ParseError{File: name, Msg: "no text after the front matter"}
	}
	return docs, nil
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
