// Package wiki reads Feishu wiki spaces and docx documents into kbbot's
// knowledge index. blocks.go turns a document's blocks into sections of
// Markdown, one per heading.
package wiki

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	larkcore "github.com/larksuite/oapi-sdk-go/v3/core"
	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
)

// Section is one heading's part of a document: its heading path (not the
// document title), the block id of the heading that opens it ("" for text
// before the first heading), and its text as Markdown.
type Section struct {
	Path   []string
	Anchor string
	Text   string
}

// Sections turns a document's blocks (as ListBlocks returns them:
// pre-order, index 0 the page root) into sections; skipped lists what was
// left out and why (one line per kind, with a count).
//
// The tree is walked from the page block by children, so the flat order
// matters only to find the root. What becomes of each block:
//   - headings 1–9 open sections, a heading of level k replacing the path
//     from level k on, as in Markdown (h1 then h3 gives a path of two); a
//     heading nested in a list, quote, callout or table is plain text there.
//     A section with no text is left out: its heading is in the paths of
//     the sections under it. An empty heading opens nothing;
//   - text runs keep their text; a link becomes [text](url) with the URL
//     decoded, inline code goes in backticks; bold, italic, underline,
//     strikethrough and colours are dropped (they would only be noise in an
//     index);
//   - bullet and ordered items are "- " and "N. " lines, nested by children
//     and indented under their item; N is style.sequence when it is a
//     number and the one before plus one otherwise ("auto", or missing in
//     old documents); todo is "- [ ] " or "- [x] ";
//   - code is a fenced block tagged with its language; quote (15),
//     quote_container (34) and callout (19) become "> " lines, callout
//     because it is a highlighted aside, which a quote is closest to;
//   - a table is one line per row, cells joined by " | ", the first row
//     first; a merged cell's text stands once where the merge starts and
//     the cells it covers are left out (when empty, as Feishu keeps them),
//     like HTML colspan/rowspan; a cell's paragraphs are joined by spaces;
//   - divider is "---"; image is its caption, or nothing; a file block is
//     its file name; equations are $…$ inline and $$…$$ as blocks;
//   - mention_doc is the document's title, or its URL when Feishu gave no
//     title; mention_user is dropped (an open_id is no text to search);
//   - grid, grid_column, view, agenda and source_synced are containers:
//     their children count as if they stood in the container's place;
//   - sheet, bitable, iframe, isv, chat_card, diagram, mindnote, board and
//     the like, and types this code does not know, are skipped with the
//     reason; their children, if any, are still read.
func Sections(blocks []*larkdocx.Block) (title string, sections []Section, skipped []string) {
	c := &converter{byID: map[string]*larkdocx.Block{}, done: map[string]bool{}, skipped: map[string]int{}}
	var root *larkdocx.Block
	for _, b := range blocks {
		if b == nil || b.BlockId == nil {
			continue
		}
		if _, dup := c.byID[*b.BlockId]; !dup {
			c.byID[*b.BlockId] = b
		}
		if root == nil && blockType(b) == typePage {
			root = b
		}
	}
	var top []string
	if root != nil {
		c.done[*root.BlockId] = true
		if root.Page != nil {
			title = c.plain(root.Page.Elements)
		}
		top = root.Children
	} else {
		// No page block: read the blocks whose parent is not there, in order.
		for _, b := range blocks {
			if b != nil && b.BlockId != nil && (b.ParentId == nil || c.byID[*b.ParentId] == nil) {
				top = append(top, *b.BlockId)
			}
		}
	}
	c.walk(top)
	c.flush()
	if root != nil {
		for id := range c.byID {
			if !c.done[id] {
				c.skip("block not among any block's children")
			}
		}
	}
	for reason, n := range c.skipped {
		skipped = append(skipped, fmt.Sprintf("%s: %d", reason, n))
	}
	slices.Sort(skipped)
	return title, c.sections, skipped
}

// Block types (the BlockType table of
// https://open.feishu.cn/document/docs/docs/data-structure/block). 16 is
// missing from that table; the SDK has an equation block, which this code
// takes 16 to be (an assumption: were it wrong, equations would be skipped
// as an unknown type, with the count in skipped).
const (
	typePage              = 1
	typeText              = 2
	typeHeading1          = 3
	typeHeading9          = 11
	typeBullet            = 12
	typeOrdered           = 13
	typeCode              = 14
	typeQuote             = 15
	typeEquation          = 16
	typeTodo              = 17
	typeCallout           = 19
	typeDivider           = 22
	typeFile              = 23
	typeGrid              = 24
	typeGridColumn        = 25
	typeImage             = 27
	typeTable             = 31
	typeTableCell         = 32
	typeView              = 33
	typeQuoteContainer    = 34
	typeAgenda            = 44
	typeAgendaItem        = 45
	typeAgendaItemTitle   = 46
	typeAgendaItemContent = 47
	typeSourceSynced      = 49
)

