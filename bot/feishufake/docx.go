package feishufake

// Builders of docx documents for tests: blocks and their text elements in
// the shapes the blocks list answers with
// (https://open.feishu.cn/document/docs/docs/data-structure/block).

import (
	"fmt"
	"net/url"
	"strings"

	larkdocx "github.com/larksuite/oapi-sdk-go/v3/service/docx/v1"
)

// Block types (the BlockType table of the block data-structure page). 16
// is not in that table; the fake gives it to the equation block, whose
// payload the blocks list does describe (an assumption).
const (
	blockPage           = 1
	blockText           = 2
	blockHeading1       = 3
	blockBullet         = 12
	blockOrdered        = 13
	blockCode           = 14
	blockQuote          = 15
	blockEquation       = 16
	blockTodo           = 17
	blockBitable        = 18
	blockCallout        = 19
	blockDivider        = 22
	blockFile           = 23
	blockGrid           = 24
	blockGridColumn     = 25
	blockIframe         = 26
	blockImage          = 27
	blockSheet          = 30
	blockTable          = 31
	blockTableCell      = 32
	blockView           = 33
	blockQuoteContainer = 34
	blockUndefined      = 999
)

// Block is a block to build a document from (Document, AddDocx,
// EditDocx): its content and its children. Ids, parent_id and children
// come when the document is built.
type Block struct {
	b        larkdocx.Block
	children []Block
}

// With returns b with children added after its own.
func (b Block) With(children ...Block) Block {
	b.children = append(append([]Block(nil), b.children...), children...)
	return b
}

// Document is the blocks of a document called title made of body, as the
// blocks list answers them: in pre-order, the page block first with
// block_id documentID, the others numbered documentID_1, documentID_2, ….
func Document(documentID, title string, body ...Block) []*larkdocx.Block {
	blocks, _ := flatten(documentID, title, 1, body)
	return blocks
}

// flatten builds a document, numbering its blocks from n on; it returns
// the next free number.
func flatten(documentID, title string, n int, body []Block) ([]*larkdocx.Block, int) {
	root := &larkdocx.Block{BlockId: ptr(documentID), BlockType: ptr(blockPage),
		Page: &larkdocx.Text{Elements: []*larkdocx.TextElement{Run(title)}, Style: &larkdocx.TextStyle{Align: ptr(1)}}}
	out := []*larkdocx.Block{root}
	var add func(parent *larkdocx.Block, kids []Block)
	add = func(parent *larkdocx.Block, kids []Block) {
		parent.Children = []string{}
		for _, k := range kids {
			b := k.b // a copy: the builder's Block stays as it was
			b.BlockId = ptr(fmt.Sprintf("%s_%d", documentID, n))
			b.ParentId = parent.BlockId
			n++
			parent.Children = append(parent.Children, *b.BlockId)
			out = append(out, &b)
			add(&b, k.children)
		}
		if parent.Table != nil { // a table's cells are its children
			t := *parent.Table
			t.Cells = parent.Children
			parent.Table = &t
		}
		if len(parent.Children) == 0 {
			parent.Children = nil
		}
	}
	add(root, body)
	return out, n
}

func ptr[T any](v T) *T { return &v }

// style is a text_element_style with every switch off, as Feishu answers.
func style() *larkdocx.TextElementStyle {
	return &larkdocx.TextElementStyle{Bold: ptr(false), Italic: ptr(false), Strikethrough: ptr(false),
		Underline: ptr(false), InlineCode: ptr(false)}
}

// Run is a text_run of plain text.
func Run(text string) *larkdocx.TextElement {
	return &larkdocx.TextElement{TextRun: &larkdocx.TextRun{Content: ptr(text), TextElementStyle: style()}}
}

// Bold is a bold text_run.
func Bold(text string) *larkdocx.TextElement {
	e := Run(text)
	e.TextRun.TextElementStyle.Bold = ptr(true)
	return e
}

// Italic is an italic text_run.
func Italic(text string) *larkdocx.TextElement {
	e := Run(text)
	e.TextRun.TextElementStyle.Italic = ptr(true)
	return e
}

// InlineCode is a text_run in inline code.
func InlineCode(text string) *larkdocx.TextElement {
	e := Run(text)
	e.TextRun.TextElementStyle.InlineCode = ptr(true)
	return e
}

// Link is a text_run linking to rawURL, which Feishu answers URL-encoded
// ("https%3A%2F%2Fopen.feishu.cn%2F" in the block page's example).
func Link(text, rawURL string) *larkdocx.TextElement {
	e := Run(text)
	e.TextRun.TextElementStyle.Link = &larkdocx.Link{Url: ptr(encodeURL(rawURL))}
	return e
}