// containers hold blocks and add nothing of their own.
var containers = map[int]bool{typeGrid: true, typeGridColumn: true, typeView: true, typeAgenda: true,
	typeAgendaItem: true, typeAgendaItemContent: true, typeSourceSynced: true, typePage: true}

// unreadable is why each block type with no text for the index is
// skipped. The docx overview says Image, File, Bitable, Sheet, Mindnote,
// ChatCard, ISV, Task and WikiCatalog give only a token to read, and
// Diagram and LinkPreview nothing
// (https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/docx-overview).
var unreadable = map[int]string{
	18:  "bitable (a base table: its records are not in the document)",
	20:  "chat_card (a group chat card)",
	21:  "diagram (not readable through the API)",
	26:  "iframe (an embedded web page)",
	28:  "isv (a third-party block)",
	29:  "mindnote (an embedded mind map: its content is not in the document)",
	30:  "sheet (an embedded spreadsheet: its cells are not in the document)",
	35:  "task (a task card)",
	36:  "okr",
	37:  "okr",
	38:  "okr",
	39:  "okr",
	40:  "add_ons (a third-party block)",
	41:  "jira_issue",
	42:  "wiki_catalog (a list of sub-pages)",
	43:  "board (a whiteboard: its content is not in the document)",
	48:  "link_preview (its URL is not returned)",
	50:  "reference_synced (its content lives in the source document)",
	51:  "sub_page_list (a list of sub-pages)",
	52:  "ai_template",
	999: "undefined (a block the API does not support)",
}

type converter struct {
	byID     map[string]*larkdocx.Block
	done     map[string]bool
	skipped  map[string]int
	sections []Section
	// The open section: its heading path, anchor and parts so far.
	path   []heading
	anchor string
	parts  []part
}

type heading struct {
	level int
	text  string
}

// part is one block's Markdown; list items are kept apart by one newline,
// everything else by a blank line.
type part struct {
	text string
	list bool
}

func (c *converter) skip(reason string) { c.skipped[reason]++ }

func blockType(b *larkdocx.Block) int { return larkcore.IntValue(b.BlockType) }

// block is the block id names, once: nil for a missing id or one seen
// before (a cycle, or a block listed under two parents).
func (c *converter) block(id string) *larkdocx.Block {
	b := c.byID[id]
	switch {
	case b == nil:
		c.skip("missing block (a child id not in the list)")
		return nil
	case c.done[id]:
		c.skip("block listed twice among children")
		return nil
	}
	c.done[id] = true
	return b
}

// walk reads blocks at section level, where headings open sections.
func (c *converter) walk(ids []string) {
	num := 0
	for _, id := range ids {
		b := c.block(id)
		if b == nil {
			continue
		}
		t := blockType(b)
		switch {
		case t >= typeHeading1 && t <= typeHeading9:
			num = 0
			if text := c.plain(elements(textOf(b))); text != "" {
				c.flush()
				c.open(t-typeHeading1+1, text, id)
			} else {
				c.skip("empty heading")
			}
			c.walk(b.Children)
		case containers[t]:
			num = 0
			c.walk(b.Children)
		default:
			if s, list := c.render(b, &num); s != "" {
				c.parts = append(c.parts, part{s, list})
			}
		}
	}
}

// open starts the section of a heading of level.
func (c *converter) open(level int, text, id string) {
	for len(c.path) > 0 && c.path[len(c.path)-1].level >= level {
		c.path = c.path[:len(c.path)-1]
	}
	c.path = append(c.path, heading{level, text})
	c.anchor = id
}

// flush ends the open section, keeping it if it has text.
func (c *converter) flush() {
	text := joinParts(c.parts)
	c.parts = nil
	if strings.TrimSpace(text) == "" {
		return
	}
	path := make([]string, len(c.path))
	for i, h := range c.path {
		path[i] = h.text
	}
	c.sections = append(c.sections, Section{Path: path, Anchor: c.anchor, Text: text})
}

func joinParts(parts []part) string {
	var sb strings.Builder
	for i, p := range parts {
		if i > 0 {
			if p.list && parts[i-1].list {
				sb.WriteString("\n")
			} else {
				sb.WriteString("\n\n")
			}
		}
		sb.WriteString(p.text)
	}
	return sb.String()
}