// encodeURL encodes like JavaScript's encodeURIComponent, which is what
// the block page's example looks like: %20 for a space, not +.
func encodeURL(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// MentionDoc is an @-mention of a docx document: its title (read-only,
// filled in by Feishu) and its URL-encoded url. An empty title stands for
// one Feishu could not fill in.
func MentionDoc(title, docURL string) *larkdocx.TextElement {
	token := docURL[strings.LastIndexByte(docURL, '/')+1:]
	m := &larkdocx.MentionDoc{Token: ptr(token), ObjType: ptr(22), Url: ptr(encodeURL(docURL)), TextElementStyle: style()}
	if title != "" {
		m.Title = ptr(title)
	}
	return &larkdocx.TextElement{MentionDoc: m}
}

// MentionUser is an @-mention of a user by open_id.
func MentionUser(openID string) *larkdocx.TextElement {
	return &larkdocx.TextElement{MentionUser: &larkdocx.MentionUser{UserId: ptr(openID), TextElementStyle: style()}}
}

// InlineEquation is a KaTeX equation inside text.
func InlineEquation(content string) *larkdocx.TextElement {
	return &larkdocx.TextElement{Equation: &larkdocx.Equation{Content: ptr(content), TextElementStyle: style()}}
}

func text(elems []*larkdocx.TextElement) *larkdocx.Text {
	return &larkdocx.Text{Elements: elems, Style: &larkdocx.TextStyle{Align: ptr(1), Folded: ptr(false)}}
}

// Text is a paragraph.
func Text(elems ...*larkdocx.TextElement) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockText), Text: text(elems)}}
}

// Heading is a heading of level 1 to 9 (block types 3 to 11).
func Heading(level int, elems ...*larkdocx.TextElement) Block {
	b := larkdocx.Block{BlockType: ptr(blockHeading1 + level - 1)}
	t := text(elems)
	switch level {
	case 1:
		b.Heading1 = t
	case 2:
		b.Heading2 = t
	case 3:
		b.Heading3 = t
	case 4:
		b.Heading4 = t
	case 5:
		b.Heading5 = t
	case 6:
		b.Heading6 = t
	case 7:
		b.Heading7 = t
	case 8:
		b.Heading8 = t
	case 9:
		b.Heading9 = t
	default:
		panic(fmt.Sprintf("feishufake: heading level %d", level))
	}
	return Block{b: b}
}

// Bullet is an unordered list item; nested items are its children
// (With).
func Bullet(elems ...*larkdocx.TextElement) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockBullet), Bullet: text(elems)}}
}

// Ordered is an ordered list item numbered on from the one before
// (style.sequence "auto").
func Ordered(elems ...*larkdocx.TextElement) Block {
	return OrderedFrom("auto", elems...)
}

// OrderedFrom is an ordered list item with style.sequence seq: "1" starts
// a list, a number sets this item's number, "auto" continues. An empty seq
// leaves the field out, as some old documents do.
func OrderedFrom(seq string, elems ...*larkdocx.TextElement) Block {
	t := text(elems)
	if seq != "" {
		t.Style.Sequence = ptr(seq)
	}
	return Block{b: larkdocx.Block{BlockType: ptr(blockOrdered), Ordered: t}}
}

// Code is a code block in language (the CodeLanguage enum: 1 PlainText,
// 22 Go, 49 Python, 56 SQL, …).
func Code(language int, code string) Block {
	t := text([]*larkdocx.TextElement{Run(code)})
	t.Style.Language, t.Style.Wrap = ptr(language), ptr(false)
	return Block{b: larkdocx.Block{BlockType: ptr(blockCode), Code: t}}
}

// Quote is a quote block (type 15).
func Quote(elems ...*larkdocx.TextElement) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockQuote), Quote: text(elems)}}
}

// Todo is a to-do item, done or not (style.done).
func Todo(done bool, elems ...*larkdocx.TextElement) Block {
	t := text(elems)
	t.Style.Done = ptr(done)
	return Block{b: larkdocx.Block{BlockType: ptr(blockTodo), Todo: t}}
}

// Equation is an equation block of KaTeX content.
func Equation(content string) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockEquation),
		Equation: text([]*larkdocx.TextElement{InlineEquation(content)})}}
}

// Callout is a highlighted box; its content is its children.
func Callout(children ...Block) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockCallout),
		Callout: &larkdocx.Callout{BackgroundColor: ptr(5), BorderColor: ptr(5), EmojiId: ptr("bulb")}}}.With(children...)
}