// children renders blocks below section level, numbering ordered items
// among themselves.
func (c *converter) children(ids []string) string {
	var parts []part
	num := 0
	for _, id := range ids {
		b := c.block(id)
		if b == nil {
			continue
		}
		if s, list := c.render(b, &num); s != "" {
			parts = append(parts, part{s, list})
		}
	}
	return joinParts(parts)
}

// render is one block and what is under it as Markdown, and whether it is
// a list item. num is the number of the ordered item before it among its
// siblings, 0 after anything else.
func (c *converter) render(b *larkdocx.Block, num *int) (string, bool) {
	t := blockType(b)
	if t != typeOrdered {
		*num = 0
	}
	switch {
	case t == typeText:
		return join(c.markdown(elements(b.Text)), c.children(b.Children)), false
	case t >= typeHeading1 && t <= typeHeading9:
		return join(c.plain(elements(textOf(b))), c.children(b.Children)), false
	case t == typeBullet || t == typeOrdered || t == typeTodo:
		return c.listItem(b, num), true
	case t == typeCode:
		return c.code(b), false
	case t == typeQuote:
		return quote(join(c.markdown(elements(b.Quote)), c.children(b.Children))), false
	case t == typeCallout || t == typeQuoteContainer:
		return quote(c.children(b.Children)), false
	case t == typeEquation:
		if eq := strings.TrimSpace(c.plain(elements(b.Equation))); eq != "" {
			return "$$\n" + eq + "\n$$", false
		}
		return "", false
	case t == typeDivider:
		return "---", false
	case t == typeImage:
		if b.Image != nil && b.Image.Caption != nil && strings.TrimSpace(larkcore.StringValue(b.Image.Caption.Content)) != "" {
			return strings.TrimSpace(*b.Image.Caption.Content), false
		}
		c.skip("image without caption")
		return "", false
	case t == typeTable:
		return c.table(b), false
	case t == typeFile:
		if b.File != nil && larkcore.StringValue(b.File.Name) != "" {
			return *b.File.Name, false
		}
		c.skip("file without a name")
		return "", false
	case t == typeAgendaItemTitle:
		var elems []*larkdocx.TextElement
		if b.AgendaItemTitle != nil {
			for _, e := range b.AgendaItemTitle.Elements {
				if e != nil {
					elems = append(elems, &larkdocx.TextElement{TextRun: e.TextRun, MentionUser: e.MentionUser, MentionDoc: e.MentionDoc,
						Reminder: e.Reminder, File: e.File, Undefined: e.Undefined, InlineBlock: e.InlineBlock, Equation: e.Equation})
				}
			}
		}
		return join(c.markdown(elems), c.children(b.Children)), false
	case containers[t] || t == typeTableCell:
		return c.children(b.Children), false
	}
	if reason, ok := unreadable[t]; ok {
		c.skip(reason)
	} else {
		c.skip(fmt.Sprintf("block type %d (unknown)", t))
	}
	return c.children(b.Children), false
}

func join(text, below string) string {
	switch {
	case text == "":
		return below
	case below == "":
		return text
	}
	return text + "\n\n" + below
}

// listItem is a bullet, ordered or todo item with its children indented
// under it.
func (c *converter) listItem(b *larkdocx.Block, num *int) string {
	var marker string
	indent := 2
	switch blockType(b) {
	case typeBullet:
		marker = "- "
	case typeOrdered:
		*num = ordinal(b.Ordered, *num)
		marker = strconv.Itoa(*num) + ". "
		indent = len(marker)
	case typeTodo:
		marker = "- [ ] "
		if b.Todo != nil && b.Todo.Style != nil && larkcore.BoolValue(b.Todo.Style.Done) {
			marker = "- [x] "
		}
	}
	text := c.markdown(elements(textOf(b)))
	below := c.children(b.Children)
	if text == "" && below == "" {
		return ""
	}
	pad := strings.Repeat(" ", indent)
	out := marker + indentLines(text, pad, false)
	if below != "" {
		out += "\n" + indentLines(below, pad, true)
	}
	return out
}

// ordinal is an ordered item's number: style.sequence when it is a number,
// else the one before plus one ("auto", or no sequence at all, which the
// SDK says some old documents and API-made lists have).
func ordinal(t *larkdocx.Text, prev int) int {
	if t != nil && t.Style != nil && t.Style.Sequence != nil {
		if n, err := strconv.Atoi(*t.Style.Sequence); err == nil && n > 0 {
			return n
		}
	}
	return prev + 1
}

// indentLines puts pad before every line of s but the first, unless
// first; blank lines stay blank.
func indentLines(s, pad string, first bool) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if (i > 0 || first) && l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

func quote(s string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l == "" {
			lines[i] = ">"
		} else {
			lines[i] = "> " + l
		}
	}
	return strings.Join(lines, "\n")
}

func (c *converter) code(b *larkdocx.Block) string {
	var sb strings.Builder
	for _, e := range elements(b.Code) {
		switch {
		case e.TextRun != nil:
			sb.WriteString(larkcore.StringValue(e.TextRun.Content))
		case e.Equation != nil:
			sb.WriteString(larkcore.StringValue(e.Equation.Content))
		}
	}
	body := strings.TrimRight(sb.String(), "\n")
	if strings.TrimSpace(body) == "" {
		return ""
	}
	fence := "```"
	for strings.Contains(body, fence) {
		fence += "`"
	}
	lang := ""
	if b.Code != nil && b.Code.Style != nil && b.Code.Style.Language != nil {
		lang = codeLanguages[*b.Code.Style.Language]
	}
	return fence + lang + "\n" + body + "\n" + fence
}

// codeLanguages is the CodeLanguage enum (the list-blocks page,
// https://open.feishu.cn/document/server-docs/docs/docs/docx-v1/document/list)
// as fenced-code tags: lower case, as Markdown renderers know them. 1 is
// PlainText, no tag.
var codeLanguages = map[int]string{
	2: "abap", 3: "ada", 4: "apache", 5: "apex", 6: "assembly", 7: "bash", 8: "csharp", 9: "cpp", 10: "c",
	11: "cobol", 12: "css", 13: "coffeescript", 14: "d", 15: "dart", 16: "delphi", 17: "django", 18: "dockerfile",
	19: "erlang", 20: "fortran", 21: "foxpro", 22: "go", 23: "groovy", 24: "html", 25: "htmlbars", 26: "http",
	27: "haskell", 28: "json", 29: "java", 30: "javascript", 31: "julia", 32: "kotlin", 33: "latex", 34: "lisp",
	35: "logo", 36: "lua", 37: "matlab", 38: "makefile", 39: "markdown", 40: "nginx", 41: "objectivec",
	42: "openedge-abl", 43: "php", 44: "perl", 45: "postscript", 46: "powershell", 47: "prolog", 48: "protobuf",
	49: "python", 50: "r", 51: "rpg", 52: "ruby", 53: "rust", 54: "sas", 55: "scss", 56: "sql", 57: "scala",
	58: "scheme", 59: "scratch", 60: "shell", 61: "swift", 62: "thrift", 63: "typescript", 64: "vbscript",
	65: "vb", 66: "xml", 67: "yaml", 68: "cmake", 69: "diff", 70: "gherkin", 71: "graphql", 72: "glsl",
	73: "properties", 74: "solidity", 75: "toml",
}

// table is one line per row; see Sections for merged cells.
func (c *converter) table(b *larkdocx.Block) string {
	cells := b.Children
	var prop *larkdocx.TableProperty
	if b.Table != nil {
		if len(b.Table.Cells) > 0 {
			cells = b.Table.Cells
		}
		prop = b.Table.Property
	}
	cols := len(cells)
	if prop != nil && prop.ColumnSize != nil && *prop.ColumnSize > 0 {
		cols = *prop.ColumnSize
	}
	if cols == 0 {
		return ""
	}
	// merge_info has one entry per cell, row by row (an inference: the page
	// says only 单元格合并信息); any other length is read as no merging.
	covered := make([]bool, len(cells))
	if prop != nil && len(prop.MergeInfo) == len(cells) {
		for i, m := range prop.MergeInfo {
			if m == nil {
				continue
			}
			rows, spanCols := max(1, larkcore.IntValue(m.RowSpan)), max(1, larkcore.IntValue(m.ColSpan))
			r, col := i/cols, i%cols
			for dr := range rows {
				for dc := range spanCols {
					if j := (r+dr)*cols + col + dc; (dr > 0 || dc > 0) && col+dc < cols && j < len(cells) {
						covered[j] = true
					}
				}
			}
		}
	}
	var lines []string
	for start := 0; start < len(cells); start += cols {
		var row []string
		filled := false
		for i := start; i < min(start+cols, len(cells)); i++ {
			text := c.cell(cells[i])
			if covered[i] && text == "" {
				continue
			}
			row = append(row, text)
			filled = filled || text != ""
		}
		if filled {
			lines = append(lines, strings.TrimRight(strings.Join(row, " | "), " "))
		}
	}
	return strings.Join(lines, "\n")
}