// QuoteContainer is a quote holding blocks (type 34).
func QuoteContainer(children ...Block) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockQuoteContainer), QuoteContainer: &larkdocx.QuoteContainer{}}}.With(children...)
}

// Divider is a horizontal rule.
func Divider() Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockDivider), Divider: &larkdocx.Divider{}}}
}

// Image is an image with a caption ("" for none).
func Image(caption string) Block {
	img := &larkdocx.Image{Token: ptr("boxfakeimage0000000000000000"), Width: ptr(640), Height: ptr(480), Align: ptr(2)}
	if caption != "" {
		img.Caption = &larkdocx.Caption{Content: ptr(caption)}
	}
	return Block{b: larkdocx.Block{BlockType: ptr(blockImage), Image: img}}
}

// Table is a table of columns columns whose cells (Cell), row by row,
// are cells; every cell starts unmerged (Merge).
func Table(columns int, cells ...Block) Block {
	rows := (len(cells) + columns - 1) / columns
	merge := make([]*larkdocx.TableMergeInfo, len(cells))
	widths := make([]int, columns)
	for i := range merge {
		merge[i] = &larkdocx.TableMergeInfo{RowSpan: ptr(1), ColSpan: ptr(1)}
	}
	for i := range widths {
		widths[i] = 100
	}
	return Block{b: larkdocx.Block{BlockType: ptr(blockTable), Table: &larkdocx.Table{Property: &larkdocx.TableProperty{
		RowSize: ptr(rows), ColumnSize: ptr(columns), ColumnWidth: widths, MergeInfo: merge}}}}.With(cells...)
}

// Merge returns table b with cell (its index, row by row) spanning rows
// and cols. Feishu keeps the covered cells, empty, in the table.
func (b Block) Merge(cell, rows, cols int) Block {
	t := *b.b.Table
	p := *t.Property
	p.MergeInfo = append([]*larkdocx.TableMergeInfo(nil), p.MergeInfo...)
	p.MergeInfo[cell] = &larkdocx.TableMergeInfo{RowSpan: ptr(rows), ColSpan: ptr(cols)}
	t.Property = &p
	b.b.Table = &t
	return b
}

// Cell is a table cell holding children.
func Cell(children ...Block) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockTableCell), TableCell: &larkdocx.TableCell{}}}.With(children...)
}

// TextCells is cells of one paragraph each, for Table.
func TextCells(texts ...string) []Block {
	out := make([]Block, len(texts))
	for i, t := range texts {
		out[i] = Cell(Text(Run(t)))
	}
	return out
}

// Grid is columns side by side (GridColumn).
func Grid(columns ...Block) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockGrid), Grid: &larkdocx.Grid{ColumnSize: ptr(len(columns))}}}.With(columns...)
}

// GridColumn is one column of a Grid.
func GridColumn(children ...Block) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockGridColumn), GridColumn: &larkdocx.GridColumn{WidthRatio: ptr(50)}}}.With(children...)
}

// File is an attachment. A file block sits in a view block ("文件块不能独立
// 存在，须与视图块一同出现"), so File is a view holding the file.
func File(name string) Block {
	f := Block{b: larkdocx.Block{BlockType: ptr(blockFile), File: &larkdocx.File{Token: ptr("boxfakefile00000000000000000"), Name: ptr(name), ViewType: ptr(1)}}}
	return Block{b: larkdocx.Block{BlockType: ptr(blockView), View: &larkdocx.View{ViewType: ptr(1)}}}.With(f)
}

// Iframe is an embedded web page; its url comes URL-encoded.
func Iframe(pageURL string) Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockIframe), Iframe: &larkdocx.Iframe{
		Component: &larkdocx.IframeComponent{IframeType: ptr(1), Url: ptr(encodeURL(pageURL))}}}}
}

// Sheet is an embedded spreadsheet.
func Sheet() Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockSheet), Sheet: &larkdocx.Sheet{Token: ptr("shtfake_0b1c2d"), RowSize: ptr(10), ColumnSize: ptr(4)}}}
}

// Bitable is an embedded base table.
func Bitable() Block {
	return Block{b: larkdocx.Block{BlockType: ptr(blockBitable), Bitable: &larkdocx.Bitable{Token: ptr("bscfake_tbl0001"), ViewType: ptr(1)}}}
}

// Unknown is a block of blockType with no content the fake knows of; 999
// is Feishu's "undefined" block.
func Unknown(blockType int) Block {
	b := larkdocx.Block{BlockType: ptr(blockType)}
	if blockType == blockUndefined {
		b.Undefined = &larkdocx.Undefined{}
	}
	return Block{b: b}
}