// cell is a table cell's blocks on one line.
func (c *converter) cell(id string) string {
	b := c.block(id)
	if b == nil {
		return ""
	}
	text := strings.Join(strings.Fields(c.children(b.Children)), " ")
	return strings.ReplaceAll(text, "|", `\|`)
}

// textOf is the text of a block that has one.
func textOf(b *larkdocx.Block) *larkdocx.Text {
	switch blockType(b) {
	case typePage:
		return b.Page
	case typeText:
		return b.Text
	case typeHeading1:
		return b.Heading1
	case typeHeading1 + 1:
		return b.Heading2
	case typeHeading1 + 2:
		return b.Heading3
	case typeHeading1 + 3:
		return b.Heading4
	case typeHeading1 + 4:
		return b.Heading5
	case typeHeading1 + 5:
		return b.Heading6
	case typeHeading1 + 6:
		return b.Heading7
	case typeHeading1 + 7:
		return b.Heading8
	case typeHeading9:
		return b.Heading9
	case typeBullet:
		return b.Bullet
	case typeOrdered:
		return b.Ordered
	case typeCode:
		return b.Code
	case typeQuote:
		return b.Quote
	case typeEquation:
		return b.Equation
	case typeTodo:
		return b.Todo
	}
	return nil
}

func elements(t *larkdocx.Text) []*larkdocx.TextElement {
	if t == nil {
		return nil
	}
	return t.Elements
}

// plain is text elements as plain text: headings and the title.
func (c *converter) plain(elems []*larkdocx.TextElement) string {
	return c.inline(elems, false)
}

// markdown is text elements as Markdown: links and inline code kept.
func (c *converter) markdown(elems []*larkdocx.TextElement) string {
	return c.inline(elems, true)
}

func (c *converter) inline(elems []*larkdocx.TextElement, md bool) string {
	var sb strings.Builder
	for _, e := range elems {
		if e == nil {
			continue
		}
		switch {
		case e.TextRun != nil:
			sb.WriteString(runText(e.TextRun, md))
		case e.MentionDoc != nil:
			if title := larkcore.StringValue(e.MentionDoc.Title); title != "" {
				sb.WriteString(title)
			} else {
				sb.WriteString(decodeURL(larkcore.StringValue(e.MentionDoc.Url)))
			}
		case e.Equation != nil:
			eq := strings.TrimSpace(larkcore.StringValue(e.Equation.Content))
			if md && eq != "" {
				eq = "$" + eq + "$"
			}
			sb.WriteString(eq)
		case e.LinkPreview != nil:
			title, link := larkcore.StringValue(e.LinkPreview.Title), decodeURL(larkcore.StringValue(e.LinkPreview.Url))
			switch {
			case md && title != "" && link != "":
				sb.WriteString("[" + title + "](" + markdownURL(link) + ")")
			case title != "":
				sb.WriteString(title)
			default:
				sb.WriteString(link)
			}
		case e.MentionUser != nil:
			c.skip("mention_user (a user id, no text)")
		case e.Reminder != nil:
			c.skip("reminder (a date reminder)")
		case e.File != nil:
			c.skip("inline file")
		case e.InlineBlock != nil:
			c.skip("inline_block")
		default:
			c.skip("undefined text element")
		}
	}
	return strings.TrimSpace(sb.String())
}

func runText(r *larkdocx.TextRun, md bool) string {
	text := larkcore.StringValue(r.Content)
	st := r.TextElementStyle
	if !md || text == "" || st == nil {
		return text
	}
	if larkcore.BoolValue(st.InlineCode) {
		fence := "`"
		for strings.Contains(text, fence) {
			fence += "`"
		}
		pad := ""
		if strings.HasPrefix(text, "`") || strings.HasSuffix(text, "`") {
			pad = " "
		}
		text = fence + pad + text + pad + fence
	}
	if st.Link != nil && larkcore.StringValue(st.Link.Url) != "" {
		text = "[" + text + "](" + markdownURL(decodeURL(*st.Link.Url)) + ")"
	}
	return text
}

// decodeURL undoes the URL encoding Feishu applies to link, mention and
// iframe URLs (link.url "https%3A%2F%2Fopen.feishu.cn%2F" on the block
// page). PathUnescape, not QueryUnescape: a + in a URL stays a +. A URL
// that was not encoded comes through unchanged, a malformed one as it is.
func decodeURL(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// markdownURL escapes what would end a Markdown link destination.
func markdownURL(s string) string {
	return strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E").Replace(s)
}
